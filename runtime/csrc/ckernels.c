/* optc.runtime._ckernels: C kernels for optc's runtime, called on contiguous float32 NCHW
 * buffers through the buffer protocol (no copies, no NumPy headers needed to build).
 *
 *   depthwise_conv2d(x, w, b_or_None, y, stride_h, stride_w, pad_t, pad_l, dil_h, dil_w,
 *                    act, act_a, act_b[, path])
 *       y[n, c] = act(b[c] + sum_{i,j} w[c, 0, i, j] * x[n, c, oh*sh - pt + i*dh,
 *                                                        ow*sw - pl + j*dw])
 *       (zero padding); path 0: planes or channel blocks as use_cblock decides, 1 the
 *       planes, 2 the channel blocks (the tuner's choice, optc.runtime.tune).
 *   max_pool2d(x, y, kh, kw, sh, sw, pad_t, pad_l, dil_h, dil_w)
 *       y[n, c, oh, ow] = max over the window's cells inside x (-inf if none), the output
 *       size (pads, ceil_mode) decided by the caller.
 *   channel_affine(x, scale_or_None, bias_or_None, y, N, C, P, act, act_a, act_b)
 *       y[n, c, p] = act(x[n, c, p] * scale[c] + bias[c]) for p < P (a 1x1 depthwise conv).
 *   row_means(x, y, rows, cols)
 *       y[r] = (sum of x[r, :cols]) / cols: GlobalAveragePool over the (N * C, pixels) rows.
 *   avg_pool2d(x, y, kh, kw, sh, sw, pad_t, pad_l, dil_h, dil_w, ch0, ch1, cw0, cw1)
 *       y[n, c, oh, ow] = sum of the window's cells inside x / the number of its cells inside
 *       [ch0, ch1) x [cw0, cw1).
 *   winograd_input(xp, v, m, th, tw)
 *       xp: (N, C, th*m + 2, tw*m + 2) padded input; v: (a*a, C, N*th*tw) output, a = m + 2:
 *       V = B^T d B of every a x a tile d (stride m) of every channel, for m = 2 or 4.
 *   winograd_output(p, y, m, th, tw, b_or_None, act, act_a, act_b[, res_or_None])
 *       p: (a*a, M, N*th*tw) per-position GEMM results; y: (N, M, Ho, Wo): Y = A^T P A per
 *       tile, cropped to Ho x Wo, plus bias and the residual input res (y's shape), then the
 *       activation.
 *   winograd_conv2d(x, packed_u, b_or_None, res_or_None, y, m, th, tw, pad_t, pad_l, act,
 *                   act_a, act_b[, threads])
 *       the whole Winograd conv of the unpadded x (N, C, H, W) into y (N, M, Ho, Wo), a block
 *       of tile rows at a time (transforms, the a*a GEMMs on the packed filters, bias,
 *       residual, activation: winograd.c).
 *
 *   qlinear_conv2d(x, w, panels_or_None, corr, m0, shift, y, N, C, H, W, G, Mg, Mgp, Kq, kh, kw,
 *                  sh, sw, pt, pl, dh, dw, OH, OW, pad, flip, zp, ysigned[, threads])
 *       int8 convolution (QLinearConv) of uint8 data (int8 flipped to uint8 by `flip`), the
 *       weights packed by optc/runtime/kernels/native.py (panels: at simd level 1 the AVX2
 *       GEMM's, int16 or int8 by their dtype, None: the portable loop instead; at level 3
 *       the AMX GEMM's filters, None: the VNNI GEMM instead), requantization fused
 *       (qgemm.c).
 *
 *   sgemm_batch(packed_a, b, c, batch, M, N, K[, threads])
 *       float32 c[i] = a[i] @ b[i] with the weights a packed once into panels (sgemm.c).
 *   sconv2d_bf16(x, bf16_w, b_or_None, res_or_None, y, N, C, H, W, G, Mg, kh, kw, sh, sw, pt,
 *                pl, dh, dw, OH, OW, act, act_a, act_b, taps[, threads]), bf16_available()
 *       sconv2d with the products in bf16 on AMX-BF16 (bf16.c; the session's precision
 *       "bf16").
 *   smatmul_bf16(a, bf16_w, b_or_None, y, N, K, M, act, act_a, act_b[, threads])
 *       y (N x M) = act(a @ W + b), the products in bf16 (bf16.c; precision "bf16").
 *   sconv2d(x, packed_w, b_or_None, res_or_None, y, N, C, H, W, G, Mg, kh, kw, sh, sw, pt, pl,
 *           dh, dw, OH, OW, act, act_a, act_b[, threads])
 *       float32 2-D conv of NCHW x, y = act(conv(x) + b + res): blocks of im2col'd pixels
 *       through the packed-weight GEMM, the epilogue fused into its store (sgemm.c).
 *
 *   quantize_linear(x, y, scale, zp, ysigned), dequantize_linear(x, y, xsigned, zp, scale)
 *       per-tensor QuantizeLinear / DequantizeLinear (qgemm.c).
 *   affine_quantize(x, scale, shift, y, N, C, P, act, act_a, act_b, y_scale, zp, ysigned)
 *       ai.optc QuantizeAffine: y = QuantizeLinear(act(x * scale[c] + shift[c])) (qgemm.c).
 *   qlinear_add(a, b, y, signed, za, zb, ra, rb, zy)
 *       com.microsoft QLinearAdd of two 8-bit tensors of one shape (qgemm.c).
 *
 *   run_plan(ops, floats, bufs)
 *       a stretch of a session's steps in one call (optc/runtime/plan.py): each int64 row of
 *       ops a conv, depthwise conv, per-channel affine map, row means or broadcast Add/Mul
 *       on the float32 arrays of bufs it names (the table: above run_plan); every operand
 *       checked against its op's geometry before anything runs.
 *
 * act codes: see activate() in qgemm.h.
 * The Winograd matrices are those of Lavin & Gray, "Fast Algorithms for Convolutional Neural
 * Networks" (2016), the same as optc/runtime/kernels/winograd.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qgemm.h"

/* A writable (or read-only) C-contiguous float32 buffer of exactly `count` elements. */
static int get_floats(PyObject *obj, Py_buffer *view, Py_ssize_t count, int writable,
                      const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (view->itemsize != 4 || view->format == NULL || strcmp(view->format, "f") != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be float32", name);
        PyBuffer_Release(view);
        return -1;
    }
    if (count >= 0 && view->len != count * 4) {
        PyErr_Format(PyExc_ValueError, "%s has %zd elements, expected %zd", name,
                     view->len / 4, count);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int dims4(Py_buffer *v, Py_ssize_t *d, const char *name) {
    if (v->ndim != 4) {
        PyErr_Format(PyExc_ValueError, "%s must be 4-D", name);
        return -1;
    }
    for (int i = 0; i < 4; i++) d[i] = v->shape[i];
    return 0;
}

/* act(v) over a row (vectorised: activate.c) */
static inline void activate_row(float *restrict row, Py_ssize_t n, int act, float aa, float ab) {
    activate_span(row, (size_t)n, act, aa, ab);
}

/* Bands of whole rows (depthwise_planes, pool_planes): a band of output rows reads the input
 * rows it needs into P, padded to Wp columns -- every column a window reads (ceil mode's last
 * windows may reach past the explicit end padding) -- and works on P's rows as flat vectors,
 * so that every loop is long and contiguous however small the map. A band holds `band` output
 * rows so that its buffers (bs floats each) stay within BAND_FLOATS, in L1, unless a single
 * row is wider. */
#define BAND_FLOATS 2048
typedef struct {
    Py_ssize_t Wp, band, bs;
} band_shape;

static band_shape band_geometry(Py_ssize_t WO, Py_ssize_t kh, Py_ssize_t kw, int sh, int sw,
                                int dh, int dw) {
    band_shape g;
    g.Wp = (WO - 1) * sw + (kw - 1) * dw + 1;
    g.band = (BAND_FLOATS / g.Wp - (kh - 1) * dh - 1) / sh + 1;
    if (g.band < 1) g.band = 1;
    const Py_ssize_t floats = ((g.band - 1) * sh + 1 + (kh - 1) * dh) * g.Wp;
    g.bs = floats > BAND_FLOATS ? floats : BAND_FLOATS;
    return g;
}

/* P's rows r < rows: row first + r of the plane xc (H x W), its columns shifted right by pl,
 * every cell outside the plane `fill` (inlined into the callers' clones) */
static inline __attribute__((always_inline)) void band_rows(const float *xc, Py_ssize_t H,
                                                            Py_ssize_t W, Py_ssize_t first,
                                                            Py_ssize_t rows, Py_ssize_t Wp,
                                                            int pl, float fill, float *P) {
    const Py_ssize_t c0 = pl < 0 ? -pl : 0, c1 = W < Wp - pl ? W : Wp - pl;
    for (Py_ssize_t r = 0; r < rows; r++) {
        const Py_ssize_t ih = first + r;
        float *pr = P + r * Wp;
        if (ih < 0 || ih >= H || c1 <= c0) {
            for (Py_ssize_t q = 0; q < Wp; q++) pr[q] = fill;
            continue;
        }
        for (Py_ssize_t q = 0; q < c0 + pl; q++) pr[q] = fill;
        memcpy(pr + c0 + pl, xc + ih * W + c0, sizeof(float) * (size_t)(c1 - c0));
        for (Py_ssize_t q = c1 + pl; q < Wp; q++) pr[q] = fill;
    }
}

/* Depthwise convolution, a band of output rows of a plane at a time. The input rows the band
 * reads, zero padded, are split into the sh x sw phases of the stride (phase (u, v) holds the
 * padded input's rows u, u + sh, ... and columns v, v + sw, ..., each phase Rq x Wq), so that
 * tap (i, j) of every output of the band is one phase read at one offset: output (o, q) takes
 * phase ((i dh) % sh, (j dw) % sw) at row o + (i dh) / sh, column q + (j dw) / sw. Every tap's
 * product is then summed over the band's flat positions (o Wq + q) at once -- long contiguous
 * loops however small the map, and no work on the rows and columns a stride drops (the band
 * of padded rows computed whole ran stride-2 convs at 4-8x onnxruntime's time). A kernel row's
 * taps are summed in one pass (3x3: all nine). Stride 1 has a single phase: the padded rows
 * themselves. Bias and activation are applied as the kept columns are written out. */
typedef struct {
    Py_ssize_t Wq, Rq, band, planes; /* phase width and rows, output rows per band, floats */
} dw_shape;

/* A band's phases, in floats: a twelfth of the L1 data cache the CPU reports (4096 floats on a
 * 48 KiB L1, AMD Zen 5; 2730 on 32 KiB), at least 1024; the phases, the sums T and the output
 * rows then share L1. The time changed by under 10 % from 1024 to 8192 floats on Zen 5. */
static Py_ssize_t dw_band_floats(void) {
    static Py_ssize_t floats = 0;
    if (floats == 0) {
        long l1 = 0;
#ifdef _SC_LEVEL1_DCACHE_SIZE
        l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE);
#endif
        floats = l1 > 0 ? (Py_ssize_t)(l1 / 12 / (long)sizeof(float)) : 2048;
        if (floats < 1024) floats = 1024;
    }
    return floats;
}

static dw_shape dw_geometry(Py_ssize_t WO, Py_ssize_t KH, Py_ssize_t KW, int sh, int sw, int dh,
                            int dw) {
    dw_shape g;
    const Py_ssize_t Wp = (WO - 1) * sw + (KW - 1) * dw + 1;
    g.Wq = (Wp + sw - 1) / sw;
    g.band = (dw_band_floats() / (g.Wq * sw) - (KH - 1) * dh - 1) / sh + 1;
    if (g.band < 1) g.band = 1;
    g.Rq = g.band + ((KH - 1) * dh + sh - 1) / sh;
    g.planes = (Py_ssize_t)sh * sw * g.Rq * g.Wq;
    return g;
}

#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target_clones("avx512f", "avx2", "default"), optimize("fp-contract=fast")))
#endif
static void depthwise_planes(const float *x, const float *w, const float *b, float *y,
                             Py_ssize_t N, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                             Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t HO, Py_ssize_t WO, int sh,
                             int sw, int pt, int pl, int dh, int dw, int act, float aa,
                             float ab, dw_shape g, float *ws) {
    const Py_ssize_t Wq = g.Wq, Rq = g.Rq, plane = Rq * Wq;
    float *restrict P = ws, *restrict T = ws + g.planes;
    for (Py_ssize_t p = 0; p < N * C; p++) {
        const Py_ssize_t c = p % C;
        const float *xc = x + p * H * W, *wc = w + c * KH * KW;
        float *yc = y + p * HO * WO;
        const float bias = b ? b[c] : 0.f;
        for (Py_ssize_t o0 = 0; o0 < HO; o0 += g.band) {
            const Py_ssize_t rows = (o0 + g.band < HO ? o0 + g.band : HO) - o0;
            const Py_ssize_t first = o0 * sh - pt;
            /* the phases: padded row r -> phase row r / sh of phases (r % sh, .); the rows
             * the band's taps read: phase rows up to rows - 1 + (KH - 1) dh / sh */
            const Py_ssize_t used = (rows + (KH - 1) * dh / sh) * sh;
            for (Py_ssize_t r = 0; r < used; r++) {
                const Py_ssize_t ih = first + r;
                for (int v = 0; v < sw; v++) {
                    float *restrict d = P + ((r % sh) * sw + v) * plane + (r / sh) * Wq;
                    if (ih < 0 || ih >= H) {
                        for (Py_ssize_t q = 0; q < Wq; q++) d[q] = 0.f;
                        continue;
                    }
                    /* d[q] = x[ih, q * sw + v - pl] where that lies inside the row */
                    const Py_ssize_t off = v - pl;
                    Py_ssize_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
                    Py_ssize_t hi = W - off <= 0 ? 0 : (W - off + sw - 1) / sw;
                    if (lo > Wq) lo = Wq;
                    if (hi > Wq) hi = Wq;
                    if (hi < lo) hi = lo;
                    const float *src = xc + ih * W + off;
                    for (Py_ssize_t q = 0; q < lo; q++) d[q] = 0.f;
                    if (sw == 1) /* inline: a memcpy call per short row costs more */
                        for (Py_ssize_t q = lo; q < hi; q++) d[q] = src[q];
                    else if (sw == 2)
                        for (Py_ssize_t q = lo; q < hi; q++) d[q] = src[2 * q];
                    else
                        for (Py_ssize_t q = lo; q < hi; q++) d[q] = src[q * sw];
                    for (Py_ssize_t q = hi; q < Wq; q++) d[q] = 0.f;
                }
            }
            const Py_ssize_t TW = (rows - 1) * Wq + WO; /* the flat positions kept */
            for (Py_ssize_t i = 0; i < KH; i++) {
                const float *ph[64]; /* this kernel row's taps: where each reads */
                const float *wi = wc + i * KW;
                const Py_ssize_t vi = i * dh, taps = KW < 64 ? KW : 64;
                for (Py_ssize_t j = 0; j < taps; j++) {
                    const Py_ssize_t hj = j * dw;
                    ph[j] = P + ((vi % sh) * sw + hj % sw) * plane + (vi / sh) * Wq + hj / sw;
                }
                if (KH == 3 && KW == 3) { /* all nine taps in one pass */
                    const Py_ssize_t u1 = dh, u2 = 2 * dh;
                    const float *q[9];
                    for (int ii = 0; ii < 3; ii++)
                        for (int j = 0; j < 3; j++)
                            q[ii * 3 + j] = P + (((ii * u1) % sh) * sw + (j * dw) % sw) * plane +
                                            ((ii * u1) / sh) * Wq + (j * dw) / sw;
                    (void)u2;
                    const float *restrict q0 = q[0], *restrict q1 = q[1], *restrict q2 = q[2],
                                          *restrict q3 = q[3], *restrict q4 = q[4],
                                          *restrict q5 = q[5], *restrict q6 = q[6],
                                          *restrict q7 = q[7], *restrict q8 = q[8];
                    const float w0 = wc[0], w1 = wc[1], w2 = wc[2], w3 = wc[3], w4 = wc[4],
                                w5 = wc[5], w6 = wc[6], w7 = wc[7], w8 = wc[8];
                    for (Py_ssize_t k = 0; k < TW; k++)
                        T[k] = w0 * q0[k] + w1 * q1[k] + w2 * q2[k] + w3 * q3[k] + w4 * q4[k] +
                               w5 * q5[k] + w6 * q6[k] + w7 * q7[k] + w8 * q8[k];
                    break;
                }
                if (KW == 5) {
                    const float *restrict a0 = ph[0], *restrict a1 = ph[1], *restrict a2 = ph[2],
                                          *restrict a3 = ph[3], *restrict a4 = ph[4];
                    const float w0 = wi[0], w1 = wi[1], w2 = wi[2], w3 = wi[3], w4 = wi[4];
                    if (i == 0)
                        for (Py_ssize_t k = 0; k < TW; k++)
                            T[k] = w0 * a0[k] + w1 * a1[k] + w2 * a2[k] + w3 * a3[k] + w4 * a4[k];
                    else
                        for (Py_ssize_t k = 0; k < TW; k++)
                            T[k] += w0 * a0[k] + w1 * a1[k] + w2 * a2[k] + w3 * a3[k] +
                                    w4 * a4[k];
                    continue;
                }
                if (KW == 3) {
                    const float *restrict a0 = ph[0], *restrict a1 = ph[1], *restrict a2 = ph[2];
                    const float w0 = wi[0], w1 = wi[1], w2 = wi[2];
                    if (i == 0)
                        for (Py_ssize_t k = 0; k < TW; k++)
                            T[k] = w0 * a0[k] + w1 * a1[k] + w2 * a2[k];
                    else
                        for (Py_ssize_t k = 0; k < TW; k++)
                            T[k] += w0 * a0[k] + w1 * a1[k] + w2 * a2[k];
                    continue;
                }
                if (i == 0)
                    for (Py_ssize_t k = 0; k < TW; k++) T[k] = 0.f;
                for (Py_ssize_t j = 0; j < KW; j++) {
                    const Py_ssize_t hj = j * dw;
                    const float *restrict a =
                        P + ((vi % sh) * sw + hj % sw) * plane + (vi / sh) * Wq + hj / sw;
                    const float wij = wi[j];
                    for (Py_ssize_t k = 0; k < TW; k++) T[k] += wij * a[k];
                }
            }
            for (Py_ssize_t o = 0; o < rows; o++) {
                const float *restrict t = T + o * Wq;
                float *restrict row = yc + (o0 + o) * WO;
                for (Py_ssize_t ow = 0; ow < WO; ow++) row[ow] = t[ow] + bias;
            }
            activate_row(yc + o0 * WO, rows * WO, act, aa, ab); /* the band's rows: one run */
        }
    }
}

/* Which depthwise path runs: 0 chosen per shape (dw_choice), 1 the planes, 2 the channel
 * blocks (dwconv.c) wherever the CPU has AVX2, 3 the direct rows (dwconv.c) wherever they
 * apply; tests and benchmarks set it. */
static int dw_mode = 0;

/* The path for a shape when neither dw_mode nor the tuner chose: 1 planes, 2 blocks, 3 rows.
 * With AVX-512 the blocks move in and out of the interleaved layout by 16x16 transposes in
 * registers, and beat the planes on every map but wide stride-1 ones (AMD Zen 5, HardSwish
 * fused, blocks / planes: 16 channels at 112x112 1.16x, 64 at 56x56 0.90x, 32 at 112x112
 * stride 2 0.71x, 128 at 28x28 0.60x, 256 5x5 at 14x14 0.55x, 512 at 7x7 0.35-0.39x); the
 * rows, which read the NCHW input in place, beat both wherever a row fills its vectors
 * (outputs at least DW_ROWS_WIDTH wide; narrower rows leave lanes idle): Intel Xeon (AVX-512),
 * HardSwish fused, rows / blocks alone: 16 channels at 112x112 0.43x, 32 at 112x112 stride 2
 * 0.58x, 64 at 56x56 0.53x, 128 at 28x28 0.57x, 128 stride 2 to 14x14 0.68x, 256 5x5 at
 * 14x14 1.1x alone but 0.8x inside PP-LCNet (80 -> 65 us), 512 5x5 at 7x7 1.6x. With AVX2
 * the blocks move by gathers, which cost as much as the arithmetic: at least 8 channels and
 * outputs at most DW_CBLOCK_WIDTH wide (128 channels at 28x28 0.95x, 64 at 56x56 1.54x). */
#define DW_ROWS_WIDTH 14
#define DW_CBLOCK_WIDE 64
#define DW_CBLOCK_WIDTH 28
static int dw_choice(Py_ssize_t C, Py_ssize_t WO, int KH, int KW, int sh, int sw, int dh,
                     int dw, int path) {
    const int mode = dw_mode ? dw_mode : path; /* dw_mode (tests) first, then the tuner's */
    const int rows = s_dw_rows_applies(KH, KW, sh, sw, dh, dw);
    if (mode == 3) return rows ? 3 : 1;
    if (mode == 1 || mode == 2) return mode;
    if (rows && WO >= DW_ROWS_WIDTH) return 3;
    if (s_simd_level() >= 2) return C >= 16 && (WO <= DW_CBLOCK_WIDE || sw > 1) ? 2 : 1;
    return C >= 8 && WO <= DW_CBLOCK_WIDTH ? 2 : 1;
}

/* depthwise_conv2d's work on raw buffers (run_plan's too), without the GIL: 0, or -1 out of
 * memory */
static int dw_run(const float *x, const float *w, const float *b, float *y, Py_ssize_t N,
                  Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t KH, Py_ssize_t KW,
                  Py_ssize_t HO, Py_ssize_t WO, int sh, int sw, int pt, int pl, int dh, int dw,
                  int act, float aa, float ab, int path) {
    if (N * C <= 0 || HO <= 0 || WO <= 0) return 0; /* nothing to write */
    const int choice = dw_choice(C, WO, (int)KH, (int)KW, sh, sw, dh, dw, path);
    int done = 0;
    float *ws;
    if (choice == 3)
        done = s_dw_rows(x, w, b, y, (int)N, (int)C, (int)H, (int)W, (int)KH, (int)KW, (int)HO,
                         (int)WO, sh, sw, pt, pl, dh, dw, act, aa, ab);
    if (choice == 2) {
        ws = malloc(sizeof(float) * s_dw_cblock_floats((int)KH, (int)KW, (int)HO, (int)WO, sh, sw,
                                                       dh, dw));
        if (ws == NULL) return -1;
        /* done: written (0 where the CPU has no AVX2: the planes below) */
        done = s_dw_cblock(x, w, b, y, (int)N, (int)C, (int)H, (int)W, (int)KH, (int)KW, (int)HO,
                           (int)WO, sh, sw, pt, pl, dh, dw, act, aa, ab, ws);
        free(ws);
    }
    if (!done) {
        const dw_shape g = dw_geometry(WO, KH, KW, sh, sw, dh, dw);
        ws = malloc(sizeof(float) * (size_t)(g.planes + g.band * g.Wq));
        if (ws == NULL) return -1;
        depthwise_planes(x, w, b, y, N, C, H, W, KH, KW, HO, WO, sh, sw, pt, pl, dh, dw, act, aa,
                         ab, g, ws);
        free(ws);
    }
    return 0;
}

static PyObject *depthwise_conv2d(PyObject *self, PyObject *args) {
    PyObject *xo, *wo, *bo, *yo;
    int sh, sw, pt, pl, dh, dw, act, path = 0;
    float aa, ab;
    if (!PyArg_ParseTuple(args, "OOOOiiiiiiiff|i", &xo, &wo, &bo, &yo, &sh, &sw, &pt, &pl, &dh,
                          &dw, &act, &aa, &ab, &path))
        return NULL;
    Py_buffer xv, wv, bv, yv;
    Py_ssize_t xd[4], wd[4], yd[4];
    if (get_floats(xo, &xv, -1, 0, "x") < 0) return NULL;
    if (dims4(&xv, xd, "x") < 0) { PyBuffer_Release(&xv); return NULL; }
    if (get_floats(wo, &wv, -1, 0, "w") < 0) { PyBuffer_Release(&xv); return NULL; }
    if (dims4(&wv, wd, "w") < 0 || wd[0] != xd[1] || wd[1] != 1) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "w must be (C, 1, kh, kw)");
        PyBuffer_Release(&xv); PyBuffer_Release(&wv); return NULL;
    }
    int has_b = bo != Py_None;
    if (has_b && get_floats(bo, &bv, xd[1], 0, "b") < 0) {
        PyBuffer_Release(&xv); PyBuffer_Release(&wv); return NULL;
    }
    if (get_floats(yo, &yv, -1, 1, "y") < 0 || dims4(&yv, yd, "y") < 0 ||
        yd[0] != xd[0] || yd[1] != xd[1]) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "y must be (N, C, Ho, Wo)");
        PyBuffer_Release(&xv); PyBuffer_Release(&wv); if (has_b) PyBuffer_Release(&bv);
        return NULL;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = dw_run(xv.buf, wv.buf, has_b ? bv.buf : NULL, yv.buf, xd[0], xd[1], xd[2], xd[3],
                    wd[2], wd[3], yd[2], yd[3], sh, sw, pt, pl, dh, dw, act, aa, ab, path);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&xv); PyBuffer_Release(&wv); if (has_b) PyBuffer_Release(&bv);
    PyBuffer_Release(&yv);
    if (status < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* dst[k] = the sum (avg) or max of src[k + t * step] over taps t < taps, for k < n: one pass
 * (two or three taps at a time), inlined into pool_planes' clones */
#define POOL_OP(avg, a, b) ((avg) ? (a) + (b) : ((b) > (a) ? (b) : (a)))
static inline __attribute__((always_inline)) void pool_reduce(float *dst, const float *src,
                                                             Py_ssize_t n, int taps,
                                                             Py_ssize_t step, int avg) {
    const float *s1 = src + step, *s2 = src + 2 * step;
    int t = 1;
    if (taps == 1) {
        memcpy(dst, src, sizeof(float) * (size_t)n);
    } else if (taps == 2 || taps == 4) {
        if (avg)
            for (Py_ssize_t k = 0; k < n; k++) dst[k] = src[k] + s1[k];
        else
            for (Py_ssize_t k = 0; k < n; k++) dst[k] = POOL_OP(0, src[k], s1[k]);
        t = 2;
    } else {
        if (avg)
            for (Py_ssize_t k = 0; k < n; k++) dst[k] = src[k] + s1[k] + s2[k];
        else
            for (Py_ssize_t k = 0; k < n; k++) {
                const float m = POOL_OP(0, src[k], s1[k]);
                dst[k] = POOL_OP(0, m, s2[k]);
            }
        t = 3;
    }
    for (; t + 1 < taps; t += 2) { /* the rest, two more at a time */
        const float *a = src + t * step, *b = a + step;
        if (avg)
            for (Py_ssize_t k = 0; k < n; k++) dst[k] += a[k] + b[k];
        else
            for (Py_ssize_t k = 0; k < n; k++) {
                const float m = POOL_OP(0, dst[k], a[k]);
                dst[k] = POOL_OP(0, m, b[k]);
            }
    }
    if (t < taps) {
        const float *a = src + t * step;
        if (avg)
            for (Py_ssize_t k = 0; k < n; k++) dst[k] += a[k];
        else
            for (Py_ssize_t k = 0; k < n; k++) dst[k] = POOL_OP(0, dst[k], a[k]);
    }
}

/* max_pool2d / avg_pool2d, separably over bands of whole rows, so that every loop is long and
 * contiguous however small the map (looping each output row over each tap gives short loops
 * on small maps such as Inception's 13x13 and 6x6): per band of output rows
 * [o0, o1) of a plane,
 *   P  the input rows the band reads, padded with the identity (-inf, or 0 for a sum) to
 *      Wp columns: every column any window reads;
 *   V  the window rows' reduction at each of the band's R = (o1 - o0 - 1) * sh + 1 rows of
 *      P (flat, row stride Wp: one pass);
 *   T  the window columns' reduction of V, flat likewise (one pass);
 *   y  T's rows (oh - o0) * sh, columns ow * sw (avg: divided by the window's cells inside
 *      [ch0, ch1) x [cw0, cw1): the input, or the input and its explicit pads for
 *      count_include_pad -- rows[oh] * colcount[ow]).
 * P, V and T are bs floats apart in ws (band_geometry).
 * Strided pools on wide rows take pool_strided (below), which reduces only the rows and
 * columns the outputs' windows read; here V and T cover every row and column between the
 * kept ones (up to sh * sw times the outputs' work, less than short loops' overhead on
 * small maps). */
#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
static void pool_planes(const float *x, float *y, Py_ssize_t NC, Py_ssize_t H, Py_ssize_t W,
                        Py_ssize_t HO, Py_ssize_t WO, int kh, int kw, int sh, int sw, int pt,
                        int pl, int dh, int dw, int avg, const float *rows,
                        const float *colcount, Py_ssize_t Wp, Py_ssize_t band, Py_ssize_t bs,
                        float *ws) {
    const float id = avg ? 0.f : -INFINITY;
    for (Py_ssize_t p = 0; p < NC; p++) {
        const float *xc = x + p * H * W;
        float *yc = y + p * HO * WO;
        for (Py_ssize_t o0 = 0; o0 < HO; o0 += band) {
            const Py_ssize_t o1 = o0 + band < HO ? o0 + band : HO;
            const Py_ssize_t R = (o1 - o0 - 1) * sh + 1, Rp = R + (Py_ssize_t)(kh - 1) * dh;
            const Py_ssize_t RW = R * Wp, TW = RW - (Py_ssize_t)(kw - 1) * dw;
            float *P = ws, *V = ws + bs, *T = V + bs;
            band_rows(xc, H, W, o0 * sh - pt, Rp, Wp, pl, id, P);
            pool_reduce(V, P, RW, kh, (Py_ssize_t)dh * Wp, avg);
            pool_reduce(T, V, TW, kw, dw, avg);
            for (Py_ssize_t oh = o0; oh < o1; oh++) {
                const float *t = T + (oh - o0) * sh * Wp;
                float *row = yc + oh * WO;
                if (avg)
                    for (Py_ssize_t ow = 0; ow < WO; ow++)
                        row[ow] = t[ow * sw] / (rows[oh] * colcount[ow]);
                else if (sw == 1)
                    memcpy(row, t, sizeof(float) * (size_t)WO);
                else
                    for (Py_ssize_t ow = 0; ow < WO; ow++) row[ow] = t[ow * sw];
            }
        }
    }
}

/* Strided pools one output row at a time: the window rows' reduction V over the padded row
 * (Wp columns: the input's, the identity on either side), then each output column's window
 * of V read with the stride -- the kh input rows and kw columns an output row needs, where
 * pool_planes reduces every row and column between the kept ones (for 3x3 stride 2: four
 * times the outputs' work; ResNet-50's max pool ran at 2x onnxruntime's time). */
#define R restrict
static inline void rows_reduce(float *R v, const float *R src, Py_ssize_t n, int avg) {
    if (avg)
        for (Py_ssize_t q = 0; q < n; q++) v[q] += src[q];
    else
        for (Py_ssize_t q = 0; q < n; q++) v[q] = POOL_OP(0, v[q], src[q]);
}
/* t[ow] (=, or op=) v[ow * s] for ow < n */
static inline void cols_reduce(float *R t, const float *R v, Py_ssize_t n, int s, int avg,
                               int first) {
    if (first && s == 2)
        for (Py_ssize_t o = 0; o < n; o++) t[o] = v[2 * o];
    else if (first)
        for (Py_ssize_t o = 0; o < n; o++) t[o] = v[o * s];
    else if (avg && s == 2)
        for (Py_ssize_t o = 0; o < n; o++) t[o] += v[2 * o];
    else if (avg)
        for (Py_ssize_t o = 0; o < n; o++) t[o] += v[o * s];
    else if (s == 2)
        for (Py_ssize_t o = 0; o < n; o++) t[o] = POOL_OP(0, t[o], v[2 * o]);
    else
        for (Py_ssize_t o = 0; o < n; o++) t[o] = POOL_OP(0, t[o], v[o * s]);
}
#undef R

#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
static void pool_strided(const float *x, float *y, Py_ssize_t NC, Py_ssize_t H, Py_ssize_t W,
                         Py_ssize_t HO, Py_ssize_t WO, int kh, int kw, int sh, int sw, int pt,
                         int pl, int dh, int dw, int avg, const float *rows,
                         const float *colcount, Py_ssize_t Wp, float *ws) {
    const float id = avg ? 0.f : -INFINITY;
    float *v = ws, *t = ws + Wp;
    /* V's columns pl .. pl + W hold the input's (clipped to Wp) */
    const Py_ssize_t c0 = pl < Wp ? pl : Wp, c1 = pl + W < Wp ? pl + W : Wp;
    for (Py_ssize_t p = 0; p < NC; p++) {
        const float *xc = x + p * H * W;
        float *yc = y + p * HO * WO;
        for (Py_ssize_t oh = 0; oh < HO; oh++) {
            int rows_in = 0;
            for (Py_ssize_t q = 0; q < c0; q++) v[q] = id;
            for (Py_ssize_t q = c1; q < Wp; q++) v[q] = id;
            for (int i = 0; i < kh; i++) {
                const Py_ssize_t ih = oh * sh - pt + (Py_ssize_t)i * dh;
                if (ih < 0 || ih >= H || c1 <= c0) continue;
                const float *src = xc + ih * W + (c0 - pl);
                if (rows_in++ == 0)
                    memcpy(v + c0, src, sizeof(float) * (size_t)(c1 - c0));
                else
                    rows_reduce(v + c0, src, c1 - c0, avg);
            }
            if (rows_in == 0)
                for (Py_ssize_t q = c0; q < c1; q++) v[q] = id;
            for (int j = 0; j < kw; j++)
                cols_reduce(t, v + (Py_ssize_t)j * dw, WO, sw, avg, j == 0);
            float *row = yc + oh * WO;
            if (avg)
                for (Py_ssize_t ow = 0; ow < WO; ow++) row[ow] = t[ow] / (rows[oh] * colcount[ow]);
            else
                memcpy(row, t, sizeof(float) * (size_t)WO);
        }
    }
}

/* pool2d's work on raw buffers (run_plan's too), without the GIL: 0, or -1 out of memory */
static int pool_run(const float *x, float *y, Py_ssize_t NC, Py_ssize_t H, Py_ssize_t W,
                    Py_ssize_t HO, Py_ssize_t WO, int kh, int kw, int sh, int sw, int pt, int pl,
                    int dh, int dw, int avg, int ch0, int ch1, int cw0, int cw1) {
    if (NC == 0 || HO <= 0 || WO <= 0) return 0;
    const band_shape g = band_geometry(WO, kh, kw, sh, sw, dh, dw);
    /* pool_strided on rows of 48 or more pixels (ResNet-50's 3x3 stride-2 max pool at 112x112,
     * DenseNet's 2x2 average pools at 56x56); on narrower rows its per-row loops cost more
     * than the bands' extra rows (benchmarks/ measures both) */
    const int strided = (sh > 1 || sw > 1) && W >= 48;
    float *colcount = malloc(sizeof(float) * (size_t)(WO + HO));
    float *ws = malloc(sizeof(float) * (size_t)(strided ? g.Wp + WO : 3 * g.bs));
    if (colcount == NULL || ws == NULL) {
        free(colcount); free(ws);
        return -1;
    }
    float *rowcount = colcount + WO;
    for (Py_ssize_t ow = 0; avg && ow < WO; ow++) { /* the divisor's column factor */
        int n = 0;
        for (int j = 0; j < kw; j++) {
            const Py_ssize_t iw = ow * sw - pl + j * dw;
            n += iw >= cw0 && iw < cw1;
        }
        colcount[ow] = (float)n;
    }
    for (Py_ssize_t oh = 0; avg && oh < HO; oh++) { /* and its row factor */
        int n = 0;
        for (int i = 0; i < kh; i++) {
            const Py_ssize_t ih = oh * sh - pt + i * dh;
            n += ih >= ch0 && ih < ch1;
        }
        rowcount[oh] = (float)n;
    }
    if (strided)
        pool_strided(x, y, NC, H, W, HO, WO, kh, kw, sh, sw, pt, pl, dh, dw, avg, rowcount,
                     colcount, g.Wp, ws);
    else
        pool_planes(x, y, NC, H, W, HO, WO, kh, kw, sh, sw, pt, pl, dh, dw, avg, rowcount,
                    colcount, g.Wp, g.band, g.bs, ws);
    free(ws);
    free(colcount);
    return 0;
}

static PyObject *pool2d(PyObject *args, int avg) {
    PyObject *xo, *yo;
    int kh, kw, sh, sw, pt, pl, dh, dw, ch0 = 0, ch1 = 0, cw0 = 0, cw1 = 0;
    if (!PyArg_ParseTuple(args, avg ? "OOiiiiiiiiiiii" : "OOiiiiiiii", &xo, &yo, &kh, &kw, &sh,
                          &sw, &pt, &pl, &dh, &dw, &ch0, &ch1, &cw0, &cw1))
        return NULL;
    Py_buffer xv, yv;
    Py_ssize_t xd[4], yd[4];
    if (get_floats(xo, &xv, -1, 0, "x") < 0) return NULL;
    if (dims4(&xv, xd, "x") < 0) { PyBuffer_Release(&xv); return NULL; }
    if (get_floats(yo, &yv, -1, 1, "y") < 0 || dims4(&yv, yd, "y") < 0 ||
        yd[0] != xd[0] || yd[1] != xd[1]) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "y must be (N, C, Ho, Wo)");
        PyBuffer_Release(&xv); return NULL;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = pool_run(xv.buf, yv.buf, xd[0] * xd[1], xd[2], xd[3], yd[2], yd[3], kh, kw, sh, sw,
                      pt, pl, dh, dw, avg, ch0, ch1, cw0, cw1);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&xv); PyBuffer_Release(&yv);
    if (status < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* y[n, c, :] = act(x[n, c, :] * s[c] + b[c]) over planes of P values: a per-channel affine
 * map (an unfolded BatchNormalization) and its activation in one pass. */
#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
static void affine_planes(const float *restrict x, const float *restrict s,
                          const float *restrict b, float *restrict y, Py_ssize_t planes,
                          Py_ssize_t C, Py_ssize_t P, int act, float aa, float ab) {
    for (Py_ssize_t p = 0; p < planes; p++) {
        const float sc = s ? s[p % C] : 1.f, bc = b ? b[p % C] : 0.f;
        const float *xp = x + p * P;
        float *yp = y + p * P;
        for (Py_ssize_t i = 0; i < P; i++) yp[i] = xp[i] * sc + bc;
        activate_row(yp, P, act, aa, ab); /* the plane is still in cache */
    }
}

static PyObject *channel_affine(PyObject *self, PyObject *args) {
    PyObject *xo, *so, *bo, *yo;
    Py_ssize_t N, C, P;
    int act;
    float aa, ab;
    if (!PyArg_ParseTuple(args, "OOOOnnniff", &xo, &so, &bo, &yo, &N, &C, &P, &act, &aa, &ab))
        return NULL;
    if (N < 0 || C < 1 || P < 0) {
        PyErr_SetString(PyExc_ValueError, "channel_affine: bad shape");
        return NULL;
    }
    Py_buffer xv, sv, bv, yv;
    const int has_s = so != Py_None, has_b = bo != Py_None;
    if (get_floats(xo, &xv, N * C * P, 0, "x") < 0) return NULL;
    if (has_s && get_floats(so, &sv, C, 0, "scale") < 0) { PyBuffer_Release(&xv); return NULL; }
    if (has_b && get_floats(bo, &bv, C, 0, "bias") < 0) {
        PyBuffer_Release(&xv); if (has_s) PyBuffer_Release(&sv); return NULL;
    }
    if (get_floats(yo, &yv, N * C * P, 1, "y") < 0) {
        PyBuffer_Release(&xv); if (has_s) PyBuffer_Release(&sv); if (has_b) PyBuffer_Release(&bv);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    affine_planes(xv.buf, has_s ? sv.buf : NULL, has_b ? bv.buf : NULL, yv.buf, N * C, C, P,
                  act, aa, ab);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&xv); PyBuffer_Release(&yv);
    if (has_s) PyBuffer_Release(&sv);
    if (has_b) PyBuffer_Release(&bv);
    Py_RETURN_NONE;
}

/* The mean of each row: eight partial sums (one vector, GCC's SLP vectorises the inner loop),
 * then the row's tail; the sum divided by cols. NumPy's matrix-vector product with 1 / cols
 * (BLAS dispatch, its thread pool) took 5x onnxruntime's GlobalAveragePool in a network. */
#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
static void means_of_rows(const float *x, float *y, Py_ssize_t rows, Py_ssize_t cols) {
    for (Py_ssize_t r = 0; r < rows; r++) {
        const float *p = x + r * cols;
        float s[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        Py_ssize_t i = 0;
        for (; i + 8 <= cols; i += 8)
            for (int j = 0; j < 8; j++) s[j] += p[i + j];
        float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
        for (; i < cols; i++) t += p[i];
        y[r] = t / (float)cols;
    }
}

static PyObject *row_means(PyObject *self, PyObject *args) {
    PyObject *xo, *yo;
    Py_ssize_t rows, cols;
    if (!PyArg_ParseTuple(args, "OOnn", &xo, &yo, &rows, &cols)) return NULL;
    if (rows < 0 || cols < 1) {
        PyErr_SetString(PyExc_ValueError, "row_means: bad shape");
        return NULL;
    }
    Py_buffer xv, yv;
    if (get_floats(xo, &xv, rows * cols, 0, "x") < 0) return NULL;
    if (get_floats(yo, &yv, rows, 1, "y") < 0) { PyBuffer_Release(&xv); return NULL; }
    Py_BEGIN_ALLOW_THREADS
    means_of_rows(xv.buf, yv.buf, rows, cols);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&xv); PyBuffer_Release(&yv);
    Py_RETURN_NONE;
}

/* LRN across channels: y[n, c, p] = x[n, c, p] / (bias + alpha / size * s[n, c, p])^beta,
 * s the sum of x^2 over channels c - lo .. c + hi (inside [0, C)), in float32 as onnxruntime.
 * beta = 0.75 (AlexNet, GoogLeNet) as q = sqrt(t), x / (q * sqrt(q)) and 0.5 as x / sqrt(t):
 * correctly rounded operations that vectorise (setup.py: -fno-math-errno), where powf would
 * not. */
#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
static void lrn_planes(const float *x, float *y, Py_ssize_t N, Py_ssize_t C, Py_ssize_t P,
                       int lo, int hi, float scale, float beta, float bias, float *t) {
    for (Py_ssize_t n = 0; n < N; n++)
        for (Py_ssize_t c = 0; c < C; c++) {
            const float *xc = x + (n * C + c) * P;
            float *yc = y + (n * C + c) * P;
            const Py_ssize_t c0 = c - lo < 0 ? 0 : c - lo, c1 = c + hi >= C ? C - 1 : c + hi;
            for (Py_ssize_t p = 0; p < P; p++) t[p] = 0.f;
            for (Py_ssize_t k = c0; k <= c1; k++) {
                const float *xk = x + (n * C + k) * P;
                for (Py_ssize_t p = 0; p < P; p++) t[p] += xk[p] * xk[p];
            }
            if (beta == 0.75f)
                for (Py_ssize_t p = 0; p < P; p++) {
                    const float q = sqrtf(bias + scale * t[p]);
                    yc[p] = xc[p] / (q * sqrtf(q));
                }
            else if (beta == 0.5f)
                for (Py_ssize_t p = 0; p < P; p++) yc[p] = xc[p] / sqrtf(bias + scale * t[p]);
            else
                for (Py_ssize_t p = 0; p < P; p++)
                    yc[p] = xc[p] / powf(bias + scale * t[p], beta);
        }
}

static PyObject *lrn(PyObject *self, PyObject *args) {
    PyObject *xo, *yo;
    Py_ssize_t N, C, P;
    int size;
    float alpha, beta, bias;
    if (!PyArg_ParseTuple(args, "OOnnnifff", &xo, &yo, &N, &C, &P, &size, &alpha, &beta, &bias))
        return NULL;
    if (N < 0 || C < 1 || P < 0 || size < 1) {
        PyErr_SetString(PyExc_ValueError, "lrn: bad shape or size");
        return NULL;
    }
    Py_buffer xv, yv;
    if (get_floats(xo, &xv, N * C * P, 0, "x") < 0) return NULL;
    if (get_floats(yo, &yv, N * C * P, 1, "y") < 0) { PyBuffer_Release(&xv); return NULL; }
    float *t = malloc(sizeof(float) * (P > 0 ? P : 1));
    if (t == NULL) {
        PyBuffer_Release(&xv); PyBuffer_Release(&yv);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    lrn_planes(xv.buf, yv.buf, N, C, P, (size - 1) / 2, size / 2, alpha / (float)size, beta,
               bias, t);
    Py_END_ALLOW_THREADS
    free(t);
    PyBuffer_Release(&xv); PyBuffer_Release(&yv);
    Py_RETURN_NONE;
}

static PyObject *max_pool2d(PyObject *self, PyObject *args) { return pool2d(args, 0); }

static PyObject *avg_pool2d(PyObject *self, PyObject *args) { return pool2d(args, 1); }

static PyObject *winograd_input(PyObject *self, PyObject *args) {
    PyObject *xo, *vo;
    int m, th, tw;
    if (!PyArg_ParseTuple(args, "OOiii", &xo, &vo, &m, &th, &tw)) return NULL;
    if (m != 2 && m != 4) { PyErr_SetString(PyExc_ValueError, "tile must be 2 or 4"); return NULL; }
    const int a = m + 2;
    Py_buffer xv, vv;
    Py_ssize_t xd[4];
    if (get_floats(xo, &xv, -1, 0, "xp") < 0) return NULL;
    if (dims4(&xv, xd, "xp") < 0 || xd[2] < th * m + 2 || xd[3] < tw * m + 2) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "xp too small for the tiles");
        PyBuffer_Release(&xv); return NULL;
    }
    const Py_ssize_t N = xd[0], C = xd[1], H = xd[2], W = xd[3];
    const Py_ssize_t T = N * th * tw;
    if (get_floats(vo, &vv, (Py_ssize_t)a * a * C * T, 1, "v") < 0) {
        PyBuffer_Release(&xv); return NULL;
    }
    const float *x = xv.buf;
    float *v = vv.buf;
    const Py_ssize_t plane = C * T; /* stride between tile positions in v */
    const Py_ssize_t width = (Py_ssize_t)tw * m + 2; /* the padded columns the tiles read */
    float *r = malloc(sizeof(float) * (a * width + 4 * ((Py_ssize_t)tw + 1)));
    if (!r) { PyBuffer_Release(&xv); PyBuffer_Release(&vv); return PyErr_NoMemory(); }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t n = 0; n < N; n++)
        for (Py_ssize_t c = 0; c < C; c++)
            w_input_plane(x + (n * C + c) * H * W, W, th, tw, m, r, r + a * width,
                          v + c * T + n * th * tw, plane);
    Py_END_ALLOW_THREADS
    free(r);
    PyBuffer_Release(&xv); PyBuffer_Release(&vv);
    Py_RETURN_NONE;
}

static PyObject *winograd_output(PyObject *self, PyObject *args) {
    PyObject *po, *yo, *bo, *ro = Py_None;
    int m, th, tw, act;
    float aa, ab;
    if (!PyArg_ParseTuple(args, "OOiiiOiff|O", &po, &yo, &m, &th, &tw, &bo, &act, &aa, &ab,
                          &ro))
        return NULL;
    if (m != 2 && m != 4) { PyErr_SetString(PyExc_ValueError, "tile must be 2 or 4"); return NULL; }
    const int a = m + 2;
    Py_buffer pv, yv, bv;
    Py_ssize_t yd[4];
    if (get_floats(yo, &yv, -1, 1, "y") < 0) return NULL;
    if (dims4(&yv, yd, "y") < 0 || yd[2] > th * m || yd[3] > tw * m) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "y larger than the tiles");
        PyBuffer_Release(&yv); return NULL;
    }
    const Py_ssize_t N = yd[0], M = yd[1], HO = yd[2], WO = yd[3];
    const Py_ssize_t T = N * th * tw;
    if (get_floats(po, &pv, (Py_ssize_t)a * a * M * T, 0, "p") < 0) {
        PyBuffer_Release(&yv); return NULL;
    }
    int has_b = bo != Py_None, has_r = ro != Py_None;
    Py_buffer rv;
    if (has_b && get_floats(bo, &bv, M, 0, "b") < 0) {
        PyBuffer_Release(&yv); PyBuffer_Release(&pv); return NULL;
    }
    if (has_r && get_floats(ro, &rv, N * M * HO * WO, 0, "res") < 0) {
        PyBuffer_Release(&yv); PyBuffer_Release(&pv); if (has_b) PyBuffer_Release(&bv);
        return NULL;
    }
    const float *p = pv.buf, *b = has_b ? bv.buf : NULL, *res = has_r ? rv.buf : NULL;
    float *y = yv.buf;
    const Py_ssize_t plane = M * T;
    /* t[o][j][tx]: the vertical half of A^T P A for one row of tiles */
    float *t = malloc(sizeof(float) * m * a * (tw > 0 ? tw : 1));
    float *rowbuf = malloc(sizeof(float) * m * (tw * m));
    if (!t || !rowbuf) {
        free(t); free(rowbuf);
        PyBuffer_Release(&pv); PyBuffer_Release(&yv); if (has_b) PyBuffer_Release(&bv);
        if (has_r) PyBuffer_Release(&rv);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t n = 0; n < N; n++) /* image n's tiles: columns n * th * tw .. of p */
        w_output_rows(p + n * th * tw, plane, T, (int)M, m, tw, 0, th, y + n * M * HO * WO,
                      (int)HO, (int)WO, b, res ? res + n * M * HO * WO : NULL, act, aa, ab, t,
                      rowbuf);
    Py_END_ALLOW_THREADS
    free(t); free(rowbuf);
    PyBuffer_Release(&pv); PyBuffer_Release(&yv); if (has_b) PyBuffer_Release(&bv);
    if (has_r) PyBuffer_Release(&rv);
    Py_RETURN_NONE;
}

static PyObject *winograd_conv2d(PyObject *self, PyObject *args) {
    PyObject *xo, *uo, *bo, *ro, *yo;
    int m, th, tw, pt, pl, act, threads = 1;
    float aa, ab;
    if (!PyArg_ParseTuple(args, "OOOOOiiiiiiff|i", &xo, &uo, &bo, &ro, &yo, &m, &th, &tw, &pt,
                          &pl, &act, &aa, &ab, &threads))
        return NULL;
    if ((m != 2 && m != 4) || th < 0 || tw < 0 || pt < 0 || pl < 0) {
        PyErr_SetString(PyExc_ValueError, "winograd_conv2d: bad geometry");
        return NULL;
    }
    const int a = m + 2;
    Py_buffer xv, uv, bv, rv, yv;
    Py_ssize_t xd[4], yd[4];
    const int has_b = bo != Py_None, has_r = ro != Py_None;
    if (get_floats(xo, &xv, -1, 0, "x") < 0) return NULL;
    if (dims4(&xv, xd, "x") < 0) goto fail_x;
    if (get_floats(yo, &yv, -1, 1, "y") < 0) goto fail_x;
    if (dims4(&yv, yd, "y") < 0) goto fail_y;
    const Py_ssize_t N = xd[0], C = xd[1], M = yd[1], HO = yd[2], WO = yd[3];
    if (yd[0] != N || HO > (Py_ssize_t)th * m || WO > (Py_ssize_t)tw * m) {
        PyErr_SetString(PyExc_ValueError, "winograd_conv2d: y does not fit the tiles");
        goto fail_y;
    }
    if (get_floats(uo, &uv, (Py_ssize_t)a * a * ((M + SMR - 1) / SMR * SMR) * C, 0,
                   "packed u") < 0)
        goto fail_y;
    if (has_b && get_floats(bo, &bv, M, 0, "b") < 0) goto fail_u;
    if (has_r && get_floats(ro, &rv, N * M * HO * WO, 0, "res") < 0) goto fail_b;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = w_conv(xv.buf, (int)N, (int)C, (int)xd[2], (int)xd[3], pt, pl, uv.buf, (int)M, m,
                    th, tw, has_b ? bv.buf : NULL, has_r ? rv.buf : NULL, act, aa, ab, yv.buf,
                    (int)HO, (int)WO, threads);
    Py_END_ALLOW_THREADS
    if (has_r) PyBuffer_Release(&rv);
    if (has_b) PyBuffer_Release(&bv);
    PyBuffer_Release(&uv);
    PyBuffer_Release(&yv);
    PyBuffer_Release(&xv);
    if (status < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
fail_b:
    if (has_b) PyBuffer_Release(&bv);
fail_u:
    PyBuffer_Release(&uv);
fail_y:
    PyBuffer_Release(&yv);
fail_x:
    PyBuffer_Release(&xv);
    return NULL;
}

static PyObject *wblock(PyObject *self, PyObject *args) {
    Py_ssize_t floats = 0;
    int tiles = 0;
    if (!PyArg_ParseTuple(args, "|ni", &floats, &tiles)) return NULL;
    size_t f;
    int t;
    w_block(floats > 0 ? (size_t)floats : 0, tiles, &f, &t);
    return Py_BuildValue("(ni)", (Py_ssize_t)f, t);
}

static PyObject *wblock_rows(PyObject *self, PyObject *args) {
    int C, M, m, th, tw;
    if (!PyArg_ParseTuple(args, "iiiii", &C, &M, &m, &th, &tw)) return NULL;
    return PyLong_FromLong(w_block_rows(C, M, m, th, tw));
}

/* A C-contiguous buffer of exactly `count` items of `itemsize` bytes (any format; count < 0:
 * any number of them). */
static int get_raw(PyObject *obj, Py_buffer *view, Py_ssize_t count, Py_ssize_t itemsize,
                   int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (view->itemsize != itemsize || (count >= 0 && view->len != count * itemsize)) {
        PyErr_Format(PyExc_ValueError, "%s must hold %zd items of %zd bytes", name, count,
                     itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *qlinear_conv2d(PyObject *self, PyObject *args) {
    PyObject *xo, *wo, *po, *co, *mo, *so, *yo;
    int N, C, H, W, G, Mg, Mgp, Kq, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, pad, flip, zp,
        ysigned, threads = 1;
    if (!PyArg_ParseTuple(args, "OOOOOOOiiiiiiiiiiiiiiiiiiiiii|i", &xo, &wo, &po, &co, &mo, &so,
                          &yo, &N, &C, &H, &W, &G, &Mg, &Mgp, &Kq, &kh, &kw, &sh, &sw, &pt,
                          &pl, &dh, &dw, &OH, &OW, &pad, &flip, &zp, &ysigned, &threads))
        return NULL;
    const Py_ssize_t M = (Py_ssize_t)G * Mg, P = (Py_ssize_t)OH * OW;
    if (G < 1 || C % G || Mgp % 4 || Mgp < Mg || Kq != kh * kw * ((C / G + 3) / 4)) {
        PyErr_SetString(PyExc_ValueError, "qlinear_conv2d: inconsistent sizes");
        return NULL;
    }
    Py_buffer xv, wv, cv, mv, sv, yv, pv;
    Py_buffer *views[7] = {&xv, &wv, &cv, &mv, &sv, &yv, &pv};
    /* a group's quads of panels: the AMX filters at level 3, else the AVX2 panels */
    const int amx = q_simd_level() == 3;
    const Py_ssize_t panel_quads =
        amx ? (Py_ssize_t)((Mg + AMX_ROWS - 1) / AMX_ROWS * AMX_ROWS) *
                  ((Kq + AMX_QUADS - 1) / AMX_QUADS * AMX_QUADS)
            : (Py_ssize_t)((Mg + QMR - 1) / QMR) * Kq * QMR;
    int wide = !amx; /* the AVX2 panels' taps: int16 (1) or int8 (0); AMX's are int8 */
    if (po != Py_None && !amx) {
        if (PyObject_GetBuffer(po, &pv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
        wide = pv.itemsize == 2;
        PyBuffer_Release(&pv);
    }
    int got = 0;
    if (get_raw(xo, &xv, (Py_ssize_t)N * C * H * W, 1, 0, "x") == 0 && ++got &&
        get_raw(wo, &wv, (Py_ssize_t)G * Mgp * Kq * 4, 1, 0, "w") == 0 && ++got &&
        get_raw(co, &cv, M, 8, 0, "corr") == 0 && ++got &&
        get_raw(mo, &mv, M, 4, 0, "m0") == 0 && ++got &&
        get_raw(so, &sv, M, 4, 0, "shift") == 0 && ++got &&
        get_raw(yo, &yv, (Py_ssize_t)N * M * P, 1, 1, "y") == 0 && ++got &&
        (po == Py_None ||
         get_raw(po, &pv, (Py_ssize_t)G * panel_quads * 4, wide ? 2 : 1, 0, "panels") == 0))
        ++got;
    if (got < 7) {
        for (int i = 0; i < got; i++) PyBuffer_Release(views[i]);
        return NULL;
    }
    const int cg = C / G;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int n = 0; n < N && !failed; n++) {
        for (int g = 0; g < G && !failed; g++) {
            const uint8_t *x = (const uint8_t *)xv.buf + ((size_t)n * C + (size_t)g * cg) * H * W;
            const int8_t *w = (const int8_t *)wv.buf + (size_t)g * Mgp * Kq * 4;
            const void *panels = po == Py_None ? NULL :
                (const char *)pv.buf + (size_t)g * panel_quads * 4 * (wide ? 2 : 1);
            char *y = (char *)yv.buf + ((size_t)n * M + (size_t)g * Mg) * P;
            if (q_conv(x, cg, H, W, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, (uint8_t)pad,
                       (uint8_t)flip, w, panels, wide, Mg, (const int64_t *)cv.buf + g * Mg,
                       (const int32_t *)mv.buf + g * Mg, (const int32_t *)sv.buf + g * Mg, zp,
                       ysigned, y, threads < 1 ? 1 : threads) < 0)
                failed = 1;
        }
    }
    Py_END_ALLOW_THREADS
    for (int i = 0; i < (po == Py_None ? 6 : 7); i++) PyBuffer_Release(views[i]);
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *qlinear_depthwise2d(PyObject *self, PyObject *args) {
    PyObject *xo, *wo, *co, *mo, *so, *yo;
    int N, C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, zx, flip, zp, ysigned, threads = 1;
    if (!PyArg_ParseTuple(args, "OOOOOOiiiiiiiiiiiiiiiiii|i", &xo, &wo, &co, &mo, &so, &yo, &N,
                          &C, &H, &W, &kh, &kw, &sh, &sw, &pt, &pl, &dh, &dw, &OH, &OW, &zx,
                          &flip, &zp, &ysigned, &threads))
        return NULL;
    const Py_ssize_t P = (Py_ssize_t)OH * OW;
    Py_buffer xv, wv, cv, mv, sv, yv;
    Py_buffer *views[6] = {&xv, &wv, &cv, &mv, &sv, &yv};
    int got = 0;
    if (get_raw(xo, &xv, (Py_ssize_t)N * C * H * W, 1, 0, "x") == 0 && ++got &&
        get_raw(wo, &wv, (Py_ssize_t)C * kh * kw, 1, 0, "w") == 0 && ++got &&
        get_raw(co, &cv, C, 8, 0, "corr") == 0 && ++got &&
        get_raw(mo, &mv, C, 4, 0, "m0") == 0 && ++got &&
        get_raw(so, &sv, C, 4, 0, "shift") == 0 && ++got &&
        get_raw(yo, &yv, (Py_ssize_t)N * C * P, 1, 1, "y") == 0)
        ++got;
    if (got < 6) {
        for (int i = 0; i < got; i++) PyBuffer_Release(views[i]);
        return NULL;
    }
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (int n = 0; n < N && !failed; n++)
        if (q_depthwise((const uint8_t *)xv.buf + (size_t)n * C * H * W, wv.buf, C, H, W, kh, kw,
                        sh, sw, pt, pl, dh, dw, OH, OW, zx, (uint8_t)flip, cv.buf, mv.buf,
                        sv.buf, zp, ysigned, (char *)yv.buf + (size_t)n * C * P,
                        threads < 1 ? 1 : threads) < 0)
            failed = 1;
    Py_END_ALLOW_THREADS
    for (int i = 0; i < 6; i++) PyBuffer_Release(views[i]);
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *quantize_linear(PyObject *self, PyObject *args) {
    PyObject *xo, *yo;
    float scale;
    int zp, ysigned;
    if (!PyArg_ParseTuple(args, "OOfii", &xo, &yo, &scale, &zp, &ysigned)) return NULL;
    Py_buffer xv, yv;
    if (get_floats(xo, &xv, -1, 0, "x") < 0) return NULL;
    const Py_ssize_t n = xv.len / 4;
    if (get_raw(yo, &yv, n, 1, 1, "y") < 0) {
        PyBuffer_Release(&xv);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    q_quantize(xv.buf, (size_t)n, scale, zp, ysigned, yv.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&xv);
    PyBuffer_Release(&yv);
    Py_RETURN_NONE;
}

static PyObject *affine_quantize(PyObject *self, PyObject *args) {
    PyObject *xo, *so, *bo, *yo;
    Py_ssize_t N, C, P;
    int act, zp, ysigned;
    float aa, ab, ys;
    if (!PyArg_ParseTuple(args, "OOOOnnnifffii", &xo, &so, &bo, &yo, &N, &C, &P, &act, &aa,
                          &ab, &ys, &zp, &ysigned))
        return NULL;
    if (N < 0 || C < 1 || P < 0) {
        PyErr_SetString(PyExc_ValueError, "affine_quantize: bad shape");
        return NULL;
    }
    Py_buffer xv, sv, bv, yv;
    if (get_floats(xo, &xv, N * C * P, 0, "x") < 0) return NULL;
    if (get_floats(so, &sv, C, 0, "scale") < 0) goto fail_x;
    if (get_floats(bo, &bv, C, 0, "shift") < 0) goto fail_s;
    if (get_raw(yo, &yv, N * C * P, 1, 1, "y") < 0) goto fail_b;
    Py_BEGIN_ALLOW_THREADS
    q_affine_quantize(xv.buf, sv.buf, bv.buf, (size_t)(N * C), (size_t)C, (size_t)P, act, aa,
                      ab, ys, zp, ysigned, yv.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&yv);
    PyBuffer_Release(&bv);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&xv);
    Py_RETURN_NONE;
fail_b:
    PyBuffer_Release(&bv);
fail_s:
    PyBuffer_Release(&sv);
fail_x:
    PyBuffer_Release(&xv);
    return NULL;
}

static PyObject *dequantize_linear(PyObject *self, PyObject *args) {
    PyObject *xo, *yo;
    float scale;
    int zp, xsigned;
    if (!PyArg_ParseTuple(args, "OOiif", &xo, &yo, &xsigned, &zp, &scale)) return NULL;
    Py_buffer xv, yv;
    if (get_floats(yo, &yv, -1, 1, "y") < 0) return NULL;
    const Py_ssize_t n = yv.len / 4;
    if (get_raw(xo, &xv, n, 1, 0, "x") < 0) {
        PyBuffer_Release(&yv);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    q_dequantize(xv.buf, (size_t)n, xsigned, zp, scale, yv.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&xv);
    PyBuffer_Release(&yv);
    Py_RETURN_NONE;
}

static PyObject *qlinear_add(PyObject *self, PyObject *args) {
    PyObject *ao, *bo, *yo;
    int xsigned, za, zb, zy;
    float ra, rb;
    if (!PyArg_ParseTuple(args, "OOOiiiffi", &ao, &bo, &yo, &xsigned, &za, &zb, &ra, &rb, &zy))
        return NULL;
    Py_buffer av, bv, yv;
    if (get_raw(ao, &av, -1, 1, 0, "a") < 0) return NULL;
    const Py_ssize_t n = av.len;
    if (get_raw(bo, &bv, n, 1, 0, "b") < 0) {
        PyBuffer_Release(&av);
        return NULL;
    }
    if (get_raw(yo, &yv, n, 1, 1, "y") < 0) {
        PyBuffer_Release(&av);
        PyBuffer_Release(&bv);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    q_add(av.buf, bv.buf, (size_t)n, xsigned, za, zb, ra, rb, zy, yv.buf);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&av);
    PyBuffer_Release(&bv);
    PyBuffer_Release(&yv);
    Py_RETURN_NONE;
}

static PyObject *qblock(PyObject *self, PyObject *args) {
    Py_ssize_t bytes = 0;
    if (!PyArg_ParseTuple(args, "|n", &bytes)) return NULL;
    return PyLong_FromSize_t(q_block_bytes(bytes > 0 ? (size_t)bytes : 0));
}

static PyObject *qsimd(PyObject *self, PyObject *args) {
    int level = -1;
    if (!PyArg_ParseTuple(args, "|i", &level)) return NULL;
    if (level >= 0) q_allow_simd(level);
    return PyLong_FromLong(q_simd_level());
}

static PyObject *sgemm_batch(PyObject *self, PyObject *args) {
    PyObject *ao, *bo, *co;
    int batch, M, N, K, threads = 1;
    if (!PyArg_ParseTuple(args, "OOOiiii|i", &ao, &bo, &co, &batch, &M, &N, &K, &threads))
        return NULL;
    if (batch < 0 || M < 0 || N < 0 || K < 0) {
        PyErr_SetString(PyExc_ValueError, "sgemm_batch: negative size");
        return NULL;
    }
    const Py_ssize_t panels = (M + SMR - 1) / SMR;
    Py_buffer av, bv, cv;
    if (get_floats(ao, &av, (Py_ssize_t)batch * panels * K * SMR, 0, "packed a") < 0) return NULL;
    if (get_floats(bo, &bv, (Py_ssize_t)batch * K * N, 0, "b") < 0) {
        PyBuffer_Release(&av); return NULL;
    }
    if (get_floats(co, &cv, (Py_ssize_t)batch * M * N, 1, "c") < 0) {
        PyBuffer_Release(&av); PyBuffer_Release(&bv); return NULL;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = s_gemm_batch(av.buf, bv.buf, cv.buf, batch, M, N, K, threads);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&av); PyBuffer_Release(&bv); PyBuffer_Release(&cv);
    if (status < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* The elements of a group's packed filters: bf16 rows of Kp (native.bf16_weights), or float
 * panels (native.pack_conv_weights) */
static Py_ssize_t conv_packed(Py_ssize_t Cg, Py_ssize_t Mg, int kh, int kw, int bf16, int taps) {
    const Py_ssize_t Kp = taps ? (Py_ssize_t)kh * kw * ((Cg + 31) / 32 * 32)
                               : (Cg * kh * kw + 31) / 32 * 32;
    return bf16 ? (Mg + 31) / 32 * 32 * Kp : (Mg + SMR - 1) / SMR * SMR * Cg * kh * kw;
}

/* sconv2d's (sconv2d_bf16's) loop over images and groups on raw buffers, without the GIL
 * (run_plan's too): 0, -1 out of memory, -2 no AMX-BF16 */
static int conv_run(const float *xb, const void *wb, const float *bias, const float *res,
                    float *yb, int N, int C, int H, int W, int G, int Mg, int kh, int kw, int sh,
                    int sw, int pt, int pl, int dh, int dw, int OH, int OW, int act, float aa,
                    float ab, int bf16, int taps, int threads) {
    const Py_ssize_t Cg = C / G, M = (Py_ssize_t)G * Mg, P = (Py_ssize_t)OH * OW;
    const Py_ssize_t packed = conv_packed(Cg, Mg, kh, kw, bf16, taps);
    int status = 0;
    for (Py_ssize_t n = 0; n < N && status == 0; n++)
        for (Py_ssize_t g = 0; g < G && status == 0; g++) {
            const Py_ssize_t yoff = (n * M + g * Mg) * P;
            s_epilogue ep = {bias ? bias + g * Mg : NULL, res ? res + yoff : NULL, (size_t)P,
                             act, aa, ab};
            const float *x = xb + (n * C + g * Cg) * H * W;
            float *y = yb + yoff;
            status = bf16 ? s_conv_bf16(x, (int)Cg, H, W, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW,
                                        (const uint16_t *)wb + g * packed, Mg, taps, &ep, y,
                                        threads)
                          : s_conv(x, (int)Cg, H, W, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW,
                                   (const float *)wb + g * packed, Mg, &ep, y, threads);
        }
    return status;
}

/* sconv2d and sconv2d_bf16: the same arguments (bf16 adds `taps` before threads), the same
 * loop over images and groups; bf16: wb the filters of native.bf16_weights in the layout
 * `taps` says (bf16.c) */
static PyObject *float_conv(PyObject *args, int bf16) {
    PyObject *xo, *wo, *bo, *ro, *yo;
    int N, C, H, W, G, Mg, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, act, opt0 = 1, opt1 = 1;
    float aa, ab;
    if (!PyArg_ParseTuple(args, "OOOOOiiiiiiiiiiiiiiiiiff|ii", &xo, &wo, &bo, &ro, &yo, &N,
                          &C, &H, &W, &G, &Mg, &kh, &kw, &sh, &sw, &pt, &pl, &dh, &dw, &OH, &OW,
                          &act, &aa, &ab, &opt0, &opt1))
        return NULL;
    const int taps = bf16 ? opt0 : 0, threads = bf16 ? opt1 : opt0;
    const char *name = bf16 ? "sconv2d_bf16" : "sconv2d";
    if (N < 0 || C < 0 || H < 0 || W < 0 || G < 1 || C % G || Mg < 0 || kh < 1 || kw < 1 ||
        sh < 1 || sw < 1 || dh < 1 || dw < 1 || OH < 0 || OW < 0 ||
        (bf16 && (OH < 1 || OW < 1))) {
        PyErr_Format(PyExc_ValueError, "%s: bad geometry", name);
        return NULL;
    }
    if (bf16 && !s_bf16_available()) {
        PyErr_SetString(PyExc_RuntimeError, "sconv2d_bf16: this CPU has no AMX-BF16");
        return NULL;
    }
    const Py_ssize_t M = (Py_ssize_t)G * Mg, P = (Py_ssize_t)OH * OW;
    const Py_ssize_t packed = conv_packed(C / G, Mg, kh, kw, bf16, taps);
    Py_buffer xv, wv, bv, rv, yv;
    const int has_b = bo != Py_None, has_r = ro != Py_None;
    if (get_floats(xo, &xv, (Py_ssize_t)N * C * H * W, 0, "x") < 0) return NULL;
    if ((bf16 ? get_raw(wo, &wv, G * packed, 2, 0, "bf16 w")
              : get_floats(wo, &wv, G * packed, 0, "packed w")) < 0)
        goto fail_x;
    if (has_b && get_floats(bo, &bv, M, 0, "b") < 0) goto fail_w;
    if (has_r && get_floats(ro, &rv, N * M * P, 0, "res") < 0) goto fail_b;
    if (get_floats(yo, &yv, N * M * P, 1, "y") < 0) goto fail_r;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = conv_run(xv.buf, wv.buf, has_b ? bv.buf : NULL, has_r ? rv.buf : NULL, yv.buf, N, C,
                      H, W, G, Mg, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, act, aa, ab, bf16, taps,
                      threads);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&yv);
    if (has_r) PyBuffer_Release(&rv);
    if (has_b) PyBuffer_Release(&bv);
    PyBuffer_Release(&wv);
    PyBuffer_Release(&xv);
    if (status < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
fail_r:
    if (has_r) PyBuffer_Release(&rv);
fail_b:
    if (has_b) PyBuffer_Release(&bv);
fail_w:
    PyBuffer_Release(&wv);
fail_x:
    PyBuffer_Release(&xv);
    return NULL;
}

static PyObject *sconv2d(PyObject *self, PyObject *args) { return float_conv(args, 0); }

static PyObject *sconv2d_bf16(PyObject *self, PyObject *args) { return float_conv(args, 1); }

/* y (N x M) = act(a (N x K) @ W + b) with bf16 products (bf16.c, s_matmul_bf16) */
static PyObject *smatmul_bf16(PyObject *self, PyObject *args) {
    PyObject *ao, *wo, *bo, *yo;
    int N, K, M, act, threads = 1;
    float aa, ab;
    if (!PyArg_ParseTuple(args, "OOOOiiiiff|i", &ao, &wo, &bo, &yo, &N, &K, &M, &act, &aa, &ab,
                          &threads))
        return NULL;
    if (N < 0 || K < 1 || M < 1) {
        PyErr_SetString(PyExc_ValueError, "smatmul_bf16: bad sizes");
        return NULL;
    }
    if (!s_bf16_available()) {
        PyErr_SetString(PyExc_RuntimeError, "smatmul_bf16: this CPU has no AMX-BF16");
        return NULL;
    }
    Py_buffer av, wv, bv, yv;
    const int has_b = bo != Py_None;
    const Py_ssize_t packed = (Py_ssize_t)(M + 15) / 16 * 16 * ((K + 1) / 2);
    if (get_floats(ao, &av, (Py_ssize_t)N * K, 0, "a") < 0) return NULL;
    if (get_raw(wo, &wv, packed, 4, 0, "bf16 w") < 0) goto fail_a;
    if (has_b && get_floats(bo, &bv, M, 0, "b") < 0) goto fail_w;
    if (get_floats(yo, &yv, (Py_ssize_t)N * M, 1, "y") < 0) goto fail_b;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = s_matmul_bf16(av.buf, N, K, wv.buf, M, has_b ? bv.buf : NULL, act, aa, ab, yv.buf,
                           threads < 1 ? 1 : threads);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&yv);
    if (has_b) PyBuffer_Release(&bv);
    PyBuffer_Release(&wv);
    PyBuffer_Release(&av);
    if (status < 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
fail_b:
    if (has_b) PyBuffer_Release(&bv);
fail_w:
    PyBuffer_Release(&wv);
fail_a:
    PyBuffer_Release(&av);
    return NULL;
}

static PyObject *bf16_available(PyObject *self, PyObject *args) {
    return PyBool_FromLong(s_bf16_available());
}

static PyObject *ssimd(PyObject *self, PyObject *args) {
    int level = -1;
    if (!PyArg_ParseTuple(args, "|i", &level)) return NULL;
    if (level >= 0) s_allow_simd(level);
    return PyLong_FromLong(s_simd_level());
}

static PyObject *sdw_mode(PyObject *self, PyObject *args) {
    int mode = -1;
    if (!PyArg_ParseTuple(args, "|i", &mode)) return NULL;
    if (mode >= 0) dw_mode = mode;
    return PyLong_FromLong(dw_mode);
}

static PyObject *dw_rows_applies(PyObject *self, PyObject *args) {
    int kh, kw, sh, sw, dh, dw;
    if (!PyArg_ParseTuple(args, "iiiiii", &kh, &kw, &sh, &sw, &dh, &dw)) return NULL;
    return PyBool_FromLong(s_dw_rows_applies(kh, kw, sh, sw, dh, dw));
}

static PyObject *sconv_mode(PyObject *self, PyObject *args) {
    int mode = -1;
    if (!PyArg_ParseTuple(args, "|i", &mode)) return NULL;
    return PyLong_FromLong(s_conv_mode(mode));
}

/* Element-wise float32 maps that NumPy has no vectorised form of (math.erf is per element in
 * Python): code 1 erf, 2 GELU (0.5 x (1 + erf(x / sqrt 2))), 3 GELU tanh approximation
 * (0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))), 4 Mish (x tanh(softplus x)). libm's
 * erff/tanhf/log1pf/expf: correctly rounded to about 1 ulp. */
static void map_floats(const float *x, float *y, Py_ssize_t n, int code) {
    switch (code) {
    case 1:
        for (Py_ssize_t i = 0; i < n; i++) y[i] = erff(x[i]);
        break;
    case 2:
        for (Py_ssize_t i = 0; i < n; i++)
            y[i] = 0.5f * x[i] * (1.f + erff(x[i] * 0.70710678118654752f));
        break;
    case 3:
        for (Py_ssize_t i = 0; i < n; i++) {
            const float v = x[i];
            y[i] = 0.5f * v * (1.f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
        }
        break;
    default:
        for (Py_ssize_t i = 0; i < n; i++) {
            const float v = x[i];
            /* softplus = log(1 + e^v), stable: max(v, 0) + log1p(e^-|v|) */
            const float sp = (v > 0.f ? v : 0.f) + log1pf(expf(-fabsf(v)));
            y[i] = v * tanhf(sp);
        }
    }
}

static PyObject *map_f32(PyObject *self, PyObject *args) {
    PyObject *xo, *yo;
    int code;
    if (!PyArg_ParseTuple(args, "OOi", &xo, &yo, &code)) return NULL;
    if (code < 1 || code > 4) { PyErr_SetString(PyExc_ValueError, "map_f32: bad code"); return NULL; }
    Py_buffer xv, yv;
    if (get_floats(xo, &xv, -1, 0, "x") < 0) return NULL;
    if (get_floats(yo, &yv, xv.len / 4, 1, "y") < 0) { PyBuffer_Release(&xv); return NULL; }
    Py_BEGIN_ALLOW_THREADS
    map_floats(xv.buf, yv.buf, xv.len / 4, code);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&xv); PyBuffer_Release(&yv);
    Py_RETURN_NONE;
}

/* --- run_plan: a run of a session's steps in one call (optc/runtime/plan.py) -------------- */

/* y[r, c] = x[r, c] (+ or *) s, s: s[r, c] (mode 0), s[r] (mode 1, one per row: a channel's
 * scale), s[0] (mode 2) */
#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
static void binary_rows(const float *x, const float *s, float *y, Py_ssize_t rows,
                        Py_ssize_t cols, int mul, int mode) {
    for (Py_ssize_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols, *sr = mode == 0 ? s + r * cols : NULL;
        const float c = mode == 1 ? s[r] : s[0];
        float *yr = y + r * cols;
        if (mode == 0 && mul)
            for (Py_ssize_t i = 0; i < cols; i++) yr[i] = xr[i] * sr[i];
        else if (mode == 0)
            for (Py_ssize_t i = 0; i < cols; i++) yr[i] = xr[i] + sr[i];
        else if (mul)
            for (Py_ssize_t i = 0; i < cols; i++) yr[i] = xr[i] * c;
        else
            for (Py_ssize_t i = 0; i < cols; i++) yr[i] = xr[i] + c;
    }
}

/* A plan's row: [code, PLAN_BUFS buffer indices (-1: none), ints]; its two floats (the
 * activation's parameters) are a row of the floats array. The operands and ints per code:
 *   PLAN_CONV       x, packed w, b, res, y; N C H W G Mg kh kw sh sw pt pl dh dw OH OW act threads
 *   PLAN_DEPTHWISE  x, w, b, y; N C H W KH KW HO WO sh sw pt pl dh dw act path
 *   PLAN_AFFINE     x, scale, b, y; N C P act
 *   PLAN_MEANS      x, y; rows cols
 *   PLAN_BINARY     x, s, y; mul mode rows cols (binary_rows)
 *   PLAN_POOL       x, y; N C H W HO WO kh kw sh sw pt pl dh dw avg ch0 ch1 cw0 cw1 (pool2d's)
 *   PLAN_WINOGRAD   x, packed u, b, res, y; N C H W M HO WO m th tw pt pl act threads (w_conv)
 *   PLAN_CONCAT     x0 .. x(k-1), y (k <= PLAN_BUFS - 1); outer k chunk0 .. chunk(k-1): per
 *                   outer index, each input's chunk of floats in turn
 * the output last. */
#define PLAN_COLS 32
#define PLAN_BUFS 6
enum { PLAN_CONV = 1, PLAN_DEPTHWISE, PLAN_AFFINE, PLAN_MEANS, PLAN_BINARY, PLAN_POOL,
       PLAN_WINOGRAD, PLAN_CONCAT, PLAN_CODES };
static const int plan_operands[] = {0, 5, 4, 4, 2, 3, 2, 5, 0};
/* the operands an op cannot do without, a bit each */
static const int plan_required[] = {0, 0x13, 0xb, 0x9, 0x3, 0x7, 0x3, 0x13, 0};

/* How many operands a row has (a concat's: its inputs and y), and which it needs */
static int plan_count(const long long *row, int *required) {
    if (row[0] == PLAN_CONCAT) {
        const long long k = row[1 + PLAN_BUFS + 1];
        if (k < 1 || k > PLAN_BUFS - 1) return -1;
        *required = (1 << (k + 1)) - 1;
        return (int)k + 1;
    }
    *required = plan_required[row[0]];
    return plan_operands[row[0]];
}

/* The floats operand k of a row needs (its geometry says), -1 where the geometry is bad */
static Py_ssize_t plan_need(const long long *row, int k) {
    const long long *i = row + 1 + PLAN_BUFS;
    switch (row[0]) {
    case PLAN_CONV: {
        const long long N = i[0], C = i[1], H = i[2], W = i[3], G = i[4], Mg = i[5];
        if (N < 0 || C < 0 || H < 0 || W < 0 || G < 1 || C % G || Mg < 0 || i[6] < 1 ||
            i[7] < 1 || i[8] < 1 || i[9] < 1 || i[12] < 1 || i[13] < 1 || i[14] < 0 ||
            i[15] < 0 || i[17] < 1)
            return -1;
        if (k == 0) return N * C * H * W;
        if (k == 1) return G * conv_packed(C / G, Mg, (int)i[6], (int)i[7], 0, 0);
        if (k == 2) return G * Mg;
        return N * G * Mg * i[14] * i[15];
    }
    case PLAN_DEPTHWISE: {
        const long long N = i[0], C = i[1];
        for (int j = 0; j < 8; j++)
            if (i[j] < 0) return -1;
        if (i[4] < 1 || i[5] < 1 || i[8] < 1 || i[9] < 1 || i[12] < 1 || i[13] < 1) return -1;
        return k == 0 ? N * C * i[2] * i[3] : k == 1 ? C * i[4] * i[5] : k == 2 ? C
                                                                               : N * C * i[6] * i[7];
    }
    case PLAN_AFFINE:
        if (i[0] < 0 || i[1] < 1 || i[2] < 0) return -1;
        return k == 1 || k == 2 ? i[1] : i[0] * i[1] * i[2];
    case PLAN_MEANS:
        if (i[0] < 0 || i[1] < 1) return -1;
        return k == 0 ? i[0] * i[1] : i[0];
    case PLAN_BINARY:
        if (i[1] < 0 || i[1] > 2 || i[2] < 0 || i[3] < 0) return -1;
        if (k == 1) return i[1] == 0 ? i[2] * i[3] : i[1] == 1 ? i[2] : 1;
        return i[2] * i[3];
    case PLAN_POOL:
        for (int j = 0; j < 6; j++)
            if (i[j] < 0) return -1;
        for (int j = 6; j < 10; j++)
            if (i[j] < 1) return -1;
        if (i[10] < 0 || i[11] < 0 || i[12] < 1 || i[13] < 1) return -1;
        return k == 0 ? i[0] * i[1] * i[2] * i[3] : i[0] * i[1] * i[4] * i[5];
    case PLAN_WINOGRAD: {
        const long long N = i[0], C = i[1], M = i[4], m = i[7], a = i[7] + 2;
        for (int j = 0; j < 7; j++)
            if (i[j] < 0) return -1;
        if ((m != 2 && m != 4) || i[8] < 0 || i[9] < 0 || i[10] < 0 || i[11] < 0 ||
            i[5] > i[8] * m || i[6] > i[9] * m || i[13] < 1)
            return -1;
        if (k == 0) return N * C * i[2] * i[3];
        if (k == 1) return a * a * ((M + SMR - 1) / SMR * SMR) * C;
        if (k == 2) return M;
        return N * M * i[5] * i[6];
    }
    case PLAN_CONCAT: {
        const long long outer = i[0], n = i[1];
        long long total = 0;
        if (outer < 0) return -1;
        for (int j = 0; j < n; j++) {
            if (i[2 + j] < 0) return -1;
            total += i[2 + j];
        }
        return outer * (k < n ? i[2 + k] : total);
    }
    }
    return -1;
}

static int plan_op(const long long *row, const float *f, float *const *b) {
    const long long *i = row + 1 + PLAN_BUFS;
    const float *const *c = (const float *const *)b;
    switch (row[0]) {
    case PLAN_CONV:
        return conv_run(c[0], c[1], c[2], c[3], b[4], (int)i[0], (int)i[1], (int)i[2], (int)i[3],
                        (int)i[4], (int)i[5], (int)i[6], (int)i[7], (int)i[8], (int)i[9],
                        (int)i[10], (int)i[11], (int)i[12], (int)i[13], (int)i[14], (int)i[15],
                        (int)i[16], f[0], f[1], 0, 0, (int)i[17]);
    case PLAN_DEPTHWISE:
        return dw_run(c[0], c[1], c[2], b[3], i[0], i[1], i[2], i[3], i[4], i[5], i[6], i[7],
                      (int)i[8], (int)i[9], (int)i[10], (int)i[11], (int)i[12], (int)i[13],
                      (int)i[14], f[0], f[1], (int)i[15]);
    case PLAN_AFFINE:
        affine_planes(c[0], c[1], c[2], b[3], i[0] * i[1], i[1], i[2], (int)i[3], f[0], f[1]);
        return 0;
    case PLAN_MEANS:
        means_of_rows(c[0], b[1], i[0], i[1]);
        return 0;
    case PLAN_BINARY:
        binary_rows(c[0], c[1], b[2], i[2], i[3], (int)i[0], (int)i[1]);
        return 0;
    case PLAN_POOL:
        return pool_run(c[0], b[1], i[0] * i[1], i[2], i[3], i[4], i[5], (int)i[6], (int)i[7],
                        (int)i[8], (int)i[9], (int)i[10], (int)i[11], (int)i[12], (int)i[13],
                        (int)i[14], (int)i[15], (int)i[16], (int)i[17], (int)i[18]);
    case PLAN_WINOGRAD:
        return w_conv(c[0], (int)i[0], (int)i[1], (int)i[2], (int)i[3], (int)i[10], (int)i[11],
                      c[1], (int)i[4], (int)i[7], (int)i[8], (int)i[9], c[2], c[3], (int)i[12],
                      f[0], f[1], b[4], (int)i[5], (int)i[6], (int)i[13]);
    case PLAN_CONCAT: {
        const long long n = i[1];
        long long total = 0;
        for (int j = 0; j < n; j++) total += i[2 + j];
        for (long long o = 0; o < i[0]; o++) {
            float *y = b[n] + o * total;
            for (int j = 0; j < n; j++) {
                memcpy(y, c[j] + o * i[2 + j], sizeof(float) * (size_t)i[2 + j]);
                y += i[2 + j];
            }
        }
        return 0;
    }
    }
    return -1;
}

static PyObject *run_plan(PyObject *self, PyObject *args) {
    PyObject *oo, *fo, *bo;
    if (!PyArg_ParseTuple(args, "OOO!", &oo, &fo, &PyList_Type, &bo)) return NULL;
    Py_buffer ov, fv;
    if (PyObject_GetBuffer(oo, &ov, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (ov.itemsize != 8 || ov.len % (8 * PLAN_COLS) || (ov.format[0] != 'q' &&
                                                            ov.format[0] != 'l')) {
        PyErr_SetString(PyExc_TypeError, "run_plan: ops must be int64 rows of PLAN_COLS");
        PyBuffer_Release(&ov);
        return NULL;
    }
    const Py_ssize_t n_ops = ov.len / (8 * PLAN_COLS), n_bufs = PyList_GET_SIZE(bo);
    if (get_floats(fo, &fv, 2 * n_ops, 0, "floats") < 0) { PyBuffer_Release(&ov); return NULL; }
    Py_buffer *views = calloc((size_t)n_bufs + 1, sizeof(Py_buffer));
    float **ptrs = calloc((size_t)n_bufs + 1, sizeof(float *));
    char *written = calloc((size_t)n_bufs + 1, 1); /* an op's output: asked for writable */
    Py_ssize_t got = 0;
    PyObject *result = NULL;
    const long long *ops = ov.buf;
    if (views == NULL || ptrs == NULL || written == NULL) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t k = 0; k < n_ops; k++) {
        const long long *row = ops + k * PLAN_COLS;
        int required, n;
        if (row[0] >= PLAN_CONV && row[0] < PLAN_CODES && (n = plan_count(row, &required)) > 0) {
            const long long ix = row[n];
            if (ix >= 0 && ix < n_bufs) written[ix] = 1;
        }
    }
    for (; got < n_bufs; got++) {
        PyObject *item = PyList_GET_ITEM(bo, got);
        if (item == Py_None) { views[got].obj = NULL; continue; }
        if (get_floats(item, &views[got], -1, written[got], "a plan's buffer") < 0) goto done;
        ptrs[got] = views[got].buf;
    }
    for (Py_ssize_t k = 0; k < n_ops; k++) { /* every operand checked before anything runs */
        const long long *row = ops + k * PLAN_COLS;
        int required, n = -1;
        if (row[0] >= PLAN_CONV && row[0] < PLAN_CODES) n = plan_count(row, &required);
        if (n < 0) {
            PyErr_Format(PyExc_ValueError, "run_plan: op %zd has an unknown code or operand count", k);
            goto done;
        }
        for (int j = 0; j < PLAN_BUFS; j++) {
            const long long ix = row[1 + j];
            if (ix < 0 && !(j < n && required >> j & 1)) continue;
            const Py_ssize_t need = j < n ? plan_need(row, j) : -1;
            int aliased = 0; /* the output must not be one of the op's inputs */
            for (int t = 0; j == n - 1 && t < j; t++) aliased |= row[1 + t] == ix;
            if (ix < 0 || ix >= n_bufs || ptrs[ix] == NULL || need < 0 ||
                views[ix].len < need * 4 || aliased) {
                PyErr_Format(PyExc_ValueError, "run_plan: op %zd operand %d is missing, too "
                             "small or its output is its input", k, j);
                goto done;
            }
        }
    }
    int status = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < n_ops && status == 0; k++) {
        const long long *row = ops + k * PLAN_COLS;
        float *b[PLAN_BUFS];
        for (int j = 0; j < PLAN_BUFS; j++) b[j] = row[1 + j] < 0 ? NULL : ptrs[row[1 + j]];
        status = plan_op(row, (const float *)fv.buf + 2 * k, b);
    }
    Py_END_ALLOW_THREADS
    if (status < 0) PyErr_NoMemory();
    else result = Py_None, Py_INCREF(result);
done:
    for (Py_ssize_t j = 0; j < got; j++)
        if (views[j].obj != NULL) PyBuffer_Release(&views[j]);
    free(views);
    free(ptrs);
    free(written);
    PyBuffer_Release(&fv);
    PyBuffer_Release(&ov);
    return result;
}

static PyMethodDef methods[] = {
    {"run_plan", run_plan, METH_VARARGS,
     "run_plan(ops, floats, bufs): a run of a session's steps in one call (optc/runtime/plan.py)."},
    {"map_f32", map_f32, METH_VARARGS,
     "map_f32(x, y, code): y = f(x) element-wise, float32; code 1 erf, 2 gelu, 3 gelu-tanh, "
     "4 mish."},
    {"sgemm_batch", sgemm_batch, METH_VARARGS,
     "sgemm_batch(packed_a, b, c, batch, M, N, K[, threads]): c[i] = a[i] @ b[i] (sgemm.c)."},
    {"sconv2d", sconv2d, METH_VARARGS,
     "sconv2d(x, packed_w, b, res, y, N, C, H, W, G, Mg, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, "
     "act, a, b[, threads]): float32 conv, y = act(conv + b + res) (sgemm.c)."},
    {"sconv2d_bf16", sconv2d_bf16, METH_VARARGS,
     "sconv2d_bf16(x, bf16_w, b, res, y, N, C, H, W, G, Mg, kh, kw, sh, sw, pt, pl, dh, dw, OH, "
     "OW, act, a, b, taps[, threads]): sconv2d with bf16 products on AMX-BF16 (bf16.c)."},
    {"smatmul_bf16", smatmul_bf16, METH_VARARGS,
     "smatmul_bf16(a, bf16_w, b, y, N, K, M, act, a, b[, threads]): y = act(a @ W + b) with "
     "bf16 products (bf16.c)."},
    {"bf16_available", bf16_available, METH_NOARGS,
     "bf16_available(): whether this CPU runs sconv2d_bf16 (AMX-BF16)."},
    {"ssimd", ssimd, METH_VARARGS,
     "ssimd([level]): cap the float32 GEMM (2 AVX-512F, 1 AVX2 + FMA, 0 portable C); returns the level in use."},
    {"dw_rows_applies", dw_rows_applies, METH_VARARGS,
     "dw_rows_applies(kh, kw, sh, sw, dh, dw): whether the direct-rows depthwise path runs that shape here."},
    {"sdw_mode", sdw_mode, METH_VARARGS,
     "sdw_mode([mode]): the depthwise conv's path (0 per shape, 1 planes, 2 channel blocks, 3 direct rows); returns it."},
    {"sconv_mode", sconv_mode, METH_VARARGS,
     "sconv_mode([mode]): the float32 conv's path (0 per shape, 1 im2col, 2 tap mode); returns it."},
    {"qlinear_conv2d", qlinear_conv2d, METH_VARARGS,
     "int8 2-D convolution with fused fixed-point requantization (see qgemm.c)."},
    {"qlinear_depthwise2d", qlinear_depthwise2d, METH_VARARGS,
     "int8 depthwise 2-D convolution with fused fixed-point requantization (see qgemm.c)."},
    {"quantize_linear", quantize_linear, METH_VARARGS,
     "quantize_linear(x, y, scale, zero_point, signed): per-tensor QuantizeLinear."},
    {"affine_quantize", affine_quantize, METH_VARARGS,
     "affine_quantize(x, scale, shift, y, N, C, P, act, a, b, y_scale, zp, signed): "
     "ai.optc QuantizeAffine, y = Q(act(x * scale[c] + shift[c])) (qgemm.c)."},
    {"dequantize_linear", dequantize_linear, METH_VARARGS,
     "dequantize_linear(x, y, signed, zero_point, scale): per-tensor DequantizeLinear."},
    {"qlinear_add", qlinear_add, METH_VARARGS,
     "qlinear_add(a, b, y, signed, za, zb, ra, rb, zy): com.microsoft QLinearAdd, one shape."},
    {"qblock", qblock, METH_VARARGS,
     "qblock([bytes]): set/get the packed activation bytes per int8 GEMM pass."},
    {"qsimd", qsimd, METH_VARARGS,
     "qsimd([level]): cap the int8 GEMM (2 VNNI, 1 AVX2, 0 portable C); returns the level in use."},
    {"depthwise_conv2d", depthwise_conv2d, METH_VARARGS, "Depthwise 2-D convolution (float32)."},
    {"lrn", lrn, METH_VARARGS,
     "lrn(x, y, N, C, P, size, alpha, beta, bias): LRN across channels (float32)."},
    {"max_pool2d", max_pool2d, METH_VARARGS, "2-D max pooling (float32, no indices)."},
    {"avg_pool2d", avg_pool2d, METH_VARARGS, "2-D average pooling (float32)."},
    {"row_means", row_means, METH_VARARGS,
     "row_means(x, y, rows, cols): y[r] = the mean of x's row r."},
    {"channel_affine", channel_affine, METH_VARARGS,
     "channel_affine(x, scale, bias, y, N, C, P, act, a, b): y = act(x * s[c] + b[c])."},
    {"winograd_input", winograd_input, METH_VARARGS, "Winograd input transform V = B^T d B."},
    {"winograd_conv2d", winograd_conv2d, METH_VARARGS,
     "winograd_conv2d(x, packed_u, b, res, y, m, th, tw, pad_t, pad_l, act, a, b[, threads]): "
     "Winograd conv a block of tile rows at a time (winograd.c)."},
    {"wblock", wblock, METH_VARARGS,
     "wblock([floats, tiles]): set/get winograd_conv2d's block budget (floats of V and P) and "
     "least tiles per block."},
    {"wblock_rows", wblock_rows, METH_VARARGS,
     "wblock_rows(C, M, m, th, tw): the tile rows per block winograd_conv2d takes."},
    {"winograd_output", winograd_output, METH_VARARGS,
     "Winograd output transform Y = A^T P A, bias, activation."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ckernels",
                                    "optc.runtime's C kernels.", -1, methods};

PyMODINIT_FUNC PyInit__ckernels(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (PyModule_AddIntConstant(m, "QMR", QMR) < 0 ||
                      PyModule_AddIntConstant(m, "PLAN_COLS", PLAN_COLS) < 0 ||
                      PyModule_AddIntConstant(m, "PLAN_BUFS", PLAN_BUFS) < 0 || /* the AVX2 panel rows */
                      PyModule_AddIntConstant(m, "AMX_ROWS", AMX_ROWS) < 0 ||
                      PyModule_AddIntConstant(m, "AMX_QUADS", AMX_QUADS) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

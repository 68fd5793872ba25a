/* The C kernels' cores, called by ckernels.c's Python wrappers: int8 convolution (qgemm.c),
 * float32 GEMMs on packed weights (sgemm.c) and Winograd convolution (winograd.c). */
#ifndef OPTC_QGEMM_H
#define OPTC_QGEMM_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* act: 0 none, else a code of optc.runtime.activations.ACTIVATIONS (the table and the
 * function of each; a, b its parameters). */
static inline float activate(float v, int act, float a, float b) {
    switch (act) {
    case 1: return v < 0.f ? 0.f : v; /* NaN stays NaN, as np.maximum */
    case 2: return v < a ? a : (v > b ? b : v);
    case 3: return v >= 0.f ? v : v * a;
    case 4: return 1.f / (1.f + expf(-v));
    case 5: { float t = v * a + b; return t < 0.f ? 0.f : (t > 1.f ? 1.f : t); }
    case 6: { float t = v / 6.f + 0.5f; t = t < 0.f ? 0.f : (t > 1.f ? 1.f : t); return v * t; }
    case 7: return tanhf(v);
    case 8: return v / (1.f + expf(-v));
    default: return v;
    }
}


/* The int8 GEMM that runs: 3 AMX-INT8, 2 AVX-512 VNNI, 1 AVX2, 0 portable C (what the CPU
 * has, capped by q_allow_simd). */
int q_simd_level(void);
/* Cap the level (0: portable C only): tests compare every path on one machine. */
void q_allow_simd(int level);

/* The bytes of packed activations per GEMM pass (bytes > 0 sets it; tests make it small to
 * cross block edges on small images); returns the setting. */
size_t q_block_bytes(size_t bytes);

/* Whether the CPU has AMX-TILE and the AMX feature of CPUID leaf 7 EDX bit `bit` (25
 * AMX-INT8, 22 AMX-BF16), and the OS lets this process use the tiles (Linux only). */
int x86_amx_usable(int bit);
/* Configure the calling thread's eight AMX tiles as 16 rows of 64 bytes each (where
 * x86_amx_usable; the int8 and bf16 GEMMs, each thread before its tile work). */
void x86_amx_tiles(void);

/* Rows per panel of the AVX2 int8 GEMM's filters. */
#define QMR 6
/* The AMX GEMM's filters (simd level 3): rows padded to a multiple of AMX_ROWS, each row's
 * quads to a multiple of AMX_QUADS (zeros), one group after another: quad kq of row m at
 * (m * Kqa + kq) * 4, Kqa = Kq rounded up. */
#define AMX_ROWS 32
#define AMX_QUADS 16

/* One image's group of a conv: y[m, p] = requant(sum_k x_k,p * wp[m, k] + corr[m]) for
 * m < Mg, p < OH * OW (y: Mg rows of OH * OW bytes, int8 if ysigned else uint8); x: cg
 * channels of H x W uint8 (flip: 0x80 turns int8 data into uint8, x + 128), pad: the value of
 * padded taps (the zero point), wp: the packed filters (a multiple of 4 rows of
 * Kq = kh * kw * ceil(cg / 4) quads); panels: NULL, or the same filters for the AVX2 GEMM in
 * panels of QMR rows, quad kq of row m = panel * QMR + r at index (panel * Kq + kq) * QMR + r
 * (zeros for m >= Mg), its four taps widened to int16 (wide 1: vpmaddwd) or as they are
 * (wide 0: vpmaddubsw, only where no pair of taps can saturate 16 bits, see
 * native.avx2_panels) -- without them the portable loop runs where AVX2 would -- or, at
 * level 3, the AMX filters (AMX_ROWS above; without them the VNNI GEMM runs); threads: how
 * many threads share the work (POSIX threads; 1 elsewhere). Returns -1 when out of memory. */
int q_conv(const uint8_t *x, int cg, int H, int W, int kh, int kw, int sh, int sw, int pt, int pl,
           int dh, int dw, int OH, int OW, uint8_t pad, uint8_t flip, const int8_t *wp,
           const void *panels, int wide, int Mg, const int64_t *corr, const int32_t *m0,
           const int32_t *shift, int zp, int ysigned, void *y, int threads);

/* Depthwise conv of one image (C channels of H x W uint8, zero point zx in the uint8 view,
 * w: (C, kh * kw) int8), requantized like q_gemm with corr[c] the int32 bias. */
int q_depthwise(const uint8_t *x, const int8_t *w, int C, int H, int W, int kh, int kw, int sh,
                int sw, int pt, int pl, int dh, int dw, int OH, int OW, int zx, uint8_t flip,
                const int64_t *corr, const int32_t *m0, const int32_t *shift, int zp,
                int ysigned, void *y, int threads);

/* Per-tensor QuantizeLinear (float32 -> 8 bits) and DequantizeLinear (8 bits -> float32). */
void q_quantize(const float *x, size_t n, float s, int zp, int ysigned, void *y);
void q_dequantize(const void *x, size_t n, int xsigned, int zp, float s, float *y);
/* ai.optc QuantizeAffine: y = saturate(nearbyint(act(x * s[c] + b[c]) / ys) + zp) over
 * `planes` planes of P values, plane p of channel p % C (act: 0, 1 Relu, 2 Clip(a, b), or
 * another of activate()'s codes). */
void q_affine_quantize(const float *x, const float *s, const float *b, size_t planes, size_t C,
                       size_t P, int act, float aa, float ab, float ys, int zp, int ysigned,
                       void *y);
/* com.microsoft QLinearAdd, one shape: y = saturate(rint((a - za) * ra + (b - zb) * rb) + zy)
 * in float32 (ra, rb: the input scales over the output's); a, b, y 8-bit of one signedness. */
void q_add(const void *a, const void *b, size_t n, int xsigned, int za, int zb, float ra,
           float rb, int zy, void *y);

/* Threads: fn(job, t, T) for t < T, t = 0 on the calling thread, the others on POSIX
 * threads (elsewhere all on the calling thread). Returns -1 if any share returned -1. */
typedef int (*job_fn)(void *job, int t, int T);
int optc_parallel(job_fn fn, void *job, int T);

/* float32 GEMM on packed weights (sgemm.c): SMR rows per panel, ap[(panel * K + k) * SMR + i]
 * = a[panel * SMR + i, k] (rows past M zero). */
#define SMR 8
/* The kernel in use: 2 AVX-512F, 1 AVX2 + FMA, 0 portable C; s_allow_simd caps it (tests). */
int s_simd_level(void);
void s_allow_simd(int level);
/* p[i] = activate(p[i], act, a, b) for i < n, vectorised at s_simd_level (activate.c) */
void activate_span(float *p, size_t n, int act, float a, float b);
/* Depthwise conv of N images, the channels in the vector lanes (dwconv.c: small maps); ws of
 * s_dw_cblock_floats(...) floats; 0 where the CPU has no AVX2 (nothing written), else 1. */
size_t s_dw_cblock_floats(int KH, int KW, int HO, int WO, int sh, int sw, int dh, int dw);
int s_dw_cblock(const float *x, const float *w, const float *b, float *y, int N, int C, int H,
                int W, int KH, int KW, int HO, int WO, int sh, int sw, int pt, int pl, int dh,
                int dw, int act, float aa, float ab, float *ws);
/* Depthwise conv of N images read straight from the NCHW rows (dwconv.c: AVX-512, square 3x3,
 * 5x5 or 7x7 kernels, stride 1 or 2, no dilation -- s_dw_rows_applies); no workspace; 0 where
 * it does not apply (nothing written), else 1. */
int s_dw_rows_applies(int KH, int KW, int sh, int sw, int dh, int dw);
int s_dw_rows(const float *x, const float *w, const float *b, float *y, int N, int C, int H,
              int W, int KH, int KW, int HO, int WO, int sh, int sw, int pt, int pl, int dh,
              int dw, int act, float aa, float ab);
/* What happens to c when its sums are complete: c = act(c + bias[m] + res[m, n]) (bias, res:
 * NULL when absent; res has row stride ldres). */
typedef struct {
    const float *bias, *res;
    size_t ldres;
    int act;
    float a, b;
} s_epilogue;
/* bf16 convolution (bf16.c) where s_bf16_available() (AMX-BF16): y (M x OH*OW) =
 * act(conv(x) + bias + res) with x and the filters rounded to bf16, the sums in float32; wb:
 * the filters as bf16 (uint16) rows of Kp, rows padded to a multiple of 32 with zeros, taps
 * (i, j, c) with C padded to 32 (taps 1) else (c, i, j) with K padded to 32
 * (native.bf16_weights). -1 out of memory, -2 no AMX-BF16. */
int s_bf16_available(void);
int s_conv_bf16(const float *x, int C, int H, int W, int kh, int kw, int sh, int sw, int pt,
                int pl, int dh, int dw, int OH, int OW, const uint16_t *wb, int M, int taps,
                const s_epilogue *ep, float *y, int threads);
/* y (N x M) = act(a (N x K) @ W + bias) with bf16 products (bf16.c): wp the weights (K x M)
 * as bf16 pairs of rows, per 16 columns (native.bf16_matmul_weights); bias NULL or M
 * floats. -1 out of memory, -2 no AMX-BF16 (the session's bf16 needs it). */
int s_matmul_bf16(const float *a, int N, int K, const uint32_t *wp, int M, const float *bias,
                  int act, float aa, float ab, float *y, int threads);
/* c (M x N, row stride ldc) = a @ b (b: K x N, row stride ldb), plus c if accumulate, then
 * the epilogue (NULL: none); -1 when out of memory. */
int s_gemm(const float *ap, const float *b, size_t ldb, float *c, size_t ldc, int M, int N,
           int K, int accumulate, const s_epilogue *ep);
/* One image's group of a 2-D conv: y (M x OH*OW) = act(w @ im2col(x) + bias + res); x: C
 * channels of H x W, wp: the M x (C * kh * kw) filters packed (taps in (channel, kernel row,
 * kernel column) order, as the weight's own layout), zero padding; res: NULL or like y.
 * threads share the blocks of pixels. -1 when out of memory. */
int s_conv(const float *x, int C, int H, int W, int kh, int kw, int sh, int sw, int pt, int pl,
           int dh, int dw, int OH, int OW, const float *wp, int M, const s_epilogue *ep,
           float *y, int threads);
/* s_conv's path: 0 chosen per shape, 1 im2col + GEMM only, 2 tap mode (implicit im2col)
 * wherever it can run; mode < 0 leaves it. Returns the mode in use. */
int s_conv_mode(int mode);
/* c[i] = a[i] @ b[i] for i < batch (b[i]: K x N, c[i]: M x N, contiguous; ap: batch packed
 * weights), the products shared among threads. */
int s_gemm_batch(const float *ap, const float *b, float *c, int batch, int M, int N, int K,
                 int threads);
/* s_gemm with the caller's workspace of s_gemm_ws_floats() floats (no allocation). */
size_t s_gemm_ws_floats(void);
void s_gemm_ws(const float *ap, const float *b, size_t ldb, float *c, size_t ldc, int M, int N,
               int K, int accumulate, const s_epilogue *ep, float *ws);

/* Winograd F(m x m, 3 x 3), m = 2 or 4 (winograd.c). The input transform of th rows of tw
 * tiles of one channel's padded plane xc (row stride W, tile t's a x a inputs from row
 * m * ty, column m * tx): v[(i * a + j) * plane + ty * tw + tx] = (B^T d B)[i][j]; r:
 * a * (tw * m + 2) floats, e: 4 * (tw + 1). */
void w_input_plane(const float *xc, ptrdiff_t W, int th, int tw, int m, float *r, float *e,
                   float *v, ptrdiff_t plane);
/* The output transform of tile rows ty0 .. ty0 + rows of one image (see winograd.c). */
void w_output_rows(const float *p, ptrdiff_t plane, ptrdiff_t ldt, int M, int m, int tw,
                   int ty0, int rows, float *y, int HO, int WO, const float *bias,
                   const float *res, int act, float aa, float ab, float *t, float *rowbuf);
/* y (N, M, HO, WO) = act(conv3x3(x) + bias + res) by Winograd, a block of tile rows at a
 * time: x (N, C, H, W) unpadded, pads pt, pl (the tiles th x tw cover HO x WO; rows and
 * columns past the plane read zero), up: the a*a transformed filter matrices (M x C) packed
 * for s_gemm, one after the other; bias, res: NULL when absent. threads share the blocks.
 * -1 when out of memory. */
int w_conv(const float *x, int N, int C, int H, int W, int pt, int pl, const float *up, int M,
           int m, int th, int tw, const float *bias, const float *res, int act, float aa,
           float ab, float *y, int HO, int WO, int threads);
/* w_conv's blocks: at most `floats` of V and P together, at least `tiles` tiles (0 leaves
 * either); *floats_out and *tiles_out get the settings. Tests make blocks small to cross
 * their edges. */
void w_block(size_t floats, int tiles, size_t *floats_out, int *tiles_out);
/* The tile rows per block w_conv takes for that shape. */
int w_block_rows(int C, int M, int m, int th, int tw);

#endif

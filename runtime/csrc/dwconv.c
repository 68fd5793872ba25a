/* Depthwise 2-D convolution with the channels in the vector lanes, for small maps.
 *
 * ckernels.c's depthwise_planes works on one channel's plane at a time: long contiguous loops
 * on big maps, but on 14x14 and 7x7 maps (the late stages of MobileNet / PP-LCNet, 5x5 and
 * strided) its per-row loops are a few vectors long and their set-up costs more than the
 * arithmetic (256 channels, 5x5, stride 2, 14x14 -> 7x7: 8x onnxruntime's time). Here a block
 * of LANES channels is transposed into an interleaved buffer xb[(r * Wp + q) * LANES + c] (the
 * padded input, zeros outside; AVX-512: 16x16 transposes in registers, AVX2: gathers), and every output is LANES channels at once: one FMA per tap,
 * the weights of a tap one vector wb[tap * LANES + c], four output columns per pass so that
 * each weight vector loaded serves four FMAs; bias and activation (vact.h) on the registers;
 * the block's outputs transposed back. This is onnxruntime's / XNNPACK's NCHWc way of running
 * depthwise convs, done inside one op on an NCHW tensor.
 *
 * ws: s_dw_cblock_floats(...) floats. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qgemm.h"
#include "vact.h"

size_t s_dw_cblock_floats(int KH, int KW, int HO, int WO, int sh, int sw, int dh, int dw) {
    const size_t Hp = (size_t)(HO - 1) * sh + (size_t)(KH - 1) * dh + 1;
    const size_t Wp = (size_t)(WO - 1) * sw + (size_t)(KW - 1) * dw + 1;
    return 16 * (Hp * Wp + (size_t)KH * KW + (size_t)HO * WO); /* xb, the weights, yb */
}

/* Output rows per band: the band's interleaved input rows within a quarter of the L2 cache
 * the CPU reports (sysconf; 256 KiB where it reports none), at least one row. A whole 112x112
 * map (817 KiB a block of 16 channels) ran from L3: 32 channels 3x3 stride 2 at 112x112 took
 * twice its time alone inside a network. */
static int cblock_band(int KH, int Wp, int sh, int dh) {
    static long budget = 0; /* bytes */
    if (budget == 0) {
        long l2 = 0;
#ifdef _SC_LEVEL2_CACHE_SIZE
        l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
        budget = l2 > 0 ? l2 / 4 : 256 * 1024;
    }
    const long rows = budget / (16 * (long)sizeof(float) * Wp); /* input rows that fit */
    long band = (rows - (long)(KH - 1) * dh - 1) / sh + 1;
    return band < 1 ? 1 : (band > 1 << 20 ? 1 << 20 : (int)band);
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
/* OUTS outputs of a row (stride SW) over every kernel row, KW, SW and OUTS known when
 * compiled: a kernel row's (OUTS - 1) SW + KW input vectors loaded once for its OUTS KW FMAs
 * (neighbouring outputs share them; the general loop loads one per FMA), and OUTS independent
 * sums, so that the FMA latency is covered (AVX-512: 8 -- four chains ran at one FMA a
 * cycle, half the rate; AVX2: 4, its 16 registers). acc: OUTS sums, in and out. */
#define ROWK(NAME, KW, SW) NAME##_row_##KW##_##SW
#define DEFINE_ROWK(NAME, TARGET, P, VEC, LANES, OUTS, KWC, SWC)                              \
    __attribute__((target(TARGET), always_inline)) static inline void ROWK(NAME, KWC, SWC)(   \
        const float *xo, const float *wb, int KH, size_t rs, VEC *acc) {                       \
        VEC a[OUTS];                                                                           \
        _Pragma("GCC unroll 16") for (int t = 0; t < OUTS; t++) a[t] = acc[t];                \
        for (int i = 0; i < KH; i++) {                                                         \
            const float *xi = xo + (size_t)i * rs, *wi = wb + (size_t)i * KWC * LANES;         \
            VEC xv[(OUTS - 1) * SWC + KWC];                                                    \
            _Pragma("GCC unroll 32") for (int t = 0; t < (OUTS - 1) * SWC + KWC; t++)         \
                xv[t] = P##_loadu_ps(xi + (size_t)t * LANES);                                  \
            _Pragma("GCC unroll 16") for (int j = 0; j < KWC; j++) {                          \
                const VEC wv = P##_loadu_ps(wi + (size_t)j * LANES);                           \
                _Pragma("GCC unroll 16") for (int t = 0; t < OUTS; t++)                       \
                    a[t] = P##_fmadd_ps(wv, xv[t * SWC + j], a[t]);                            \
            }                                                                                  \
        }                                                                                      \
        _Pragma("GCC unroll 16") for (int t = 0; t < OUTS; t++) acc[t] = a[t];                \
    }
#define DEFINE_ROWKS(NAME, TARGET, P, VEC, LANES, OUTS)                                       \
    DEFINE_ROWK(NAME, TARGET, P, VEC, LANES, OUTS, 3, 1)                                      \
    DEFINE_ROWK(NAME, TARGET, P, VEC, LANES, OUTS, 3, 2)                                      \
    DEFINE_ROWK(NAME, TARGET, P, VEC, LANES, OUTS, 5, 1)                                      \
    DEFINE_ROWK(NAME, TARGET, P, VEC, LANES, OUTS, 5, 2)

#define DEFINE_CBLOCK(NAME, TARGET, P, VEC, LANES, OUTS, PACKIN, UNPACKOUT)                                                \
    __attribute__((target(TARGET))) static void NAME(                                           \
        const float *x, const float *w, const float *b, float *y, int C, int H, int W, int KH,  \
        int KW, int HO, int WO, int sh, int sw, int pt, int pl, int dh, int dw, int act,        \
        float aa, float ab, float *ws) {                                                        \
        const int Hp = (HO - 1) * sh + (KH - 1) * dh + 1, Wp = (WO - 1) * sw + (KW - 1) * dw + 1; \
        float *xb = ws, *wb = ws + (size_t)16 * Hp * Wp, *yb = wb + (size_t)16 * KH * KW;        \
        const int band = cblock_band(KH, Wp, sh, dh);                                       \
        for (int c0 = 0; c0 < C; c0 += LANES) {                                                 \
            const int nc = C - c0 < LANES ? C - c0 : LANES;                                     \
            for (int t = 0; t < KH * KW; t++)                                                   \
                for (int c = 0; c < LANES; c++)                                                 \
                    wb[t * LANES + c] = c < nc ? w[(size_t)(c0 + c) * KH * KW + t] : 0.f;       \
            float bl[LANES];                                                                    \
            for (int c = 0; c < LANES; c++) bl[c] = b && c < nc ? b[c0 + c] : 0.f;              \
            const VEC bias = P##_loadu_ps(bl);                                                  \
            for (int o0 = 0; o0 < HO; o0 += band) { /* bands of rows: xb and yb stay in L2 */   \
            const int o1 = o0 + band < HO ? o0 + band : HO;                                     \
            PACKIN(x + (size_t)c0 * H * W, nc, H, W, (o1 - o0 - 1) * sh + (KH - 1) * dh + 1, Wp, \
                   pt - o0 * sh, pl, xb);                                                       \
            for (int oh = o0; oh < o1; oh++) {                                                  \
                const float *xr = xb + (size_t)(oh - o0) * sh * Wp * LANES;                     \
                float *yr = yb + (size_t)(oh - o0) * WO * LANES;                                \
                int ow = 0;                                                                     \
                const size_t rs = (size_t)Wp * LANES;                                           \
                const int rowk = dh == 1 && dw == 1 && (KW == 3 || KW == 5) && sw <= 2;         \
                /* the compiled rows: OUTS outputs a step; the last step of a row whose width  \
                 * is not a multiple moves back to end at the row's end (recomputing a few:  \
                 * a lone output's taps are one dependent chain of FMAs) */                  \
                for (; rowk && WO >= OUTS && ow < WO; ow += OUTS) {                             \
                    if (ow + OUTS > WO) ow = WO - OUTS;                                         \
                    VEC a[OUTS];                                                                \
                    for (int t = 0; t < OUTS; t++) a[t] = bias;                                 \
                    const float *xo = xr + (size_t)ow * sw * LANES;                             \
                    if (KW == 3 && sw == 1) ROWK(NAME, 3, 1)(xo, wb, KH, rs, a);                \
                    else if (KW == 3) ROWK(NAME, 3, 2)(xo, wb, KH, rs, a);                      \
                    else if (sw == 1) ROWK(NAME, 5, 1)(xo, wb, KH, rs, a);                      \
                    else ROWK(NAME, 5, 2)(xo, wb, KH, rs, a);                                   \
                    vact_n_##LANES##x(a, OUTS, act, aa, ab);                                    \
                    for (int t = 0; t < OUTS; t++)                                              \
                        P##_storeu_ps(yr + (size_t)(ow + t) * LANES, a[t]);                     \
                }                                                                               \
                /* other kernels (and rows narrower than OUTS): four outputs a step, the     \
                 * same way */                                                                 \
                for (; (!rowk || WO < OUTS) && WO >= 4 && ow < WO; ow += 4) {                  \
                    if (ow + 4 > WO) ow = WO - 4;                                               \
                    VEC a0 = bias, a1 = bias, a2 = bias, a3 = bias;                             \
                    for (int i = 0; i < KH; i++) {                                              \
                        const float *xi = xr + ((size_t)i * dh * Wp + (size_t)ow * sw) * LANES; \
                        const float *wi = wb + (size_t)i * KW * LANES;                          \
                        for (int j = 0; j < KW; j++) {                                          \
                            const VEC wv = P##_loadu_ps(wi + j * LANES);                        \
                            const float *xj = xi + (size_t)j * dw * LANES;                      \
                            a0 = P##_fmadd_ps(wv, P##_loadu_ps(xj), a0);                        \
                            a1 = P##_fmadd_ps(wv, P##_loadu_ps(xj + sw * LANES), a1);           \
                            a2 = P##_fmadd_ps(wv, P##_loadu_ps(xj + 2 * sw * LANES), a2);       \
                            a3 = P##_fmadd_ps(wv, P##_loadu_ps(xj + 3 * sw * LANES), a3);       \
                        }                                                                       \
                    }                                                                           \
                    VEC a4[4] = {a0, a1, a2, a3};                                               \
                    vact_n_##LANES##x(a4, 4, act, aa, ab);                                      \
                    for (int t = 0; t < 4; t++)                                                 \
                        P##_storeu_ps(yr + (size_t)(ow + t) * LANES, a4[t]);                    \
                }                                                                               \
                for (; ow < WO; ow++) {                                                         \
                    VEC a0 = bias;                                                              \
                    for (int i = 0; i < KH; i++)                                                \
                        for (int j = 0; j < KW; j++)                                            \
                            a0 = P##_fmadd_ps(                                                  \
                                P##_loadu_ps(wb + (size_t)(i * KW + j) * LANES),                \
                                P##_loadu_ps(xr + ((size_t)i * dh * Wp + (size_t)ow * sw +      \
                                                   (size_t)j * dw) * LANES),                    \
                                a0);                                                            \
                    P##_storeu_ps(yr + (size_t)ow * LANES, vact_##LANES##x(a0, act, aa, ab));   \
                }                                                                               \
            }                                                                                   \
            UNPACKOUT(yb, nc, (o1 - o0) * WO, (size_t)HO * WO,                                 \
                      y + (size_t)c0 * HO * WO + (size_t)o0 * WO);                              \
            }                                                                                   \
        }                                                                                       \
    }

#define vact_16x vact_512
#define vact_8x vact_256
#define vact_n_16x vact_n_512
#define vact_n_8x vact_n_256

/* AVX2: the block's padded planes interleaved by one masked gather of the nc channels per input
 * position, and back by one gather of 8 positions of a channel (stride 8 in yb) */
__attribute__((target("avx2,fma"))) static void pack_in256(const float *xc, int nc, int H, int W,
                                                            int Hp, int Wp, int pt, int pl,
                                                            float *xb) {
    int ci[8];
    for (int c = 0; c < 8; c++) ci[c] = c < nc ? c * H * W : 0;
    const __m256i idx = _mm256_loadu_si256((const __m256i *)ci);
    const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(nc),
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int r = 0; r < Hp; r++) {
        const int ih = r - pt;
        float *d = xb + (size_t)r * Wp * 8;
        for (int q = 0; q < Wp; q++) {
            const int iw = q - pl;
            _mm256_storeu_ps(d + (size_t)q * 8,
                             ih >= 0 && ih < H && iw >= 0 && iw < W
                                 ? _mm256_mask_i32gather_ps(_mm256_setzero_ps(),
                                                            xc + (size_t)ih * W + iw, idx,
                                                            _mm256_castsi256_ps(keep), 4)
                                 : _mm256_setzero_ps());
        }
    }
}

__attribute__((target("avx2,fma"))) static void unpack_out256(const float *yb, int nc, int PO,
                                                               size_t stride, float *y) {
    const __m256i pidx = _mm256_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56);
    for (int c = 0; c < nc; c++) {
        float *yc = y + (size_t)c * stride;
        const float *src = yb + c;
        int p = 0;
        for (; p + 8 <= PO; p += 8)
            _mm256_storeu_ps(yc + p, _mm256_i32gather_ps(src + (size_t)p * 8, pidx, 4));
        for (; p < PO; p++) yc[p] = src[(size_t)p * 8];
    }
}

/* r[i] lane j <- r[j] lane i: the 16x16 transpose in registers (unpack, then 64-bit unpack,
 * then two rounds of 128-bit lane shuffles) */
__attribute__((target("avx512f"))) static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
#define PD(v) _mm512_castps_pd(v)
#define PS(v) _mm512_castpd_ps(v)
    for (int i = 0; i < 16; i += 4) {
        r[i] = PS(_mm512_unpacklo_pd(PD(t[i]), PD(t[i + 2])));
        r[i + 1] = PS(_mm512_unpackhi_pd(PD(t[i]), PD(t[i + 2])));
        r[i + 2] = PS(_mm512_unpacklo_pd(PD(t[i + 1]), PD(t[i + 3])));
        r[i + 3] = PS(_mm512_unpackhi_pd(PD(t[i + 1]), PD(t[i + 3])));
    }
#undef PD
#undef PS
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}

/* v[0 .. n) to d, d + 16, ...: unrolled where all 16 go (a loop of unknown count over the
 * array became a memcpy from the stack: rep movsq, a tenth of a stride-2 layer's time) */
__attribute__((target("avx512f"), always_inline)) static inline void store16(float *d,
                                                                            const __m512 *v,
                                                                            int n) {
    if (n == 16) {
        _Pragma("GCC unroll 16") for (int q = 0; q < 16; q++)
            _mm512_storeu_ps(d + (size_t)q * 16, v[q]);
        return;
    }
    for (int q = 0; q < n; q++) _mm512_storeu_ps(d + (size_t)q * 16, v[q]);
}

/* AVX-512: the band's rows of the 16 channels, as one flat run of positions per channel (the
 * rows of a plane are contiguous), transposed 16 positions at a time in registers, each
 * position's vector stored straight to its place in the padded layout; the padding zeroed
 * apart. Transposing the padded rows instead spent a whole transpose on each row's last few
 * columns (18-wide rows: 2 of 16); the transposes and the gathers before them took half the
 * time of a 5x5 layer at 14x14. */
__attribute__((target("avx512f"))) static void pack_flat512(const float *xc, int nc, int H,
                                                             int W, int Hp, int Wp, int pt,
                                                             int pl, float *xb) {
    int i0 = -pt, i1 = Hp - pt; /* the band's image rows */
    if (i0 < 0) i0 = 0;
    if (i1 > H) i1 = H;
    /* columns q of a padded row read image column q - pl: those in [q0, q1) */
    int q0 = pl, q1 = pl + W;
    if (q0 < 0) q0 = 0;
    if (q1 > Wp) q1 = Wp;
    if (q1 < q0) q1 = q0;
    const __m512 zero = _mm512_setzero_ps();
    for (int r = 0; r < Hp; r++) { /* the padding */
        const int ih = r - pt;
        float *d = xb + (size_t)r * Wp * 16;
        if (ih < i0 || ih >= i1) {
            for (int q = 0; q < Wp; q++) _mm512_storeu_ps(d + (size_t)q * 16, zero);
            continue;
        }
        for (int q = 0; q < q0; q++) _mm512_storeu_ps(d + (size_t)q * 16, zero);
        for (int q = q1; q < Wp; q++) _mm512_storeu_ps(d + (size_t)q * 16, zero);
    }
    const int P = i1 > i0 ? (i1 - i0) * W : 0;
    const float *src = xc + (size_t)i0 * W;
    int ih = i0, iw = 0; /* of position p0 */
    for (int p0 = 0; p0 < P; p0 += 16) {
        const int n = P - p0 < 16 ? P - p0 : 16;
        const __mmask16 m = (__mmask16)((1u << n) - 1);
        __m512 v[16];
        for (int c = 0; c < 16; c++)
            v[c] = c < nc ? _mm512_maskz_loadu_ps(m, src + (size_t)c * H * W + p0)
                          : _mm512_setzero_ps();
        transpose16(v);
        for (int q = 0; q < n; q++) {
            const int col = iw + pl;
            if (col >= 0 && col < Wp)
                _mm512_storeu_ps(xb + ((size_t)(ih + pt) * Wp + col) * 16, v[q]);
            if (++iw == W) {
                iw = 0;
                ih++;
            }
        }
    }
}

/* The padded rows transposed as they are, 16 columns at a time (masked loads: the padding
 * and the channels past nc read as zeros): no copy, where a row is (nearly) whole vectors */
__attribute__((target("avx512f"))) static void pack_rows512(const float *xc, int nc, int H,
                                                             int W, int Hp, int Wp, int pt,
                                                             int pl, float *xb) {
    for (int r = 0; r < Hp; r++) {
        const int ih = r - pt;
        float *d = xb + (size_t)r * Wp * 16;
        if (ih < 0 || ih >= H) {
            memset(d, 0, sizeof(float) * (size_t)Wp * 16);
            continue;
        }
        for (int q0 = 0; q0 < Wp; q0 += 16) {
            const int iw0 = q0 - pl, n = Wp - q0 < 16 ? Wp - q0 : 16;
            int lo = -iw0, hi = W - iw0;
            if (lo < 0) lo = 0;
            if (hi > n) hi = n;
            const __mmask16 m =
                hi <= lo ? 0 : (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
            __m512 v[16];
            for (int c = 0; c < 16; c++)
                v[c] = c < nc ? _mm512_maskz_loadu_ps(m, xc + (size_t)c * H * W +
                                                             (ptrdiff_t)ih * W + iw0)
                              : _mm512_setzero_ps();
            transpose16(v);
            store16(d + (size_t)q0 * 16, v, n);
        }
    }
}

/* Wide rows (over 64 columns) go as they are: their transposes are nearly full, and flat
 * placement stores each position alone (Zen 5, rows / flat: 16 channels at 112x112 0.90x, 32
 * stride 2 0.77x); narrower ones flat (a 16-wide row alike: 256 channels 3x3 at 14x14, flat /
 * rows 0.86x). */
__attribute__((target("avx512f"))) static void pack_in512(const float *xc, int nc, int H, int W,
                                                           int Hp, int Wp, int pt, int pl,
                                                           float *xb) {
    if (Wp > 64)
        pack_rows512(xc, nc, H, W, Hp, Wp, pt, pl, xb);
    else
        pack_flat512(xc, nc, H, W, Hp, Wp, pt, pl, xb);
}

__attribute__((target("avx512f"))) static void unpack_out512(const float *yb, int nc, int PO,
                                                              size_t stride, float *y) {
    for (int p0 = 0; p0 < PO; p0 += 16) {
        const int n = PO - p0 < 16 ? PO - p0 : 16;
        __m512 v[16];
        for (int q = 0; q < 16; q++)
            v[q] = q < n ? _mm512_loadu_ps(yb + (size_t)(p0 + q) * 16) : _mm512_setzero_ps();
        transpose16(v);
        const __mmask16 m = (__mmask16)((1u << n) - 1);
        for (int c = 0; c < nc; c++) _mm512_mask_storeu_ps(y + (size_t)c * stride + p0, m, v[c]);
    }
}

DEFINE_ROWKS(cblock512, "avx512f", _mm512, __m512, 16, 8)
DEFINE_ROWKS(cblock256, "avx2,fma", _mm256, __m256, 8, 4)
DEFINE_CBLOCK(cblock512, "avx512f", _mm512, __m512, 16, 8, pack_in512, unpack_out512)
DEFINE_CBLOCK(cblock256, "avx2,fma", _mm256, __m256, 8, 4, pack_in256, unpack_out256)
#endif

/* Direct NCHW depthwise conv on AVX-512, for wide maps: 16 neighbouring outputs of a row in the
 * lanes and DWR_ROWS output rows at a time, each tap's 16 inputs read straight from the
 * input row by a masked load (stride 1: the padding columns and the row's ends are masked
 * lanes, read as zeros) or, at stride 2, by two masked loads of 32 neighbouring inputs whose
 * even lanes one permute gathers (the odd lanes are the next tap's). No copy of the input,
 * no transposes: the channel blocks pay two 16x16 transposes per 16 positions, and the planes
 * a padded copy, a pass of sums and a pass for the activation; here every input is loaded
 * (K + (R-1) S) / R times per output row instead and the sums, bias and activation stay in
 * registers until the one masked store. The DWR_ROWS = 8 rows give eight independent FMA
 * chains (the latency of four cycles at two FMAs a cycle); their input rows outside the image
 * are skipped, so a tile past the last output row costs only its FMAs. This is how
 * XNNPACK's and ncnn's NCHW depthwise micro-kernels read their input (one output row, one
 * vector of columns); the row blocking and the even-lane permute for stride 2 are ours. */
#define DWR_ROWS 8
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
/* 32-bit mask of the positions base, base + 1, ..., base + 31 that lie in [0, W) */
static inline unsigned long long dwr_mask(int base, int W) {
    int lo = -base, hi = W - base;
    if (lo < 0) lo = 0;
    if (hi > 32) hi = 32;
    if (hi <= lo) return 0;
    return ((1ull << hi) - 1) & ~((1ull << lo) - 1);
}

__attribute__((target("avx512f"), always_inline)) static inline void dwr_plane(
    const float *xc, const float *wc, float bias, float *yc, int H, int W, int HO, int WO,
    int pt, int pl, int act, float aa, float ab, const float *zeros, const int K, const int S) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                           28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    __m512 wv[K * K]; /* 3x3: in registers (a broadcast per FMA made the loads the bound) */
    for (int t = 0; t < K * K; t++) wv[t] = _mm512_set1_ps(wc[t]);
    for (int oh0 = 0; oh0 < HO; oh0 += DWR_ROWS) {
        /* the tile's input rows; those outside the image read a row of zeros, so that the
         * loop below has no branch (a skipped row per test spilled the sums to the stack) */
        const float *rows[(DWR_ROWS - 1) * S + K];
        for (int ii = 0; ii < (DWR_ROWS - 1) * S + K; ii++) {
            const int ih = oh0 * S - pt + ii;
            rows[ii] = ih >= 0 && ih < H ? xc + (size_t)ih * W : zeros;
        }
        for (int ow0 = 0; ow0 < WO; ow0 += 16) {
            /* tap j reads input columns ow0 S - pl + j + S t, t < 16 */
            const int base = ow0 * S - pl;
            __mmask16 m[8], mh[8]; /* stride 1: tap j; stride 2: the pair at base + 2 k */
            for (int k = 0; k < (S == 1 ? K : (K + 1) / 2); k++) {
                const unsigned long long mk = dwr_mask(base + (S == 1 ? k : 2 * k), W);
                m[k] = (__mmask16)mk;
                mh[k] = (__mmask16)(mk >> 16);
            }
            __m512 acc[DWR_ROWS];
            _Pragma("GCC unroll 8") for (int r = 0; r < DWR_ROWS; r++) acc[r] = _mm512_set1_ps(bias);
            _Pragma("GCC unroll 32") for (int ii = 0; ii < (DWR_ROWS - 1) * S + K; ii++) {
                const float *xr = rows[ii] + base;
                __m512 v[8];
                if (S == 1) {
                    _Pragma("GCC unroll 8") for (int j = 0; j < K; j++)
                        v[j] = _mm512_maskz_loadu_ps(m[j], xr + j);
                } else {
                    _Pragma("GCC unroll 8") for (int k = 0; k < (K + 1) / 2; k++) {
                        const __m512 lo = _mm512_maskz_loadu_ps(m[k], xr + 2 * k);
                        const __m512 hi = _mm512_maskz_loadu_ps(mh[k], xr + 2 * k + 16);
                        v[2 * k] = _mm512_permutex2var_ps(lo, even, hi);
                        if (2 * k + 1 < K) v[2 * k + 1] = _mm512_permutex2var_ps(lo, odd, hi);
                    }
                }
                _Pragma("GCC unroll 8") for (int r = 0; r < DWR_ROWS; r++) {
                    const int i = ii - r * S; /* the kernel row output row oh0 + r takes */
                    if (i < 0 || i >= K) continue; /* known when compiled */
                    _Pragma("GCC unroll 8") for (int j = 0; j < K; j++)
                        acc[r] = _mm512_fmadd_ps(wv[i * K + j], v[j], acc[r]);
                }
            }
            const int n = WO - ow0 < 16 ? WO - ow0 : 16;
            const __mmask16 keep = (__mmask16)((1u << n) - 1);
            vact_n_512(acc, DWR_ROWS, act, aa, ab);
            _Pragma("GCC unroll 8") for (int r = 0; r < DWR_ROWS; r++)
                if (oh0 + r < HO)
                    _mm512_mask_storeu_ps(yc + (size_t)(oh0 + r) * WO + ow0, keep, acc[r]);
        }
    }
}

#define DWR_DEFINE(K, S)                                                                        \
    __attribute__((target("avx512f"))) static void dwr_##K##_##S(                              \
        const float *x, const float *w, const float *b, float *y, int NC, int C, int H, int W,  \
        int HO, int WO, int pt, int pl, int act, float aa, float ab, const float *zeros) {      \
        for (int p = 0; p < NC; p++) {                                                          \
            const int c = p % C;                                                                \
            dwr_plane(x + (size_t)p * H * W, w + (size_t)c * K * K, b ? b[c] : 0.f,             \
                      y + (size_t)p * HO * WO, H, W, HO, WO, pt, pl, act, aa, ab, zeros, K, S); \
        }                                                                                       \
    }
DWR_DEFINE(3, 1)
DWR_DEFINE(3, 2)
DWR_DEFINE(5, 1)
DWR_DEFINE(5, 2)
DWR_DEFINE(7, 1)
DWR_DEFINE(7, 2)
#endif

int s_dw_rows_applies(int KH, int KW, int sh, int sw, int dh, int dw) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    return s_simd_level() >= 2 && KH == KW && (KH == 3 || KH == 5 || KH == 7) && sh == sw &&
           (sh == 1 || sh == 2) && dh == 1 && dw == 1;
#else
    (void)KH; (void)KW; (void)sh; (void)sw; (void)dh; (void)dw;
    return 0;
#endif
}

int s_dw_rows(const float *x, const float *w, const float *b, float *y, int N, int C, int H,
              int W, int KH, int KW, int HO, int WO, int sh, int sw, int pt, int pl, int dh,
              int dw, int act, float aa, float ab) {
    if (!s_dw_rows_applies(KH, KW, sh, sw, dh, dw)) return 0;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    const int NC = N * C;
    float *zeros = calloc((size_t)W, sizeof(float)); /* the rows above and below the image */
    if (zeros == NULL) return 0;
#define DWR_CALL(K, S)                                                                          \
    if (KH == K && sh == S) dwr_##K##_##S(x, w, b, y, NC, C, H, W, HO, WO, pt, pl, act, aa, ab, zeros);
    DWR_CALL(3, 1) DWR_CALL(3, 2) DWR_CALL(5, 1) DWR_CALL(5, 2) DWR_CALL(7, 1) DWR_CALL(7, 2)
#undef DWR_CALL
    free(zeros);
    return 1;
#endif
    (void)x; (void)w; (void)b; (void)y; (void)N; (void)C; (void)H; (void)W; (void)HO; (void)WO;
    (void)pt; (void)pl; (void)act; (void)aa; (void)ab;
    return 0;
}

int s_dw_cblock(const float *x, const float *w, const float *b, float *y, int N, int C, int H,
                int W, int KH, int KW, int HO, int WO, int sh, int sw, int pt, int pl, int dh,
                int dw, int act, float aa, float ab, float *ws) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    const int level = s_simd_level();
    if (level < 1) return 0;
    for (int n = 0; n < N; n++) {
        const float *xn = x + (size_t)n * C * H * W;
        float *yn = y + (size_t)n * C * HO * WO;
        if (level >= 2)
            cblock512(xn, w, b, yn, C, H, W, KH, KW, HO, WO, sh, sw, pt, pl, dh, dw, act, aa, ab,
                      ws);
        else
            cblock256(xn, w, b, yn, C, H, W, KH, KW, HO, WO, sh, sw, pt, pl, dh, dw, act, aa, ab,
                      ws);
    }
    return 1;
#else
    (void)x; (void)w; (void)b; (void)y; (void)N; (void)C; (void)H; (void)W; (void)KH; (void)KW;
    (void)HO; (void)WO; (void)sh; (void)sw; (void)pt; (void)pl; (void)dh; (void)dw; (void)act;
    (void)aa; (void)ab; (void)ws;
    return 0;
#endif
}

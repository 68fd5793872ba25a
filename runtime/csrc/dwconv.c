/* Depthwise 2-D convolution with the channels in the vector lanes, for small maps.
 *
 * ckernels.c's depthwise_planes works on one channel's plane at a time: long contiguous loops
 * on big maps, but on 14x14 and 7x7 maps (the late stages of MobileNet / PP-LCNet, 5x5 and
 * strided) its per-row loops are a few vectors long and their set-up costs more than the
 * arithmetic (256 channels, 5x5, stride 2, 14x14 -> 7x7: 8x onnxruntime's time). Here a block
 * of LANES channels is transposed into an interleaved buffer xb[(r * Wp + q) * LANES + c] (the
 * padded input, zeros outside), and every output is LANES channels at once: one FMA per tap,
 * the weights of a tap one vector wb[tap * LANES + c], four output columns per pass so that
 * each weight vector loaded serves four FMAs; bias and activation (vact.h) on the registers;
 * the block's outputs transposed back. This is onnxruntime's / XNNPACK's NCHWc way of running
 * depthwise convs, done inside one op on an NCHW tensor.
 *
 * ws: s_dw_cblock_floats(...) floats. */
#include <string.h>

#include "qgemm.h"
#include "vact.h"

size_t s_dw_cblock_floats(int KH, int KW, int HO, int WO, int sh, int sw, int dh, int dw) {
    const size_t Hp = (size_t)(HO - 1) * sh + (size_t)(KH - 1) * dh + 1;
    const size_t Wp = (size_t)(WO - 1) * sw + (size_t)(KW - 1) * dw + 1;
    return 16 * (Hp * Wp + (size_t)KH * KW + (size_t)HO * WO);
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define DEFINE_CBLOCK(NAME, TARGET, P, VEC, LANES, BITS, IVEC, MASK, MASKOF, GATHER)                                                \
    __attribute__((target(TARGET))) static void NAME(                                           \
        const float *x, const float *w, const float *b, float *y, int C, int H, int W, int KH,  \
        int KW, int HO, int WO, int sh, int sw, int pt, int pl, int dh, int dw, int act,        \
        float aa, float ab, float *ws) {                                                        \
        const int Hp = (HO - 1) * sh + (KH - 1) * dh + 1, Wp = (WO - 1) * sw + (KW - 1) * dw + 1; \
        float *xb = ws, *wb = ws + (size_t)16 * Hp * Wp, *yb = wb + (size_t)16 * KH * KW;        \
        for (int c0 = 0; c0 < C; c0 += LANES) {                                                 \
            const int nc = C - c0 < LANES ? C - c0 : LANES;                                     \
            /* the block's padded planes, interleaved: one gather of the LANES channels per  \
             * input position (lanes past nc read nothing: masked) */                         \
            int ci[LANES];                                                                      \
            for (int c = 0; c < LANES; c++) ci[c] = c < nc ? c * H * W : 0;                     \
            const IVEC idx = P##_loadu_si##BITS((const void *)ci);                              \
            const MASK keep = MASKOF(nc);                                                       \
            const float *xc = x + (size_t)c0 * H * W;                                           \
            for (int r = 0; r < Hp; r++) {                                                      \
                const int ih = r - pt;                                                          \
                float *d = xb + (size_t)r * Wp * LANES;                                         \
                for (int q = 0; q < Wp; q++) {                                                  \
                    const int iw = q - pl;                                                      \
                    P##_storeu_ps(d + (size_t)q * LANES,                                        \
                                  ih >= 0 && ih < H && iw >= 0 && iw < W                        \
                                      ? GATHER(xc + (size_t)ih * W + iw, idx, keep)             \
                                      : P##_setzero_ps());                                      \
                }                                                                               \
            }                                                                                   \
            for (int t = 0; t < KH * KW; t++)                                                   \
                for (int c = 0; c < LANES; c++)                                                 \
                    wb[t * LANES + c] = c < nc ? w[(size_t)(c0 + c) * KH * KW + t] : 0.f;       \
            float bl[LANES];                                                                    \
            for (int c = 0; c < LANES; c++) bl[c] = b && c < nc ? b[c0 + c] : 0.f;              \
            const VEC bias = P##_loadu_ps(bl);                                                  \
            for (int oh = 0; oh < HO; oh++) {                                                   \
                const float *xr = xb + (size_t)oh * sh * Wp * LANES;                            \
                float *yr = yb + (size_t)oh * WO * LANES;                                       \
                int ow = 0;                                                                     \
                for (; ow + 4 <= WO; ow += 4) {                                                 \
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
                    P##_storeu_ps(yr + (size_t)ow * LANES, vact_##LANES##x(a0, act, aa, ab));   \
                    P##_storeu_ps(yr + (size_t)(ow + 1) * LANES, vact_##LANES##x(a1, act, aa, ab)); \
                    P##_storeu_ps(yr + (size_t)(ow + 2) * LANES, vact_##LANES##x(a2, act, aa, ab)); \
                    P##_storeu_ps(yr + (size_t)(ow + 3) * LANES, vact_##LANES##x(a3, act, aa, ab)); \
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
            /* back to planes: LANES outputs of a channel a gather (stride LANES in yb) */      \
            int pi[LANES];                                                                      \
            for (int c = 0; c < LANES; c++) pi[c] = c * LANES;                                  \
            const IVEC pidx = P##_loadu_si##BITS((const void *)pi);                             \
            const int PO = HO * WO;                                                             \
            for (int c = 0; c < nc; c++) {                                                      \
                float *restrict yc = y + (size_t)(c0 + c) * PO;                                 \
                const float *src = yb + c;                                                      \
                int p = 0;                                                                      \
                for (; p + LANES <= PO; p += LANES)                                             \
                    P##_storeu_ps(yc + p, GATHER(src + (size_t)p * LANES, pidx, MASKOF(LANES))); \
                for (; p < PO; p++) yc[p] = src[(size_t)p * LANES];                             \
            }                                                                                   \
        }                                                                                       \
    }

#define vact_16x vact_512
#define vact_8x vact_256
/* lanes < n set, and the masked gathers (masked-off lanes 0) */
#define MASK512(n) ((__mmask16)((1u << (n)) - 1))
#define MASK256(n) _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define GATHER512(base, idx, m) _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, base, 4)
#define GATHER256(base, idx, m)                                                                 \
    _mm256_mask_i32gather_ps(_mm256_setzero_ps(), base, idx, _mm256_castsi256_ps(m), 4)
DEFINE_CBLOCK(cblock512, "avx512f", _mm512, __m512, 16, 512, __m512i, __mmask16, MASK512,
              GATHER512)
DEFINE_CBLOCK(cblock256, "avx2,fma", _mm256, __m256, 8, 256, __m256i, __m256i, MASK256,
              GATHER256)
#endif

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

/* The activations of qgemm.h's activate() on whole vectors (AVX-512F, AVX2 + FMA), for the
 * float32 micro-kernels' epilogues (sgemm.c applies them to the registers before the store)
 * and for activate_span (activate.c), which every other kernel runs over its output rows.
 *
 * Why: the scalar activate() in a loop does not vectorise (its switch, expf, tanhf), and it
 * ran at 5-7 ns per value on AMD Zen 5 after the AVX-512 micro-kernels -- a 16 -> 32 1x1 conv
 * at 112x112 with HardSwish took 2.9 ms against 0.09 ms with ReLU, and PP-LCNet-style mobile
 * nets (HardSwish after every conv) ran at 4x onnxruntime's time.
 *
 * exp is Cephes' expf (S. L. Moshier): x = n ln 2 + r, |r| <= ln2 / 2, a degree-5 polynomial
 * for e^r, times 2^n; relative error under 2 ulp over the float range; overflow gives inf,
 * underflow 0, NaN stays NaN. Sigmoid is 1 / (1 + e^-v) (a division: exact rounding), SiLU
 * v / (1 + e^-v), Tanh Cephes' tanhf: the odd polynomial for |v| < 0.625, else
 * 1 - 2 / (e^(2|v|) + 1) with v's sign. Every comparison is written so that a NaN input
 * gives NaN (min/max return their second operand when one is NaN). */
#ifndef OPTC_VACT_H
#define OPTC_VACT_H

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>

#define VACT_DEFINE(P, VEC, TARGET, SUFFIX, BLEND_LT, ABS, ORSIGN)                                           \
    __attribute__((target(TARGET))) static inline VEC vexp_##SUFFIX(VEC x) {                  \
        /* past +-88.7 the result is inf / 0 (clamped so that 2^n stays in the exponent) */    \
        const VEC hi = P##_set1_ps(88.7228391f), lo = P##_set1_ps(-103.972084f);               \
        VEC xc = P##_min_ps(hi, P##_max_ps(lo, x)); /* NaN kept */                             \
        const VEC n = P##_roundscale_or_round(P##_mul_ps(xc, P##_set1_ps(1.44269504088896341f))); \
        VEC r = P##_fnmadd_ps(n, P##_set1_ps(0.693359375f), xc);                               \
        r = P##_fnmadd_ps(n, P##_set1_ps(-2.12194440e-4f), r);                                 \
        VEC p = P##_set1_ps(1.9875691500e-4f);                                                 \
        p = P##_fmadd_ps(p, r, P##_set1_ps(1.3981999507e-3f));                                 \
        p = P##_fmadd_ps(p, r, P##_set1_ps(8.3334519073e-3f));                                 \
        p = P##_fmadd_ps(p, r, P##_set1_ps(4.1665795894e-2f));                                 \
        p = P##_fmadd_ps(p, r, P##_set1_ps(1.6666665459e-1f));                                 \
        p = P##_fmadd_ps(p, r, P##_set1_ps(5.0000001201e-1f));                                 \
        p = P##_fmadd_ps(p, P##_mul_ps(r, r), P##_add_ps(r, P##_set1_ps(1.f)));               \
        /* 2^n in two halves: n reaches -150 (subnormal results), one factor cannot */        \
        return P##_scale2(p, n);                                                               \
    }                                                                                          \
    __attribute__((target(TARGET))) static inline VEC vtanh_##SUFFIX(VEC v) {                 \
        const VEC av = ABS(v);                                                                 \
        const VEC z = P##_mul_ps(v, v);                                                        \
        VEC s = P##_set1_ps(-5.70498872745e-3f);                                               \
        s = P##_fmadd_ps(s, z, P##_set1_ps(2.06390887954e-2f));                                \
        s = P##_fmadd_ps(s, z, P##_set1_ps(-5.37397155531e-2f));                               \
        s = P##_fmadd_ps(s, z, P##_set1_ps(1.33314422036e-1f));                                \
        s = P##_fmadd_ps(s, z, P##_set1_ps(-3.33332819422e-1f));                               \
        s = P##_fmadd_ps(P##_mul_ps(s, z), v, v);                                              \
        const VEC e = vexp_##SUFFIX(P##_add_ps(av, av));                                       \
        VEC l = P##_sub_ps(P##_set1_ps(1.f),                                                   \
                           P##_div_ps(P##_set1_ps(2.f), P##_add_ps(e, P##_set1_ps(1.f))));    \
        l = ORSIGN(l, v); /* l >= 0: v's sign */                                               \
        return BLEND_LT(av, P##_set1_ps(0.625f), s, l); /* av < 0.625 ? s : l (NaN: l) */    \
    }                                                                                          \
    /* activate(v, act, a, b) lane by lane; the switch is on a value fixed per call */          \
    __attribute__((target(TARGET))) static inline VEC vact_##SUFFIX(VEC v, int act, float a,  \
                                                                    float b) {                 \
        const VEC zero = P##_setzero_ps(), one = P##_set1_ps(1.f);                             \
        switch (act) {                                                                         \
        case 1: return P##_max_ps(zero, v);                                                    \
        case 2: return P##_min_ps(P##_set1_ps(b), P##_max_ps(P##_set1_ps(a), v));              \
        case 3: return BLEND_LT(v, zero, P##_mul_ps(v, P##_set1_ps(a)), v);                   \
        case 4: return P##_div_ps(one, P##_add_ps(one, vexp_##SUFFIX(P##_sub_ps(zero, v))));   \
        case 5: return P##_min_ps(one, P##_max_ps(zero, P##_fmadd_ps(v, P##_set1_ps(a),        \
                                                                     P##_set1_ps(b))));        \
        case 6: return P##_mul_ps(v, P##_min_ps(one, P##_max_ps(zero, P##_fmadd_ps(            \
                                          v, P##_set1_ps(1.f / 6.f), P##_set1_ps(0.5f)))));    \
        case 7: return vtanh_##SUFFIX(v);                                                      \
        case 8: return P##_div_ps(v, P##_add_ps(one, vexp_##SUFFIX(P##_sub_ps(zero, v))));     \
        default: return v;                                                                     \
        }                                                                                      \
    }                                                                                          \
    /* v[i] = vact(v[i], act, a, b) for i < n under one switch: inlined into a micro-kernel's  \
     * epilogue, a switch per vector was left inside the loop (a third of a depthwise layer's \
     * time went to it and to the spills around it) */                                         \
    __attribute__((target(TARGET), always_inline)) static inline void vact_n_##SUFFIX(         \
        VEC *v, int n, int act, float a, float b) {                                            \
        switch (act) {                                                                         \
        case 1: for (int i = 0; i < n; i++) v[i] = vact_##SUFFIX(v[i], 1, a, b); break;       \
        case 2: for (int i = 0; i < n; i++) v[i] = vact_##SUFFIX(v[i], 2, a, b); break;       \
        case 3: for (int i = 0; i < n; i++) v[i] = vact_##SUFFIX(v[i], 3, a, b); break;       \
        case 4: for (int i = 0; i < n; i++) v[i] = vact_##SUFFIX(v[i], 4, a, b); break;       \
        case 5: for (int i = 0; i < n; i++) v[i] = vact_##SUFFIX(v[i], 5, a, b); break;       \
        case 6: for (int i = 0; i < n; i++) v[i] = vact_##SUFFIX(v[i], 6, a, b); break;       \
        case 7: for (int i = 0; i < n; i++) v[i] = vact_##SUFFIX(v[i], 7, a, b); break;       \
        case 8: for (int i = 0; i < n; i++) v[i] = vact_##SUFFIX(v[i], 8, a, b); break;       \
        default: break;                                                                        \
        }                                                                                      \
    }

/* round to nearest, 2^n scaling and a < b ? x : y (y where either is NaN), per ISA */
#define _mm512_roundscale_or_round(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT)
#define _mm256_roundscale_or_round(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define _mm512_scale2(p, n)                                                                    \
    _mm512_scalef_ps(p, n) /* scalef: exact 2^n scaling, subnormals and inf included */
#define _mm256_scale2(p, n) vscale2_256(p, n)
#define VACT_BLEND512(a, b, x, y) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), y, x)
#define VACT_BLEND256(a, b, x, y) _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ))

/* p * 2^n for integral n in [-150, 128] (AVX2 has no scalef): two factors 2^(n/2) and
 * 2^(n - n/2), each built in the exponent field, so that subnormal results stay exact */
__attribute__((target("avx2,fma"))) static inline __m256 vscale2_256(__m256 p, __m256 n) {
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i h = _mm256_srai_epi32(ni, 1), k = _mm256_sub_epi32(ni, h);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, bias), 23));
    const __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, f1), f2);
}

/* |v|, and l with the sign bit of v or-ed in (AVX-512F has no float and/or: DQ does) */
#define VACT_ABS512(v) _mm512_abs_ps(v)
#define VACT_ORSIGN512(l, v)                                                                   \
    _mm512_castsi512_ps(_mm512_or_si512(                                                       \
        _mm512_castps_si512(l),                                                                \
        _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u))))
#define VACT_ABS256(v) _mm256_andnot_ps(_mm256_set1_ps(-0.f), v)
#define VACT_ORSIGN256(l, v) _mm256_or_ps(l, _mm256_and_ps(_mm256_set1_ps(-0.f), v))

VACT_DEFINE(_mm512, __m512, "avx512f", 512, VACT_BLEND512, VACT_ABS512, VACT_ORSIGN512)
VACT_DEFINE(_mm256, __m256, "avx2,fma", 256, VACT_BLEND256, VACT_ABS256, VACT_ORSIGN256)

#endif
#endif

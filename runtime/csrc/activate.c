/* activate_span: qgemm.h's activate() over n contiguous floats, a vector at a time (vact.h),
 * at the float32 GEMM's SIMD level (s_simd_level: tests cap it to reach every path). The
 * last partial vector goes through a small buffer, so every value, wherever it lies, is
 * computed by the same vector code. */
#include <string.h>

#include "qgemm.h"
#include "vact.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
__attribute__((target("avx512f"))) static void span512(float *p, size_t n, int act, float a,
                                                        float b) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(p + i, vact_512(_mm512_loadu_ps(p + i), act, a, b));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(p + i, m, vact_512(_mm512_maskz_loadu_ps(m, p + i), act, a, b));
    }
}

__attribute__((target("avx2,fma"))) static void span256(float *p, size_t n, int act, float a,
                                                         float b) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(p + i, vact_256(_mm256_loadu_ps(p + i), act, a, b));
    if (i < n) {
        float t[8] = {0};
        memcpy(t, p + i, sizeof(float) * (n - i));
        _mm256_storeu_ps(t, vact_256(_mm256_loadu_ps(t), act, a, b));
        memcpy(p + i, t, sizeof(float) * (n - i));
    }
}
#endif

void activate_span(float *p, size_t n, int act, float a, float b) {
    if (act == 0 || n == 0) return;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    const int level = s_simd_level();
    if (level >= 2) {
        span512(p, n, act, a, b);
        return;
    }
    if (level == 1) {
        span256(p, n, act, a, b);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) p[i] = activate(p[i], act, a, b);
}

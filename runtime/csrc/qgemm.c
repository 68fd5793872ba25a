/* int8 convolution for optc.runtime's QLinearConv: im2col packing of uint8 activations and a
 * uint8 x int8 -> int32 GEMM with fixed-point requantization fused into its store.
 *
 * Packed activations (one image, one group, a block of output pixels small enough to stay in
 * cache while every filter row passes over it): word (kq, p) holds taps k = 4 kq .. 4 kq + 3
 * at output pixel p of the block, taps ordered (kernel row i, kernel column j, channel c)
 * with the channels padded to a multiple of 4 (k = ((i * kw + j) * Cq + c / 4) * 4 + c % 4).
 * Packed weights: wp[(m * Kq + kq) * 4 + r] in the same tap order, zero for the padding
 * channels, rows padded to a multiple of 4 with zeros. The four taps of a quad sit in one
 * 32-bit lane, the layout of AVX-512 VNNI's vpdpbusd (four u8 x s8 products summed into an
 * int32 lane, exact), which runs where the CPU has it, on row-major blocks (word (kq, p) at
 * kq * Pp + p, Pp a multiple of 32), as does the portable C loop (the reference the tests
 * compare with). The AVX2 GEMM reads blocks packed in tiles of 8 pixels (im2col_tiles) and
 * the filters in panels of QMR rows made once per plan: int8 quads for vpmaddubsw where no
 * pair of taps can saturate its 16-bit sum (7-bit weights), else quads widened to int16 for
 * vpmaddwd; both exact.
 *
 * Requantization (as optc/runtime/kernels/qlinear.py, gemmlowp/TFLite style): acc + corr[m]
 * clamped to int32, times the Q31 multiplier m0[m] in 64 bits, a rounding right shift by
 * shift[m] (half away from zero), plus the output zero point, saturated to 8 bits.
 */
#define _GNU_SOURCE /* sysconf's cache sizes */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qgemm.h"

#if defined(__unix__) || defined(__APPLE__)
#define OPTC_THREADS 1
#include <pthread.h>
#endif

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define OPTC_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif
#if defined(OPTC_X86) && defined(__linux__) && defined(__x86_64__)
#define OPTC_AMX 1 /* Linux hands out the AMX tile state on request (arch_prctl) */
#include <sys/syscall.h>
#endif

/* what the CPU has: 0 portable C, 1 AVX2, 2 AVX-512 VNNI, 3 AMX-INT8 (with AVX-512 VNNI) */
static int simd_level = -1;
static int simd_max = 3; /* the highest level allowed (tests lower it) */

/* packed activations per GEMM pass (q_conv): half the L2 cache the CPU reports, where every
 * filter row passes over the block (256 KB where the size is unknown; 0 until first asked).
 * Read from the CPU rather than fixed: a block smaller than the cache allows cuts a layer
 * into more passes, each streaming all the filters again. */
static size_t block_bytes = 0;

static size_t default_block_bytes(void) {
#ifdef _SC_LEVEL2_CACHE_SIZE
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (l2 >= 128 * 1024 && l2 <= 64 * 1024 * 1024) return (size_t)l2 / 2;
#endif
    return 256 * 1024;
}
#define VNNI_ROWS 8 /* rows of the VNNI GEMM's accumulator rows (q_gemm's acc) */

size_t q_block_bytes(size_t bytes) {
    if (bytes > 0) block_bytes = bytes;
    if (block_bytes == 0) block_bytes = default_block_bytes();
    return block_bytes;
}

int x86_amx_usable(int bit) {
#ifdef OPTC_AMX
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d >> 24 & 1) || !(d >> bit & 1)) return 0;
    /* the kernel's permission for this process to use the tile data state
     * (XFEATURE_XTILEDATA, 18; Linux 5.16 and later: ARCH_REQ_XCOMP_PERM, 0x1023), which
     * every thread of it then has; asking again is harmless */
    return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
    (void)bit;
    return 0;
#endif
}

#ifdef OPTC_AMX
/* the AMX tile configuration (palette 1: a 64-byte block) */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_config;

__attribute__((target("amx-tile"))) void x86_amx_tiles(void) {
    amx_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    /* the whole block as the operand: GCC 12's _tile_loadconfig names only its first 8
     * bytes, so at -O3 the other stores were dropped (ldtilecfg faulted on garbage) */
    __asm__ volatile("ldtilecfg %0" ::"m"(cfg));
}
#endif

int q_simd_level(void) {
    if (simd_level < 0) {
        simd_level = 0;
#ifdef OPTC_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2")) simd_level = 1;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vnni"))
            simd_level = 2;
        if (simd_level == 2 && x86_amx_usable(25)) simd_level = 3; /* AMX-INT8 */
#endif
    }
    return simd_level < simd_max ? simd_level : simd_max;
}

void q_allow_simd(int level) { simd_max = level < 0 ? 0 : level; }

/* x4[cq][h][w]: channels 4cq..4cq+3 of pixel (h, w) in one 32-bit word (flipped to uint8;
 * channels past cg, which meet zero weights, hold `pad`). On x86, 16 pixels at a time with
 * SSE2 byte and word unpacks (the baseline of every x86-64 CPU), the rest one by one. */
static void interleave(const uint8_t *x, int cg, int H, int W, uint8_t pad, uint8_t flip,
                       uint32_t *x4) {
    const int Cq = (cg + 3) / 4;
    const size_t HW = (size_t)H * W;
    for (int cq = 0; cq < Cq; cq++) {
        uint32_t *dst = x4 + (size_t)cq * HW;
        size_t v = 0;
#ifdef OPTC_X86
        const __m128i vflip = _mm_set1_epi8((char)flip), vpad = _mm_set1_epi8((char)pad);
        for (; v + 16 <= HW; v += 16) {
            __m128i c[4];
            for (int r = 0; r < 4; r++) {
                const int ch = cq * 4 + r;
                c[r] = ch < cg ? _mm_xor_si128(_mm_loadu_si128(
                                                   (const __m128i *)(x + (size_t)ch * HW + v)),
                                               vflip)
                               : vpad;
            }
            const __m128i lo01 = _mm_unpacklo_epi8(c[0], c[1]);
            const __m128i hi01 = _mm_unpackhi_epi8(c[0], c[1]);
            const __m128i lo23 = _mm_unpacklo_epi8(c[2], c[3]);
            const __m128i hi23 = _mm_unpackhi_epi8(c[2], c[3]);
            _mm_storeu_si128((__m128i *)(dst + v), _mm_unpacklo_epi16(lo01, lo23));
            _mm_storeu_si128((__m128i *)(dst + v + 4), _mm_unpackhi_epi16(lo01, lo23));
            _mm_storeu_si128((__m128i *)(dst + v + 8), _mm_unpacklo_epi16(hi01, hi23));
            _mm_storeu_si128((__m128i *)(dst + v + 12), _mm_unpackhi_epi16(hi01, hi23));
        }
#endif
        for (; v < HW; v++) {
            uint32_t word = 0;
            for (int r = 0; r < 4; r++) {
                const int c = cq * 4 + r;
                const uint32_t b = c < cg ? (uint32_t)(x[(size_t)c * HW + v] ^ flip) : pad;
                word |= b << (8 * r);
            }
            dst[v] = word;
        }
    }
}

/* Pack output pixels [p0, p0 + pc) of one image's group for the VNNI and portable GEMMs,
 * row-major: word (kq, q) at out[kq * pcp + q]; taps in (kernel row i, kernel column j,
 * channel quad) order, so every packed word is one word of x4 and a run of output pixels
 * along a row is a run of x4 (stride sw). Pixels [pc, pcp) are zeros. */
static void im2col_range(const uint32_t *x4, int Cq, int H, int W, int kh, int kw, int sh,
                         int sw, int pt, int pl, int dh, int dw, int OW, uint8_t pad, int p0,
                         int pc, int pcp, uint32_t *out) {
    const uint32_t padw = (uint32_t)pad * 0x01010101u;
    for (int i = 0; i < kh; i++) {
        for (int j = 0; j < kw; j++) {
            const int off = j * dw - pl;
            /* output columns ow with 0 <= ow * sw + off < W */
            int lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
            int hi = (W - 1 - off) < 0 ? 0 : (W - 1 - off) / sw + 1;
            if (hi > OW) hi = OW;
            if (lo > hi) lo = hi;
            for (int cq = 0; cq < Cq; cq++) {
                uint32_t *o = out + (size_t)((i * kw + j) * Cq + cq) * pcp;
                const uint32_t *src = x4 + (size_t)cq * H * W;
                for (int p = p0; p < p0 + pc;) { /* one output row's stretch at a time */
                    const int oh = p / OW, a = p % OW;
                    int b = OW;
                    if (b - a > p0 + pc - p) b = a + (p0 + pc - p);
                    uint32_t *orow = o + (p - p0) - a; /* orow[ow] for ow in [a, b) */
                    const int ih = oh * sh - pt + i * dh;
                    /* columns [l, h) read inside the image, the rest of [a, b) the pad */
                    const int l = lo > a ? lo : a, h = hi < b ? hi : b;
                    if (ih < 0 || ih >= H || l >= h) {
                        for (int ow = a; ow < b; ow++) orow[ow] = padw;
                    } else {
                        const uint32_t *xr = src + (size_t)ih * W + off;
                        for (int ow = a; ow < l; ow++) orow[ow] = padw;
                        if (sw == 1)
                            memcpy(orow + l, xr + l, sizeof(uint32_t) * (size_t)(h - l));
                        else
                            for (int ow = l; ow < h; ow++) orow[ow] = xr[ow * sw];
                        for (int ow = h; ow < b; ow++) orow[ow] = padw;
                    }
                    p += b - a;
                }
                for (int q = pc; q < pcp; q++) o[q] = 0;
            }
        }
    }
}

/* The same words for the AVX2 GEMM, in tiles of 8 pixels: word (kq, q) at
 * out[((q / 8) * Kq + kq) * 8 + q % 8], so that a tile's taps are one contiguous stream.
 * Per tile and kernel tap, the 8 pixels' offsets into a plane of x4 (or the pad, or zero past
 * pc) are found once; where they are 8 consecutive words, each channel quad is one 32-byte
 * copy. */
static void im2col_tiles(const uint32_t *x4, int Cq, int H, int W, int kh, int kw, int sh,
                         int sw, int pt, int pl, int dh, int dw, int OW, uint8_t pad, int p0,
                         int pc, uint32_t *out) {
    const uint32_t padw = (uint32_t)pad * 0x01010101u;
    const size_t HW = (size_t)H * W;
    const int Kq = kh * kw * Cq;
    for (int t = 0; t * 8 < pc; t++) {
        int oh[8], ow[8];
        for (int r = 0; r < 8; r++) {
            const int p = p0 + t * 8 + r;
            oh[r] = p / OW;
            ow[r] = p % OW;
        }
        for (int i = 0; i < kh; i++) {
            for (int j = 0; j < kw; j++) {
                long off[8]; /* >= 0: a word of the plane; -1: the pad; -2: past pc, zero */
                for (int r = 0; r < 8; r++) {
                    const int ih = oh[r] * sh - pt + i * dh, iw = ow[r] * sw - pl + j * dw;
                    off[r] = t * 8 + r >= pc ? -2
                             : ih < 0 || ih >= H || iw < 0 || iw >= W ? -1
                                                                      : (long)ih * W + iw;
                }
                int run = off[0] >= 0;
                for (int r = 1; r < 8 && run; r++) run = off[r] == off[0] + r;
                uint32_t *o = out + ((size_t)t * Kq + (size_t)(i * kw + j) * Cq) * 8;
                if (run) {
                    for (int cq = 0; cq < Cq; cq++)
                        memcpy(o + (size_t)cq * 8, x4 + cq * HW + off[0], 32);
                    continue;
                }
                for (int cq = 0; cq < Cq; cq++)
                    for (int r = 0; r < 8; r++)
                        o[(size_t)cq * 8 + r] = off[r] >= 0 ? x4[cq * HW + off[r]]
                                                : off[r] == -1 ? padw : 0;
            }
        }
    }
}

static inline int requant(int64_t acc, int32_t m0, int32_t shift, int zp, int lo, int hi) {
    if (acc > INT32_MAX) acc = INT32_MAX;
    if (acc < INT32_MIN) acc = INT32_MIN;
    const int64_t prod = acc * (int64_t)m0; /* |acc| <= 2^31, m0 < 2^31: fits in 63 bits */
    const int s = shift > 62 ? 62 : shift;
    const int64_t half = (int64_t)1 << (s - 1);
    const int64_t mag = ((prod < 0 ? -prod : prod) + half) >> s;
    const int64_t v = (prod < 0 ? -mag : mag) + zp;
    return (int)(v < lo ? lo : (v > hi ? hi : v));
}

static void store_row(const int32_t *acc, int P, int64_t corr, int32_t m0, int32_t shift,
                      int zp, int ysigned, void *y) {
    const int lo = ysigned ? -128 : 0, hi = ysigned ? 127 : 255;
    if (ysigned) {
        int8_t *o = y;
        for (int p = 0; p < P; p++) o[p] = (int8_t)requant(acc[p] + corr, m0, shift, zp, lo, hi);
    } else {
        uint8_t *o = y;
        for (int p = 0; p < P; p++) o[p] = (uint8_t)requant(acc[p] + corr, m0, shift, zp, lo, hi);
    }
}

static void gemm_portable(const uint8_t *xp, const int8_t *wp, int Mg, int Kq, int P, int Pp,
                      int ystride,
                          const int64_t *corr, const int32_t *m0, const int32_t *shift, int zp,
                          int ysigned, void *y, int32_t *acc) {
    for (int m = 0; m < Mg; m++) {
        memset(acc, 0, sizeof(int32_t) * Pp);
        const int8_t *wm = wp + (size_t)m * Kq * 4;
        for (int kq = 0; kq < Kq; kq++) {
            const int32_t w0 = wm[kq * 4], w1 = wm[kq * 4 + 1], w2 = wm[kq * 4 + 2],
                          w3 = wm[kq * 4 + 3];
            if ((w0 | w1 | w2 | w3) == 0) continue;
            const uint8_t *xq = xp + (size_t)kq * Pp * 4;
            for (int p = 0; p < P; p++)
                acc[p] += xq[p * 4] * w0 + xq[p * 4 + 1] * w1 + xq[p * 4 + 2] * w2 +
                          xq[p * 4 + 3] * w3;
        }
        store_row(acc, P, corr[m], m0[m], shift[m], zp,
                  ysigned, (char *)y + (size_t)m * ystride);
    }
}

/* Whether requant8 (below) is exact for a row: a multiplier below 1 (shift in [31, 62]: the
 * result fits in 31 bits) and |acc + corr| < 2^30 for every |acc| <= bound (so acc + corr,
 * and that plus the zero point, stay in int32). */
static int requant8_exact(int64_t corr, int32_t shift, int64_t bound) {
    return shift >= 31 && shift <= 62 && (corr < 0 ? -corr : corr) + bound < ((int64_t)1 << 30);
}

#ifdef OPTC_X86
/* store_row with 8 outputs per step in int64 lanes: the same arithmetic (clamp to int32, the
 * signed 32 x 32 -> 64 product, rounding shift half away from zero, zero point, saturation) */
__attribute__((target("avx512f,avx512bw")))
static void store_row_avx512(const int32_t *acc, int P, int64_t corr, int32_t m0,
                             int32_t shift, int zp, int ysigned, void *y) {
    const int s = shift > 62 ? 62 : shift;
    const __m512i vcorr = _mm512_set1_epi64(corr), vm0 = _mm512_set1_epi64(m0);
    const __m512i lo32 = _mm512_set1_epi64(INT32_MIN), hi32 = _mm512_set1_epi64(INT32_MAX);
    const __m512i half = _mm512_set1_epi64((int64_t)1 << (s - 1)), vzp = _mm512_set1_epi64(zp);
    const __m512i lo = _mm512_set1_epi64(ysigned ? -128 : 0);
    const __m512i hi = _mm512_set1_epi64(ysigned ? 127 : 255);
    const __m512i zero = _mm512_setzero_si512();
    const __m128i count = _mm_cvtsi32_si128(s);
    uint8_t *o = y;
    int p = 0;
    for (; p + 8 <= P; p += 8) {
        __m512i a = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(acc + p)));
        a = _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(a, vcorr), lo32), hi32);
        const __m512i prod = _mm512_mul_epi32(a, vm0);
        __m512i mag = _mm512_srl_epi64(_mm512_add_epi64(_mm512_abs_epi64(prod), half), count);
        mag = _mm512_mask_sub_epi64(mag, _mm512_cmplt_epi64_mask(prod, zero), zero, mag);
        const __m512i v = _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(mag, vzp), lo), hi);
        _mm_storel_epi64((__m128i *)(o + p), _mm512_cvtepi64_epi8(v));
    }
    if (p < P) store_row(acc + p, P - p, corr, m0, shift, zp, ysigned, o + p);
}

/* The VNNI micro-kernel: R rows x 32 pixels of int32 sums (2R zmm accumulators) over the
 * Kq quads of a block, each quad of the block's two 16-pixel vectors read once for all R
 * rows (vpdpbusd: four u8 x s8 products into each int32 lane); acc: row r at r * Pp. Eight
 * rows read each vector of the block (streamed from L2) for 8 rows, not 4: the 256 -> 256
 * 3x3 conv at 14x14 ran at 110 GMAC/s in 4 x 32 tiles (onnxruntime's 178). */
#define VNNI_UNROLL _Pragma("GCC unroll 8")
#define DEFINE_VNNI(NAME, R)                                                                  \
    __attribute__((target("avx512f,avx512bw,avx512vnni"))) static void NAME(                  \
        const uint8_t *xb, const int8_t *w, int Kq, int Pp, int32_t *acc, const int8_t *pf) { \
        __m512i a[R][2];                                                                      \
        VNNI_UNROLL for (int r = 0; r < R; r++) a[r][0] = a[r][1] = _mm512_setzero_si512();   \
        for (int kq = 0; kq < Kq; kq++) {                                                     \
            /* pf: the next rows' weights (NULL: none), a line of each row every 16 quads */  \
            if (pf && (kq & 15) == 0)                                                         \
                VNNI_UNROLL for (int r = 0; r < 8; r++)                                       \
                    _mm_prefetch((const char *)(pf + ((size_t)r * Kq + kq) * 4), _MM_HINT_T0); \
            const uint8_t *xk = xb + (size_t)kq * Pp * 4;                                     \
            const __m512i x0 = _mm512_loadu_si512((const void *)xk);                          \
            const __m512i x1 = _mm512_loadu_si512((const void *)(xk + 64));                   \
            VNNI_UNROLL for (int r = 0; r < R; r++) {                                         \
                int32_t q;                                                                    \
                memcpy(&q, w + ((size_t)r * Kq + kq) * 4, 4);                                 \
                const __m512i wv = _mm512_set1_epi32(q);                                      \
                a[r][0] = _mm512_dpbusd_epi32(a[r][0], x0, wv);                               \
                a[r][1] = _mm512_dpbusd_epi32(a[r][1], x1, wv);                               \
            }                                                                                 \
        }                                                                                     \
        VNNI_UNROLL for (int r = 0; r < R; r++) {                                             \
            _mm512_storeu_si512((void *)(acc + (size_t)r * Pp), a[r][0]);                     \
            _mm512_storeu_si512((void *)(acc + (size_t)r * Pp + 16), a[r][1]);                \
        }                                                                                     \
    }
DEFINE_VNNI(vnni_8x32, 8)
DEFINE_VNNI(vnni_4x32, 4)
#undef DEFINE_VNNI

/* requant8's arithmetic 16 sums at a time (AVX-512 has no vpsignd: a masked negate), where it
 * is exact (requant8_exact); 0 where it is not (nothing written). The int64 lanes of
 * store_row_avx512 take 8 sums a step: with few taps a sum (64 channels 3x3: 9 vpdpbusd per
 * 16 sums) the requantization cost more than the products. */
__attribute__((target("avx512f,avx512bw")))
static int store_row_avx512_32(const int32_t *acc, int P, int64_t corr, int32_t m0,
                               int32_t shift, int zp, int ysigned, void *y, int64_t bound) {
    if (!requant8_exact(corr, shift, bound)) return 0;
    const __m512i vcorr = _mm512_set1_epi32((int32_t)corr), vm0 = _mm512_set1_epi32(m0);
    const __m512i half = _mm512_set1_epi64((int64_t)1 << (shift - 1)), vzp = _mm512_set1_epi32(zp);
    const __m512i lo = _mm512_set1_epi32(ysigned ? -128 : 0);
    const __m512i hi = _mm512_set1_epi32(ysigned ? 127 : 255);
    const __m512i zero = _mm512_setzero_si512();
    const __m128i count = _mm_cvtsi32_si128(shift);
    char *o = y;
    int p = 0;
    for (; p + 16 <= P; p += 16) {
        const __m512i a = _mm512_add_epi32(_mm512_loadu_si512((const void *)(acc + p)), vcorr);
        const __m512i mag32 = _mm512_abs_epi32(a);
        /* |a| * m0 in 64 bits, even and odd lanes; rounded and shifted they fit in 31 bits */
        const __m512i even = _mm512_srl_epi64(
            _mm512_add_epi64(_mm512_mul_epu32(mag32, vm0), half), count);
        const __m512i odd = _mm512_srl_epi64(
            _mm512_add_epi64(_mm512_mul_epu32(_mm512_srli_epi64(mag32, 32), vm0), half), count);
        __m512i v = _mm512_mask_blend_epi32((__mmask16)0xAAAA, even, _mm512_slli_epi64(odd, 32));
        v = _mm512_mask_sub_epi32(v, _mm512_cmplt_epi32_mask(a, zero), zero, v);
        v = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(v, vzp), lo), hi);
        _mm_storeu_si128((__m128i *)(o + p),
                         ysigned ? _mm512_cvtsepi32_epi8(v) : _mm512_cvtusepi32_epi8(v));
    }
    if (p < P) store_row(acc + p, P - p, corr, m0, shift, zp, ysigned, o + p);
    return 1;
}

/* acc: VNNI_ROWS rows of Pp int32. The rows in tiles of 8 (4 where at most 4 are left: the
 * weights' rows are padded to a multiple of 4, so 5-7 left still read 8 rows), each a pass
 * of 32-pixel tiles over the block, then requantized row by row. */
__attribute__((target("avx512f,avx512bw,avx512vnni")))
static void gemm_vnni(const uint8_t *xp, const int8_t *wp, int Mg, int Kq, int P, int Pp,
                      int ystride,
                      const int64_t *corr, const int32_t *m0, const int32_t *shift, int zp,
                      int ysigned, void *y, int32_t *acc) {
    const int64_t bound = (int64_t)Kq * 4 * 255 * 128; /* |sum| of a row's products */
    for (int mb = 0; mb < Mg;) {
        const int rows = Mg - mb > 4 ? 8 : 4;
        const int8_t *w = wp + (size_t)mb * Kq * 4;
        for (int p0 = 0; p0 < Pp; p0 += 32) {
            /* the first pixel tile streams this block's weights from memory (in a network
             * they are cold): it prefetches the next block's meanwhile */
            const int8_t *pf = p0 == 0 && mb + rows < Mg ? w + (size_t)rows * Kq * 4 : NULL;
            if (rows == 8)
                vnni_8x32(xp + (size_t)p0 * 4, w, Kq, Pp, acc + p0, pf);
            else
                vnni_4x32(xp + (size_t)p0 * 4, w, Kq, Pp, acc + p0, pf);
        }
        for (int r = 0; r < rows && mb + r < Mg; r++) {
            const int32_t *a = acc + (size_t)r * Pp;
            char *o = (char *)y + (size_t)(mb + r) * ystride;
            if (!store_row_avx512_32(a, P, corr[mb + r], m0[mb + r], shift[mb + r], zp, ysigned,
                                     o, bound))
                store_row_avx512(a, P, corr[mb + r], m0[mb + r], shift[mb + r], zp, ysigned, o);
        }
        mb += rows;
    }
}
#endif

#ifdef OPTC_AMX
/* AMX-INT8 (tdpbsud: 16 x 16 int32 sums += a 16 x 64 int8 tile of filter rows times a
 * 16 x 64 uint8 tile of 16 quads by 16 pixels, four taps to a 32-bit lane as the packed block
 * already holds them). The filters come packed for it once per plan (native.amx_weights):
 * AMX_ROWS rows at a time, zero rows up to a multiple of 32, Kqa = Kq rounded up to a
 * multiple of 16 quads with zero quads; the block has Kqa rows of quads (the ones past Kq
 * zero). Tiles 0-3 hold 32 rows x 32 pixels of sums, 4-5 two 16-row filter tiles, 6-7 two
 * 16-pixel tiles: each tile loaded serves two products. The sums go through a 32 x 32
 * buffer in L1 to the AVX-512 requantization, as gemm_vnni's. */
__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw")))
static void gemm_amx(const uint8_t *xp, const int8_t *wa, int Mg, int Kqa, int P, int Pp,
                     int ystride, const int64_t *corr, const int32_t *m0, const int32_t *shift,
                     int zp, int ysigned, void *y) {
    x86_amx_tiles();
    int32_t acc[AMX_ROWS * 32] __attribute__((aligned(64)));
    const size_t ldw = (size_t)Kqa * 4, ldx = (size_t)Pp * 4;
    const int64_t bound = (int64_t)Kqa * 4 * 255 * 128;
    for (int mb = 0; mb < Mg; mb += AMX_ROWS) {
        const int8_t *w0 = wa + (size_t)mb * ldw, *w1 = w0 + 16 * ldw;
        for (int p0 = 0; p0 < P; p0 += 32) {
            const uint8_t *x0 = xp + (size_t)p0 * 4;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int kq = 0; kq < Kqa; kq += 16) {
                _tile_loadd(4, w0 + (size_t)kq * 4, ldw);
                _tile_loadd(5, w1 + (size_t)kq * 4, ldw);
                _tile_loadd(6, x0 + (size_t)kq * ldx, ldx);
                _tile_loadd(7, x0 + (size_t)kq * ldx + 64, ldx);
                _tile_dpbsud(0, 4, 6);
                _tile_dpbsud(1, 4, 7);
                _tile_dpbsud(2, 5, 6);
                _tile_dpbsud(3, 5, 7);
            }
            _tile_stored(0, acc, 128);
            _tile_stored(1, acc + 16, 128);
            _tile_stored(2, acc + 16 * 32, 128);
            _tile_stored(3, acc + 16 * 32 + 16, 128);
            const int rows = Mg - mb < AMX_ROWS ? Mg - mb : AMX_ROWS;
            const int n = P - p0 < 32 ? P - p0 : 32;
            for (int r = 0; r < rows; r++) {
                const int m = mb + r;
                char *o = (char *)y + (size_t)m * ystride + p0;
                if (!store_row_avx512_32(acc + r * 32, n, corr[m], m0[m], shift[m], zp,
                                         ysigned, o, bound))
                    store_row_avx512(acc + r * 32, n, corr[m], m0[m], shift[m], zp, ysigned, o);
            }
        }
    }
    _tile_release();
}
#endif

#ifdef OPTC_X86
__attribute__((target("avx2"))) static inline void requant8(__m256i acc, int32_t corr,
                                                            int32_t m0, int32_t shift, int zp,
                                                            int ysigned, void *y);

/* store_row with AVX2, 8 sums at a time by requant8, where that is exact (requant8_exact);
 * 0 where it is not (nothing written). */
__attribute__((target("avx2")))
static int store_row_avx2(const int32_t *acc, int P, int64_t corr, int32_t m0, int32_t shift,
                          int zp, int ysigned, void *y, int64_t bound) {
    if (!requant8_exact(corr, shift, bound)) return 0;
    char *o = y;
    int p = 0;
    for (; p + 8 <= P; p += 8)
        requant8(_mm256_loadu_si256((const __m256i *)(acc + p)), (int32_t)corr, m0, shift, zp,
                 ysigned, o + p);
    if (p < P) store_row(acc + p, P - p, corr, m0, shift, zp, ysigned, o + p);
    return 1;
}
#endif

/* One row of sums (each |acc| <= bound) requantized into y by the widest exact path. */
static void store(const int32_t *acc, int P, int64_t corr, int32_t m0, int32_t shift, int zp,
                  int ysigned, void *y, int64_t bound) {
#ifdef OPTC_X86
    if (q_simd_level() >= 2) {
        if (!store_row_avx512_32(acc, P, corr, m0, shift, zp, ysigned, y, bound))
            store_row_avx512(acc, P, corr, m0, shift, zp, ysigned, y);
        return;
    }
    if (q_simd_level() == 1 && store_row_avx2(acc, P, corr, m0, shift, zp, ysigned, y, bound))
        return;
#endif
    store_row(acc, P, corr, m0, shift, zp, ysigned, y);
}

#ifdef OPTC_X86
#define OPTC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define OPTC_CLONES
#endif

/* The integer sums of a depthwise filter (at most kh * kw products of |x - zx| <= 255 and
 * |w| <= 128) stay far below 2^24, so float32 holds them exactly: the loop runs in float
 * (vectorised; compiled for AVX-512, AVX2 and the baseline, chosen at load time) and the
 * sums are converted back to int32 without loss. Each input row is copied (zero point
 * subtracted) into a buffer padded with zeros on both sides, so the loop over output columns
 * has no bounds and no scalar remainder eats its short rows. */
OPTC_CLONES
static void depthwise_sums(const uint8_t *restrict xc, const int8_t *restrict wc, int H, int W,
                           int kh, int kw, int sh, int sw, int pt, int pl, int dh, int dw,
                           int OH, int OW, int zx, uint8_t flip, float *restrict accf,
                           float *restrict rows, int rowlen, const float **r,
                           int32_t *restrict acc) {
    /* rows: the H input rows, zero point subtracted, each padded with zeros to rowlen (its
     * columns at offset pl), then one zero row (an input row outside the image: padding is
     * the zero point, which adds 0); r: the kh rows an output row reads. The pads were
     * zeroed by the caller and stay zero. */
    float *zero = rows + (size_t)H * rowlen;
    for (int ih = 0; ih < H; ih++) {
        const uint8_t *xr = xc + (size_t)ih * W;
        float *restrict rp = rows + (size_t)ih * rowlen + pl;
        for (int v = 0; v < W; v++) rp[v] = (float)((int)(xr[v] ^ flip) - zx);
    }
    for (int oh = 0; oh < OH; oh++) {
        for (int i = 0; i < kh; i++) {
            const int ih = oh * sh - pt + i * dh;
            r[i] = (ih < 0 || ih >= H) ? zero : rows + (size_t)ih * rowlen;
        }
        float *restrict ar = accf + (size_t)oh * OW;
        if (kh == 3 && kw == 3) { /* the common case: nine taps summed in registers */
            const float *a = r[0], *b = r[1], *c = r[2];
            const float w0 = wc[0], w1 = wc[1], w2 = wc[2], w3 = wc[3], w4 = wc[4], w5 = wc[5],
                        w6 = wc[6], w7 = wc[7], w8 = wc[8];
            const int d1 = dw, d2 = 2 * dw;
            if (sw == 1) {
                for (int ow = 0; ow < OW; ow++)
                    ar[ow] = w0 * a[ow] + w1 * a[ow + d1] + w2 * a[ow + d2] + w3 * b[ow] +
                             w4 * b[ow + d1] + w5 * b[ow + d2] + w6 * c[ow] + w7 * c[ow + d1] +
                             w8 * c[ow + d2];
            } else {
                for (int ow = 0; ow < OW; ow++) {
                    const int q = ow * sw;
                    ar[ow] = w0 * a[q] + w1 * a[q + d1] + w2 * a[q + d2] + w3 * b[q] +
                             w4 * b[q + d1] + w5 * b[q + d2] + w6 * c[q] + w7 * c[q + d1] +
                             w8 * c[q + d2];
                }
            }
            continue;
        }
        for (int ow = 0; ow < OW; ow++) ar[ow] = 0.f;
        for (int i = 0; i < kh; i++) {
            for (int j = 0; j < kw; j++) {
                const float wij = (float)wc[i * kw + j];
                const float *restrict rs = r[i] + j * dw; /* column ow reads rs[ow * sw] */
                if (sw == 1)
                    for (int ow = 0; ow < OW; ow++) ar[ow] += wij * rs[ow];
                else
                    for (int ow = 0; ow < OW; ow++) ar[ow] += wij * rs[ow * sw];
            }
        }
    }
    for (int p = 0; p < OH * OW; p++) acc[p] = (int32_t)accf[p];
}

/* optc_parallel (qgemm.h): POSIX threads; elsewhere every job runs on the calling thread. */
#define WORK_PER_THREAD (16.0 * 1024 * 1024) /* int8 multiply-adds that pay for a thread */
typedef struct {
    job_fn fn;
    void *job;
    int t, T, status;
} worker_arg;

static void *worker(void *p) {
    worker_arg *a = p;
    a->status = a->fn(a->job, a->t, a->T);
    return NULL;
}

int optc_parallel(job_fn fn, void *job, int T) {
#ifdef OPTC_THREADS
    if (T > 1) {
        worker_arg *args = calloc((size_t)T, sizeof(worker_arg));
        pthread_t *ids = calloc((size_t)T, sizeof(pthread_t));
        int *started = calloc((size_t)T, sizeof(int));
        int status = 0;
        if (args == NULL || ids == NULL || started == NULL) {
            free(args);
            free(ids);
            free(started);
            return fn(job, 0, 1);
        }
        for (int t = 0; t < T; t++) args[t] = (worker_arg){fn, job, t, T, 0};
        for (int t = 1; t < T; t++)
            started[t] = pthread_create(&ids[t], NULL, worker, &args[t]) == 0;
        for (int t = 1; t < T; t++) /* a thread that did not start: its share runs here */
            if (!started[t]) args[t].status = fn(job, t, T);
        args[0].status = fn(job, 0, T);
        for (int t = 1; t < T; t++) {
            if (started[t]) pthread_join(ids[t], NULL);
            if (args[t].status < 0) status = -1;
        }
        if (args[0].status < 0) status = -1;
        free(args);
        free(ids);
        free(started);
        return status;
    }
#endif
    return fn(job, 0, 1);
}

/* Depthwise sums with the channels innermost, for small images where a row of output
 * columns is too short to fill a vector: the input is laid out (H, W, C) once (zero point
 * subtracted, in float: exact as above), the filters (kh * kw, C), and each output pixel sums
 * its taps over a vector of channels. acc: (C, P) int32. */
OPTC_CLONES
static void depthwise_sums_cl(const uint8_t *restrict x, const int8_t *restrict w, int C,
                              int H, int W, int kh, int kw, int sh, int sw, int pt, int pl,
                              int dh, int dw, int OH, int OW, int zx, uint8_t flip,
                              float *restrict xt, float *restrict wt, float *restrict sum,
                              int32_t *restrict acc) {
    const int P = OH * OW, T = kh * kw;
    for (int c = 0; c < C; c++) {
        const uint8_t *xc = x + (size_t)c * H * W;
        for (int v = 0; v < H * W; v++) xt[(size_t)v * C + c] = (float)((int)(xc[v] ^ flip) - zx);
        for (int t = 0; t < T; t++) wt[(size_t)t * C + c] = (float)w[(size_t)c * T + t];
    }
    for (int oh = 0; oh < OH; oh++) {
        for (int ow = 0; ow < OW; ow++) {
            for (int c = 0; c < C; c++) sum[c] = 0.f;
            for (int i = 0; i < kh; i++) {
                const int ih = oh * sh - pt + i * dh;
                if (ih < 0 || ih >= H) continue; /* padding is the zero point: adds 0 */
                for (int j = 0; j < kw; j++) {
                    const int iw = ow * sw - pl + j * dw;
                    if (iw < 0 || iw >= W) continue;
                    const float *restrict xv = xt + ((size_t)ih * W + iw) * C;
                    const float *restrict wv = wt + (size_t)(i * kw + j) * C;
                    for (int c = 0; c < C; c++) sum[c] += wv[c] * xv[c];
                }
            }
            const int p = oh * OW + ow;
            for (int c = 0; c < C; c++) acc[(size_t)c * P + p] = (int32_t)sum[c];
        }
    }
}

typedef struct {
    const uint8_t *x;
    const int8_t *w;
    int C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, zx;
    uint8_t flip;
    const int64_t *corr;
    const int32_t *m0, *shift;
    int zp, ysigned;
    char *y;
} dw_job;

/* Share t of T of a depthwise conv: the t-th of T ranges of channels. */
static int depthwise_share(void *p, int t, int T) {
    const dw_job *j = p;
    const int c0 = (int)((long)j->C * t / T), c1 = (int)((long)j->C * (t + 1) / T), C = c1 - c0;
    const int H = j->H, W = j->W, kh = j->kh, kw = j->kw, OH = j->OH, OW = j->OW, P = OH * OW;
    if (C <= 0) return 0;
    const uint8_t *x = j->x + (size_t)c0 * H * W;
    const int8_t *w = j->w + (size_t)c0 * kh * kw;
    char *y = j->y + (size_t)c0 * P;
    const int64_t bound = (int64_t)kh * kw * 255 * 128; /* |sum| of a filter's products */
    int status = 0;
    if (OW < 16 && C >= 16) { /* short rows, many channels: vectorise over the channels */
        float *xt = malloc(sizeof(float) * (size_t)H * W * C);
        float *wt = malloc(sizeof(float) * (size_t)kh * kw * C);
        float *sum = malloc(sizeof(float) * (size_t)C);
        int32_t *acc = malloc(sizeof(int32_t) * (size_t)C * P);
        if (xt == NULL || wt == NULL || sum == NULL || acc == NULL) {
            status = -1;
        } else {
            depthwise_sums_cl(x, w, C, H, W, kh, kw, j->sh, j->sw, j->pt, j->pl, j->dh, j->dw,
                              OH, OW, j->zx, j->flip, xt, wt, sum, acc);
            for (int c = 0; c < C; c++)
                store(acc + (size_t)c * P, P, j->corr[c0 + c], j->m0[c0 + c], j->shift[c0 + c],
                      j->zp, j->ysigned, y + (size_t)c * P, bound);
        }
        free(xt);
        free(wt);
        free(sum);
        free(acc);
        return status;
    }
    /* a padded row holds every column any output reads, (OW - 1) * sw + (kw - 1) * dw + 1,
     * and the whole input row at offset pl */
    int rowlen = (OW - 1) * j->sw + (kw - 1) * j->dw + 1;
    if (rowlen < j->pl + W) rowlen = j->pl + W;
    int32_t *acc = malloc(sizeof(int32_t) * (size_t)P);
    float *accf = malloc(sizeof(float) * (size_t)P);
    float *rows = calloc((size_t)rowlen * (H + 1), sizeof(float));
    const float **r = malloc(sizeof(float *) * (size_t)kh);
    if (acc == NULL || accf == NULL || rows == NULL || r == NULL) {
        status = -1;
    } else {
        for (int c = 0; c < C; c++) {
            depthwise_sums(x + (size_t)c * H * W, w + (size_t)c * kh * kw, H, W, kh, kw, j->sh,
                           j->sw, j->pt, j->pl, j->dh, j->dw, OH, OW, j->zx, j->flip, accf, rows,
                           rowlen, r, acc);
            store(acc, P, j->corr[c0 + c], j->m0[c0 + c], j->shift[c0 + c], j->zp, j->ysigned,
                  y + (size_t)c * P, bound);
        }
    }
    free(acc);
    free(accf);
    free(rows);
    free((void *)r);
    return status;
}

int q_depthwise(const uint8_t *x, const int8_t *w, int C, int H, int W, int kh, int kw, int sh,
                int sw, int pt, int pl, int dh, int dw, int OH, int OW, int zx, uint8_t flip,
                const int64_t *corr, const int32_t *m0, const int32_t *shift, int zp,
                int ysigned, void *y, int threads) {
    dw_job job = {x, w, C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, zx, flip, corr, m0,
                  shift, zp, ysigned, (char *)y};
    const double work = (double)C * OH * OW * kh * kw * 8 / WORK_PER_THREAD; /* float, 8x */
    int most = work < 1 ? 1 : (work < C ? (int)work : C);
    return optc_parallel(depthwise_share, &job, threads < most ? threads : most);
}

/* The AVX2 GEMM: the filters in panels of QMR rows (native.avx2_panels, made once per plan),
 * micro-kernels that keep a QMR x 8 (vpmaddwd) or QMR x 16 (vpmaddubsw) block of outputs in
 * 12 registers over all the taps, and the block requantized straight from the registers
 * (requant8) where that is exact, else through store_row. */
typedef struct {
    /* quad kq of row panel * QMR + r at index (panel * Kq + kq) * QMR + r: int16 quads
     * (wide: an int64 each) or the int8 quads themselves (an int32 each, for vpmaddubsw) */
    const void *panels;
    int wide;
    int32_t *corr; /* corr[m] as int32 where vec[m] */
    uint8_t *vec;  /* requant8 is exact for row m */
} avx2_rows;

static void avx2_free(avx2_rows *a) {
    free(a->corr);
    free(a->vec);
}

/* Per row, whether the vector requantization is exact (requant8_exact), every possible acc
 * at most Kq * 4 * 255 * 128. Returns -1 when out of memory. */
static int avx2_setup(const void *panels, int wide, int Mg, int Kq, const int64_t *corr,
                      const int32_t *shift, avx2_rows *a) {
    a->panels = panels;
    a->wide = wide;
    a->corr = malloc(sizeof(int32_t) * (size_t)Mg);
    a->vec = malloc((size_t)Mg);
    if (a->corr == NULL || a->vec == NULL) {
        avx2_free(a);
        return -1;
    }
    const int64_t bound = (int64_t)Kq * 4 * 255 * 128;
    for (int m = 0; m < Mg; m++) {
        a->vec[m] = requant8_exact(corr[m], shift[m], bound);
        a->corr[m] = a->vec[m] ? (int32_t)corr[m] : 0;
    }
    return 0;
}

#ifdef OPTC_X86
/* requant of 8 sums (one row, where avx2_rows.vec says it is exact) into 8 bytes: the same
 * arithmetic as requant, with |acc + corr| < 2^30 and shift in [31, 62] */
__attribute__((target("avx2")))
static inline void requant8(__m256i acc, int32_t corr, int32_t m0, int32_t shift, int zp,
                            int ysigned, void *y) {
    const __m256i a = _mm256_add_epi32(acc, _mm256_set1_epi32(corr));
    const __m256i mag32 = _mm256_abs_epi32(a), vm0 = _mm256_set1_epi32(m0);
    const __m256i half = _mm256_set1_epi64x((int64_t)1 << (shift - 1));
    const __m128i count = _mm_cvtsi32_si128(shift);
    /* |a| * m0 in 64 bits, even and odd lanes; rounded and shifted they fit in 31 bits */
    const __m256i even = _mm256_srl_epi64(
        _mm256_add_epi64(_mm256_mul_epu32(mag32, vm0), half), count);
    const __m256i odd = _mm256_srl_epi64(
        _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(mag32, 32), vm0), half), count);
    const __m256i mag = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    __m256i v = _mm256_add_epi32(_mm256_sign_epi32(mag, a), _mm256_set1_epi32(zp));
    v = _mm256_min_epi32(_mm256_max_epi32(v, _mm256_set1_epi32(ysigned ? -128 : 0)),
                         _mm256_set1_epi32(ysigned ? 127 : 255));
    __m256i b = _mm256_packs_epi32(v, v); /* 16-bit: v0..3 v0..3 | v4..7 v4..7 */
    b = ysigned ? _mm256_packs_epi16(b, b) : _mm256_packus_epi16(b, b);
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
    _mm_storel_epi64((__m128i *)y, _mm256_castsi256_si128(b));
}

/* Where the rows of one call go (row m of the call: y + m * ystride, its constants at [m];
 * corr32 and vec as avx2_rows'); store8 writes one row at pixels [p0, p0 + n), n <= 8, from
 * its 8 sums */
typedef struct {
    const int64_t *corr;
    const int32_t *corr32;
    const uint8_t *vec;
    const int32_t *m0, *shift;
    int zp, ysigned, ystride;
    char *y;
} avx2_out;

__attribute__((target("avx2")))
static inline void store8(const avx2_out *o, __m256i sums, int m, int p0, int n) {
    char *y = o->y + (size_t)m * o->ystride + p0;
    if (n == 8 && o->vec[m]) {
        requant8(sums, o->corr32[m], o->m0[m], o->shift[m], o->zp, o->ysigned, y);
    } else {
        int32_t v[8];
        _mm256_storeu_si256((__m256i *)v, sums);
        store_row(v, n, o->corr[m], o->m0[m], o->shift[m], o->zp, o->ysigned, y);
    }
}

/* The micro-kernels' 12 accumulators (QMR rows x 2 vectors) as named variables -- GCC keeps
 * an array of them in memory -- a step for every row, and the rows as an array once the taps
 * are done */
#define ACCUMULATORS                                                                           \
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00,          \
            a21 = a00, a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00
#define EVERY_ROW(step) step(0); step(1); step(2); step(3); step(4); step(5)
#define ACCUMULATOR_ROWS {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}, {a40, a41}, {a50, a51}}

/* vpmaddwd on the taps widened to int16 (exact: pairs of int16 products summed in int32):
 * a QMR x 8 block in 12 registers, each holding two half sums per pixel (added pairwise at
 * the end) */
__attribute__((target("avx2")))
static void panel_wide(const uint8_t *xp, const int64_t *w, int nr, int r0, int Kq, int P,
                       const avx2_out *o) {
    for (int p0 = 0; p0 < P; p0 += 8) {
        ACCUMULATORS;
        const uint8_t *xk = xp + (size_t)p0 * Kq * 4; /* the tile's taps */
        const int64_t *wk = w;
        for (int kq = 0; kq < Kq; kq++, xk += 32, wk += QMR) {
            const __m256i x0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)xk));
            const __m256i x1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(xk + 16)));
#define QROW(r)                                                                                \
    do {                                                                                       \
        const __m256i wv = _mm256_set1_epi64x(wk[r]);                                          \
        a##r##0 = _mm256_add_epi32(a##r##0, _mm256_madd_epi16(x0, wv));                        \
        a##r##1 = _mm256_add_epi32(a##r##1, _mm256_madd_epi16(x1, wv));                        \
    } while (0)
            EVERY_ROW(QROW);
#undef QROW
        }
        const __m256i a[QMR][2] = ACCUMULATOR_ROWS;
        const int n = P - p0 < 8 ? P - p0 : 8;
        for (int r = 0; r < nr; r++) {
            const __m256i h = _mm256_hadd_epi32(a[r][0], a[r][1]); /* p0 p1 p4 p5 p2 p3 p6 p7 */
            store8(o, _mm256_permute4x64_epi64(h, 0xD8), r0 + r, p0, n);
        }
    }
}

/* vpmaddubsw on the int8 quads as they are, where every pair of taps sums without 16-bit
 * saturation (native.avx2_panels checks: at most 255 * 128 either way), then vpmaddwd by
 * ones into int32: a QMR x 16 block (two tiles from pixel p0; one, QMR x 8, where `two` is 0
 * -- a constant in each inlined copy) in 12 registers, one sum per pixel. */
__attribute__((target("avx2"), always_inline))
static inline void bytes_block(const uint8_t *xp, const int32_t *w, int nr, int r0, int Kq,
                               int P, int p0, const int two, const avx2_out *o) {
    const __m256i ones = _mm256_set1_epi16(1);
    ACCUMULATORS;
    const uint8_t *xk0 = xp + (size_t)p0 * Kq * 4, *xk1 = xk0 + (size_t)8 * Kq * 4;
    const int32_t *wk = w;
    for (int kq = 0; kq < Kq; kq++, xk0 += 32, xk1 += 32, wk += QMR) {
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)xk0);
        const __m256i x1 = two ? _mm256_loadu_si256((const __m256i *)xk1) : x0;
#define QROW(r)                                                                                \
    do {                                                                                       \
        const __m256i wv = _mm256_set1_epi32(wk[r]);                                           \
        a##r##0 = _mm256_add_epi32(a##r##0,                                                    \
                                   _mm256_madd_epi16(_mm256_maddubs_epi16(x0, wv), ones));     \
        if (two)                                                                               \
            a##r##1 = _mm256_add_epi32(                                                        \
                a##r##1, _mm256_madd_epi16(_mm256_maddubs_epi16(x1, wv), ones));               \
    } while (0)
        EVERY_ROW(QROW);
#undef QROW
    }
    const __m256i a[QMR][2] = ACCUMULATOR_ROWS;
    for (int half = 0; half <= two; half++) {
        const int q0 = p0 + 8 * half, n = P - q0 < 8 ? P - q0 : 8;
        for (int r = 0; r < nr; r++) store8(o, a[r][half], r0 + r, q0, n);
    }
}

__attribute__((target("avx2")))
static void panel_bytes(const uint8_t *xp, const int32_t *w, int nr, int r0, int Kq, int P,
                        const avx2_out *o) {
    for (int p0 = 0; p0 < P; p0 += 16) {
        if (P - p0 > 8)
            bytes_block(xp, w, nr, r0, Kq, P, p0, 1, o);
        else /* an odd last tile alone */
            bytes_block(xp, w, nr, r0, Kq, P, p0, 0, o);
    }
}

/* Rows [r0, r0 + rows) of the panels (r0 a multiple of QMR; o: those rows' outputs) over
 * the P pixels of a block packed in tiles of 8 pixels */
__attribute__((target("avx2")))
static void gemm_avx2(const uint8_t *xp, const avx2_rows *rw, int r0, int rows, int Kq, int P,
                      const avx2_out *o) {
    for (int pb = 0; pb * QMR < rows; pb++) {
        const int nr = rows - pb * QMR < QMR ? rows - pb * QMR : QMR;
        const size_t at = (size_t)(r0 + pb * QMR) * Kq; /* quads before the panel */
        if (rw->wide)
            panel_wide(xp, (const int64_t *)rw->panels + at, nr, pb * QMR, Kq, P, o);
        else
            panel_bytes(xp, (const int32_t *)rw->panels + at, nr, pb * QMR, Kq, P, o);
    }
}
#endif

/* Rows [r0, r0 + rows) of the filters over one packed block of P pixels (r0: a multiple of
 * QMR where the AVX2 panels run, avx2 not NULL, the block in tiles of 8 pixels; a multiple of
 * AMX_ROWS where the AMX filters do, amx not NULL, the block row-major with Kq padded rows;
 * else a multiple of 4, the block row-major with row stride Pp) */
static int q_gemm(const uint8_t *xp, const int8_t *wp, const avx2_rows *avx2,
                  const int8_t *amx, int r0, int rows, int Kq, int P, int Pp, int ystride,
                  const int64_t *corr, const int32_t *m0, const int32_t *shift, int zp,
                  int ysigned, char *y) {
    y += (size_t)r0 * ystride;
    corr += r0;
    m0 += r0;
    shift += r0;
#ifdef OPTC_AMX
    if (amx != NULL) { /* r0 a multiple of AMX_ROWS, Kq the padded Kqa */
        gemm_amx(xp, amx + (size_t)r0 * Kq * 4, rows, Kq, P, Pp, ystride, corr, m0, shift, zp,
                 ysigned, y);
        return 0;
    }
#endif
#ifdef OPTC_X86
    if (avx2 != NULL) {
        const avx2_out out = {corr, avx2->corr + r0, avx2->vec + r0, m0, shift, zp, ysigned,
                              ystride, y};
        gemm_avx2(xp, avx2, r0, rows, Kq, P, &out);
        return 0;
    }
#endif
    int32_t *acc = malloc(sizeof(int32_t) * VNNI_ROWS * (size_t)Pp);
    if (acc == NULL) return -1;
    wp += (size_t)r0 * Kq * 4;
#ifdef OPTC_X86
    if (q_simd_level() >= 2) {
        gemm_vnni(xp, wp, rows, Kq, P, Pp, ystride, corr, m0, shift, zp, ysigned, y, acc);
        free(acc);
        return 0;
    }
#endif
    gemm_portable(xp, wp, rows, Kq, P, Pp, ystride, corr, m0, shift, zp, ysigned, y, acc);
    free(acc);
    return 0;
}

/* QuantizeLinear, one scale and zero point: y = saturate(rint(x / s) + zp), the division and
 * the rounding (half to even) in float32 as the spec and onnxruntime do; NaN gives 0. */
OPTC_CLONES
void q_quantize(const float *restrict x, size_t n, float s, int zp, int ysigned,
                void *restrict y) {
    const float lo = ysigned ? -128.f : 0.f, hi = ysigned ? 127.f : 255.f;
    const float fzp = (float)zp;
    if (ysigned) {
        int8_t *restrict o = y;
        for (size_t i = 0; i < n; i++) {
            float v = nearbyintf(x[i] / s) + fzp;
            v = v < lo ? lo : (v > hi ? hi : v);
            o[i] = (int8_t)(v == v ? v : 0.f);
        }
    } else {
        uint8_t *restrict o = y;
        for (size_t i = 0; i < n; i++) {
            float v = nearbyintf(x[i] / s) + fzp;
            v = v < lo ? lo : (v > hi ? hi : v);
            o[i] = (uint8_t)(v == v ? v : 0.f);
        }
    }
}

/* ai.optc QuantizeAffine over `planes` planes of P values (plane p is channel p % C):
 * y = saturate(nearbyint(act(x * s[c] + b[c]) / ys) + zp), each step in float32 as Mul, Add,
 * the activation and QuantizeLinear compute it one after the other (ISO C: no contraction of
 * the multiply and add into an FMA), in one pass over x instead of four. */
#ifdef OPTC_X86
/* One plane of q_affine_quantize with Relu, Clip or no activation, 16 values at a time,
 * giving the scalar loop's codes exactly: the division by ys (16 cycles a vector; 15 % of
 * DenseNet-121 int8, where every dense layer quantizes its whole concatenated input) becomes
 * a product with r = 1 / ys, within 2 ulp of the quotient, so its nearest integer is the
 * quotient's unless the product lies within 1e-3 of a half (2 ulp at 1024 is 2.4e-4); a
 * vector with such a value, of magnitude under 1024 (beyond, either saturates), divides.
 * The caller checks that r is a normal float. */
__attribute__((target("avx512f,avx512bw,avx512vl")))
static void affine_plane_avx512(const float *xp, size_t P, float sc, float bc, float alo,
                                float ahi, float ys, float r, float fzp, float lo, float hi,
                                int ysigned, void *out) {
    const __m512 vs = _mm512_set1_ps(sc), vb = _mm512_set1_ps(bc), valo = _mm512_set1_ps(alo);
    const __m512 vahi = _mm512_set1_ps(ahi), vys = _mm512_set1_ps(ys), vr = _mm512_set1_ps(r);
    const __m512 vzp = _mm512_set1_ps(fzp), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    const __m512 half = _mm512_set1_ps(0.5f), near = _mm512_set1_ps(1e-3f);
    const __m512 big = _mm512_set1_ps(1024.f);
    for (size_t i = 0; i < P; i += 16) {
        const __mmask16 m = P - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (P - i)) - 1);
        __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, xp + i), vs), vb);
        v = _mm512_min_ps(_mm512_max_ps(v, valo), vahi); /* max(NaN, lo) is lo, as scalar */
        const __m512 q = _mm512_mul_ps(v, vr);
        __m512 n = _mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m512 off = _mm512_abs_ps(_mm512_sub_ps(q, n)); /* in [0, 0.5] */
        const __mmask16 risky =
            _mm512_mask_cmp_ps_mask(m, _mm512_sub_ps(half, off), near, _CMP_LT_OQ) &
            _mm512_cmp_ps_mask(_mm512_abs_ps(q), big, _CMP_LT_OQ);
        if (risky)
            n = _mm512_roundscale_ps(_mm512_div_ps(v, vys),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        n = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(n, vzp), vlo), vhi);
        const __m512i k = _mm512_cvtps_epi32(n); /* integral, in range */
        if (ysigned)
            _mm_mask_storeu_epi8((int8_t *)out + i, m, _mm512_cvtsepi32_epi8(k));
        else
            _mm_mask_storeu_epi8((uint8_t *)out + i, m, _mm512_cvtusepi32_epi8(k));
    }
}
#endif

OPTC_CLONES
void q_affine_quantize(const float *restrict x, const float *restrict s,
                       const float *restrict b, size_t planes, size_t C, size_t P, int act,
                       float aa, float ab, float ys, int zp, int ysigned, void *restrict y) {
    const float lo = ysigned ? -128.f : 0.f, hi = ysigned ? 127.f : 255.f;
    const float fzp = (float)zp;
    /* the activation's clamp (Relu: [0, inf), Clip: [aa, ab]; none: (-inf, inf)) */
    const float alo = act == 1 ? 0.f : (act == 2 ? aa : -INFINITY);
    const float ahi = act == 2 ? ab : INFINITY;
#ifdef OPTC_X86
    const float r = 1.f / ys;
    if (act <= 2 && q_simd_level() >= 2 && isnormal(r) && isnormal(ys)) {
        for (size_t p = 0; p < planes; p++)
            affine_plane_avx512(x + p * P, P, s[p % C], b[p % C], alo, ahi, ys, r, fzp, lo, hi,
                                ysigned, (char *)y + p * P);
        return;
    }
#endif
    for (size_t p = 0; p < planes; p++) {
        const float sc = s[p % C], bc = b[p % C];
        const float *restrict xp = x + p * P;
        /* the clamps written as x86's max/min (a > b ? a : b), one instruction each: as
         * nested ternaries they compiled to compares, blends and spills (0.6 values a
         * cycle); a NaN becomes the bound */
#define AFFINE_QUANTIZE(v, i, ACT)                     \
    float v = xp[i] * sc;                              \
    v = v + bc;                                        \
    ACT;                                               \
    v = v > alo ? v : alo;                             \
    v = v < ahi ? v : ahi;                             \
    v = nearbyintf(v / ys) + fzp;                      \
    v = v > lo ? v : lo;                               \
    v = v < hi ? v : hi
        if (act > 2) { /* other activations: scalar, through activate() */
            for (size_t i = 0; i < P; i++) {
                AFFINE_QUANTIZE(v, i, v = activate(v, act, aa, ab));
                if (ysigned)
                    ((int8_t *)y)[p * P + i] = (int8_t)(int32_t)v;
                else
                    ((uint8_t *)y)[p * P + i] = (uint8_t)(int32_t)v;
            }
        } else if (ysigned) {
            int8_t *restrict o = (int8_t *)y + p * P;
            for (size_t i = 0; i < P; i++) {
                AFFINE_QUANTIZE(v, i, (void)0);
                o[i] = (int8_t)(int32_t)v;
            }
        } else {
            uint8_t *restrict o = (uint8_t *)y + p * P;
            for (size_t i = 0; i < P; i++) {
                AFFINE_QUANTIZE(v, i, (void)0);
                o[i] = (uint8_t)(int32_t)v;
            }
        }
#undef AFFINE_QUANTIZE
    }
}

/* DequantizeLinear, one scale and zero point: y = (x - zp) * s in float32. */
OPTC_CLONES
void q_dequantize(const void *restrict x, size_t n, int xsigned, int zp, float s,
                  float *restrict y) {
    if (xsigned) {
        const int8_t *restrict q = x;
        for (size_t i = 0; i < n; i++) y[i] = (float)((int)q[i] - zp) * s;
    } else {
        const uint8_t *restrict q = x;
        for (size_t i = 0; i < n; i++) y[i] = (float)((int)q[i] - zp) * s;
    }
}

/* com.microsoft QLinearAdd of two tensors of one shape, as onnxruntime computes it:
 * y = saturate(rint((a - za) * ra + (b - zb) * rb) + zy) in float32 (ra = a_scale / y_scale,
 * rb = b_scale / y_scale), rounding half to even; 8-bit data of one signedness. Elements
 * [i0, n) in C (the reference), the rest where AVX2 runs the same operations 8 at a time. */
static void add_tail(const void *a, const void *b, size_t i0, size_t n, int xsigned, int za,
                     int zb, float ra, float rb, int zy, void *y) {
    const float lo = xsigned ? -128.f : 0.f, hi = xsigned ? 127.f : 255.f;
    for (size_t i = i0; i < n; i++) {
        const int p = xsigned ? ((const int8_t *)a)[i] : ((const uint8_t *)a)[i];
        const int q = xsigned ? ((const int8_t *)b)[i] : ((const uint8_t *)b)[i];
        float v = nearbyintf((float)(p - za) * ra + (float)(q - zb) * rb) + (float)zy;
        v = v < lo ? lo : (v > hi ? hi : v);
        if (xsigned)
            ((int8_t *)y)[i] = (int8_t)v;
        else
            ((uint8_t *)y)[i] = (uint8_t)v;
    }
}

#ifdef OPTC_X86
/* QLinearAdd's value from the widened inputs ia, ib (the vza .. hi constants in scope): two
 * products and a sum, each rounded, as the C loop (no fused multiply-add), rounded half to
 * even, plus the zero point, clamped -- integral and in range, so the conversion is exact */
#define QADD(P, ROUND, ia, ib)                                                                 \
    P##_min_ps(P##_max_ps(P##_add_ps(ROUND(P##_add_ps(                                         \
                                             P##_mul_ps(P##_cvtepi32_ps(P##_sub_epi32(ia, vza)), vra), \
                                             P##_mul_ps(P##_cvtepi32_ps(P##_sub_epi32(ib, vzb)), vrb)), \
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),       \
                                   vzy),                                                       \
                          lo),                                                                 \
               hi)

__attribute__((target("avx2")))
static size_t add_avx2(const void *a, const void *b, size_t n, int xsigned, int za, int zb,
                       float ra, float rb, int zy, void *y) {
    const __m256i vza = _mm256_set1_epi32(za), vzb = _mm256_set1_epi32(zb);
    const __m256 vra = _mm256_set1_ps(ra), vrb = _mm256_set1_ps(rb), vzy = _mm256_set1_ps(zy);
    const __m256 lo = _mm256_set1_ps(xsigned ? -128.f : 0.f);
    const __m256 hi = _mm256_set1_ps(xsigned ? 127.f : 255.f);
    const __m256i order = _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i pa = _mm_loadl_epi64((const __m128i *)((const char *)a + i));
        const __m128i pb = _mm_loadl_epi64((const __m128i *)((const char *)b + i));
        const __m256i ia = xsigned ? _mm256_cvtepi8_epi32(pa) : _mm256_cvtepu8_epi32(pa);
        const __m256i ib = xsigned ? _mm256_cvtepi8_epi32(pb) : _mm256_cvtepu8_epi32(pb);
        __m256i q = _mm256_cvtps_epi32(QADD(_mm256, _mm256_round_ps, ia, ib));
        q = _mm256_packs_epi32(q, q);
        q = xsigned ? _mm256_packs_epi16(q, q) : _mm256_packus_epi16(q, q);
        q = _mm256_permutevar8x32_epi32(q, order);
        _mm_storel_epi64((__m128i *)((char *)y + i), _mm256_castsi256_si128(q));
    }
    return i;
}
#endif

#ifdef OPTC_X86
/* The same 16 at a time (AVX-512F/BW: 8-bit loads widened, vpmovs/usdb narrowing): ResNet-50's
 * sixteen residual QLinearAdds took 1.0 ms of its 14.4 with AVX2 on Zen 5 */
__attribute__((target("avx512f,avx512bw")))
static size_t add_avx512(const void *a, const void *b, size_t n, int xsigned, int za, int zb,
                         float ra, float rb, int zy, void *y) {
    const __m512i vza = _mm512_set1_epi32(za), vzb = _mm512_set1_epi32(zb);
    const __m512 vra = _mm512_set1_ps(ra), vrb = _mm512_set1_ps(rb), vzy = _mm512_set1_ps(zy);
    const __m512 lo = _mm512_set1_ps(xsigned ? -128.f : 0.f);
    const __m512 hi = _mm512_set1_ps(xsigned ? 127.f : 255.f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i pa = _mm_loadu_si128((const __m128i *)((const char *)a + i));
        const __m128i pb = _mm_loadu_si128((const __m128i *)((const char *)b + i));
        const __m512i ia = xsigned ? _mm512_cvtepi8_epi32(pa) : _mm512_cvtepu8_epi32(pa);
        const __m512i ib = xsigned ? _mm512_cvtepi8_epi32(pb) : _mm512_cvtepu8_epi32(pb);
        const __m512i q = _mm512_cvtps_epi32(QADD(_mm512, _mm512_roundscale_ps, ia, ib));
        _mm_storeu_si128((__m128i *)((char *)y + i),
                         xsigned ? _mm512_cvtsepi32_epi8(q) : _mm512_cvtusepi32_epi8(q));
    }
    return i;
}
#endif

void q_add(const void *a, const void *b, size_t n, int xsigned, int za, int zb, float ra,
           float rb, int zy, void *y) {
    size_t i = 0;
#ifdef OPTC_X86
    if (q_simd_level() >= 2)
        i = add_avx512(a, b, n, xsigned, za, zb, ra, rb, zy, y);
    else if (q_simd_level() >= 1)
        i = add_avx2(a, b, n, xsigned, za, zb, ra, rb, zy, y);
#endif
    add_tail(a, b, i, n, xsigned, za, zb, ra, rb, zy, y);
}

typedef struct {
    const uint32_t *x4;
    int Cq, H, W, kh, kw, sh, sw, pt, pl, dh, dw, OW, P, Kq, pc, Mg;
    uint8_t pad;
    const int8_t *wp;
    const int64_t *corr;
    const int32_t *m0, *shift;
    int zp, ysigned;
    char *y;
    const avx2_rows *avx2; /* the AVX2 panels, NULL at the other levels */
    const int8_t *amx;     /* the AMX filters, NULL at the other levels */
    int Kqa;               /* rows of quads per packed block: Kq, or Kq padded for AMX */
    int unit;              /* rows per share of filters: QMR, AMX_ROWS or 4 */
} conv_job;

/* Share t of T: blocks of pixels t, t + T, ... when there are at least T of them; else every
 * block and the t-th of T ranges of filter rows, in units of j->unit rows (each thread packs
 * the block itself). */
static int conv_share(void *p, int t, int T) {
    const conv_job *j = p;
    const int blocks = (j->P + j->pc - 1) / j->pc, units = (j->Mg + j->unit - 1) / j->unit;
    int b0 = t, bstep = T, u0 = 0, u1 = units;
    if (blocks < T) {
        b0 = 0;
        bstep = 1;
        u0 = (int)((long)units * t / T);
        u1 = (int)((long)units * (t + 1) / T);
        if (u0 >= u1) return 0;
    }
    uint32_t *packed = malloc(sizeof(uint32_t) * (size_t)j->Kqa * j->pc);
    if (packed == NULL) return -1;
    /* AMX's padding quads: zero, and never written by im2col_range */
    memset(packed + (size_t)j->Kq * j->pc, 0, sizeof(uint32_t) * (size_t)(j->Kqa - j->Kq) * j->pc);
    const int r0 = u0 * j->unit, rows = (u1 * j->unit < j->Mg ? u1 * j->unit : j->Mg) - r0;
    int status = 0;
    for (int b = b0; b < blocks && status == 0; b += bstep) {
        const int p0 = b * j->pc, n = j->P - p0 < j->pc ? j->P - p0 : j->pc;
        if (j->avx2 != NULL)
            im2col_tiles(j->x4, j->Cq, j->H, j->W, j->kh, j->kw, j->sh, j->sw, j->pt, j->pl,
                         j->dh, j->dw, j->OW, j->pad, p0, n, packed);
        else
            im2col_range(j->x4, j->Cq, j->H, j->W, j->kh, j->kw, j->sh, j->sw, j->pt, j->pl,
                         j->dh, j->dw, j->OW, j->pad, p0, n, j->pc, packed);
        status = q_gemm((const uint8_t *)packed, j->wp, j->avx2, j->amx, r0, rows, j->Kqa, n, j->pc,
                        j->P, j->corr, j->m0, j->shift, j->zp, j->ysigned, j->y + p0);
    }
    free(packed);
    return status;
}

int q_conv(const uint8_t *x, int cg, int H, int W, int kh, int kw, int sh, int sw, int pt, int pl,
           int dh, int dw, int OH, int OW, uint8_t pad, uint8_t flip, const int8_t *wp,
           const void *panels, int wide, int Mg, const int64_t *corr, const int32_t *m0,
           const int32_t *shift, int zp, int ysigned, void *y, int threads) {
    const int Cq = (cg + 3) / 4, Kq = kh * kw * Cq, P = OH * OW;
    avx2_rows rows = {NULL, 1, NULL, NULL}, *avx2 = NULL;
#ifdef OPTC_X86
    if (q_simd_level() == 1 && panels != NULL) {
        if (avx2_setup(panels, wide, Mg, Kq, corr, shift, &rows) != 0) return -1;
        avx2 = &rows;
    }
#endif
    const int8_t *amx = NULL;
    int Kqa = Kq;
#ifdef OPTC_AMX
    if (q_simd_level() == 3 && panels != NULL) {
        amx = panels;
        Kqa = (Kq + AMX_QUADS - 1) / AMX_QUADS * AMX_QUADS;
    }
#endif
    /* pixels per block: the packed block (Kqa x pc words) stays within block_bytes of cache,
     * where every filter panel reuses it; pc a multiple of the GEMM's step (8 for AVX2, else
     * 32), the blocks as even as that allows: each block streams all the filters once */
    const int step = avx2 != NULL ? 8 : 32;
    int pc = (int)(q_block_bytes(0) / ((size_t)Kqa * 4)) / step * step;
    if (pc < step) pc = step;
    const int nblocks = (P + pc - 1) / pc;
    pc = ((P + nblocks - 1) / nblocks + step - 1) / step * step;
    uint32_t *x4 = malloc(sizeof(uint32_t) * (size_t)Cq * H * W);
    if (x4 == NULL) {
        avx2_free(&rows);
        return -1;
    }
    interleave(x, cg, H, W, pad, flip, x4);
    const int unit = avx2 != NULL ? QMR : amx != NULL ? AMX_ROWS : 4;
    conv_job job = {x4, Cq, H, W, kh, kw, sh, sw, pt, pl, dh, dw, OW, P, Kq, pc, Mg, pad, wp,
                    corr, m0, shift, zp, ysigned, (char *)y, avx2, amx, Kqa, unit};
    /* no more threads than there is work for: blocks of pixels, or units of filter rows, and
     * at least WORK_PER_THREAD multiply-adds each (starting a thread costs tens of us) */
    const int blocks = (P + pc - 1) / pc, units = (Mg + unit - 1) / unit;
    int most = blocks > units ? blocks : units;
    const double work = (double)Mg * Kq * 4 * P / WORK_PER_THREAD;
    if (work < most) most = work < 1 ? 1 : (int)work;
    const int status = optc_parallel(conv_share, &job, threads < most ? threads : most);
    free(x4);
    avx2_free(&rows);
    return status;
}

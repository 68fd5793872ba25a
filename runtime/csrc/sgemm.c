/* float32 GEMMs on pre-packed weights for optc.runtime: c[m, n] = sum_k a[m, k] * b[k, n]
 * (+ c[m, n] when accumulating) for a batch of products, Winograd's a*a per-position
 * products first of all.
 *
 * Why not the BLAS NumPy links against: the weights of a layer are the same on every run,
 * yet a BLAS packs them again on every call, and with few columns (Winograd on 7x7 or 14x14
 * images has 4 to 16 tiles per position) packing the (M x K) weights costs as much as the
 * product itself. Here they are packed once (optc/runtime/kernels/native.py) as panels of
 * SMR rows: ap[(panel * K + k) * SMR + i] = a[panel * SMR + i, k], rows past M zero. b and c
 * are plain row-major (row strides ldb, ldc).
 *
 * The loop nest is GotoBLAS's (Goto & van de Geijn, "Anatomy of High-Performance Matrix
 * Multiplication", 2008): a KC x NC block of b is packed into strips of NR columns (zero
 * padded, so the k loop needs no masks; where a strip ends inside a vector, the loads and
 * stores of c are masked there alone -- AMD's masked AVX2 stores are microcoded, slow), and
 * a micro-kernel keeps a ROWS x NR block of
 * c in registers while k runs: each k loads NR / LANES vectors of the strip and broadcasts
 * ROWS weights of the packed panel. AVX-512: 8 x 48 (24 zmm accumulators), and 24 x 16 for
 * narrow products (at most 16 columns); AVX2 + FMA: 4 x 24 (12 ymm; half a panel per call),
 * and 8 x 8 for narrow ones, and column kernels for a last strip of at most 4 columns (3
 * panels x 4 columns: the weights are the vectors there, the strip's values broadcast). A
 * portable C loop computes the same sums elsewhere (the tests compare them).
 *
 * The epilogue (bias, a residual input, ReLU or Clip) is applied to the registers before the
 * store of the last k pass; other activations run over the block right after it, in cache.
 * s_conv feeds the GEMM with im2col'd blocks of output pixels, written straight into the
 * packed strips (strided convs read through their input's phases; 1x1 unpadded convs read the
 * image, or its phase (0, 0), itself), so a conv is one pass over its output.
 */
#define _POSIX_C_SOURCE 200112L /* posix_memalign */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qgemm.h"
#include "vact.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define OPTC_X86 1
#include <immintrin.h>
#endif

static int s_level = -1; /* 2: AVX-512F, 1: AVX2 + FMA, 0: portable C */
static int s_max = 2;

int s_simd_level(void) {
    if (s_level < 0) {
        s_level = 0;
#ifdef OPTC_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) s_level = 1;
        if (__builtin_cpu_supports("avx512f")) s_level = 2;
#endif
    }
    return s_level < s_max ? s_level : s_max;
}

void s_allow_simd(int level) { s_max = level < 0 ? 0 : level; }

/* blocking (-D overrides them for tuning experiments) */
/* k per pass: the weights of a micro-kernel's rows stay in L1 */
#ifndef KC
#define KC 256
#endif
/* packed b per pass (floats): stays in L2 while every panel of a passes over it */
#ifndef BLOCK_FLOATS
#define BLOCK_FLOATS (48 * 1024)
#endif
/* k per pass in tap mode: a strip's rows of b lie in as many places, partly used lines */
#ifndef KC_TAPS
#define KC_TAPS 128
#endif
/* rows per block of a (a multiple of every micro-kernel's rows) */
#ifndef MC
#define MC 144
#endif
/* im2col'd floats per block of output pixels (s_conv) */
#define COLS_FLOATS (64 * 1024)

/* Buffers the micro-kernels load vectors from start on a cache line: a 64-byte load that
 * straddles two lines costs two of the load ports' slots, and the packed strips are read
 * once per row tile (Xeon, 8 x 48 kernel on a 256-deep strip, in L2: 1.12x as fast aligned
 * as 16 bytes off, malloc's alignment). falloc: floats on a line, free() releases them;
 * line_up: a pointer into a workspace rounded up to the next line (LINE_SLACK floats). */
#define LINE_SLACK 16
static float *falloc(size_t floats) {
    void *p = NULL;
    return posix_memalign(&p, 64, sizeof(float) * (floats > 0 ? floats : 1)) == 0 ? p : NULL;
}
static float *line_up(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

/* c = act(c + bias + res) over rows x cols of c (scalar: the portable GEMM, and activations
 * the micro-kernels do not apply); bias and res offset to the block by the caller. */
static void epilogue_rows(float *c, size_t ldc, int rows, int cols, const float *bias,
                          const float *res, size_t ldres, int act, float a, float b) {
    for (int i = 0; i < rows; i++) {
        float *ci = c + (size_t)i * ldc;
        const float bi = bias ? bias[i] : 0.f;
        const float *ri = res ? res + (size_t)i * ldres : NULL;
        if (ri)
            for (int j = 0; j < cols; j++) ci[j] += bi + ri[j];
        else if (bias)
            for (int j = 0; j < cols; j++) ci[j] += bi;
        activate_span(ci, (size_t)cols, act, a, b);
    }
}

static void gemm_portable(const float *ap, const float *b, size_t ldb, float *c, size_t ldc,
                          int M, int N, int K, int accumulate, const s_epilogue *ep) {
    const int panels = (M + SMR - 1) / SMR;
    for (int p = 0; p < panels; p++) {
        const float *pa = ap + (size_t)p * K * SMR;
        for (int i = 0; i < SMR && p * SMR + i < M; i++) {
            float *crow = c + (size_t)(p * SMR + i) * ldc;
            if (!accumulate) memset(crow, 0, sizeof(float) * (size_t)N);
            for (int k = 0; k < K; k++) {
                const float w = pa[(size_t)k * SMR + i];
                const float *brow = b + (size_t)k * ldb;
                for (int n = 0; n < N; n++) crow[n] += w * brow[n];
            }
        }
    }
    if (ep) epilogue_rows(c, ldc, M, N, ep->bias, ep->res, ep->ldres, ep->act, ep->a, ep->b);
}

/* The epilogue a micro-kernel applies before its store: bias (rows), res (the tile's block,
 * row stride ldres), then the activation act (a code of activate(), 0: none; a, b its
 * parameters), on the registers (vact.h). */
typedef struct {
    const float *bias, *res;
    size_t ldres;
    int act;
    float a, b;
} tile_epilogue;

/* c[i, :cols] (+)= sum_k w_i[k] * bp[k, :cols] for i < rows: pa, row 0's weights in a packed
 * panel (row i's at pa + (i / SMR) * pstride + k * SMR + i % SMR); bp, a strip packed NR wide
 * (zero past cols); e: NULL or the epilogue. Columns past cols are neither read nor written in
 * c (masked loads and stores). */
typedef void (*tile_fn)(const float *pa, size_t pstride, const float *bp, float *c, size_t ldc,
                        int K, int rows, int cols, int load, const tile_epilogue *e);
/* The same, reading row k of b at bp + boff[k] (whole vectors: NR columns readable there) --
 * the implicit im2col of s_conv's tap mode. */
typedef void (*taps_fn)(const float *pa, size_t pstride, const float *bp, const int *boff,
                        float *c, size_t ldc, int K, int rows, int cols, int load,
                        const tile_epilogue *e);

#ifdef OPTC_X86
/* masks of the first `left` lanes, and masked loads/stores, per vector width */
__attribute__((target("avx512f"))) static inline __mmask16 m512_mask(int left) {
    return left >= 16 ? (__mmask16)0xFFFF : (left <= 0 ? 0 : (__mmask16)((1u << left) - 1));
}
__attribute__((target("avx512f"))) static inline __m512 m512_load(__mmask16 m, const float *p) {
    return _mm512_maskz_loadu_ps(m, p);
}
__attribute__((target("avx512f"))) static inline void m512_store(float *p, __mmask16 m,
                                                                 __m512 v) {
    _mm512_mask_storeu_ps(p, m, v);
}
__attribute__((target("avx2,fma"))) static inline __m256i m256_mask(int left) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
__attribute__((target("avx2,fma"))) static inline __m256 m256_load(__m256i m, const float *p) {
    return _mm256_maskload_ps(p, m);
}
__attribute__((target("avx2,fma"))) static inline void m256_store(float *p, __m256i m,
                                                                  __m256 v) {
    _mm256_maskstore_ps(p, m, v);
}

/* every loop over registers is unrolled (constant bounds), so that acc[][] stays in registers */
#define UNROLL _Pragma("GCC unroll 32")
/* the register activation per vector width (LANES floats) */
#define VACT_16 vact_512
#define VACT_8 vact_256
/* a vector of c (or of the residual) at column LANES * v of the strip: masked only where the
 * strip ends inside it (AMD's masked AVX2 stores are microcoded: slow) */
#define LOADV(P, M, LANES, v, ptr) \
    (LANES * ((v) + 1) <= cols ? P##_loadu_ps(ptr) : M##_load(mask[v], ptr))
#define STOREV(P, M, LANES, v, ptr, x)               \
    do {                                             \
        if (LANES * ((v) + 1) <= cols)               \
            P##_storeu_ps(ptr, x);                   \
        else                                         \
            M##_store(ptr, mask[v], x);              \
    } while (0)

/* where a micro-kernel reads row k of b: a packed strip, or an offset table (tap mode) */
#define BROW_PACKED(k, NV, LANES) (bp + (size_t)(k) * (NV) * (LANES))
#define BROW_TAPS(k, NV, LANES) (bp + boff[k])
#define PARAMS_PACKED const float *bp
#define PARAMS_TAPS const float *bp, const int *boff
/* the k loop: tap mode's unrolled twice (its rows' offsets read from the table; 3x3 convs
 * in tap mode measured 0.90-0.94x the time; the packed kernels gained nothing) */
#define KLOOP_PACKED
#define KLOOP_TAPS _Pragma("GCC unroll 2")

#define DEFINE_TILE(NAME, TARGET, P, M, VEC, MASK, LANES, ROWS, NV, MODE)                     \
    __attribute__((target(TARGET))) static void NAME(const float *pa, size_t pstride,         \
                                                     PARAMS_##MODE, float *c, size_t ldc,     \
                                                     int K, int rows, int cols, int load,     \
                                                     const tile_epilogue *e) {                \
        VEC acc[ROWS][NV];                                                                    \
        MASK mask[NV];                                                                        \
        UNROLL for (int v = 0; v < NV; v++) mask[v] = M##_mask(cols - LANES * v);             \
        UNROLL for (int i = 0; i < ROWS; i++) UNROLL for (int v = 0; v < NV; v++)            \
            acc[i][v] = load && i < rows ? LOADV(P, M, LANES, v, c + (size_t)i * ldc + LANES * v) \
                                         : P##_setzero_ps();                                  \
        KLOOP_##MODE for (int k = 0; k < K; k++) {                                           \
            VEC bv[NV];                                                                       \
            /* the next tile's weights (the panels after this tile's): in a network they come \
             * from memory, and a tile with one strip of columns uses them once */            \
            if ((k & 1) == 0)                                                                 \
                UNROLL for (int p = 0; p < (ROWS + SMR - 1) / SMR; p++)                       \
                    _mm_prefetch((const char *)(pa + ((ROWS + SMR - 1) / SMR + p) * pstride +  \
                                                (size_t)k * SMR), _MM_HINT_T0);                \
            const float *brow = BROW_##MODE(k, NV, LANES);                                    \
            UNROLL for (int v = 0; v < NV; v++) bv[v] = P##_loadu_ps(brow + LANES * v);       \
            UNROLL for (int i = 0; i < ROWS; i++) {                                           \
                const VEC wi = P##_set1_ps(pa[(i / SMR) * pstride + (size_t)k * SMR + i % SMR]); \
                UNROLL for (int v = 0; v < NV; v++)                                           \
                    acc[i][v] = P##_fmadd_ps(wi, bv[v], acc[i][v]);                           \
            }                                                                                 \
        }                                                                                     \
        if (e && e->bias)                                                                     \
            UNROLL for (int i = 0; i < ROWS; i++) {                                           \
                const VEC bi = P##_set1_ps(i < rows ? e->bias[i] : 0.f);                      \
                UNROLL for (int v = 0; v < NV; v++) acc[i][v] = P##_add_ps(acc[i][v], bi);    \
            }                                                                                 \
        if (e && e->res)                                                                      \
            UNROLL for (int i = 0; i < ROWS; i++) if (i < rows) UNROLL for (int v = 0; v < NV; \
                                                                          v++)                \
                acc[i][v] = P##_add_ps(acc[i][v], LOADV(P, M, LANES, v, e->res + (size_t)i *  \
                                                        e->ldres + LANES * v));               \
        if (e && e->act) /* vact.h: NaN kept */                                               \
            UNROLL for (int i = 0; i < ROWS; i++) UNROLL for (int v = 0; v < NV; v++)        \
                acc[i][v] = VACT_##LANES(acc[i][v], e->act, e->a, e->b);                      \
        UNROLL for (int i = 0; i < ROWS; i++) if (i < rows) UNROLL for (int v = 0; v < NV;    \
                                                                      v++)                    \
            STOREV(P, M, LANES, v, c + (size_t)i * ldc + LANES * v, acc[i][v]);               \
    }

DEFINE_TILE(t512_8x48, "avx512f", _mm512, m512, __m512, __mmask16, 16, 8, 3, PACKED)
DEFINE_TILE(t512_8x32, "avx512f", _mm512, m512, __m512, __mmask16, 16, 8, 2, PACKED)
DEFINE_TILE(t512_8x16, "avx512f", _mm512, m512, __m512, __mmask16, 16, 8, 1, PACKED)
DEFINE_TILE(t512_24x16, "avx512f", _mm512, m512, __m512, __mmask16, 16, 24, 1, PACKED)
DEFINE_TILE(t512_8x48_taps, "avx512f", _mm512, m512, __m512, __mmask16, 16, 8, 3, TAPS)
DEFINE_TILE(t256_4x24, "avx2,fma", _mm256, m256, __m256, __m256i, 8, 4, 3, PACKED)
DEFINE_TILE(t256_4x16, "avx2,fma", _mm256, m256, __m256, __m256i, 8, 4, 2, PACKED)
DEFINE_TILE(t256_4x8, "avx2,fma", _mm256, m256, __m256, __m256i, 8, 4, 1, PACKED)
DEFINE_TILE(t256_8x8, "avx2,fma", _mm256, m256, __m256, __m256i, 8, 8, 1, PACKED)
DEFINE_TILE(t256_4x24_taps, "avx2,fma", _mm256, m256, __m256, __m256i, 8, 4, 3, TAPS)

/* Column micro-kernels for a strip of at most 4 columns (the last of a product whose width
 * is not a multiple of the vector: 49 = 24 + 24 + 1 pixels at 7x7, 196 = 8 * 24 + 4 at
 * 14x14): P panels (8 P rows, each panel's row k one vector) times NC columns, broadcast
 * from the strip (row k at bp + k * bstride). The row kernels would spend a whole vector of
 * 8 columns, and a call per 4 rows, on them (N = 49 ran 1.3x as long as N = 48). c
 * (+)= the product over rows x cols; the caller applies the epilogue. */
typedef void (*cols_fn)(const float *pa, size_t pstride, const float *bp, size_t bstride,
                        float *c, size_t ldc, int K, int rows, int load);
#define DEFINE_COLS(NAME, P, NC)                                                               \
    __attribute__((target("avx2,fma"))) static void NAME(const float *pa, size_t pstride,     \
                                                         const float *bp, size_t bstride,     \
                                                         float *c, size_t ldc, int K,         \
                                                         int rows, int load) {                \
        __m256 acc[P][NC];                                                                    \
        UNROLL for (int p = 0; p < P; p++) UNROLL for (int j = 0; j < NC; j++)               \
            acc[p][j] = _mm256_setzero_ps();                                                  \
        for (int k = 0; k < K; k++) {                                                         \
            __m256 av[P];                                                                     \
            UNROLL for (int p = 0; p < P; p++)                                                \
                av[p] = _mm256_loadu_ps(pa + p * pstride + (size_t)k * SMR);                  \
            UNROLL for (int j = 0; j < NC; j++) {                                             \
                const __m256 bj = _mm256_broadcast_ss(bp + (size_t)k * bstride + j);          \
                UNROLL for (int p = 0; p < P; p++)                                            \
                    acc[p][j] = _mm256_fmadd_ps(av[p], bj, acc[p][j]);                        \
            }                                                                                 \
        }                                                                                     \
        float t[NC][P * SMR];                                                                 \
        UNROLL for (int j = 0; j < NC; j++) UNROLL for (int p = 0; p < P; p++)               \
            _mm256_storeu_ps(t[j] + p * SMR, acc[p][j]);                                      \
        for (int i = 0; i < rows; i++)                                                        \
            UNROLL for (int j = 0; j < NC; j++) {                                             \
                float *d = c + (size_t)i * ldc + j;                                           \
                *d = load ? *d + t[j][i] : t[j][i];                                           \
            }                                                                                 \
    }
/* the kernels of P panels, 1 to 4 columns */
#define DEFINE_COLS_OF(P)                                                                      \
    DEFINE_COLS(c256_##P##x1, P, 1)                                                            \
    DEFINE_COLS(c256_##P##x2, P, 2) DEFINE_COLS(c256_##P##x3, P, 3) DEFINE_COLS(c256_##P##x4, P, 4)
DEFINE_COLS_OF(1)
DEFINE_COLS_OF(2)
DEFINE_COLS_OF(3)
/* COLS_P panels (24 rows) per call, at most COLS_N columns */
#define COLS_P 3
#define COLS_N 4
static const cols_fn C256[COLS_P][COLS_N] = {{c256_1x1, c256_1x2, c256_1x3, c256_1x4},
                                             {c256_2x1, c256_2x2, c256_2x3, c256_2x4},
                                             {c256_3x1, c256_3x2, c256_3x3, c256_3x4}};

/* A SIMD level's micro-kernels: wide[nv] has `rows` rows and nv vectors of `lanes` columns;
 * narrow (narrow_rows rows, one vector) serves products of at most `lanes` columns; taps is
 * wide[3] reading b through an offset table; cols (AVX2) takes a last strip of at most
 * COLS_N columns. */
typedef struct {
    int lanes, rows, narrow_rows;
    tile_fn wide[4], narrow;
    taps_fn taps;
    const cols_fn (*cols)[COLS_N]; /* column kernels, [panels - 1][columns - 1] (or NULL) */
} kernels;

/* AVX-512 takes the AVX2 column kernels too: a last strip of 1-4 columns would spend a
 * whole 16-wide vector (N = 49, every 7x7 layer: 64 columns computed for 49), and 256-bit
 * FMAs lose nothing on CPUs that split 512-bit ones in two */
static const kernels K512 = {16, 8, 24, {NULL, t512_8x16, t512_8x32, t512_8x48}, t512_24x16,
                             t512_8x48_taps, C256};
static const kernels K256 = {8, 4, 8, {NULL, t256_4x8, t256_4x16, t256_4x24}, t256_8x8,
                             t256_4x24_taps, C256};

#ifdef OPTC_X86
/* pack_b's whole 48-column strips in AVX-512: three vector copies a row, the row PACK_AHEAD
 * rows down prefetched (each row of b is its own short stream, which the hardware prefetcher
 * picks up late); returns the columns it packed (a multiple of 48) */
#define PACK_AHEAD 4
__attribute__((target("avx512f"))) static int pack_b_512(const float *b, size_t ldb, int kc,
                                                         int cols, float *bp) {
    const int whole = cols / 48 * 48;
    for (int k = 0; k < kc; k++) {
        const float *src = b + (size_t)k * ldb;
        const float *ahead = src + (k + PACK_AHEAD < kc ? PACK_AHEAD * ldb : 0);
        float *dst = bp + (size_t)k * 48;
        for (int s0 = 0; s0 < whole; s0 += 48, dst += (size_t)48 * kc) {
            _mm_prefetch((const char *)(ahead + s0), _MM_HINT_T0);
            _mm_prefetch((const char *)(ahead + s0 + 16), _MM_HINT_T0);
            _mm_prefetch((const char *)(ahead + s0 + 32), _MM_HINT_T0);
            _mm512_storeu_ps(dst, _mm512_loadu_ps(src + s0));
            _mm512_storeu_ps(dst + 16, _mm512_loadu_ps(src + s0 + 16));
            _mm512_storeu_ps(dst + 32, _mm512_loadu_ps(src + s0 + 32));
        }
    }
    return whole;
}
#endif

/* bp: columns n0 .. n0 + cols of b's rows k0 .. k0 + kc as strips of nr columns (the last one
 * rounded up to whole vectors of `lanes`), zero padded; strip s starts at bp + s * kc * nr. */
static void pack_b(const float *b, size_t ldb, int kc, int cols, int nr, int lanes,
                   float *bp) {
#ifdef OPTC_X86
    if (lanes == 16 && nr == 48) {
        const int done = pack_b_512(b, ldb, kc, cols, bp);
        if (done == cols) return;
        b += done;
        bp += (size_t)done * kc;
        cols -= done;
    }
#endif
    for (int k = 0; k < kc; k++) {
        const float *src = b + (size_t)k * ldb;
        for (int s0 = 0; s0 < cols; s0 += nr) {
            const int w = cols - s0 < nr ? cols - s0 : nr, wp = (w + lanes - 1) / lanes * lanes;
            float *dst = bp + (size_t)s0 * kc + (size_t)k * wp;
            for (int j = 0; j < w; j++) dst[j] = src[s0 + j];
            for (int j = w; j < wp; j++) dst[j] = 0.f;
        }
    }
}

/* One micro-kernel call at rows r0.. and columns n .. n + w of c, the epilogue in the last k
 * pass. */
static void run_tile(tile_fn fn, taps_fn tf, const int *boff, const float *pa, size_t pstride,
                     const float *bs, float *c, size_t ldc, int kc, int r0, int valid, int n,
                     int w, int load, const s_epilogue *ep) {
    float *cs = c + (size_t)r0 * ldc + n;
    if (ep == NULL) {
        if (tf)
            tf(pa, pstride, bs, boff, cs, ldc, kc, valid, w, load, NULL);
        else
            fn(pa, pstride, bs, cs, ldc, kc, valid, w, load, NULL);
        return;
    }
    const tile_epilogue e = {ep->bias ? ep->bias + r0 : NULL,
                             ep->res ? ep->res + (size_t)r0 * ep->ldres + n : NULL, ep->ldres,
                             ep->act, ep->a, ep->b};
    if (tf)
        tf(pa, pstride, bs, boff, cs, ldc, kc, valid, w, load, &e);
    else
        fn(pa, pstride, bs, cs, ldc, kc, valid, w, load, &e);
}

/* The column kernels over rows r0 .. r1 (r0 a multiple of SMR) and columns n .. n + w of c,
 * COLS_P panels a call, the epilogue (scalar: a few columns) in the last k pass. pa: panel
 * 0 at the pass's first k. */
static void run_cols(const kernels *kn, const float *pa, size_t pstride, const float *bs,
                     float *c, size_t ldc, int kc, int r0, int r1, int n, int w, int load,
                     const s_epilogue *ep) {
    for (int r = r0; r < r1; r += COLS_P * SMR) {
        const int rows = r1 - r < COLS_P * SMR ? r1 - r : COLS_P * SMR;
        float *cs = c + (size_t)r * ldc + n;
        kn->cols[(rows + SMR - 1) / SMR - 1][w - 1](pa + (size_t)(r / SMR) * pstride, pstride,
                                                    bs, (size_t)kn->lanes, cs, ldc, kc, rows,
                                                    load);
        if (ep)
            epilogue_rows(cs, ldc, rows, w, ep->bias ? ep->bias + r : NULL,
                          ep->res ? ep->res + (size_t)r * ep->ldres + n : NULL, ep->ldres,
                          ep->act, ep->a, ep->b);
    }
}

/* the depth of each of the fewest passes of at most `most` k that cover K, all as even as
 * can be: a shallow last pass would load and store c for a few k (K = 288: 144 + 144, not
 * 256 + 32); K > 0 */
static int pass_depth(int K, int most) {
    const int passes = (K + most - 1) / most;
    return (K + passes - 1) / passes;
}

/* The blocked product with one level's kernels; ws: WS_FLOATS of space. bpre: NULL, or b
 * already packed whole (K x N as strips of the width strip_width gives, strip s0 at
 * bpre + s0 * K, rows of its padded width), b and ldb unused then. */
static void gemm_simd(const kernels *kn, const float *ap, const float *b, size_t ldb,
                      const float *bpre, float *c, size_t ldc, int M, int N, int K,
                      int accumulate, const s_epilogue *ep, float *ws) {
    ws = line_up(ws);
    if (K <= 0) { /* no k pass would write c: zeros (or c), then the epilogue */
        gemm_portable(ap, b, ldb, c, ldc, M, N, 0, accumulate, ep);
        return;
    }
    const size_t pstride = (size_t)K * SMR;
    const int narrow = N <= kn->lanes, nr = narrow ? kn->lanes : 3 * kn->lanes;
    const int kstep = pass_depth(K, KC);
    for (int k0 = 0; k0 < K; k0 += kstep) {
        const int kc = K - k0 < kstep ? K - k0 : kstep, load = accumulate || k0 > 0;
        const s_epilogue *last = k0 + kc == K ? ep : NULL;
        int nc = bpre ? N : BLOCK_FLOATS / kc / nr * nr;
        if (nc < nr) nc = nr;
        if (nc < N) { /* blocks of even width (a sliver of a last block would stream every
                       * weight again for a few columns); 1.25x the budget for one block */
            const int blocks = N <= nc + nc / 4 ? 1 : (N + nc - 1) / nc;
            nc = ((N + blocks - 1) / blocks + nr - 1) / nr * nr;
        }
        for (int n0 = 0; n0 < N; n0 += nc) {
            const int cols = N - n0 < nc ? N - n0 : nc;
            /* a last strip of at most COLS_N columns goes to the column kernels */
            const int tail = kn->cols && cols % nr <= COLS_N ? cols % nr : 0;
            if (!bpre) pack_b(b + (size_t)k0 * ldb + n0, ldb, kc, cols, nr, kn->lanes, ws);
            /* rows in blocks whose weights stay in L2; within one, each micro-kernel's rows
             * pass over every strip of the packed block (in L2). Rows outside, strips inside:
             * each row of c (and of the residual) is then written (read) front to back, a
             * handful of streams the prefetcher follows; strips outside walked every tile
             * down all the rows, a stream per row (1x1 convs in ResNet-50 1.4-2.1x slower
             * than onnxruntime in the network, against 1.3-1.6x now) */
            for (int m0 = 0; m0 < M; m0 += MC) {
                const int m1 = M - m0 < MC ? M : m0 + MC;
                for (int r0 = m0; r0 < m1;) {
                    const int big = narrow && m1 - r0 > 2 * SMR; /* 3 whole panels left */
                    const int rows = big ? kn->narrow_rows : kn->rows;
                    const float *pa =
                        ap + (size_t)(r0 / SMR) * pstride + (size_t)k0 * SMR + r0 % SMR;
                    for (int s0 = 0; s0 < cols - tail; s0 += nr) {
                        const int w = cols - s0 < nr ? cols - s0 : nr;
                        const int nv = (w + kn->lanes - 1) / kn->lanes;
                        const float *bs = bpre ? bpre + (size_t)s0 * K + (size_t)k0 * nv * kn->lanes
                                               : ws + (size_t)s0 * kc;
                        run_tile(big ? kn->narrow : kn->wide[nv], NULL, NULL, pa, pstride, bs, c,
                                 ldc, kc, r0, m1 - r0 < rows ? m1 - r0 : rows, n0 + s0, w, load,
                                 last);
                    }
                    r0 += rows;
                }
                if (tail) { /* its strip is one vector wide: row k at k * lanes */
                    const int s0 = cols - tail;
                    const float *bs = bpre ? bpre + (size_t)s0 * K + (size_t)k0 * kn->lanes
                                           : ws + (size_t)s0 * kc;
                    run_cols(kn, ap + (size_t)k0 * SMR, pstride, bs, c, ldc, kc, m0, m1,
                             n0 + s0, tail, load, last);
                }
            }
        }
    }
}

/* The product of the packed weights with the implicit matrix b[k, n] = xb[boff[k] + n]
 * (n < N): s_conv's tap mode, no im2col. Whole strips read b where it lies; the last,
 * partial one is copied into ws (zero padded) for the packed kernels. */
static void gemm_taps(const kernels *kn, const float *ap, const float *xb, const int *boff,
                      float *c, size_t ldc, int M, int N, int K, const s_epilogue *ep,
                      float *ws) {
    ws = line_up(ws);
    const size_t pstride = (size_t)K * SMR;
    const int nr = 3 * kn->lanes;
    const int kstep = pass_depth(K, KC_TAPS);
    for (int k0 = 0; k0 < K; k0 += kstep) {
        const int kc = K - k0 < kstep ? K - k0 : kstep, load = k0 > 0;
        const s_epilogue *last = k0 + kc == K ? ep : NULL;
        for (int m0 = 0; m0 < M; m0 += MC) {
            const int m1 = M - m0 < MC ? M : m0 + MC;
            for (int s0 = 0; s0 < N; s0 += nr) {
                const int w = N - s0 < nr ? N - s0 : nr;
                const int nv = (w + kn->lanes - 1) / kn->lanes;
                const float *bs = xb + s0;
                if (w < nr) { /* the partial strip, packed */
                    const int wp = nv * kn->lanes;
                    for (int k = 0; k < kc; k++) {
                        const float *src = xb + boff[k0 + k] + s0;
                        float *dst = ws + (size_t)k * wp;
                        for (int j = 0; j < w; j++) dst[j] = src[j];
                        for (int j = w; j < wp; j++) dst[j] = 0.f;
                    }
                    bs = ws;
                }
                for (int r0 = m0; r0 < m1; r0 += kn->rows) {
                    const float *pa =
                        ap + (size_t)(r0 / SMR) * pstride + (size_t)k0 * SMR + r0 % SMR;
                    run_tile(kn->wide[nv], w < nr ? NULL : kn->taps, boff + k0, pa, pstride,
                             bs, c, ldc, kc, r0, m1 - r0 < kn->rows ? m1 - r0 : kn->rows, s0,
                             w, load, last);
                }
            }
        }
    }
}
#endif

/* floats of workspace gemm_ws needs */
#define WS_FLOATS (BLOCK_FLOATS + 48 * KC + LINE_SLACK)

static void gemm_ws(const float *ap, const float *b, size_t ldb, float *c, size_t ldc, int M,
                    int N, int K, int accumulate, const s_epilogue *ep, float *ws) {
    if (M <= 0 || N <= 0) return;
#ifdef OPTC_X86
    const int level = s_simd_level();
    if (level >= 1 && K > 0) {
        gemm_simd(level >= 2 ? &K512 : &K256, ap, b, ldb, NULL, c, ldc, M, N, K, accumulate,
                  ep, ws);
        return;
    }
#endif
    gemm_portable(ap, b, ldb, c, ldc, M, N, K, accumulate, ep);
}

size_t s_gemm_ws_floats(void) { return WS_FLOATS; }

void s_gemm_ws(const float *ap, const float *b, size_t ldb, float *c, size_t ldc, int M, int N,
               int K, int accumulate, const s_epilogue *ep, float *ws) {
    gemm_ws(ap, b, ldb, c, ldc, M, N, K, accumulate, ep, ws);
}

int s_gemm(const float *ap, const float *b, size_t ldb, float *c, size_t ldc, int M, int N,
           int K, int accumulate, const s_epilogue *ep) {
    float *ws = falloc(WS_FLOATS);
    if (ws == NULL) return -1;
    gemm_ws(ap, b, ldb, c, ldc, M, N, K, accumulate, ep, ws);
    free(ws);
    return 0;
}

typedef struct {
    const float *ap, *b;
    float *c;
    int batch, M, N, K;
} batch_job;

static int batch_share(void *p, int t, int T) {
    const batch_job *j = p;
    const size_t astride = (size_t)(j->M + SMR - 1) / SMR * SMR * j->K;
    float *ws = falloc(WS_FLOATS);
    if (ws == NULL) return -1;
    for (int i = t; i < j->batch; i += T)
        gemm_ws(j->ap + i * astride, j->b + (size_t)i * j->K * j->N, (size_t)j->N,
                j->c + (size_t)i * j->M * j->N, (size_t)j->N, j->M, j->N, j->K, 0, NULL, ws);
    free(ws);
    return 0;
}

/* multiply-adds that pay for a thread (starting one costs tens of microseconds) */
#define WORK_PER_THREAD (4.0 * 1024 * 1024)

int s_gemm_batch(const float *ap, const float *b, float *c, int batch, int M, int N, int K,
                 int threads) {
    batch_job job = {ap, b, c, batch, M, N, K};
    int most = batch;
    const double work = (double)batch * M * N * K / WORK_PER_THREAD;
    if (work < most) most = work < 1 ? 1 : (int)work;
    return optc_parallel(batch_share, &job, threads < most ? threads : most);
}

/* floor(a / s) and a mod s (in [0, s)) for s > 0 */
static inline int floordiv(int a, int s) { return a >= 0 ? a / s : -((-a + s - 1) / s); }

/* Strided convs on the im2col path read their input through its phases (pad_phases, below,
 * without padding): phase (ph, pw) of channel c holds x[c, r * sh + ph, q * sw + pw] at
 * (r, q) < (Hs, Ws) = (ceil(H / sh), ceil(W / sw)), zero past the image. Input row
 * oh * sh + a (a = i * dh - pt) is then row oh + floor(a / sh) of phase a mod sh, so every tap
 * reads a contiguous stretch, as in a stride-1 conv; a 1x1 stride-s conv without padding
 * reads phase (0, 0) whole, as a 1x1 stride-1 one. One pass over the input.
 *
 * The im2col matrix of output pixels p0 .. p0 + n (taps k = (c, i, j) < C * kh * kw) read from
 * the phases xs (Hs x Ws planes; the image itself for stride 1), laid out as gemm_simd's bpre:
 * strips of nr pixels (the last rounded up to whole vectors of lanes, zero padded), strip s0
 * at cols + s0 * K, its rows k of the padded width (nr = n, lanes = 1: the plain K x n matrix).
 * Each stretch of an output row is copied straight into its strips (short copies: inline
 * loops, not memcpy calls). */
#ifdef OPTC_X86
__attribute__((optimize("no-tree-loop-distribute-patterns"), target_clones("avx2", "default")))
#endif
static void im2col_packed(const float *xs, int C, int Hs, int Ws, int kh, int kw, int sh, int sw,
                          int pt, int pl, int dh, int dw, int OW, int p0, int n, int nr,
                          int lanes, float *cols) {
    const size_t K = (size_t)C * kh * kw;
    const int last = (n - 1) / nr * nr; /* the last strip and its padded width */
    const int wlast = n - last, wplast = (wlast + lanes - 1) / lanes * lanes;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < kh; i++)
            for (int j = 0; j < kw; j++) {
                const size_t k = ((size_t)c * kh + i) * kw + j;
                const int a = i * dh - pt, b = j * dw - pl;
                const int fa = floordiv(a, sh), fb = floordiv(b, sw);
                const float *plane =
                    xs + (((size_t)c * sh + (a - fa * sh)) * sw + (b - fb * sw)) * Hs * Ws;
                int oh = p0 / OW, ow = p0 % OW;
                for (int q = 0; q < n;) {
                    /* one stretch of an output row (columns ow ..), cut at strip ends */
                    const int s0 = q / nr * nr, wp = s0 == last ? wplast : nr;
                    int len = OW - ow < n - q ? OW - ow : n - q;
                    if (len > s0 + nr - q) len = s0 + nr - q;
                    float *d = cols + (size_t)s0 * K + k * wp + (q - s0);
                    const int r = oh + fa;
                    if (r < 0 || r >= Hs) {
                        for (int t = 0; t < len; t++) d[t] = 0.f;
                    } else { /* phase column ow + fb + t: inside [0, Ws) for t in [lo, hi) */
                        const float *src = plane + (size_t)r * Ws + ow + fb;
                        const int off = ow + fb;
                        int lo = off >= 0 ? 0 : -off, hi = Ws - off;
                        if (lo > len) lo = len;
                        if (hi > len) hi = len;
                        if (hi < lo) hi = lo;
                        for (int t = 0; t < lo; t++) d[t] = 0.f;
                        for (int t = lo; t < hi; t++) d[t] = src[t];
                        for (int t = hi; t < len; t++) d[t] = 0.f;
                    }
                    q += len;
                    ow += len;
                    if (ow == OW) {
                        ow = 0;
                        oh++;
                    }
                }
                float *pad = cols + (size_t)last * K + k * wplast;
                for (int t = wlast; t < wplast; t++) pad[t] = 0.f;
            }
}

/* Tap mode (implicit im2col, as in direct convolution): the input, padded and split into its
 * phases, is xq[c][ph][pw][r][q] = x[c, r * sh + ph - pt, q * sw + pw - pl] (zero outside the
 * image) for r < Hq, q < Wq, the planes (c, ph, pw) ps floats apart. Output pixel (oh, ow) is
 * then column n = oh * Wq + ow of the matrix b[k, n] = xq[boff[k] + n], tap k = (c, i, j) at
 *   boff[k] = ((c * sh + a % sh) * sw + b % sw) * ps + (a / sh) * Wq + b / sw
 * (a = i * dh, b = j * dw), with Hq = OH + (kh - 1) * dh / sh and Wq = OW + (kw - 1) * dw / sw:
 * every tap reads one contiguous stretch per output row, so the GEMM's micro-kernel loads b
 * where it lies. Columns ow >= OW of each row (Wq - OW of them) are computed and dropped when
 * the block is written out (compact). */
/* Phase pw's columns q of one input row: dst[q] = src[q * sw + pw - pl] inside the row
 * (W pixels), zero outside, for q < Wq; its copy a plain strided loop GCC vectorises (it
 * tested every column against the row's bounds: 12 % of a 3x3 stride-2 conv's time). */
static inline __attribute__((always_inline)) void phase_row(const float *restrict src, int W,
                                                            int sw, int pw, int pl, int Wq,
                                                            float *restrict dst) {
    /* q*sw + pw - pl in [0, W) for q in [lo, hi) */
    int lo = pl - pw > 0 ? (pl - pw + sw - 1) / sw : 0;
    int hi = W + pl - pw > 0 ? (W + pl - pw + sw - 1) / sw : 0;
    if (lo > Wq) lo = Wq;
    if (hi > Wq) hi = Wq;
    if (hi < lo) hi = lo;
    for (int q = 0; q < lo; q++) dst[q] = 0.f;
    const float *s0 = src + ((ptrdiff_t)lo * sw + pw - pl);
    if (sw == 1)
        for (int q = 0; q < hi - lo; q++) dst[lo + q] = s0[q];
    else if (sw == 2)
        for (int q = 0; q < hi - lo; q++) dst[lo + q] = s0[2 * q];
    else
        for (int q = 0; q < hi - lo; q++) dst[lo + q] = s0[(ptrdiff_t)q * sw];
    for (int q = hi; q < Wq; q++) dst[q] = 0.f;
}

#ifdef OPTC_X86
__attribute__((target_clones("avx2", "default")))
#endif
static void pad_phases(const float *x, int C, int H, int W, int sh, int sw, int pt, int pl,
                       int Hq, int Wq, size_t ps, float *xq) {
    for (int c = 0; c < C; c++)
        for (int ph = 0; ph < sh; ph++)
            for (int pw = 0; pw < sw; pw++) {
                float *dst = xq + (((size_t)c * sh + ph) * sw + pw) * ps;
                for (int r = 0; r < Hq; r++, dst += Wq) {
                    const int ih = r * sh + ph - pt;
                    if (ih < 0 || ih >= H) {
                        memset(dst, 0, sizeof(float) * (size_t)Wq);
                        continue;
                    }
                    phase_row(x + ((size_t)c * H + ih) * W, W, sw, pw, pl, Wq, dst);
                }
            }
}

/* y's pixels among the columns q0 .. q0 + n of the tap-mode product t (M rows, stride ldt):
 * y[m, oh * OW + ow] = act(t[m, oh * Wq + ow - q0] + bias[m] + res[m, oh * OW + ow]). */
#ifdef OPTC_X86
__attribute__((target_clones("avx2", "default")))
#endif
static void compact(const float *t, size_t ldt, int M, int q0, int n, int Wq, int OW,
                    float *y, size_t P, const s_epilogue *ep) {
    for (int q = q0; q < q0 + n;) {
        const int oh = q / Wq, ow = q % Wq;
        if (ow >= OW) {
            q = (oh + 1) * Wq;
            continue;
        }
        const int len = OW - ow < q0 + n - q ? OW - ow : q0 + n - q;
        const size_t p = (size_t)oh * OW + ow;
        for (int m = 0; m < M; m++) {
            const float *src = t + (size_t)m * ldt + (q - q0);
            float *dst = y + (size_t)m * P + p;
            if (ep == NULL) {
                memcpy(dst, src, sizeof(float) * (size_t)len);
                continue;
            }
            const float bm = ep->bias ? ep->bias[m] : 0.f;
            const float *r = ep->res ? ep->res + (size_t)m * ep->ldres + p : NULL;
            if (ep->act == 1 || ep->act == 2) { /* one pass: clamp, keeping a NaN */
                const float lo = ep->act == 1 ? 0.f : ep->a, hi = ep->act == 1 ? INFINITY : ep->b;
                if (r)
                    for (int j = 0; j < len; j++) {
                        const float v = src[j] + bm + r[j], u = v < lo ? lo : v;
                        dst[j] = u > hi ? hi : u;
                    }
                else
                    for (int j = 0; j < len; j++) {
                        const float v = src[j] + bm, u = v < lo ? lo : v;
                        dst[j] = u > hi ? hi : u;
                    }
                continue;
            }
            if (r)
                for (int j = 0; j < len; j++) dst[j] = src[j] + bm + r[j];
            else
                for (int j = 0; j < len; j++) dst[j] = src[j] + bm;
            activate_span(dst, (size_t)len, ep->act, ep->a, ep->b);
        }
        q += len;
    }
}

typedef struct {
    const float *x; /* the image, or its phases (strided convs) */
    int C, Hs, Ws, kh, kw, sh, sw, pt, pl, dh, dw, OW, P, M, K, pc;
    size_t direct; /* 1x1 without padding: the row stride of its input matrix (else 0) */
    const float *wp;
    const s_epilogue *ep;
    float *y;
    const int *boff; /* tap mode: the offsets (x is then xq), else NULL */
    int Wq, N;       /* tap mode: the row stride of the product's columns, and their count */
} conv_job;

#ifdef OPTC_X86
/* Share t of T in tap mode: blocks of pc of the product's N columns, t, t + T, ... */
static int taps_share(void *p, int t, int T) {
    const conv_job *j = p;
    const int level = s_simd_level();
    const kernels *kn = level >= 2 ? &K512 : &K256;
    const int compacts = j->Wq != j->OW;
    float *ws = falloc(WS_FLOATS + (compacts ? (size_t)j->M * j->pc : 0));
    if (ws == NULL) return -1;
    float *tmp = ws + WS_FLOATS;
    for (int q0 = t * j->pc; q0 < j->N; q0 += T * j->pc) {
        const int n = j->N - q0 < j->pc ? j->N - q0 : j->pc;
        if (compacts) {
            gemm_taps(kn, j->wp, j->x + q0, j->boff, tmp, (size_t)n, j->M, n, j->K, NULL, ws);
            compact(tmp, (size_t)n, j->M, q0, n, j->Wq, j->OW, j->y, (size_t)j->P, j->ep);
            continue;
        }
        s_epilogue ep; /* the columns are y's pixels */
        if (j->ep) {
            ep = *j->ep;
            if (ep.res) ep.res += q0;
        }
        gemm_taps(kn, j->wp, j->x + q0, j->boff, j->y + q0, (size_t)j->P, j->M, n, j->K,
                  j->ep ? &ep : NULL, ws);
    }
    free(ws);
    return 0;
}
#endif

/* Share t of T: blocks of pixels t, t + T, ... */
static int conv_share(void *p, int t, int T) {
    const conv_job *j = p;
    /* the im2col block: pc pixels rounded up to whole strips */
    const size_t cols_floats = j->direct ? 0 : (size_t)j->K * (j->pc + 48);
    float *ws = falloc(WS_FLOATS + cols_floats);
    if (ws == NULL) return -1;
    float *cols = ws + WS_FLOATS;
    const int blocks = (j->P + j->pc - 1) / j->pc;
#ifdef OPTC_X86
    const int level = s_simd_level();
    const kernels *kn = level >= 2 ? &K512 : (level == 1 ? &K256 : NULL);
#endif
    for (int b = t; b < blocks; b += T) {
        const int p0 = b * j->pc, n = j->P - p0 < j->pc ? j->P - p0 : j->pc;
        s_epilogue ep;
        if (j->ep) {
            ep = *j->ep;
            if (ep.res) ep.res += p0;
        }
        const s_epilogue *e = j->ep ? &ep : NULL;
        if (j->direct) { /* the input (or its phase (0, 0)) is the im2col matrix */
            gemm_ws(j->wp, j->x + p0, j->direct, j->y + p0, (size_t)j->P, j->M, n, j->K, 0, e,
                    ws);
            continue;
        }
#ifdef OPTC_X86
        if (kn) { /* im2col straight into the GEMM's packed strips */
            const int nr = n <= kn->lanes ? kn->lanes : 3 * kn->lanes;
            im2col_packed(j->x, j->C, j->Hs, j->Ws, j->kh, j->kw, j->sh, j->sw, j->pt, j->pl,
                          j->dh, j->dw, j->OW, p0, n, nr, kn->lanes, cols);
            gemm_simd(kn, j->wp, NULL, 0, cols, j->y + p0, (size_t)j->P, j->M, n, j->K, 0, e,
                      ws);
            continue;
        }
#endif
        /* the plain K x n im2col matrix for the portable GEMM */
        im2col_packed(j->x, j->C, j->Hs, j->Ws, j->kh, j->kw, j->sh, j->sw, j->pt, j->pl, j->dh,
                      j->dw, j->OW, p0, n, n, 1, cols);
        gemm_ws(j->wp, cols, (size_t)n, j->y + p0, (size_t)j->P, j->M, n, j->K, 0, e, ws);
    }
    free(ws);
    return 0;
}

/* 0: s_conv picks im2col or tap mode per shape; 1: im2col only; 2: tap mode wherever it can
 * run (tests reach both paths with it). */
static int conv_mode = 0;
int s_conv_mode(int mode) {
    if (mode >= 0 && mode <= 2) conv_mode = mode;
    return conv_mode;
}

#ifdef OPTC_X86
/* Columns the micro-kernels compute for n columns: whole strips of 3 vectors, the last strip
 * rounded up to whole vectors, or exact where the column kernels take it (cols: they run). */
static int computed_columns(int n, int lanes, int cols) {
    const int nr = 3 * lanes, rest = n % nr;
    return n - rest + (cols && rest <= COLS_N ? rest : (rest + lanes - 1) / lanes * lanes);
}

/* Tap mode needs one whole strip of columns. Chosen per shape, it runs kernels of more than
 * one tap whose Wq - OW dropped columns per output row are at most a fifth of the row (all
 * but small maps under big kernels), or a third with at most 64 filters: im2col's short
 * copies cost as much as the product with few filters (DenseNet's 128 -> 32 3x3 convs ran
 * at about half the speed, 7x7 maps included, where a third is dropped: 2 of 9 columns);
 * with 512 filters at 7x7 im2col measured faster. And only where the columns it computes
 * (dropped ones and the last strip's padding included) cost no more than im2col's plus its
 * copies, about 50 multiply-adds per copied pixel and tap (fitted to
 * benchmarks/conv_paths.py: ResNet-50's 512 -> 512 3x3 stride-2 conv at 14x14 computes 56
 * columns in tap mode against im2col's 49, and ran 1.13x as long; 256 -> 256 at 14x14, 240
 * against 196: 1.09x; 256 -> 256 stride 2 at 28x28, 216 against 197: 0.89x). 1x1 convs read
 * their input as it is and pack it (pack_b), which measured faster than tap mode's copy into
 * padded planes and its shorter passes. */
static int use_taps(int taps, int M, int OW, int Wq, int N, int P, const kernels *kn) {
    if (conv_mode == 1 || N < 3 * kn->lanes) return 0;
    if (conv_mode == 2) return 1;
    const int cols = kn->cols != NULL;
    return taps > 1 && (5 * (Wq - OW) <= Wq || (M <= 64 && 3 * (Wq - OW) <= Wq)) &&
           (double)M * computed_columns(N, kn->lanes, 0) <=
               ((double)M + 50.0) * computed_columns(P, kn->lanes, cols);
}
#endif

static int conv_threads(int threads, int blocks, double macs) {
    int most = blocks;
    const double work = macs / WORK_PER_THREAD;
    if (work < most) most = work < 1 ? 1 : (int)work;
    return threads < most ? threads : most;
}

#ifdef OPTC_X86
/* s_conv in tap mode; 1 where it ran, 0 where the shape is left to im2col, -1 on no memory */
static int conv_taps(const float *x, int C, int H, int W, int kh, int kw, int sh, int sw, int pt,
                     int pl, int dh, int dw, int OH, int OW, const float *wp, int M,
                     const s_epilogue *ep, float *y, int threads) {
    const int level = s_simd_level();
    if (level < 1 || M <= 0 || C <= 0) return 0; /* nothing to multiply: im2col's path */
    const kernels *kn = level >= 2 ? &K512 : &K256;
    const int Hq = OH + (kh - 1) * dh / sh, Wq = OW + (kw - 1) * dw / sw;
    const int N = (OH - 1) * Wq + OW, K = C * kh * kw;
    /* plane stride: an odd number of cache lines, so that the same stretch of many planes
     * (one pass's taps) falls into every set of L1 rather than a few */
    size_t ps = ((size_t)Hq * Wq + 15) / 16 * 16;
    if (ps / 16 % 2 == 0) ps += 16;
    const double floats = (double)C * sh * sw * ps;
    if (floats >= 2147483647.0 || !use_taps(kh * kw, M, OW, Wq, N, OH * OW, kn)) return 0;
    float *xq = falloc((size_t)floats);
    int *boff = malloc(sizeof(int) * (size_t)K);
    if (xq == NULL || boff == NULL) {
        free(xq);
        free(boff);
        return -1;
    }
    pad_phases(x, C, H, W, sh, sw, pt, pl, Hq, Wq, ps, xq);
    for (int c = 0; c < C; c++)
        for (int i = 0; i < kh; i++)
            for (int jj = 0; jj < kw; jj++) {
                const int a = i * dh, b = jj * dw;
                const size_t plane = ((size_t)c * sh + a % sh) * sw + b % sw;
                boff[(c * kh + i) * kw + jj] = (int)(plane * ps + (size_t)(a / sh) * Wq + b / sw);
            }
    /* columns per block: a pass's taps over them stay in L2, and so does the block of the
     * product that compact() reads back */
    const int nr = 3 * kn->lanes;
    int pc = COLS_FLOATS / (K < KC_TAPS ? K : KC_TAPS) / nr * nr;
    if (Wq != OW && pc > COLS_FLOATS / M / nr * nr) pc = COLS_FLOATS / M / nr * nr;
    if (pc < 2 * nr) pc = 2 * nr;
    if (pc * 2 > N) pc = (N + nr - 1) / nr * nr; /* one block rather than a sliver of a second */
    conv_job job = {xq, C, Hq, Wq, kh, kw, sh, sw, pt, pl, dh, dw, OW, OH * OW, M, K,
                    pc, 0, wp, ep, y, boff, Wq, N};
    const int blocks = (N + pc - 1) / pc;
    const int status = optc_parallel(taps_share, &job,
                                     conv_threads(threads, blocks, (double)M * K * N));
    free(xq);
    free(boff);
    return status < 0 ? -1 : 1;
}
#endif

#ifdef OPTC_X86
/* y[m] = act(sum_k a[m, k] b[k] + bias[m] + res[m]) for a single output column (a 1x1 conv on a
 * 1x1 map: squeeze-excitation blocks, classifier heads), straight from the packed panels:
 * each panel's 8 rows a vector, four k at a time into four sums (the FMA latency), one read of
 * the weights. The GEMM's narrow kernel computed 16 columns of which one is kept (the 512 ->
 * 1280 head of PP-LCNet ran at 1.8x onnxruntime's time). */
__attribute__((target("avx2,fma"))) static void gemv(const float *ap, const float *b, int M,
                                                      int K, const s_epilogue *ep, float *y) {
    const int panels = (M + SMR - 1) / SMR;
    for (int p = 0; p < panels; p++) {
        const float *a = ap + (size_t)p * K * SMR;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        int k = 0;
        for (; k + 4 <= K; k += 4) {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + (size_t)k * SMR), _mm256_set1_ps(b[k]), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + (size_t)(k + 1) * SMR),
                                 _mm256_set1_ps(b[k + 1]), s1);
            s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + (size_t)(k + 2) * SMR),
                                 _mm256_set1_ps(b[k + 2]), s2);
            s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + (size_t)(k + 3) * SMR),
                                 _mm256_set1_ps(b[k + 3]), s3);
        }
        for (; k < K; k++)
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + (size_t)k * SMR), _mm256_set1_ps(b[k]), s0);
        float t[SMR];
        _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
        const int rows = M - p * SMR < SMR ? M - p * SMR : SMR;
        for (int i = 0; i < rows; i++) {
            const int m = p * SMR + i;
            y[m] = t[i] + (ep && ep->bias ? ep->bias[m] : 0.f) +
                   (ep && ep->res ? ep->res[(size_t)m * ep->ldres] : 0.f);
        }
    }
    if (ep) activate_span(y, (size_t)M, ep->act, ep->a, ep->b);
}
#endif

int s_conv(const float *x, int C, int H, int W, int kh, int kw, int sh, int sw, int pt, int pl,
           int dh, int dw, int OH, int OW, const float *wp, int M, const s_epilogue *ep,
           float *y, int threads) {
    const int P = OH * OW, K = C * kh * kw;
    if (P <= 0) return 0;
#ifdef OPTC_X86
    /* one output pixel of a 1x1 conv over a 1x1 input: a matrix-vector product */
    if (P == 1 && kh == 1 && kw == 1 && H == 1 && W == 1 && pt == 0 && pl == 0 && M > 0 &&
        s_simd_level() >= 1) {
        gemv(wp, x, M, K, ep, y);
        return 0;
    }
#endif
#ifdef OPTC_X86
    const int tapped = conv_taps(x, C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, wp, M, ep,
                                 y, threads);
    if (tapped != 0) return tapped < 0 ? -1 : 0;
#endif
    const int Hs = (H + sh - 1) / sh, Ws = (W + sw - 1) / sw;
    const int direct = kh == 1 && kw == 1 && pt == 0 && pl == 0 && OH == Hs && OW == Ws;
    float *phases = NULL;
    if (sh > 1 || sw > 1) { /* a direct (1x1) conv reads phase (0, 0) only: it alone is taken */
        const int ph = direct ? 1 : sh, pw = direct ? 1 : sw;
        phases = malloc(sizeof(float) * (size_t)C * ph * pw * Hs * Ws);
        if (phases == NULL) return -1;
        if (direct)
            for (int c = 0; c < C; c++)
                for (int r = 0; r < Hs; r++) {
                    const float *src = x + ((size_t)c * H + (size_t)r * sh) * W;
                    float *dst = phases + ((size_t)c * Hs + r) * Ws;
                    for (int q = 0; q < Ws; q++) dst[q] = src[(size_t)q * sw];
                }
        else
            pad_phases(x, C, H, W, sh, sw, 0, 0, Hs, Ws, (size_t)Hs * Ws, phases);
    }
    /* pixels per block: its im2col columns (K x pc) stay in L2; a 1x1 conv reading its input
     * directly has none, and the GEMM blocks it: one block per thread (smaller blocks
     * stream all the weights again for each) */
    int pc = (int)(COLS_FLOATS / (K > 0 ? K : 1)) / 48 * 48;
    if (direct) pc = threads > 1 ? ((P + threads - 1) / threads + 47) / 48 * 48 : P;
    if (pc < 48) pc = 48;
    if (pc * 2 > P) pc = P; /* one block rather than a sliver of a second */
    conv_job job = {phases ? phases : x, C, Hs, Ws, kh, kw, sh, sw, pt, pl, dh, dw, OW, P, M, K,
                    pc, direct ? (size_t)Hs * Ws : 0, wp, ep, y, NULL, 0, 0};
    const int blocks = (P + pc - 1) / pc;
    const int status = optc_parallel(conv_share, &job,
                                     conv_threads(threads, blocks, (double)M * K * P));
    free(phases);
    return status;
}

/* float32 convolution with bfloat16 products on AMX-BF16 (the session's precision "bf16"):
 * the input and the filters are rounded to bf16 (round to nearest even, as vcvtneps2bf16),
 * every product is summed in float32 by tdpbf16ps, and the bias, the residual input and the
 * activation are applied in float32 to the sums, so y stays float32 and the only error is the
 * rounding of the two operands (about 2^-9 relative per product).
 *
 * The tiles (Intel's AMX: a 16 x 16 float32 tile C += A (16 rows x 32 bf16) times B (16 rows
 * of pairs x 16 columns, the two values of a pair adjacent)) cover 32 filter rows x 32 output
 * pixels at a time: tiles 0-3 the sums, 4-5 two 16-row filter tiles, 6-7 two 16-pixel tiles,
 * each loaded tile used twice, as qgemm.c's int8 AMX GEMM. A pair of bf16 taps sits in one
 * 32-bit word, so B is a plane of words per pair of channels (or taps).
 *
 * Two ways to B, chosen per layer by the caller (optc/runtime/kernels/native.py packs the
 * filters to match: bf16_taps, by the channels a group has):
 *  - taps (16 channels a group and more): the input once in bf16, padded and split into
 *    the stride's phases (pad_phases), one set of phase planes per pair of channels; output
 *    pixel q of the grid (q = oh * Wq + ow, Wq a phase's width) reads word q + its tap's
 *    offset in the tap's phase, so a B tile of 16 channel pairs x 16 pixels is 16 runs of
 *    those planes, read where they lie -- no im2col. Columns ow >= OW of the grid are
 *    computed and dropped. Filters: k = (i * kw + j) * Cp + c, Cp = C rounded up to 32.
 *  - im2col (fewer channels, where rounding them up to 32 would multiply mostly zeros: a
 *    3-channel stem): blocks of output pixels gathered tap pair by tap pair into rows of
 *    words. Filters: k = (c * kh + i) * kw + j (the weight's own order), K rounded up to 32.
 */
#define _GNU_SOURCE /* sysconf's cache sizes */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qgemm.h"
#include "vact.h"

#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define OPTC_AMX_BF16 1 /* Linux hands out the AMX tile state on request (qgemm.c) */
#include <immintrin.h>
#include <pthread.h>
#include <sys/mman.h>
#endif

int s_bf16_available(void) {
#ifdef OPTC_AMX_BF16
    static int usable = -1;
    if (usable < 0) {
        __builtin_cpu_init();
        /* AMX-BF16 (CPUID 7 EDX bit 22) and the tile state (bit 24), with AVX-512 for the
         * conversions and the epilogue, and AVX512-BF16 for the MatMuls */
        usable = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512bf16") && x86_amx_usable(22);
    }
    return usable;
#else
    return 0;
#endif
}

#ifdef OPTC_AMX_BF16
#define TILE_PIXELS 32
#define TILE_ROWS 32

/* 16 pairs of float32 (a: the even taps, b: the odd ones) as 16 words of two bf16, rounded
 * to nearest even; NaN stays a (quiet) NaN */
__attribute__((target("avx512f,avx512bw"))) static inline __m512i pack_pairs(__m512 a,
                                                                             __m512 b) {
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7FFF);
    const __m512i qnan = _mm512_set1_epi32(0x7FC0);
    __m512i ia = _mm512_castps_si512(a), ib = _mm512_castps_si512(b);
    ia = _mm512_add_epi32(ia, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(ia, 16), one)));
    ib = _mm512_add_epi32(ib, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(ib, 16), one)));
    ia = _mm512_mask_mov_epi32(_mm512_srli_epi32(ia, 16), _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), qnan);
    ib = _mm512_mask_mov_epi32(_mm512_srli_epi32(ib, 16), _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q), qnan);
    return _mm512_or_si512(ia, _mm512_slli_epi32(ib, 16));
}

/* dst[q] = the pair (a[q], b[q]) for q < n (a or b NULL: zeros) */
__attribute__((target("avx512f,avx512bw")))
static void pack_row(const float *a, const float *b, size_t n, uint32_t *dst) {
    size_t q = 0;
    for (; q < n; q += 16) {
        const __mmask16 m = n - q >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - q)) - 1);
        const __m512 va = a ? _mm512_maskz_loadu_ps(m, a + q) : _mm512_setzero_ps();
        const __m512 vb = b ? _mm512_maskz_loadu_ps(m, b + q) : _mm512_setzero_ps();
        _mm512_mask_storeu_epi32(dst + q, m, pack_pairs(va, vb));
    }
}

/* acc (32 x 32, row stride 32) = the sums of filter rows a (row stride lda bf16) over ksteps
 * steps of 32 taps (step s: a + 32 s) with the pixels b + boff[s] (16 rows of words, row
 * stride ldb words) */
__attribute__((target("amx-tile,amx-bf16")))
static void tiles_2x2(const uint16_t *a, size_t lda, int ksteps, const uint32_t *b, size_t ldb,
                      const ptrdiff_t *boff, float *acc) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    const uint16_t *a1 = a + 16 * lda;
    for (int s = 0; s < ksteps; s++) {
        const uint32_t *bs = b + boff[s];
        _tile_loadd(4, a + (size_t)s * 32, lda * 2);
        _tile_loadd(5, a1 + (size_t)s * 32, lda * 2);
        _tile_loadd(6, bs, ldb * 4);
        _tile_loadd(7, bs + 16, ldb * 4);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, acc, 128);
    _tile_stored(1, acc + 16, 128);
    _tile_stored(2, acc + 16 * 32, 128);
    _tile_stored(3, acc + 16 * 32 + 16, 128);
}

/* A tile's sums into y: rows [mb, mb + rows) of acc (TILE_ROWS x TILE_PIXELS), each run r
 * of the tile's pixels -- runs[r] = {first column of acc, offset in y's row, length} -- as
 * y = act(sums + bias + res), 16 at a time in registers (vact.h), the activation's switch
 * outside the loops. */
typedef struct {
    int col, n;
    size_t o;
} tile_run;

#define FINISH_ROWS(ACTV)                                                                     \
    for (int r = 0; r < rows; r++) {                                                          \
        const int m = mb + r;                                                                 \
        const __m512 bias = _mm512_set1_ps(ep->bias ? ep->bias[m] : 0.f);                     \
        for (int u = 0; u < nruns; u++) {                                                     \
            const float *sums = acc + r * TILE_PIXELS + runs[u].col;                          \
            float *dst = y + (size_t)m * ldy + runs[u].o;                                     \
            const float *res = ep->res ? ep->res + (size_t)m * ep->ldres + runs[u].o : NULL;  \
            const int n = runs[u].n;                                                          \
            for (int i = 0; i < n; i += 16) {                                                 \
                const __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF                           \
                                                : (__mmask16)((1u << (n - i)) - 1);           \
                __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(k, sums + i), bias);           \
                if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, res + i));             \
                _mm512_mask_storeu_ps(dst + i, k, ACTV);                                      \
            }                                                                                 \
        }                                                                                     \
    }

__attribute__((target("avx512f,avx512bw")))
static void finish_tile(const float *acc, int mb, int rows, const tile_run *runs, int nruns,
                        const s_epilogue *ep, float *y, size_t ldy) {
    switch (ep->act) {
    case 0: FINISH_ROWS(v) break;
    case 1: FINISH_ROWS(_mm512_max_ps(_mm512_setzero_ps(), v)) break;
    default: FINISH_ROWS(vact_512(v, ep->act, ep->a, ep->b)) break;
    }
}
#undef FINISH_ROWS

typedef struct {
    const float *x;
    int C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW;
    const uint16_t *wb;
    int M, Mp, Kp, ksteps;
    const s_epilogue *ep;
    float *y;
    /* taps mode: the padded bf16 planes (pairs of channels), their grid and plane size */
    const uint32_t *xb;
    int taps, Wp;
    size_t plane;
    ptrdiff_t *boff; /* taps mode: per k step, the B tile's offset from the pixel */
    int chunk;       /* pixels per share (a multiple of 32) */
    int filters_in_l1; /* taps mode: all of wb fits in the L1 data cache */
    int npix;        /* pixels of the computed grid: OH * Wp (taps) or OH * OW (im2col) */
} bf16_job;

/* dst[q] = the pair (a[q * s], b[q * s]) for q < n (b NULL: zeros), s > 1: by gathers */
__attribute__((target("avx512f,avx512bw")))
static void pack_row_strided(const float *a, const float *b, size_t n, int s, uint32_t *dst) {
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(s));
    for (size_t q = 0; q < n; q += 16) {
        const __mmask16 m = n - q >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - q)) - 1);
        const __m512 z = _mm512_setzero_ps();
        const __m512 va = _mm512_mask_i32gather_ps(z, m, idx, a + q * s, 4);
        const __m512 vb = b ? _mm512_mask_i32gather_ps(z, m, idx, b + q * s, 4) : z;
        _mm512_mask_storeu_epi32(dst + q, m, pack_pairs(va, vb));
    }
}

/* the taps-mode input: the padded input (Hp x Wp, the rows and columns the conv reads; pads
 * zero) split into the stride's sh x sw phases -- phase (u, v) holds padded rows u, u + sh,
 * ... and columns v, v + sw, ..., Hq x Wq words -- in bf16 pairs of channels: pair cp's
 * phase (u, v) at xb + cp * plane + (u * sw + v) * Hq * Wq, word r * Wq + c the channels
 * 2cp, 2cp + 1 at padded (r * sh + u, c * sw + v); past the phases, zeros to `plane` */
__attribute__((target("avx512f,avx512bw")))
static void pad_phases(const float *x, int C, int H, int W, int pt, int pl, int sh, int sw,
                       int Hq, int Wq, int Cp, size_t plane, uint32_t *xb) {
    const size_t pplane = (size_t)Hq * Wq;
    for (int cp = 0; cp < Cp / 2; cp++) {
        uint32_t *dst = xb + (size_t)cp * plane;
        const float *a = 2 * cp < C ? x + (size_t)2 * cp * H * W : NULL;
        const float *b = 2 * cp + 1 < C ? x + (size_t)(2 * cp + 1) * H * W : NULL;
        if (a == NULL) {
            memset(dst, 0, plane * 4);
            continue;
        }
        for (int u = 0; u < sh; u++)
            for (int v = 0; v < sw; v++) {
                uint32_t *ph = dst + (size_t)(u * sw + v) * pplane;
                /* phase columns c with 0 <= c * sw + v - pl < W */
                const int off = v - pl;
                int lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
                int hi = W - off <= 0 ? 0 : (W - off + sw - 1) / sw;
                if (hi > Wq) hi = Wq;
                if (lo > hi) lo = hi;
                if (sw == 1 && lo == 0 && hi == Wq && Wq == W) {
                    /* unpadded rows: the phase's run of image rows is one span */
                    int r0 = (pt - u + sh - 1) / sh, r1 = (H + pt - u + sh - 1) / sh;
                    if (r0 < 0) r0 = 0;
                    if (r1 > Hq) r1 = Hq;
                    if (r1 < r0) r1 = r0;
                    memset(ph, 0, (size_t)r0 * Wq * 4);
                    if (r1 > r0 && sh == 1)
                        pack_row(a + (size_t)(r0 - pt) * W, b ? b + (size_t)(r0 - pt) * W : NULL,
                                 (size_t)(r1 - r0) * W, ph + (size_t)r0 * Wq);
                    else
                        for (int r = r0; r < r1; r++) {
                            const size_t ih = (size_t)(r * sh + u - pt);
                            pack_row(a + ih * W, b ? b + ih * W : NULL, (size_t)W,
                                     ph + (size_t)r * Wq);
                        }
                    memset(ph + (size_t)r1 * Wq, 0, (size_t)(Hq - r1) * Wq * 4);
                    continue;
                }
                for (int r = 0; r < Hq; r++) {
                    uint32_t *row = ph + (size_t)r * Wq;
                    const int ih = r * sh + u - pt;
                    if (ih < 0 || ih >= H || lo >= hi) {
                        memset(row, 0, (size_t)Wq * 4);
                        continue;
                    }
                    memset(row, 0, (size_t)lo * 4);
                    const float *ar = a + (size_t)ih * W + lo * sw + off;
                    const float *br = b ? b + (size_t)ih * W + lo * sw + off : NULL;
                    if (sw == 1)
                        pack_row(ar, br, (size_t)(hi - lo), row + lo);
                    else
                        pack_row_strided(ar, br, (size_t)(hi - lo), sw, row + lo);
                    memset(row + hi, 0, (size_t)(Wq - hi) * 4);
                }
            }
        const size_t used = (size_t)sh * sw * pplane;
        memset(dst + used, 0, (plane - used) * 4);
    }
}

__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw")))
static int taps_share(void *p, int t, int T) {
    const bf16_job *j = p;
    float acc[TILE_ROWS * TILE_PIXELS] __attribute__((aligned(64)));
    x86_amx_tiles();
    const size_t ldy = (size_t)j->OH * j->OW;
    for (int q0 = t * j->chunk; q0 < j->npix; q0 += T * j->chunk) {
        const int q1 = j->npix - q0 < j->chunk ? j->npix : q0 + j->chunk;
        /* pixel tiles outside where every filter fits in L1 (each tile's pixels then load
         * once from L2 for all rows: 256 -> 64 1x1 at 56x56 0.49 -> 0.41 ms), else rows
         * outside (a block of filters stays in L1 for the chunk's pixels: 512 -> 512 3x3 at
         * 7x7 0.41 ms, 0.91 the other way; Intel Xeon, AMX) */
        const int tiles = (q1 - q0 + TILE_PIXELS - 1) / TILE_PIXELS;
        const int blocks = (j->M + TILE_ROWS - 1) / TILE_ROWS;
        for (int it = 0; it < tiles * blocks; it++) {
            const int ti = j->filters_in_l1 ? it / blocks : it % tiles;
            const int mb = (j->filters_in_l1 ? it % blocks : it / tiles) * TILE_ROWS;
            const int q = q0 + ti * TILE_PIXELS;
            {
                const uint16_t *a = j->wb + (size_t)mb * j->Kp;
                tiles_2x2(a, (size_t)j->Kp, j->ksteps, j->xb + q, j->plane, j->boff, acc);
                const int rows = j->M - mb < TILE_ROWS ? j->M - mb : TILE_ROWS;
                /* the tile's pixels of the grid that are outputs, one output row's run at a
                 * time (one per grid row the tile touches, at most TILE_PIXELS) */
                tile_run runs[TILE_PIXELS];
                int nruns = 0;
                for (int u = q; u < q + TILE_PIXELS && u < q1;) {
                    const int oh = u / j->Wp, ow = u % j->Wp;
                    int run = j->Wp - ow;
                    if (run > q + TILE_PIXELS - u) run = q + TILE_PIXELS - u;
                    if (run > q1 - u) run = q1 - u;
                    const int n = ow >= j->OW ? 0 : (ow + run > j->OW ? j->OW - ow : run);
                    if (n > 0) runs[nruns++] = (tile_run){u - q, n, (size_t)oh * j->OW + ow};
                    u += run;
                }
                finish_tile(acc, mb, rows, runs, nruns, j->ep, j->y, ldy);
            }
        }
    }
    _tile_release();
    return 0;
}

/* im2col mode: row k (k = (c * kh + i) * kw + j < K) of output pixels [p0, p0 + n) into
 * dst (zeros where the tap falls outside the image and for k >= K) */
static void gather_row(const bf16_job *j, int k, int p0, int n, float *dst) {
    const int K = j->C * j->kh * j->kw;
    if (k >= K) {
        memset(dst, 0, sizeof(float) * (size_t)n);
        return;
    }
    const int c = k / (j->kh * j->kw), i = k / j->kw % j->kh, jj = k % j->kw;
    const float *src = j->x + (size_t)c * j->H * j->W;
    const int off = jj * j->dw - j->pl;
    /* output columns ow with 0 <= ow * sw + off < W */
    int lo = off >= 0 ? 0 : (-off + j->sw - 1) / j->sw;
    int hi = j->W - 1 - off < 0 ? 0 : (j->W - 1 - off) / j->sw + 1;
    if (hi > j->OW) hi = j->OW;
    if (lo > hi) lo = hi;
    for (int p = p0; p < p0 + n;) { /* one output row's stretch [a, b) at a time */
        const int oh = p / j->OW, a = p % j->OW;
        const int b = j->OW - a > p0 + n - p ? a + (p0 + n - p) : j->OW;
        float *o = dst + (p - p0) - a; /* o[ow] for ow in [a, b) */
        const int ih = oh * j->sh - j->pt + i * j->dh;
        const int l = lo > a ? lo : a, h = hi < b ? hi : b;
        if (ih < 0 || ih >= j->H || l >= h) {
            for (int ow = a; ow < b; ow++) o[ow] = 0.f;
        } else {
            const float *xr = src + (size_t)ih * j->W + off;
            for (int ow = a; ow < l; ow++) o[ow] = 0.f;
            for (int ow = l; ow < h; ow++) o[ow] = xr[ow * j->sw];
            for (int ow = h; ow < b; ow++) o[ow] = 0.f;
        }
        p += b - a;
    }
}

__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw")))
static int im2col_share(void *p, int t, int T) {
    const bf16_job *j = p;
    const int pc = j->chunk;
    uint32_t *blk = malloc(sizeof(uint32_t) * (size_t)j->Kp / 2 * pc);
    float *rows = malloc(sizeof(float) * 2 * (size_t)pc);
    ptrdiff_t *boff = malloc(sizeof(ptrdiff_t) * (size_t)j->ksteps);
    if (blk == NULL || rows == NULL || boff == NULL) {
        free(blk);
        free(rows);
        free(boff);
        return -1;
    }
    for (int s = 0; s < j->ksteps; s++) boff[s] = (ptrdiff_t)s * 16 * pc;
    float acc[TILE_ROWS * TILE_PIXELS] __attribute__((aligned(64)));
    x86_amx_tiles();
    for (int p0 = t * pc; p0 < j->npix; p0 += T * pc) {
        const int n = j->npix - p0 < pc ? j->npix - p0 : pc;
        for (int kp = 0; kp < j->Kp / 2; kp++) {
            gather_row(j, 2 * kp, p0, n, rows);
            gather_row(j, 2 * kp + 1, p0, n, rows + pc);
            memset(rows + n, 0, sizeof(float) * (size_t)(pc - n));
            memset(rows + pc + n, 0, sizeof(float) * (size_t)(pc - n));
            pack_row(rows, rows + pc, (size_t)pc, blk + (size_t)kp * pc);
        }
        for (int mb = 0; mb < j->M; mb += TILE_ROWS) {
            const int rows_left = j->M - mb < TILE_ROWS ? j->M - mb : TILE_ROWS;
            for (int q = 0; q < n; q += TILE_PIXELS) {
                tiles_2x2(j->wb + (size_t)mb * j->Kp, (size_t)j->Kp, j->ksteps, blk + q,
                          (size_t)pc, boff, acc);
                const tile_run run = {0, n - q < TILE_PIXELS ? n - q : TILE_PIXELS,
                                      (size_t)(p0 + q)};
                finish_tile(acc, mb, rows_left, &run, 1, j->ep, j->y, (size_t)j->OH * j->OW);
            }
        }
    }
    _tile_release();
    free(blk);
    free(rows);
    free(boff);
    return 0;
}

/* The taps-mode planes' buffer of the calling thread, kept from call to call (freed when the
 * thread ends) and, from 1 MiB, in transparent huge pages where the kernel allows them
 * (madvise): a B tile's 16 rows lie in 16 planes, each tens of KiB from the next, so with
 * 4 KiB pages every tile load walks 16 TLB entries and the planes of a layer outgrow the
 * TLB (ResNet-50 at bf16 0.56 -> 0.48 of onnxruntime fp32, Intel Xeon with AMX). */
static pthread_key_t planes_key;
static pthread_once_t planes_once = PTHREAD_ONCE_INIT;
typedef struct {
    void *p;
    size_t bytes;
} planes_mem;

static void planes_free(void *m) {
    free(((planes_mem *)m)->p);
    free(m);
}

static void planes_key_make(void) { pthread_key_create(&planes_key, planes_free); }

#define HUGE_PAGE ((size_t)2 << 20)
static void *planes_buffer(size_t bytes) {
    pthread_once(&planes_once, planes_key_make);
    planes_mem *m = pthread_getspecific(planes_key);
    if (m == NULL) {
        m = calloc(1, sizeof *m);
        if (m == NULL || pthread_setspecific(planes_key, m) != 0) {
            free(m);
            return NULL;
        }
    }
    if (m->bytes >= bytes) return m->p;
    free(m->p);
    m->p = NULL;
    m->bytes = 0;
    const size_t size = bytes >= HUGE_PAGE / 2 ? (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE
                                               : bytes;
    void *p = NULL;
    if (posix_memalign(&p, size >= HUGE_PAGE ? HUGE_PAGE : 64, size) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    if (size >= HUGE_PAGE) madvise(p, size, MADV_HUGEPAGE); /* a hint: fine if refused */
#endif
    m->p = p;
    m->bytes = size;
    return p;
}

/* the pixels per share: B's bytes of a share within half the L2 the CPU reports */
static int chunk_pixels(size_t bytes_per_pixel, int npix, int threads) {
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (l2 < 128 * 1024 || l2 > 64 * 1024 * 1024) l2 = 1024 * 1024;
    int pc = (int)((size_t)l2 / 2 / bytes_per_pixel) / TILE_PIXELS * TILE_PIXELS;
    if (pc < TILE_PIXELS) pc = TILE_PIXELS;
    /* every thread a share where there are pixels for it */
    const int even = (npix + threads - 1) / threads;
    const int even32 = (even + TILE_PIXELS - 1) / TILE_PIXELS * TILE_PIXELS;
    return pc < even32 ? pc : even32;
}
#endif

int s_conv_bf16(const float *x, int C, int H, int W, int kh, int kw, int sh, int sw, int pt,
                int pl, int dh, int dw, int OH, int OW, const uint16_t *wb, int M, int taps,
                const s_epilogue *ep, float *y, int threads) {
#ifdef OPTC_AMX_BF16
    if (!s_bf16_available()) return -2;
    bf16_job j = {x, C, H, W, kh, kw, sh, sw, pt, pl, dh, dw, OH, OW, wb, M,
                  (M + TILE_ROWS - 1) / TILE_ROWS * TILE_ROWS, 0, 0, ep, y, NULL, 0, 0, 0,
                  NULL, 0, 0, 0};
    const size_t P = (size_t)OH * OW;
    /* threads only where each has 2^22 multiply-adds at least (a thread start costs tens
     * of microseconds; bf16 products are fast) */
    const double work = (double)M * C * kh * kw * P / (4.0 * 1024 * 1024);
    if (work < threads) threads = work < 1 ? 1 : (int)work;
    int status;
    if (taps) {
        /* the padded region the conv reads, in phases of the stride (the grid: Wq wide) */
        const int Cp = (C + 31) / 32 * 32;
        const int Hp = (OH - 1) * sh + (kh - 1) * dh + 1, Wp = (OW - 1) * sw + (kw - 1) * dw + 1;
        const int Hq = (Hp + sh - 1) / sh;
        j.Wp = (Wp + sw - 1) / sw;
        j.taps = kh * kw;
        j.Kp = j.taps * Cp;
        j.ksteps = j.Kp / 32;
        j.npix = OH * j.Wp;
        /* past the last phase: the last tile's pixels read up to 31 words past the grid,
         * plus the last tap's column offset */
        const size_t pplane = (size_t)Hq * j.Wp;
        j.plane = (size_t)sh * sw * pplane + TILE_PIXELS + (size_t)(kw - 1) * dw / sw;
        uint32_t *xb = planes_buffer(sizeof(uint32_t) * (size_t)Cp / 2 * j.plane);
        ptrdiff_t *boff = malloc(sizeof(ptrdiff_t) * (size_t)j.ksteps);
        if (xb == NULL || boff == NULL) {
            free(boff);
            return -1;
        }
        pad_phases(x, C, H, W, pt, pl, sh, sw, Hq, j.Wp, Cp, j.plane, xb);
        for (int t = 0; t < j.taps; t++) {
            const int vi = t / kw * dh, hj = t % kw * dw; /* tap (i, j)'s padded offsets */
            const ptrdiff_t at = (ptrdiff_t)((vi % sh) * sw + hj % sw) * (ptrdiff_t)pplane +
                                 (ptrdiff_t)(vi / sh) * j.Wp + hj / sw;
            for (int cb = 0; cb < Cp / 32; cb++)
                boff[t * (Cp / 32) + cb] = (ptrdiff_t)cb * 16 * j.plane + at;
        }
        j.xb = xb;
        j.boff = boff;
        const long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE);
        j.filters_in_l1 = (size_t)j.Mp * j.Kp * 2 <= (size_t)(l1 > 0 ? l1 : 32 * 1024);
        j.chunk = chunk_pixels((size_t)Cp * 2, j.npix, threads); /* its planes' words */
        const int shares = (j.npix + j.chunk - 1) / j.chunk;
        status = optc_parallel(taps_share, &j, threads < shares ? threads : shares);
        free(boff);
    } else {
        j.Kp = (C * kh * kw + 31) / 32 * 32;
        j.ksteps = j.Kp / 32;
        j.npix = (int)P;
        j.chunk = chunk_pixels((size_t)j.Kp * 2, j.npix, threads);
        const int shares = (j.npix + j.chunk - 1) / j.chunk;
        status = optc_parallel(im2col_share, &j, threads < shares ? threads : shares);
    }
    return status;
#else
    (void)x; (void)C; (void)H; (void)W; (void)kh; (void)kw; (void)sh; (void)sw; (void)pt;
    (void)pl; (void)dh; (void)dw; (void)OH; (void)OW; (void)wb; (void)M; (void)taps; (void)ep;
    (void)y; (void)threads;
    return -2;
#endif
}

/* bf16 products for a float32 MatMul / Gemm with constant weights (the session's precision
 * "bf16"): y (N x M) = act(a (N x K) @ W (K x M) + bias), a rounded to bf16 row by row, the
 * weights packed once (native.bf16_matmul_weights): per block of 16 columns, per pair of
 * rows k, k + 1 of W, 16 words of two bf16 (k in the low half) -- wp[(cb * Kh + kp) * 16 +
 * c]. AVX512-BF16's vdpbf16ps sums each pair's two products into a float32 lane; a step of
 * R rows x 32 columns keeps 2R sums in registers, each pair of weight vectors loaded once for
 * the R rows (with one row the weights stream from memory once: the layer is then bound by
 * their bytes, half those of float32). */
#ifdef OPTC_AMX_BF16
/* row a (K floats) as Kh = ceil(K / 2) bf16 pairs (K odd: a zero last) */
__attribute__((target("avx512f,avx512bw")))
static void pairs_of_row(const float *a, int K, uint32_t *dst) {
    const int Kh = (K + 1) / 2;
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                         30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    for (int q = 0; q < Kh; q += 16) {
        /* 32 floats of the row from 2q: the even ones and the odd ones, paired */
        const int left = K - 2 * q, left1 = left - 16;
        const __mmask16 m0 = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        const __mmask16 m1 = left1 >= 16  ? (__mmask16)0xFFFF
                             : left1 <= 0 ? (__mmask16)0
                                          : (__mmask16)((1u << left1) - 1);
        const __m512 lo = _mm512_maskz_loadu_ps(m0, a + 2 * q);
        const __m512 hi = _mm512_maskz_loadu_ps(m1, a + 2 * q + 16);
        const __m512 even = _mm512_permutex2var_ps(lo, ev, hi);
        const __m512 odd = _mm512_permutex2var_ps(lo, od, hi);
        const int n = Kh - q < 16 ? Kh - q : 16;
        _mm512_mask_storeu_epi32(dst + q, (__mmask16)((1u << n) - 1), pack_pairs(even, odd));
    }
}

#define MM_STEP(NAME, R)                                                                      \
    __attribute__((target("avx512f,avx512bw,avx512bf16"))) static void NAME(                  \
        const uint32_t *ap, int Kh, const uint32_t *w0, const uint32_t *w1, __m512 *out) {    \
        __m512 s[R][2];                                                                       \
        for (int r = 0; r < R; r++) s[r][0] = s[r][1] = _mm512_setzero_ps();                  \
        for (int kp = 0; kp < Kh; kp++) {                                                     \
            const __m512bh v0 = (__m512bh)_mm512_loadu_si512((const void *)(w0 + kp * 16));   \
            const __m512bh v1 = (__m512bh)_mm512_loadu_si512((const void *)(w1 + kp * 16));   \
            for (int r = 0; r < R; r++) {                                                     \
                const __m512bh x = (__m512bh)_mm512_set1_epi32((int)ap[(size_t)r * Kh + kp]); \
                s[r][0] = _mm512_dpbf16_ps(s[r][0], x, v0);                                   \
                s[r][1] = _mm512_dpbf16_ps(s[r][1], x, v1);                                   \
            }                                                                                 \
        }                                                                                     \
        for (int r = 0; r < R; r++) {                                                         \
            out[2 * r] = s[r][0];                                                             \
            out[2 * r + 1] = s[r][1];                                                         \
        }                                                                                     \
    }
MM_STEP(mm_step8, 8)
MM_STEP(mm_step4, 4)
MM_STEP(mm_step1, 1)
#undef MM_STEP

typedef struct {
    const uint32_t *ap, *wp; /* a's rows as pairs (N x Kh), the packed weights */
    int N, Kh, M;
    const float *bias;
    int act;
    float aa, ab;
    float *y;
} mm_job;

/* share t of T: the pairs of column blocks (32 columns) t, t + T, ..., every row */
__attribute__((target("avx512f,avx512bw")))
static int mm_share(void *p, int t, int T) {
    const mm_job *j = p;
    const int blocks = (j->M + 15) / 16;
    __m512 out[16];
    for (int cb = 2 * t; cb < blocks; cb += 2 * T) {
        const uint32_t *w0 = j->wp + (size_t)cb * j->Kh * 16;
        /* an odd last block: its own weights twice, the second half not stored */
        const uint32_t *w1 = cb + 1 < blocks ? w0 + (size_t)j->Kh * 16 : w0;
        for (int n = 0; n < j->N;) {
            const int R = j->N - n >= 8 ? 8 : j->N - n >= 4 ? 4 : 1;
            const uint32_t *ap = j->ap + (size_t)n * j->Kh;
            if (R == 8) mm_step8(ap, j->Kh, w0, w1, out);
            else if (R == 4) mm_step4(ap, j->Kh, w0, w1, out);
            else mm_step1(ap, j->Kh, w0, w1, out);
            for (int r = 0; r < R; r++)
                for (int h = 0; h < 2 && cb + h < blocks; h++) {
                    const int c0 = (cb + h) * 16, n16 = j->M - c0 < 16 ? j->M - c0 : 16;
                    const __mmask16 k = (__mmask16)((1u << n16) - 1);
                    __m512 v = out[2 * r + h];
                    if (j->bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, j->bias + c0));
                    _mm512_mask_storeu_ps(j->y + (size_t)(n + r) * j->M + c0, k,
                                          vact_512(v, j->act, j->aa, j->ab));
                }
            n += R;
        }
    }
    return 0;
}
#endif

int s_matmul_bf16(const float *a, int N, int K, const uint32_t *wp, int M, const float *bias,
                  int act, float aa, float ab, float *y, int threads) {
#ifdef OPTC_AMX_BF16
    if (!s_bf16_available()) return -2;
    const int Kh = (K + 1) / 2;
    uint32_t *ap = malloc(sizeof(uint32_t) * ((size_t)N * Kh + 16));
    if (ap == NULL) return -1;
    for (int n = 0; n < N; n++) pairs_of_row(a + (size_t)n * K, K, ap + (size_t)n * Kh);
    mm_job j = {ap, wp, N, Kh, M, bias, act, aa, ab, y};
    const int pairs = ((M + 15) / 16 + 1) / 2;
    /* threads only where each has 2^22 multiply-adds at least */
    const double work = (double)N * K * M / (4.0 * 1024 * 1024);
    if (work < threads) threads = work < 1 ? 1 : (int)work;
    const int status = optc_parallel(mm_share, &j, threads < pairs ? threads : pairs);
    free(ap);
    return status;
#else
    (void)a; (void)N; (void)K; (void)wp; (void)M; (void)bias; (void)act; (void)aa; (void)ab;
    (void)y; (void)threads;
    return -2;
#endif
}

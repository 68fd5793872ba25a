/* Winograd F(m x m, 3 x 3) convolution for optc.runtime (m = 2 or 4): the input and output
 * transforms, and w_conv, which runs the whole conv a block of tile rows at a time.
 *
 * Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016): per a x a input
 * tile d (a = m + 2, stride m), V = B^T d B; per tile position (i, j) one GEMM over the input
 * channels, P[i,j] = U[i,j] (M x C, the filters transformed once, G g G^T) @ V[i,j] (C x
 * tiles); per output tile Y = A^T P A. The matrices are those of
 * optc/runtime/kernels/winograd.py.
 *
 * Why blocks of tiles: done for every tile at once, V and P are a*a times the input and
 * output (64 -> 64 channels at 56x56 with F(4x4): 1.8 MB each), written by one step and read
 * back by the next from memory. In a network their buffers are cold, and the conv then runs
 * at memory speed rather than cache speed. w_conv instead transforms a few
 * rows of tiles, multiplies them and transforms them back while V and P are in L2 -- as
 * NNPACK's and ncnn's Winograd convolutions work through tile blocks -- and reads the
 * unpadded input itself, a strip of a rows at a time with the zero padding written into the
 * strip (no padded copy of the input). The filters are read once per block, so blocks are
 * made as large as cache allows and never narrower than the GEMM's strips. */
#include <stdlib.h>
#include <string.h>

#include "qgemm.h"

/* The input transform's loops, each in a function of its own so that its row pointers are
 * restrict parameters: GCC vectorises them then (with the rows as pointers into one buffer it
 * did not: too many possible overlaps to check). */
#define R restrict
/* r_i = (B^T d)_i over n columns, F(2x2) and F(4x4) */
static inline void bt2_rows(const float *R d0, const float *R d1, const float *R d2,
                            const float *R d3, float *R r0, float *R r1, float *R r2,
                            float *R r3, ptrdiff_t n) {
    for (ptrdiff_t q = 0; q < n; q++) {
        r0[q] = d0[q] - d2[q]; r1[q] = d1[q] + d2[q];
        r2[q] = d2[q] - d1[q]; r3[q] = d1[q] - d3[q];
    }
}
static inline void bt4_rows(const float *R d0, const float *R d1, const float *R d2,
                            const float *R d3, const float *R d4, const float *R d5,
                            float *R r0, float *R r1, float *R r2, float *R r3, float *R r4,
                            float *R r5, ptrdiff_t n) {
    for (ptrdiff_t q = 0; q < n; q++) {
        r0[q] = 4.f * d0[q] - 5.f * d2[q] + d4[q];
        r1[q] = -4.f * d1[q] - 4.f * d2[q] + d3[q] + d4[q];
        r2[q] = 4.f * d1[q] - 4.f * d2[q] - d3[q] + d4[q];
        r3[q] = -2.f * d1[q] - d2[q] + 2.f * d3[q] + d4[q];
        r4[q] = 2.f * d1[q] - d2[q] - 2.f * d3[q] + d4[q];
        r5[q] = 4.f * d1[q] - 5.f * d3[q] + d5[q];
    }
}
/* r's columns by phase: e_k[t] = r[4 t + k], t < n */
static inline void phases4(const float *R r, float *R e0, float *R e1, float *R e2,
                           float *R e3, ptrdiff_t n) {
    for (ptrdiff_t t = 0; t < n; t++) {
        e0[t] = r[4 * t];
        e1[t] = r[4 * t + 1];
        e2[t] = r[4 * t + 2];
        e3[t] = r[4 * t + 3];
    }
}
/* one row i of (B^T d) B for n tiles, o_j[t] = sum_k B[k][j] r[m t + k]: F(2x2) and
 * F(4x4) reading r itself (tile t reads r[m t .. m t + a - 1]) */
static inline void b2_direct(const float *R r, float *R o0, float *R o1, float *R o2,
                             float *R o3, ptrdiff_t n) {
    for (ptrdiff_t t = 0; t < n; t++) {
        o0[t] = r[2 * t] - r[2 * t + 2];
        o1[t] = r[2 * t + 1] + r[2 * t + 2];
        o2[t] = r[2 * t + 2] - r[2 * t + 1];
        o3[t] = r[2 * t + 1] - r[2 * t + 3];
    }
}
/* tile t's six outputs of F(4x4) from its six columns f0..f5 of r */
#define B4_TILE(t, f0, f1, f2, f3, f4, f5)                \
    do {                                                  \
        o0[t] = 4.f * f0 - 5.f * f2 + f4;                 \
        o1[t] = -4.f * f1 - 4.f * f2 + f3 + f4;           \
        o2[t] = 4.f * f1 - 4.f * f2 - f3 + f4;            \
        o3[t] = -2.f * f1 - f2 + 2.f * f3 + f4;           \
        o4[t] = 2.f * f1 - f2 - 2.f * f3 + f4;            \
        o5[t] = 4.f * f1 - 5.f * f3 + f5;                 \
    } while (0)
static inline void b4_direct(const float *R r, float *R o0, float *R o1, float *R o2,
                             float *R o3, float *R o4, float *R o5, ptrdiff_t n) {
    for (ptrdiff_t t = 0; t < n; t++) {
        const float f0 = r[4 * t], f1 = r[4 * t + 1], f2 = r[4 * t + 2], f3 = r[4 * t + 3],
                    f4 = r[4 * t + 4], f5 = r[4 * t + 5];
        B4_TILE(t, f0, f1, f2, f3, f4, f5);
    }
}
/* F(4x4) from r's phases (e_0, e_1 at t + 1: columns 4 t + 4, 4 t + 5) */
static inline void b4_tiles(const float *R e0, const float *R e1, const float *R e2,
                            const float *R e3, float *R o0, float *R o1, float *R o2,
                            float *R o3, float *R o4, float *R o5, ptrdiff_t n) {
    for (ptrdiff_t t = 0; t < n; t++) {
        const float f0 = e0[t], f1 = e1[t], f2 = e2[t], f3 = e3[t], f4 = e0[t + 1],
                    f5 = e1[t + 1];
        B4_TILE(t, f0, f1, f2, f3, f4, f5);
    }
}
#undef B4_TILE
#undef R

/* One channel's input transform V = B^T d B, every tile of the padded plane xc (row stride
 * W) to v[(i * a + j) * plane + ty * tw + tx], a row of tiles at a time: vertically,
 * r = B^T d over the strip of a rows (contiguous columns); horizontally, each output a sum
 * over r's columns m t .. m t + a - 1 of tile t, stored contiguously in its position plane.
 * With F(4x4) on rows of fewer than 6 tiles, r's columns are first split by phase,
 * e_k[t] = r[4 t + k], and the sums read e at the tile's index (14x14 maps: 0.63x the time of
 * reading r itself; on wider rows r itself measured faster). Against the per-tile scalar
 * code before: F(4x4) 0.50-0.72x the time at 56x56 to 14x14 maps, F(2x2) unchanged. r:
 * a * (tw * m + 2) floats, e: 4 * (tw + 1). */
#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
void w_input_plane(const float *xc, ptrdiff_t W, int th, int tw, int m, float *r,
                              float *e, float *v, ptrdiff_t plane) {
    const int a = m + 2;
    const ptrdiff_t width = (ptrdiff_t)tw * m + 2, tn = tw + 1;
    for (ptrdiff_t ty = 0; ty < th; ty++) {
        const float *d = xc + ty * m * W;
        if (m == 2)
            bt2_rows(d, d + W, d + 2 * W, d + 3 * W, r, r + width, r + 2 * width,
                     r + 3 * width, width);
        else
            bt4_rows(d, d + W, d + 2 * W, d + 3 * W, d + 4 * W, d + 5 * W, r, r + width,
                     r + 2 * width, r + 3 * width, r + 4 * width, r + 5 * width, width);
        for (int i = 0; i < a; i++) {
            const float *ri = r + i * width;
            float *o = v + (ptrdiff_t)(i * a) * plane + ty * tw;
            if (m == 2) {
                b2_direct(ri, o, o + plane, o + 2 * plane, o + 3 * plane, tw);
            } else if (tw >= 6) {
                b4_direct(ri, o, o + plane, o + 2 * plane, o + 3 * plane, o + 4 * plane,
                          o + 5 * plane, tw);
            } else {
                phases4(ri, e, e + tn, e + 2 * tn, e + 3 * tn, tw);
                e[tw] = ri[4 * tw]; /* the last tile's two right columns */
                e[tn + tw] = ri[4 * tw + 1];
                b4_tiles(e, e + tn, e + 2 * tn, e + 3 * tn, o, o + plane, o + 2 * plane,
                         o + 3 * plane, o + 4 * plane, o + 5 * plane, tw);
            }
        }
    }
}


/* The output transform's loops, each a function with restrict rows (as the input
 * transform's), so that GCC vectorises them: written as one loop nest over pointers into one
 * buffer they were scalar code (64 -> 64 channels at 56x56: 26 % of the conv's time). */
#define R restrict
/* vertical, over n tiles: t_o = sum_i A^T[o][i] p_i */
static inline void at2_cols(const float *R p0, const float *R p1, const float *R p2,
                            const float *R p3, float *R t0, float *R t1, ptrdiff_t n) {
    for (ptrdiff_t x = 0; x < n; x++) {
        t0[x] = p0[x] + p1[x] + p2[x];
        t1[x] = p1[x] - p2[x] - p3[x];
    }
}
static inline void at4_cols(const float *R p0, const float *R p1, const float *R p2,
                            const float *R p3, const float *R p4, const float *R p5,
                            float *R t0, float *R t1, float *R t2, float *R t3, ptrdiff_t n) {
    for (ptrdiff_t x = 0; x < n; x++) {
        const float a12 = p1[x] + p2[x], s12 = p1[x] - p2[x];
        const float a34 = p3[x] + p4[x], s34 = p3[x] - p4[x];
        t0[x] = p0[x] + a12 + a34;
        t1[x] = s12 + 2.f * s34;
        t2[x] = a12 + 4.f * a34;
        t3[x] = s12 + 8.f * s34 + p5[x];
    }
}
/* horizontal, one output row of n tiles: out[m x + q] = sum_j e_j[x] A[j][q] */
static inline void at2_row(const float *R e0, const float *R e1, const float *R e2,
                           const float *R e3, float *R out, ptrdiff_t n) {
    for (ptrdiff_t x = 0; x < n; x++) {
        out[2 * x] = e0[x] + e1[x] + e2[x];
        out[2 * x + 1] = e1[x] - e2[x] - e3[x];
    }
}
static inline void at4_row(const float *R e0, const float *R e1, const float *R e2,
                           const float *R e3, const float *R e4, const float *R e5,
                           float *R out, ptrdiff_t n) {
    for (ptrdiff_t x = 0; x < n; x++) {
        const float a12 = e1[x] + e2[x], s12 = e1[x] - e2[x];
        const float a34 = e3[x] + e4[x], s34 = e3[x] - e4[x];
        out[4 * x] = e0[x] + a12 + a34;
        out[4 * x + 1] = s12 + 2.f * s34;
        out[4 * x + 2] = a12 + 4.f * a34;
        out[4 * x + 3] = s12 + 8.f * s34 + e5[x];
    }
}
/* y = act(out + bias + res) over n pixels (res: NULL or the residual row) */
static inline void store_row(const float *R out, const float *R res, float *R y, ptrdiff_t n,
                             float bias, int act, float aa, float ab) {
    if (res && act == 1)
        for (ptrdiff_t q = 0; q < n; q++) {
            const float v = out[q] + bias + res[q];
            y[q] = v > 0.f ? v : 0.f;
        }
    else if (act == 1)
        for (ptrdiff_t q = 0; q < n; q++) {
            const float v = out[q] + bias;
            y[q] = v > 0.f ? v : 0.f;
        }
    else if (res)
        for (ptrdiff_t q = 0; q < n; q++) y[q] = out[q] + bias + res[q];
    else
        for (ptrdiff_t q = 0; q < n; q++) y[q] = out[q] + bias;
    if (act > 1) activate_span(y, (size_t)n, act, aa, ab);
}
#undef R

/* Y = A^T P A for the tile rows ty0 .. ty0 + rows of one image, plus bias[k] and the residual
 * res (y's layout), then the activation, cropped to HO x WO: p[(i * a + j) * plane + k * ldt +
 * (ty - ty0) * tw + tx] are the tiles' GEMM results, y the image's (M, HO, WO) output. t:
 * m * a * tw floats (t[(o * a + j) * tw + tx], the vertical half), rowbuf: m * tw * m. */
#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
void w_output_rows(const float *p, ptrdiff_t plane, ptrdiff_t ldt, int M, int m, int tw,
                   int ty0, int rows, float *y, int HO, int WO, const float *bias,
                   const float *res, int act, float aa, float ab, float *t, float *rowbuf) {
    const int a = m + 2;
    const ptrdiff_t n = tw;
    for (ptrdiff_t k = 0; k < M; k++) {
        const float bk = bias ? bias[k] : 0.f;
        for (ptrdiff_t ty = ty0; ty < ty0 + rows; ty++) {
            const float *src = p + k * ldt + (ty - ty0) * tw;
            for (int j = 0; j < a; j++) {
                const float *pj = src + j * plane;
                float *tj = t + j * n;
                if (m == 2)
                    at2_cols(pj, pj + a * plane, pj + 2 * a * plane, pj + 3 * a * plane, tj,
                             tj + a * n, n);
                else
                    at4_cols(pj, pj + a * plane, pj + 2 * a * plane, pj + 3 * a * plane,
                             pj + 4 * a * plane, pj + 5 * a * plane, tj, tj + a * n,
                             tj + 2 * a * n, tj + 3 * a * n, n);
            }
            for (int o = 0; o < m; o++) {
                const ptrdiff_t oy = ty * m + o;
                if (oy >= HO) break;
                const float *to = t + (ptrdiff_t)o * a * n;
                if (m == 2)
                    at2_row(to, to + n, to + 2 * n, to + 3 * n, rowbuf, n);
                else
                    at4_row(to, to + n, to + 2 * n, to + 3 * n, to + 4 * n, to + 5 * n, rowbuf,
                            n);
                const ptrdiff_t off = (k * HO + oy) * WO;
                store_row(rowbuf, res ? res + off : NULL, y + off, WO, bk, act, aa, ab);
            }
        }
    }
}

/* The strip of a input rows that tile row ty reads, padded: s[i][q] = x[ty * m - pt + i,
 * q - pl] for q < width, zero outside the H x W plane xc. */
static void padded_strip(const float *xc, int H, int W, int pt, int pl, int ty, int m,
                         ptrdiff_t width, float *s) {
    const int a = m + 2;
    for (int i = 0; i < a; i++, s += width) {
        const int row = ty * m - pt + i;
        if (row < 0 || row >= H) {
            memset(s, 0, sizeof(float) * (size_t)width);
            continue;
        }
        /* columns lo .. hi of the strip hold the row's pixels lo - pl .. hi - pl */
        const ptrdiff_t lo = pl < width ? pl : width;
        ptrdiff_t hi = (ptrdiff_t)pl + W;
        if (hi > width) hi = width;
        memset(s, 0, sizeof(float) * (size_t)lo);
        if (hi > lo) memcpy(s + lo, xc + (ptrdiff_t)row * W, sizeof(float) * (size_t)(hi - lo));
        if (hi < lo) hi = lo;
        memset(s + hi, 0, sizeof(float) * (size_t)(width - hi));
    }
}

/* floats of V and P together per block of tiles (w_block sets it): they stay in L2 */
static size_t block_floats = 96 * 1024;
/* tiles per block at least: the GEMM's columns come in strips of 48 (AVX-512) */
static int block_tiles = 48;

void w_block(size_t floats, int tiles, size_t *floats_out, int *tiles_out) {
    if (floats > 0) block_floats = floats;
    if (tiles > 0) block_tiles = tiles;
    *floats_out = block_floats;
    *tiles_out = block_tiles;
}

int w_block_rows(int C, int M, int m, int th, int tw) {
    const int a = m + 2;
    const double per_row = (double)a * a * (C + M) * tw;
    int rows = (int)(block_floats / (per_row > 1 ? per_row : 1));
    const int least = (block_tiles + tw - 1) / tw;
    if (rows < least) rows = least;
    if (rows < 1) rows = 1;
    if (rows >= th) return th;
    const int blocks = (th + rows - 1) / rows; /* as even as can be */
    return (th + blocks - 1) / blocks;
}

typedef struct {
    const float *x, *up, *bias, *res;
    float *y;
    int N, C, H, W, pt, pl, M, m, th, tw, rows, HO, WO, act;
    float aa, ab;
} wino_job;

/* blocks t, t + T, ... of the N * ceil(th / rows) blocks of tile rows */
static int wino_share(void *p, int t, int T) {
    const wino_job *j = p;
    const int a = j->m + 2, aa = a * a;
    const ptrdiff_t width = (ptrdiff_t)j->tw * j->m + 2, tb = (ptrdiff_t)j->rows * j->tw;
    const size_t pstride = (size_t)(j->M + SMR - 1) / SMR * SMR * j->C;
    const size_t floats = (size_t)aa * (j->C + j->M) * tb + 2 * (size_t)a * width +
                          4 * ((size_t)j->tw + 1) + (size_t)j->m * a * j->tw +
                          (size_t)j->m * j->m * j->tw + s_gemm_ws_floats();
    float *buf = malloc(sizeof(float) * floats);
    if (buf == NULL) return -1;
    float *v = buf, *prod = v + (size_t)aa * j->C * tb, *strip = prod + (size_t)aa * j->M * tb;
    float *r = strip + a * width, *e = r + a * width, *tt = e + 4 * ((size_t)j->tw + 1);
    float *rowbuf = tt + (size_t)j->m * a * j->tw, *ws = rowbuf + (size_t)j->m * j->m * j->tw;
    const int per_image = (j->th + j->rows - 1) / j->rows;
    for (int b = t; b < j->N * per_image; b += T) {
        const int n = b / per_image, ty0 = b % per_image * j->rows;
        const int rows = j->th - ty0 < j->rows ? j->th - ty0 : j->rows;
        const ptrdiff_t tiles = (ptrdiff_t)rows * j->tw;
        const ptrdiff_t vplane = j->C * tiles, pplane = j->M * tiles;
        for (int c = 0; c < j->C; c++) {
            const float *xc = j->x + ((size_t)n * j->C + c) * j->H * j->W;
            for (int ty = ty0; ty < ty0 + rows; ty++) {
                padded_strip(xc, j->H, j->W, j->pt, j->pl, ty, j->m, width, strip);
                w_input_plane(strip, width, 1, j->tw, j->m, r, e,
                              v + c * tiles + (ptrdiff_t)(ty - ty0) * j->tw, vplane);
            }
        }
        for (int q = 0; q < aa; q++)
            s_gemm_ws(j->up + q * pstride, v + q * vplane, (size_t)tiles, prod + q * pplane,
                      (size_t)tiles, j->M, (int)tiles, j->C, 0, NULL, ws);
        const size_t yoff = (size_t)n * j->M * j->HO * j->WO;
        w_output_rows(prod, pplane, tiles, j->M, j->m, j->tw, ty0, rows, j->y + yoff, j->HO,
                      j->WO, j->bias, j->res ? j->res + yoff : NULL, j->act, j->aa, j->ab, tt,
                      rowbuf);
    }
    free(buf);
    return 0;
}

int w_conv(const float *x, int N, int C, int H, int W, int pt, int pl, const float *up, int M,
           int m, int th, int tw, const float *bias, const float *res, int act, float aa,
           float ab, float *y, int HO, int WO, int threads) {
    if (N <= 0 || M <= 0 || th <= 0 || tw <= 0) return 0;
    wino_job job = {x, up, bias, res, y, N, C, H, W, pt, pl, M, m, th, tw,
                    w_block_rows(C, M, m, th, tw), HO, WO, act, aa, ab};
    const int blocks = N * ((th + job.rows - 1) / job.rows);
    return optc_parallel(wino_share, &job, threads < blocks ? threads : blocks);
}

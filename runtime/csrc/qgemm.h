/* int8 convolution core (qgemm.c), called by ckernels.c's qlinear_conv2d. */
#ifndef OPTC_QGEMM_H
#define OPTC_QGEMM_H

#include <stddef.h>
#include <stdint.h>

/* The int8 GEMM that runs: 2 AVX-512 VNNI, 1 AVX2, 0 portable C (what the CPU has, capped
 * by q_allow_simd). */
int q_simd_level(void);
/* Cap the level (0: portable C only): tests compare every path on one machine. */
void q_allow_simd(int level);

/* The bytes of packed activations per GEMM pass (bytes > 0 sets it; tests make it small to
 * cross block edges on small images); returns the setting. */
size_t q_block_bytes(size_t bytes);

/* One image's group of a conv: y[m, p] = requant(sum_k x_k,p * wp[m, k] + corr[m]) for
 * m < Mg, p < OH * OW (y: Mg rows of OH * OW bytes, int8 if ysigned else uint8); x: cg
 * channels of H x W uint8 (flip: 0x80 turns int8 data into uint8, x + 128), pad: the value of
 * padded taps (the zero point), wp: the packed filters (a multiple of 4 rows of
 * kh * kw * ceil(cg / 4) quads), threads: how many threads share the work (POSIX threads;
 * 1 elsewhere). Returns -1 when out of memory. */
int q_conv(const uint8_t *x, int cg, int H, int W, int kh, int kw, int sh, int sw, int pt, int pl,
           int dh, int dw, int OH, int OW, uint8_t pad, uint8_t flip, const int8_t *wp, int Mg,
           const int64_t *corr, const int32_t *m0, const int32_t *shift, int zp, int ysigned,
           void *y, int threads);

/* Depthwise conv of one image (C channels of H x W uint8, zero point zx in the uint8 view,
 * w: (C, kh * kw) int8), requantized like q_gemm with corr[c] the int32 bias. */
int q_depthwise(const uint8_t *x, const int8_t *w, int C, int H, int W, int kh, int kw, int sh,
                int sw, int pt, int pl, int dh, int dw, int OH, int OW, int zx, uint8_t flip,
                const int64_t *corr, const int32_t *m0, const int32_t *shift, int zp,
                int ysigned, void *y, int threads);

/* Per-tensor QuantizeLinear (float32 -> 8 bits) and DequantizeLinear (8 bits -> float32). */
void q_quantize(const float *x, size_t n, float s, int zp, int ysigned, void *y);
void q_dequantize(const void *x, size_t n, int xsigned, int zp, float s, float *y);

#endif

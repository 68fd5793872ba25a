/* optc.runtime._ckernels: C kernels for optc's runtime, called on contiguous float32 NCHW
 * buffers through the buffer protocol (no copies, no NumPy headers needed to build).
 *
 *   depthwise_conv2d(x, w, b_or_None, y, stride_h, stride_w, pad_t, pad_l, dil_h, dil_w,
 *                    act, act_a, act_b)
 *       y[n, c] = act(b[c] + sum_{i,j} w[c, 0, i, j] * x[n, c, oh*sh - pt + i*dh,
 *                                                        ow*sw - pl + j*dw])
 *       (zero padding); one output row at a time so the inner loop over the row vectorises.
 *   max_pool2d(x, y, kh, kw, sh, sw, pad_t, pad_l, dil_h, dil_w)
 *       y[n, c, oh, ow] = max over the window's cells inside x (-inf if none), the output
 *       size (pads, ceil_mode) decided by the caller.
 *   winograd_input(xp, v, m, th, tw)
 *       xp: (N, C, th*m + 2, tw*m + 2) padded input; v: (a*a, C, N*th*tw) output, a = m + 2:
 *       V = B^T d B of every a x a tile d (stride m) of every channel, for m = 2 or 4.
 *   winograd_output(p, y, m, th, tw, b_or_None, act, act_a, act_b)
 *       p: (a*a, M, N*th*tw) per-position GEMM results; y: (N, M, Ho, Wo): Y = A^T P A per
 *       tile, cropped to Ho x Wo, plus bias, then the activation.
 *
 * act codes (optc.runtime.kernels.native.ACTIVATIONS): 0 none, 1 Relu, 2 Clip(a, b),
 * 3 LeakyRelu(a), 4 Sigmoid, 5 HardSigmoid(a, b), 6 HardSwish, 7 Tanh, 8 SiLU.
 * The Winograd matrices are those of Lavin & Gray, "Fast Algorithms for Convolutional Neural
 * Networks" (2016), the same as optc/runtime/kernels/winograd.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

static inline float activate(float v, int act, float a, float b) {
    switch (act) {
    case 1: return v > 0.f ? v : 0.f;
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

/* A writable (or read-only) C-contiguous float32 buffer of exactly `count` elements. */
static int get_floats(PyObject *obj, Py_buffer *view, Py_ssize_t count, int writable,
                      const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (view->itemsize != 4 || view->format == NULL || strcmp(view->format, "f") != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be float32", name);
        PyBuffer_Release(view);
        return -1;
    }
    if (count >= 0 && view->len != count * 4) {
        PyErr_Format(PyExc_ValueError, "%s has %zd elements, expected %zd", name,
                     view->len / 4, count);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int dims4(Py_buffer *v, Py_ssize_t *d, const char *name) {
    if (v->ndim != 4) {
        PyErr_Format(PyExc_ValueError, "%s must be 4-D", name);
        return -1;
    }
    for (int i = 0; i < 4; i++) d[i] = v->shape[i];
    return 0;
}

static PyObject *depthwise_conv2d(PyObject *self, PyObject *args) {
    PyObject *xo, *wo, *bo, *yo;
    int sh, sw, pt, pl, dh, dw, act;
    float aa, ab;
    if (!PyArg_ParseTuple(args, "OOOOiiiiiiiff", &xo, &wo, &bo, &yo, &sh, &sw, &pt, &pl, &dh,
                          &dw, &act, &aa, &ab))
        return NULL;
    Py_buffer xv, wv, bv, yv;
    Py_ssize_t xd[4], wd[4], yd[4];
    if (get_floats(xo, &xv, -1, 0, "x") < 0) return NULL;
    if (dims4(&xv, xd, "x") < 0) { PyBuffer_Release(&xv); return NULL; }
    if (get_floats(wo, &wv, -1, 0, "w") < 0) { PyBuffer_Release(&xv); return NULL; }
    if (dims4(&wv, wd, "w") < 0 || wd[0] != xd[1] || wd[1] != 1) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "w must be (C, 1, kh, kw)");
        PyBuffer_Release(&xv); PyBuffer_Release(&wv); return NULL;
    }
    int has_b = bo != Py_None;
    if (has_b && get_floats(bo, &bv, xd[1], 0, "b") < 0) {
        PyBuffer_Release(&xv); PyBuffer_Release(&wv); return NULL;
    }
    if (get_floats(yo, &yv, -1, 1, "y") < 0 || dims4(&yv, yd, "y") < 0 ||
        yd[0] != xd[0] || yd[1] != xd[1]) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "y must be (N, C, Ho, Wo)");
        PyBuffer_Release(&xv); PyBuffer_Release(&wv); if (has_b) PyBuffer_Release(&bv);
        return NULL;
    }
    const float *x = xv.buf, *w = wv.buf, *b = has_b ? bv.buf : NULL;
    float *y = yv.buf;
    const Py_ssize_t N = xd[0], C = xd[1], H = xd[2], W = xd[3], KH = wd[2], KW = wd[3];
    const Py_ssize_t HO = yd[2], WO = yd[3];
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t n = 0; n < N; n++) {
        for (Py_ssize_t c = 0; c < C; c++) {
            const float *xc = x + (n * C + c) * H * W;
            const float *wc = w + c * KH * KW;
            float *yc = y + (n * C + c) * HO * WO;
            const float bias = b ? b[c] : 0.f;
            for (Py_ssize_t oh = 0; oh < HO; oh++) {
                float *row = yc + oh * WO;
                for (Py_ssize_t ow = 0; ow < WO; ow++) row[ow] = bias;
                for (Py_ssize_t i = 0; i < KH; i++) {
                    const Py_ssize_t ih = oh * sh - pt + i * dh;
                    if (ih < 0 || ih >= H) continue;
                    const float *xr = xc + ih * W;
                    for (Py_ssize_t j = 0; j < KW; j++) {
                        const float wij = wc[i * KW + j];
                        const Py_ssize_t off = j * dw - pl;
                        /* output columns whose input column off + ow*sw is inside [0, W) */
                        Py_ssize_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
                        Py_ssize_t hi = (W - 1 - off) < 0 ? 0 : (W - 1 - off) / sw + 1;
                        if (hi > WO) hi = WO;
                        if (sw == 1) {
                            const float *xs = xr + off;
                            for (Py_ssize_t ow = lo; ow < hi; ow++) row[ow] += wij * xs[ow];
                        } else {
                            for (Py_ssize_t ow = lo; ow < hi; ow++)
                                row[ow] += wij * xr[off + ow * sw];
                        }
                    }
                }
                if (act)
                    for (Py_ssize_t ow = 0; ow < WO; ow++) row[ow] = activate(row[ow], act, aa, ab);
            }
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&xv); PyBuffer_Release(&wv); if (has_b) PyBuffer_Release(&bv);
    PyBuffer_Release(&yv);
    Py_RETURN_NONE;
}

static PyObject *max_pool2d(PyObject *self, PyObject *args) {
    PyObject *xo, *yo;
    int kh, kw, sh, sw, pt, pl, dh, dw;
    if (!PyArg_ParseTuple(args, "OOiiiiiiii", &xo, &yo, &kh, &kw, &sh, &sw, &pt, &pl, &dh, &dw))
        return NULL;
    Py_buffer xv, yv;
    Py_ssize_t xd[4], yd[4];
    if (get_floats(xo, &xv, -1, 0, "x") < 0) return NULL;
    if (dims4(&xv, xd, "x") < 0) { PyBuffer_Release(&xv); return NULL; }
    if (get_floats(yo, &yv, -1, 1, "y") < 0 || dims4(&yv, yd, "y") < 0 ||
        yd[0] != xd[0] || yd[1] != xd[1]) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "y must be (N, C, Ho, Wo)");
        PyBuffer_Release(&xv); return NULL;
    }
    const float *x = xv.buf;
    float *y = yv.buf;
    const Py_ssize_t NC = xd[0] * xd[1], H = xd[2], W = xd[3], HO = yd[2], WO = yd[3];
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t p = 0; p < NC; p++) {
        const float *xc = x + p * H * W;
        float *yc = y + p * HO * WO;
        for (Py_ssize_t oh = 0; oh < HO; oh++) {
            float *row = yc + oh * WO;
            for (Py_ssize_t ow = 0; ow < WO; ow++) row[ow] = -INFINITY;
            for (Py_ssize_t i = 0; i < kh; i++) {
                const Py_ssize_t ih = oh * sh - pt + i * dh;
                if (ih < 0 || ih >= H) continue;
                const float *xr = xc + ih * W;
                for (Py_ssize_t j = 0; j < kw; j++) {
                    const Py_ssize_t off = j * dw - pl;
                    Py_ssize_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
                    Py_ssize_t hi = (W - 1 - off) < 0 ? 0 : (W - 1 - off) / sw + 1;
                    if (hi > WO) hi = WO;
                    for (Py_ssize_t ow = lo; ow < hi; ow++) {
                        const float v = xr[off + ow * sw];
                        row[ow] = v > row[ow] ? v : row[ow];
                    }
                }
            }
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&xv); PyBuffer_Release(&yv);
    Py_RETURN_NONE;
}

/* B^T d B for one a x a tile (row stride ld), F(2,3) or F(4,3); out[i*a + l] */
static inline void input_tile2(const float *d, Py_ssize_t ld, float *out) {
    float t[4][4];
    for (int k = 0; k < 4; k++) { /* rows: t = B^T d */
        float d0 = d[0 * ld + k], d1 = d[1 * ld + k], d2 = d[2 * ld + k], d3 = d[3 * ld + k];
        t[0][k] = d0 - d2; t[1][k] = d1 + d2; t[2][k] = d2 - d1; t[3][k] = d1 - d3;
    }
    for (int i = 0; i < 4; i++) { /* columns: t B */
        float *o = out + i * 4;
        o[0] = t[i][0] - t[i][2]; o[1] = t[i][1] + t[i][2];
        o[2] = t[i][2] - t[i][1]; o[3] = t[i][1] - t[i][3];
    }
}

static inline void bt4_vec(const float *d, Py_ssize_t s, float *o, Py_ssize_t os) {
    float d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s];
    o[0] = 4.f * d0 - 5.f * d2 + d4;
    o[os] = -4.f * d1 - 4.f * d2 + d3 + d4;
    o[2 * os] = 4.f * d1 - 4.f * d2 - d3 + d4;
    o[3 * os] = -2.f * d1 - d2 + 2.f * d3 + d4;
    o[4 * os] = 2.f * d1 - d2 - 2.f * d3 + d4;
    o[5 * os] = 4.f * d1 - 5.f * d3 + d5;
}

static inline void input_tile4(const float *d, Py_ssize_t ld, float *out) {
    float t[36];
    for (int k = 0; k < 6; k++) bt4_vec(d + k, ld, t + k, 6);      /* t = B^T d (columns) */
    for (int i = 0; i < 6; i++) bt4_vec(t + i * 6, 1, out + i * 6, 1); /* rows: t B */
}

static PyObject *winograd_input(PyObject *self, PyObject *args) {
    PyObject *xo, *vo;
    int m, th, tw;
    if (!PyArg_ParseTuple(args, "OOiii", &xo, &vo, &m, &th, &tw)) return NULL;
    if (m != 2 && m != 4) { PyErr_SetString(PyExc_ValueError, "tile must be 2 or 4"); return NULL; }
    const int a = m + 2;
    Py_buffer xv, vv;
    Py_ssize_t xd[4];
    if (get_floats(xo, &xv, -1, 0, "xp") < 0) return NULL;
    if (dims4(&xv, xd, "xp") < 0 || xd[2] < th * m + 2 || xd[3] < tw * m + 2) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "xp too small for the tiles");
        PyBuffer_Release(&xv); return NULL;
    }
    const Py_ssize_t N = xd[0], C = xd[1], H = xd[2], W = xd[3];
    const Py_ssize_t T = N * th * tw;
    if (get_floats(vo, &vv, (Py_ssize_t)a * a * C * T, 1, "v") < 0) {
        PyBuffer_Release(&xv); return NULL;
    }
    const float *x = xv.buf;
    float *v = vv.buf;
    const Py_ssize_t plane = C * T; /* stride between tile positions in v */
    Py_BEGIN_ALLOW_THREADS
    float tile[36];
    for (Py_ssize_t n = 0; n < N; n++)
        for (Py_ssize_t c = 0; c < C; c++) {
            const float *xc = x + (n * C + c) * H * W;
            for (Py_ssize_t ty = 0; ty < th; ty++)
                for (Py_ssize_t tx = 0; tx < tw; tx++) {
                    const float *d = xc + ty * m * W + tx * m;
                    if (m == 2) input_tile2(d, W, tile); else input_tile4(d, W, tile);
                    const Py_ssize_t col = c * T + (n * th + ty) * tw + tx;
                    for (int p = 0; p < a * a; p++) v[p * plane + col] = tile[p];
                }
        }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&xv); PyBuffer_Release(&vv);
    Py_RETURN_NONE;
}

/* A^T p A for one tile: p is a x a (position i*a + j, stride s between positions) */
static inline void output_tile2(const float *p, Py_ssize_t s, float *out) {
    float t[2][4];
    for (int j = 0; j < 4; j++) {
        float p0 = p[(0 * 4 + j) * s], p1 = p[(1 * 4 + j) * s], p2 = p[(2 * 4 + j) * s],
              p3 = p[(3 * 4 + j) * s];
        t[0][j] = p0 + p1 + p2; t[1][j] = p1 - p2 - p3;
    }
    for (int o = 0; o < 2; o++) {
        out[o * 2 + 0] = t[o][0] + t[o][1] + t[o][2];
        out[o * 2 + 1] = t[o][1] - t[o][2] - t[o][3];
    }
}

static inline void at4_vec(const float *p, Py_ssize_t s, float *o, Py_ssize_t os) {
    float p0 = p[0], p1 = p[s], p2 = p[2 * s], p3 = p[3 * s], p4 = p[4 * s], p5 = p[5 * s];
    float a12 = p1 + p2, s12 = p1 - p2, a34 = p3 + p4, s34 = p3 - p4;
    o[0] = p0 + a12 + a34;
    o[os] = s12 + 2.f * s34;
    o[2 * os] = a12 + 4.f * a34;
    o[3 * os] = s12 + 8.f * s34 + p5;
}

static inline void output_tile4(const float *p, Py_ssize_t s, float *out) {
    float col[36], t[24];
    for (int q = 0; q < 36; q++) col[q] = p[q * s];
    for (int j = 0; j < 6; j++) at4_vec(col + j, 6, t + j, 6);   /* t (4 x 6) = A^T p */
    for (int o = 0; o < 4; o++) at4_vec(t + o * 6, 1, out + o * 4, 1); /* t A */
}

static PyObject *winograd_output(PyObject *self, PyObject *args) {
    PyObject *po, *yo, *bo;
    int m, th, tw, act;
    float aa, ab;
    if (!PyArg_ParseTuple(args, "OOiiiOiff", &po, &yo, &m, &th, &tw, &bo, &act, &aa, &ab))
        return NULL;
    if (m != 2 && m != 4) { PyErr_SetString(PyExc_ValueError, "tile must be 2 or 4"); return NULL; }
    const int a = m + 2;
    Py_buffer pv, yv, bv;
    Py_ssize_t yd[4];
    if (get_floats(yo, &yv, -1, 1, "y") < 0) return NULL;
    if (dims4(&yv, yd, "y") < 0 || yd[2] > th * m || yd[3] > tw * m) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "y larger than the tiles");
        PyBuffer_Release(&yv); return NULL;
    }
    const Py_ssize_t N = yd[0], M = yd[1], HO = yd[2], WO = yd[3];
    const Py_ssize_t T = N * th * tw;
    if (get_floats(po, &pv, (Py_ssize_t)a * a * M * T, 0, "p") < 0) {
        PyBuffer_Release(&yv); return NULL;
    }
    int has_b = bo != Py_None;
    if (has_b && get_floats(bo, &bv, M, 0, "b") < 0) {
        PyBuffer_Release(&yv); PyBuffer_Release(&pv); return NULL;
    }
    const float *p = pv.buf, *b = has_b ? bv.buf : NULL;
    float *y = yv.buf;
    const Py_ssize_t plane = M * T;
    Py_BEGIN_ALLOW_THREADS
    float out[16];
    for (Py_ssize_t k = 0; k < M; k++) {
        const float bias = b ? b[k] : 0.f;
        for (Py_ssize_t n = 0; n < N; n++)
            for (Py_ssize_t ty = 0; ty < th; ty++)
                for (Py_ssize_t tx = 0; tx < tw; tx++) {
                    const float *src = p + k * T + (n * th + ty) * tw + tx;
                    if (m == 2) output_tile2(src, plane, out); else output_tile4(src, plane, out);
                    float *yk = y + (n * M + k) * HO * WO;
                    for (int o = 0; o < m; o++) {
                        const Py_ssize_t oy = ty * m + o;
                        if (oy >= HO) break;
                        for (int q = 0; q < m; q++) {
                            const Py_ssize_t ox = tx * m + q;
                            if (ox >= WO) break;
                            yk[oy * WO + ox] = activate(out[o * m + q] + bias, act, aa, ab);
                        }
                    }
                }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&pv); PyBuffer_Release(&yv); if (has_b) PyBuffer_Release(&bv);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"depthwise_conv2d", depthwise_conv2d, METH_VARARGS, "Depthwise 2-D convolution (float32)."},
    {"max_pool2d", max_pool2d, METH_VARARGS, "2-D max pooling (float32, no indices)."},
    {"winograd_input", winograd_input, METH_VARARGS, "Winograd input transform V = B^T d B."},
    {"winograd_output", winograd_output, METH_VARARGS,
     "Winograd output transform Y = A^T P A, bias, activation."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ckernels",
                                    "optc.runtime's C kernels.", -1, methods};

PyMODINIT_FUNC PyInit__ckernels(void) { return PyModule_Create(&module); }

"""optc.runtime's C kernels (runtime/csrc/ckernels.c, built by ``pip install``) and the glue
that calls them on contiguous float32 NCHW arrays without copies.

``AVAILABLE`` says whether the extension was built. Where it was not (no C compiler at install
time), a warning is issued once and every kernel runs its NumPy implementation. Whether a
session uses the C kernels, and with how many threads, is its RuntimeConfig
(runtime/config.py): the kernels check ``config.native`` before calling here and pass
``config.threads``; the callers fall back by themselves when a function here returns None.
Nothing here keeps state between calls: what is prepared once per node (packed weights, a
resolved call) lives in the session's plan (the kernels' prepare steps).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from optc.runtime import plan
from optc.runtime.activations import ACTIVATIONS

try:
    from optc.runtime import _ckernels
except ImportError:  # pragma: no cover - depends on the install
    _ckernels = None
    warnings.warn("optc.runtime's C kernels are not built (no C compiler at install time?); "
                  "using the NumPy kernels", RuntimeWarning, stacklevel=2)

AVAILABLE = _ckernels is not None


def activation_args(kind: str | None, params) -> tuple[int, float, float] | None:
    """(code, a, b) for ckernels.c, or None for an activation it does not know."""
    if not kind:
        return 0, 0.0, 0.0
    if kind not in ACTIVATIONS:
        return None
    code, defaults = ACTIVATIONS[kind]
    p = [float(v) for v in (params or defaults)] + [0.0, 0.0]
    return code, p[0], p[1]


def _f32(*arrays) -> bool:
    return all(a is None or (a.dtype == np.float32) for a in arrays)


#: depthwise_conv2d's paths: one channel's plane at a time, a vector of channels at a time, or
#: the NCHW rows read in place (runtime/csrc/dwconv.c)
DEPTHWISE_PATHS = {"auto": 0, "planes": 1, "blocks": 2, "rows": 3}


class DepthwiseCall:
    """A depthwise (group == C, one filter per channel) 2-D conv's C call with its geometry and
    activation code resolved once, for one input shape; None from __call__ where the arrays
    do not fit (not float32 or not contiguous: the caller converts). A 1x1 one (stride 1, no
    pads) is a per-channel affine map: one vectorised pass (channel_affine)."""

    __slots__ = ("x_shape", "y_shape", "affine", "geometry")

    def __init__(self, x_shape, kernel, strides, begin, end, dilations, out_shape, act,
                 path: int = 0):
        self.x_shape = tuple(x_shape)
        self.affine = tuple(kernel) == (1, 1) and tuple(strides) == (1, 1) and \
            not any(list(begin) + list(end))
        n, c, h, wd = x_shape
        self.y_shape = self.x_shape if self.affine else (n, c, *out_shape)
        self.geometry = (n, c, h * wd, *act) if self.affine else (
            strides[0], strides[1], begin[0], begin[1], dilations[0], dilations[1], *act,
            int(path))

    @staticmethod
    def make(x, w, b, strides, begin, end, dilations, out_shape, activation=None, params=None,
             path: int = 0) -> "DepthwiseCall | None":
        """The call for these arrays, or None if the C kernel does not apply (not float32,
        not 2-D, not one filter per channel, an activation it does not know)."""
        if x.ndim != 4 or not _f32(x, w, b) or w.ndim != 4 or w.shape[1] != 1 or \
                w.shape[0] != x.shape[1]:
            return None
        act = activation_args(activation, params)
        if act is None:
            return None
        return DepthwiseCall(x.shape, w.shape[2:], strides, begin, end, dilations, out_shape,
                             act, path)

    def plan_op(self, w_shape) -> plan.PlanOp:
        """This call as a session plan's op (optc.runtime.plan), the filters of w_shape its
        operand 1, x 0 and the bias 2."""
        if self.affine:
            n, c, p, act, aa, ab = self.geometry
            return plan.PlanOp(plan.AFFINE, (0, 1, 2), (n, c, p, act), (aa, ab))
        sh, sw, pt, pl, dh, dw, act, aa, ab, path = self.geometry
        return plan.PlanOp(plan.DEPTHWISE, (0, 1, 2),
                           (*self.x_shape, *w_shape[2:], *self.y_shape[2:], sh, sw, pt, pl, dh,
                            dw, act, path), (aa, ab))

    def __call__(self, x, w, b) -> np.ndarray | None:
        if x.shape != self.x_shape or x.dtype != np.float32 or not x.flags.c_contiguous or \
                w.dtype != np.float32 or not w.flags.c_contiguous or w.shape[0] != x.shape[1] \
                or (b is not None and (b.dtype != np.float32 or not b.flags.c_contiguous)):
            return None
        y = np.empty(self.y_shape, np.float32)
        if self.affine:
            _ckernels.channel_affine(x, w.reshape(-1), None if b is None else b.reshape(-1), y,
                                     *self.geometry)
        else:
            _ckernels.depthwise_conv2d(x, w, b, y, *self.geometry)
        return y


def depthwise_conv2d(x, w, b, strides, begin, end, dilations, out_shape,
                     activation=None, params=None, path: int = 0) -> np.ndarray | None:
    """Depthwise 2-D conv in C (DepthwiseCall, made for this call), or None if the C kernel
    does not apply."""
    call = DepthwiseCall.make(x, w, b, strides, begin, end, dilations, out_shape, activation,
                              params, path)
    if call is None:
        return None
    return call(np.ascontiguousarray(x), np.ascontiguousarray(w),
                None if b is None else np.ascontiguousarray(b))


def row_means(x: np.ndarray) -> np.ndarray | None:
    """GlobalAveragePool of a float32 (N, C, ...) array in C: (N, C, 1, ...), each channel's
    pixels summed in float32 and divided by their count; None without the C kernels."""
    if not AVAILABLE or x.dtype != np.float32 or x.ndim < 3:
        return None
    rows, cols = x.shape[0] * x.shape[1], math.prod(x.shape[2:])
    y = np.empty((*x.shape[:2], *[1] * (x.ndim - 2)), np.float32)
    _ckernels.row_means(np.ascontiguousarray(x), y, rows, cols)
    return y


def max_pool2d(x, k, strides, begin, dilations, out_shape) -> np.ndarray | None:
    """2-D max pooling in C (no Indices output), or None if the C kernel does not apply."""
    if x.ndim != 4 or x.dtype != np.float32:
        return None
    y = np.empty((x.shape[0], x.shape[1], *out_shape), np.float32)
    _ckernels.max_pool2d(np.ascontiguousarray(x), y, k[0], k[1], strides[0], strides[1],
                         begin[0], begin[1], dilations[0], dilations[1])
    return y


#: rows per panel of packed float32 weights (SMR in runtime/csrc/qgemm.h)
SMR = 8


def pack_panels(a: np.ndarray) -> np.ndarray:
    """float32 weights (batch, M, K) packed for sgemm_batch: panels of SMR rows, k-major
    within a panel -- (batch, ceil(M / SMR), K, SMR), the padding rows zero."""
    batch, m, k = a.shape
    panels = -(-m // SMR)
    padded = np.zeros((batch, panels * SMR, k), np.float32)
    padded[:, :m] = a
    return np.ascontiguousarray(padded.reshape(batch, panels, SMR, k).transpose(0, 1, 3, 2))


def ssimd(level: int | None = None) -> int:
    """The float32 GEMM in use: 2 AVX-512F, 1 AVX2 + FMA, 0 portable C (-1: no extension);
    ``level`` caps it (tests run every path the CPU has; 2 restores the default)."""
    if not AVAILABLE:
        return -1
    return _ckernels.ssimd() if level is None else _ckernels.ssimd(int(level))


def sconv_mode(mode: int | None = None) -> int:
    """The float32 conv's path: 0 chosen per shape, 1 im2col + GEMM only, 2 tap mode (the
    padded input read in place through an offset table) wherever it can run; ``mode`` sets it
    (tests reach both paths). -1: no extension."""
    if not AVAILABLE:
        return -1
    return _ckernels.sconv_mode() if mode is None else _ckernels.sconv_mode(int(mode))


def dw_mode(mode: int | None = None) -> int:
    """The float32 depthwise conv's path: 0 chosen per shape, 1 one channel's plane at a time,
    2 a vector of channels at a time (runtime/csrc/dwconv.c, small maps; AVX2 or better) wherever
    it can run, 3 the NCHW rows read in place (dwconv.c, wide maps; dw_rows_applies) wherever it
    can run; ``mode`` sets it (tests reach every path). -1: no extension."""
    if not AVAILABLE:
        return -1
    return _ckernels.sdw_mode() if mode is None else _ckernels.sdw_mode(int(mode))


def dw_rows_applies(kernel, strides, dilations) -> bool:
    """Whether the direct-rows depthwise path (3 in DEPTHWISE_PATHS: the NCHW rows read in
    place, AVX-512; square 3x3 / 5x5 / 7x7 kernels, stride 1 or 2, no dilation) runs a conv
    of that geometry on this CPU; elsewhere path 3 runs the planes."""
    return AVAILABLE and bool(_ckernels.dw_rows_applies(*kernel, *strides, *dilations))


def pack_conv_weights(w: np.ndarray, group: int) -> np.ndarray:
    """A float32 conv's filters (M, Cg, kh, kw) packed for sconv2d, each group's
    (M/group, Cg*kh*kw) matrix in panels (pack_panels)."""
    m, cg, kh, kw = w.shape
    return pack_panels(w.reshape(group, m // group, cg * kh * kw))


class Conv2dCall:
    """A float32 2-D conv's C call (sconv2d) with everything but its arrays resolved once --
    geometry, activation code, packed weights -- for one input shape: what conv2d does on
    every call, less its checks and conversions. The C function is looked up on each call
    (benchmarks switch builds); the caller checks simd_float() before each (tests switch the
    SIMD levels). None from __call__ where the arrays do not fit the fast path: the caller
    goes the general way."""

    __slots__ = ("packed", "geometry", "y_shape")

    def __init__(self, x_shape, w, strides, begin, dilations, group, out_shape, act,
                 packed: np.ndarray | None = None):
        n, c, h, wd = x_shape
        m, cg, kh, kw = w.shape
        self.packed = pack_conv_weights(w, group) if packed is None else packed
        self.y_shape = (n, m, *out_shape)
        self.geometry = (n, c, h, wd, group, m // group, kh, kw, strides[0], strides[1],
                         begin[0], begin[1], dilations[0], dilations[1], out_shape[0],
                         out_shape[1], *act)

    @staticmethod
    def fits(x, b, res, y_shape) -> bool:
        """Whether the arrays take the C call: float32, contiguous, the residual y's shape."""
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            return False
        if b is not None and (b.dtype != np.float32 or not b.flags.c_contiguous):
            return False
        return res is None or (res.dtype == np.float32 and res.shape == y_shape and
                               res.flags.c_contiguous)

    def plan_op(self, threads: int = 1) -> plan.PlanOp | None:
        """This call as a session plan's op (optc.runtime.plan): x the step's input 0, the
        bias 2, the residual 3, the packed filters its own (so the weight, input 1, must be
        a constant)."""
        return plan.PlanOp(plan.CONV, (0, self.packed, 2, 3), (*self.geometry[:-2], threads),
                           self.geometry[-2:], baked=(1,))

    def __call__(self, x, b, res, threads: int = 1) -> np.ndarray | None:
        """y, or None where the arrays do not fit; the caller checks simd_float() first."""
        if not self.fits(x, b, res, self.y_shape):
            return None
        y = np.empty(self.y_shape, np.float32)
        _ckernels.sconv2d(x, self.packed, None if b is None else b.reshape(-1), res, y,
                          *self.geometry, threads)
        return y


def bf16_available() -> bool:
    """Whether this CPU runs the bf16 convs (AMX-BF16, and an OS that hands out its tiles):
    the session's precision "bf16"."""
    return AVAILABLE and bool(_ckernels.bf16_available())


def to_bf16(a: np.ndarray) -> np.ndarray:
    """float32 ``a`` rounded to bfloat16 (nearest, ties to even, as vcvtneps2bf16; NaN a
    quiet NaN), as the uint16 of its top half."""
    u = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    r[np.isnan(a)] = 0x7FC0
    return r


def bf16_weights(w: np.ndarray, group: int, taps: bool) -> np.ndarray:
    """A float32 conv's filters (M, Cg, kh, kw) for sconv2d_bf16 (qgemm.h, s_conv_bf16):
    per group, rows of bf16 taps -- (kernel row, kernel column, channel) with the channels
    padded to a multiple of 32 where ``taps`` (bf16_taps), else (channel, kernel row,
    kernel column) padded to a multiple of 32 -- and zero rows up to a multiple of 32:
    (G, Mp, Kp) uint16."""
    m, cg, kh, kw = w.shape
    mg = m // group
    mp = -(-mg // 32) * 32
    wg = w.reshape(group, mg, cg, kh, kw)
    if taps:
        cp = -(-cg // 32) * 32
        full = np.zeros((group, mp, kh, kw, cp), np.float32)
        full[:, :mg, :, :, :cg] = wg.transpose(0, 1, 3, 4, 2)
    else:
        k = cg * kh * kw
        full = np.zeros((group, mp, -(-k // 32) * 32), np.float32)
        full[:, :mg, :k] = wg.reshape(group, mg, k)
    return to_bf16(full.reshape(group, mp, -1))


class Bf16ConvCall(Conv2dCall):
    """Conv2dCall's bf16 counterpart (sconv2d_bf16, AMX-BF16): x and the filters rounded to
    bf16, the sums, bias, residual and activation in float32; the filters (bf16_weights, in
    the layout bf16_taps picks) made by the caller once per node; the geometry ends with
    that layout. The caller checks bf16_available()."""

    __slots__ = ()

    def __init__(self, x_shape, w, strides, begin, dilations, group, out_shape, act,
                 packed: np.ndarray):
        super().__init__(x_shape, w, strides, begin, dilations, group, out_shape, act, packed)
        self.geometry += (int(bf16_taps(w.shape[1])),)

    def plan_op(self, threads: int = 1) -> None:
        """None: plans have no bf16 conv op (the step runs through Python)."""
        return None

    def __call__(self, x, b, res, threads: int = 1) -> np.ndarray | None:
        if not self.fits(x, b, res, self.y_shape):
            return None
        y = np.empty(self.y_shape, np.float32)
        _ckernels.sconv2d_bf16(x, self.packed, None if b is None else b.reshape(-1), res, y,
                               *self.geometry, threads)
        return y


def bf16_taps(channels: int) -> bool:
    """Whether sconv2d_bf16 reads a conv's input where it lies, in the stride's phases (taps)
    rather than by im2col blocks (bf16_weights' two layouts), for ``channels`` input channels
    a group: taps round them up to 32, which wastes little from 16 on (a 3-channel stem would
    multiply ten zeros for each value)."""
    return channels >= 16


def bf16_matmul_weights(w: np.ndarray) -> np.ndarray:
    """A float32 MatMul's constant weights (K, M) for smatmul_bf16 (qgemm.h, s_matmul_bf16):
    per block of 16 columns, per pair of rows 2kp, 2kp + 1, 16 words of two bf16 (row 2kp in
    the low half): (ceil(M / 16), ceil(K / 2), 16) uint32, zeros past K and M."""
    k, m = w.shape
    full = np.zeros((-(-k // 2) * 2, -(-m // 16) * 16), np.float32)
    full[:k, :m] = w
    b = to_bf16(full).astype(np.uint32)
    words = b[0::2] | (b[1::2] << 16)  # (Kh, Mp)
    return np.ascontiguousarray(words.reshape(words.shape[0], -1, 16).transpose(1, 0, 2))


class Bf16MatMul:
    """x (..., K) @ w (K, M) (+ bias, activation) with bf16 products (smatmul_bf16: x rounded
    to bf16, AVX512-BF16 dot products summed in float32), the constant ``w`` packed once; the
    caller checks bf16_available(). ``source``: the node's constant it was made from (``w``
    itself, or the Gemm B that ``w`` transposes), which a call checks it is given."""

    __slots__ = ("source", "packed", "k", "m")

    def __init__(self, w: np.ndarray, source: np.ndarray | None = None):
        self.source = w if source is None else source
        self.k, self.m = w.shape
        self.packed = bf16_matmul_weights(w)

    def __call__(self, x: np.ndarray, bias: np.ndarray | None = None,
                 act: tuple[int, float, float] = (0, 0.0, 0.0), threads: int = 1) -> np.ndarray:
        lead = x.shape[:-1]
        a = np.ascontiguousarray(x, np.float32).reshape(-1, self.k)
        y = np.empty((a.shape[0], self.m), np.float32)
        _ckernels.smatmul_bf16(a, self.packed, bias, y, a.shape[0], self.k, self.m, *act,
                               threads)
        return y.reshape(*lead, self.m)


def simd_float() -> bool:
    """Whether the float32 GEMM in use has SIMD kernels (else NumPy's BLAS beats the
    portable C, and the float convs stay in NumPy)."""
    return AVAILABLE and _ckernels.ssimd() >= 1


def conv2d_call(x, w, b, strides, begin, dilations, group, out_shape, activation=None,
                params=None, packed: np.ndarray | None = None) -> Conv2dCall | None:
    """conv2d's call resolved for x's shape (Conv2dCall; ``packed``: the weights already
    packed, pack_conv_weights), or None where conv2d would not run (see there)."""
    if x.ndim != 4 or not _f32(x, w, b) or not simd_float():
        return None
    act = activation_args(activation, params)
    if act is None:
        return None
    return Conv2dCall(x.shape, w, strides, begin, dilations, group, out_shape, act, packed)


def batched_matmul(a: np.ndarray, b: np.ndarray, packed: np.ndarray | None = None,
                   threads: int = 1) -> np.ndarray:
    """a (batch, M, K) @ b (batch, K, N) in float32: by sgemm.c on ``packed`` (a's panels,
    pack_panels(a), made once by the caller for constant weights) where it has SIMD kernels,
    else by NumPy (whose BLAS beats the portable C)."""
    if not simd_float() or not _f32(a, b):
        return np.matmul(a, b)
    batch, m, k = a.shape
    n = b.shape[2]
    c = np.empty((batch, m, n), np.float32)
    _ckernels.sgemm_batch(pack_panels(a) if packed is None else packed,
                          np.ascontiguousarray(b), c, batch, m, n, k, threads)
    return c


def conv2d(x, w, b, strides, begin, dilations, group, out_shape, activation=None, params=None,
           res=None, threads: int = 1, packed: np.ndarray | None = None) -> np.ndarray | None:
    """float32 2-D conv (any groups) in C, y = act(conv(x) + b + res): blocks of im2col'd
    pixels through sgemm.c's GEMM on the packed filters (``packed``, or packed here), the
    bias, the residual input ``res`` (y's shape, or None) and the activation fused into its
    store. None where it does not apply: no SIMD GEMM (NumPy's BLAS is faster than the
    portable C), not float32, not 2-D, an activation the C kernels do not know. The call
    resolved once per node and kept (conv2d_call) is the same minus the conversions."""
    call = conv2d_call(x, w, b, strides, begin, dilations, group, out_shape, activation,
                       params, packed)
    if call is None or (res is not None and res.shape != call.y_shape):
        return None
    return call(np.ascontiguousarray(x), None if b is None else np.ascontiguousarray(b),
                None if res is None else np.ascontiguousarray(res), threads)


_MAPS = {"erf": 1, "gelu": 2, "gelu_tanh": 3, "mish": 4}


def map_f32(x, kind: str) -> np.ndarray | None:
    """An element-wise map of ``_MAPS`` in C (float32); None if the C kernel does not apply."""
    if not AVAILABLE or x.dtype != np.float32:
        return None
    y = np.empty(x.shape, np.float32)
    _ckernels.map_f32(np.ascontiguousarray(x), y, _MAPS[kind])
    return y


def lrn(x, size, alpha, beta, bias) -> np.ndarray | None:
    """LRN across channels in C (float32, any rank >= 3); None if the C kernel does not
    apply."""
    if x.ndim < 3 or x.dtype != np.float32 or size < 1:
        return None
    y = np.empty(x.shape, np.float32)
    n, c = x.shape[:2]
    _ckernels.lrn(np.ascontiguousarray(x), y, n, c, int(np.prod(x.shape[2:])), int(size),
                  float(alpha), float(beta), float(bias))
    return y


def avg_pool2d(x, k, strides, begin, dilations, out_shape, count_rows, count_cols
               ) -> np.ndarray | None:
    """2-D average pooling in C, dividing by the window's cells inside ``count_rows`` x
    ``count_cols`` ((lo, hi) bounds of input coordinates); None if the C kernel does not
    apply."""
    if x.ndim != 4 or x.dtype != np.float32:
        return None
    y = np.empty((x.shape[0], x.shape[1], *out_shape), np.float32)
    _ckernels.avg_pool2d(np.ascontiguousarray(x), y, k[0], k[1], strides[0], strides[1],
                         begin[0], begin[1], dilations[0], dilations[1], *count_rows,
                         *count_cols)
    return y


def winograd_blocked(x, u, b, m, th, tw, pads, out_shape, activation=None, params=None,
                     res=None, threads: int = 1, packed: np.ndarray | None = None
                     ) -> np.ndarray | None:
    """Winograd F(m x m, 3 x 3) of the unpadded x, all in C (winograd.c's w_conv): a block of
    tile rows at a time is transformed, multiplied by the filters u (a*a, M, C; packed once)
    and transformed back while its intermediates are in L2, plus the bias, the residual input
    ``res`` and the activation (``packed``: pack_panels(u), made once by the caller). None
    where it does not apply: no SIMD GEMM, not float32, an activation the C kernels do not know, or fewer blocks than
    threads (winograd_conv then shares each GEMM among them)."""
    act = _winograd_blocked_act(x, u, b, m, th, tw, out_shape, activation, params, res,
                                threads)
    if act is None:
        return None
    packed = pack_panels(u) if packed is None else packed
    y = np.empty((x.shape[0], u.shape[1], *out_shape), np.float32)
    _ckernels.winograd_conv2d(np.ascontiguousarray(x), packed,
                              None if b is None else np.ascontiguousarray(b),
                              None if res is None else np.ascontiguousarray(res), y, m, th, tw,
                              int(pads[0]), int(pads[1]), *act, threads)
    return y


def _winograd_blocked_act(x, u, b, m, th, tw, out_shape, activation, params, res, threads):
    """winograd_blocked's activation code, or None where it does not apply."""
    if not simd_float() or not _f32(x, u, b, res):
        return None
    act = activation_args(activation, params)
    n, c = x.shape[:2]
    mo = u.shape[1]
    if act is None or (res is not None and res.shape != (n, mo, *out_shape)):
        return None
    rows = _ckernels.wblock_rows(c, mo, m, th, tw)
    if threads > 1 and n * -(-th // rows) < threads:
        return None
    return act


def winograd_plan_op(x, u, b, m, th, tw, pads, out_shape, activation, params, res,
                     threads: int, packed: np.ndarray) -> plan.PlanOp | None:
    """winograd_blocked's call as a session plan's op (optc.runtime.plan): x the step's input
    0, the bias 2, the residual 3, ``packed`` (the node's, of u: input 1) its own; None where
    winograd_blocked does not apply."""
    act = _winograd_blocked_act(x, u, b, m, th, tw, out_shape, activation, params, res,
                                threads)
    if act is None:
        return None
    return plan.PlanOp(plan.WINOGRAD, (0, packed, 2, 3),
                       (*x.shape, u.shape[1], *out_shape, m, th, tw, int(pads[0]),
                        int(pads[1]), act[0], threads), act[1:], baked=(1,))


def winograd_conv(xp, u, b, m, th, tw, out_shape, activation=None, params=None, res=None,
                  threads: int = 1, packed: np.ndarray | None = None) -> np.ndarray | None:
    """Winograd F(m x m, 3 x 3) with the transforms in C and the a*a GEMMs by sgemm.c on the
    weights packed once (batched_matmul), plus the bias and the residual input ``res`` (the
    output's shape) before the activation: xp is the input padded to whole tiles (N, C,
    th*m + 2, tw*m + 2); None if the C path does not apply."""
    if not AVAILABLE or not _f32(xp, u, b, res):
        return None
    act = activation_args(activation, params)
    if act is None:
        return None
    n, c = xp.shape[:2]
    if res is not None and res.shape != (n, u.shape[1], *out_shape):
        return None
    a = m + 2
    v = np.empty((a * a, c, n * th * tw), np.float32)
    _ckernels.winograd_input(np.ascontiguousarray(xp), v, m, th, tw)
    if packed is None and simd_float():
        packed = pack_panels(u)
    prod = batched_matmul(u, v, packed, threads)  # (a*a, M, tiles)
    y = np.empty((n, u.shape[1], *out_shape), np.float32)
    _ckernels.winograd_output(prod, y, m, th, tw,
                              None if b is None else np.ascontiguousarray(b), *act,
                              None if res is None else np.ascontiguousarray(res))
    return y


def qsimd(level: int | None = None) -> int:
    """The int8 GEMM in use: 3 AMX-INT8, 2 AVX-512 VNNI, 1 AVX2, 0 portable C (-1: no
    extension); ``level`` caps it (tests run every path the CPU has; 3 restores the
    default)."""
    if not AVAILABLE:
        return -1
    return _ckernels.qsimd() if level is None else _ckernels.qsimd(int(level))


def pack_qweights(w: np.ndarray, group: int) -> tuple[np.ndarray, int, int, np.ndarray]:
    """(packed int8 weights (G, Mgp, Kq * 4), Mgp, Kq, row sums (M,) int64) for
    qlinear_conv2d: each group's (Mg, kh, kw, Cg) filters -- taps in (kernel row, kernel
    column, channel) order, the channels padded to a multiple of 4 with zeros (qgemm.c's
    layout) -- and the rows padded to a multiple of 4 with zeros."""
    m, cg, kh, kw = w.shape
    mg, cq = m // group, (cg + 3) // 4
    kq, mgp = kh * kw * cq, (mg + 3) // 4 * 4
    hwc = np.zeros((group, mgp, kh, kw, cq * 4), np.int8)
    hwc[:, :mg, :, :, :cg] = w.reshape(group, mg, cg, kh, kw).transpose(0, 1, 3, 4, 2)
    return (hwc.reshape(group, mgp, kq * 4), mgp, kq,
            w.reshape(m, -1).astype(np.int64).sum(axis=1))


def avx2_panels(packed: np.ndarray, mg: int) -> np.ndarray:
    """The AVX2 int8 GEMM's filters (qgemm.h, q_conv's panels): pack_qweights' (G, Mgp,
    Kq * 4) int8 rows, the first ``mg`` of each group, in panels of QMR rows: (G, panels, Kq,
    QMR, 4), rows past ``mg`` zero. int8 as they are (vpmaddubsw) where no pair of taps can
    leave int16 -- 255 times the sum of a pair's positive weights, or of its negative ones,
    at most 32640: true of 7-bit weights (``quantize{reduce-range=true}``) -- else widened
    to int16 (vpmaddwd, exact for any int8 weights)."""
    g, _, k4 = packed.shape
    rows = _ckernels.QMR
    panels = -(-mg // rows)
    pairs = packed[:, :mg].reshape(-1, 2).astype(np.int16)
    narrow = (np.maximum(pairs, 0).sum(axis=1).max(initial=0) <= 128 and
              np.maximum(-pairs, 0).sum(axis=1).max(initial=0) <= 128)
    w = np.zeros((g, panels * rows, k4 // 4, 4), np.int8 if narrow else np.int16)
    w[:, :mg] = packed[:, :mg].reshape(g, mg, k4 // 4, 4)
    return np.ascontiguousarray(w.reshape(g, panels, rows, k4 // 4, 4).transpose(0, 1, 3, 2, 4))


def amx_weights(packed: np.ndarray, mg: int) -> np.ndarray:
    """The AMX int8 GEMM's filters (qgemm.h, AMX_ROWS): pack_qweights' (G, Mgp, Kq * 4)
    rows, the first ``mg`` of each group, with zero rows up to a multiple of AMX_ROWS and
    zero quads up to a multiple of AMX_QUADS: (G, rows, Kqa * 4) int8."""
    g, _, k4 = packed.shape
    rows = -(-mg // _ckernels.AMX_ROWS) * _ckernels.AMX_ROWS
    quads = -(-(k4 // 4) // _ckernels.AMX_QUADS) * _ckernels.AMX_QUADS
    w = np.zeros((g, rows, quads * 4), np.int8)
    w[:, :mg, :k4] = packed[:, :mg]
    return w


class QConvPlan:
    """A QLinearConv of one node on one input shape, prepared once: the packed weights, the
    per-channel constants (int32 bias minus the input zero point times the weight row sums,
    Q31 multipliers, shifts) and the geometry; calling it with the 8-bit NCHW input runs the
    C kernel (qlinear_conv2d, or qlinear_depthwise2d when every group is one channel)."""

    def __init__(self, w: np.ndarray, group: int, bias, m0, shift, zx: int, zy: int, y_dtype,
                 x_shape, x_dtype, strides, begin, dilations, kernel, out_shape):
        n, c, h, wd = x_shape
        m = w.shape[0]
        flip = 0x80 if x_dtype == np.int8 else 0
        zu = zx + 128 if flip else zx  # the input zero point in the uint8 view
        bias = np.zeros(m, np.int64) if bias is None else np.asarray(bias, np.int64).reshape(-1)
        self.y_shape, self.y_dtype = (n, m, *out_shape), np.dtype(y_dtype)
        m0 = np.ascontiguousarray(m0, np.int32)
        shift = np.ascontiguousarray(shift, np.int32)
        geometry = (kernel[0], kernel[1], strides[0], strides[1], begin[0], begin[1],
                    dilations[0], dilations[1], out_shape[0], out_shape[1])
        signed = int(self.y_dtype == np.int8)
        if group == c == m and w.shape[1] == 1:
            # depthwise: a direct loop per channel (a GEMM of one row per group would waste
            # most of its work)
            self.depthwise = True
            self.pre = (np.ascontiguousarray(w.reshape(m, -1)), bias, m0, shift)
            self.post = (n, c, h, wd, *geometry, zu, flip, zy, signed)
        else:
            packed, mgp, kq, rowsum = pack_qweights(w, group)
            self.depthwise = False
            self.packed, self.mg = packed, m // group
            self.panels: dict[int, np.ndarray] = {}  # per simd level, made on first use
            self.pre = (bias - zu * rowsum, m0, shift)
            self.post = (n, c, h, wd, group, m // group, mgp, kq, *geometry, zu, flip, zy,
                         signed)

    @staticmethod
    def applies(w: np.ndarray, x_shape, x_dtype, y_dtype, portable: bool = False) -> bool:
        """The C kernels take 2-D convs of 8-bit data with int8 weights whose raw products
        sum in int32 without overflow. ``portable``: also when only the portable C GEMM
        would run (the tests compare it)."""
        k = int(np.prod(w.shape[2:])) * (w.shape[1] + 3) // 4 * 4  # packed taps
        ok = (AVAILABLE and len(x_shape) == 4 and x_dtype in (np.uint8, np.int8) and
              w.dtype == np.int8 and np.dtype(y_dtype) in (np.uint8, np.int8) and
              255 * 128 * k < 2 ** 31)
        # without SIMD (no AVX2) the portable GEMM is slower than NumPy's float GEMMs: only
        # depthwise convs (a direct loop) stay in C there
        depthwise = w.shape[1] == 1 and x_shape[1] == w.shape[0]
        return ok and (depthwise or portable or _ckernels.qsimd() > 0)

    def __call__(self, x: np.ndarray, threads: int = 1) -> np.ndarray:
        y = np.empty(self.y_shape, self.y_dtype)
        # the module looked up per call: benchmarks/ab_builds.py swaps builds under a plan
        if self.depthwise:
            _ckernels.qlinear_depthwise2d(np.ascontiguousarray(x), *self.pre, y, *self.post,
                                          threads)
        else:
            level = _ckernels.qsimd()
            panels = self.panels.get(level)
            if panels is None and level in (1, 3):  # the AVX2 or AMX GEMM's, made once
                make = avx2_panels if level == 1 else amx_weights
                panels = self.panels[level] = make(self.packed, self.mg)
            _ckernels.qlinear_conv2d(np.ascontiguousarray(x), self.packed, panels, *self.pre,
                                     y, *self.post, threads)
        return y


def quantize_linear(x: np.ndarray, y: np.ndarray, scale: float, zero_point: int) -> None:
    """Per-tensor QuantizeLinear of float32 ``x`` into the 8-bit ``y`` (C)."""
    _ckernels.quantize_linear(np.ascontiguousarray(x), y, scale, zero_point,
                              int(y.dtype.char == "b"))


def affine_quantize(x: np.ndarray, scale: np.ndarray, shift: np.ndarray, y: np.ndarray,
                    act: tuple[int, float, float], y_scale: float, zero_point: int) -> None:
    """ai.optc QuantizeAffine of float32 ``x`` (N, C, ...) into the 8-bit ``y``:
    Q(act(x * scale[c] + shift[c])) in one C pass (act: activation_args' triple)."""
    n, c = x.shape[0], x.shape[1]
    _ckernels.affine_quantize(np.ascontiguousarray(x), np.ascontiguousarray(scale).reshape(-1),
                              np.ascontiguousarray(shift).reshape(-1), y, n, c,
                              x.size // max(n * c, 1), *act, y_scale, zero_point,
                              int(y.dtype.char == "b"))


def qlinear_add(a: np.ndarray, b: np.ndarray, y: np.ndarray, za: int, zb: int, ra: float,
                rb: float, zy: int) -> None:
    """com.microsoft QLinearAdd of ``a`` and ``b`` (8 bits, one shape and signedness) into
    ``y`` (C; ra, rb: the input scales over the output's, float32)."""
    _ckernels.qlinear_add(np.ascontiguousarray(a), np.ascontiguousarray(b), y,
                          int(a.dtype == np.int8), za, zb, ra, rb, zy)


def dequantize_linear(x: np.ndarray, y: np.ndarray, zero_point: int, scale: float) -> None:
    """Per-tensor DequantizeLinear of 8-bit ``x`` into the float32 ``y`` (C)."""
    _ckernels.dequantize_linear(np.ascontiguousarray(x), y, int(x.dtype.char == "b"),
                                zero_point, scale)

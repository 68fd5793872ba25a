"""Integer-only QLinearConv: uint8/int8 inputs, int32 accumulation, fixed-point requantization.

    acc[m, p] = sum (x - x_zp) * (w[m] - w_zp[m]) + B[m]                  (exact integers)
    y = saturate(((acc * M0[m]) >> n[m]) + y_zp),   M[m] = x_scale * w_scale[m] / y_scale
                                                    = M0[m] * 2^-n[m] (Q31 M0 in [0.5, 1))

The multiplier is applied in fixed point as in gemmlowp / TFLite (Jacob et al., "Quantization
and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference", CVPR 2018):
M0 as a 31-bit integer, the product in 64 bits, a rounding right shift (half away from zero).
No float touches the activations; the result is within 1 LSB of onnxruntime's QLinearConv
(which rounds a float product half to even).

The integer sums run through the im2col conv of conv.py on float GEMMs sized so that no
partial sum leaves the range of integers the float type holds exactly (float32: 2^24, the
input channels chunked when needed; float64: 2^53), so they equal int32 accumulation bit for
bit. That NumPy path is the reference; 2-D convs with int8 weights of zero point 0 (what
optc's quantize writes) run in C instead (runtime/csrc/qgemm.c: uint8 x int8 products summed
in int32, AVX-512 VNNI where the CPU has it, the same requantization fused into the store),
with the same results bit for bit.
"""

from __future__ import annotations

import numpy as np

from optc.errors import OptcError
from optc.runtime.config import DEFAULT, RuntimeConfig
from optc.runtime.kernels import native
from optc.runtime.kernels.conv import conv, conv_defaults, out_size, resolve_pads
from optc.runtime.registry import ORT_DOMAIN, kernel


def fixed_point(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M0 as Q31 int64, right shift n) with m = M0 * 2^-31 * 2^-(n - 31), per element."""
    m = np.asarray(m, np.float64).reshape(-1)
    if np.any(m <= 0) or not np.all(np.isfinite(m)):
        raise OptcError("requantization multipliers must be finite and positive")
    mant, exp = np.frexp(m)  # m = mant * 2^exp, mant in [0.5, 1)
    q = np.round(mant * (1 << 31)).astype(np.int64)
    carry = q == (1 << 31)  # mant rounded up to 1.0
    q[carry] //= 2
    exp = exp + carry
    return q, (31 - exp).astype(np.int64)


def requantize(acc: np.ndarray, m: np.ndarray, zero_point, dtype: np.dtype,
               axis: int = 1) -> np.ndarray:
    """saturate(round(acc * m) + zero_point) in fixed point, m per channel along ``axis``."""
    q, shift = fixed_point(m)
    if np.any(shift < 1) or np.any(shift > 62 + 31):
        raise OptcError("requantization multiplier out of range")
    shape = [1] * acc.ndim
    if q.size > 1:
        shape[axis] = -1
    q, shift = q.reshape(shape), shift.reshape(shape)
    prod = acc.astype(np.int64) * q  # |acc| < 2^31, q < 2^31: fits in 63 bits
    # rounding right shift, half away from zero; shifts past 62 leave only the sign's rounding
    s = np.minimum(shift, 62)
    half = np.left_shift(np.int64(1), s - 1)
    mag = np.right_shift(np.abs(prod) + half, s)
    y = np.where(prod < 0, -mag, mag)
    info = np.iinfo(dtype)
    return np.clip(y + np.int64(zero_point), info.min, info.max).astype(dtype)


def _integer_conv(xz: np.ndarray, wz: np.ndarray, x_dtype, zx: int, group: int,
                  attrs: dict) -> np.ndarray:
    """The exact integer sums of the convolution of zero-point-shifted inputs, through float
    GEMMs: float32 when every partial sum stays below 2^24 (the integers float32 holds
    exactly), the input channels split into chunks small enough for that and the chunks
    added in int64; float64 (exact below 2^53) for grouped convs too deep to split."""
    info = np.iinfo(x_dtype)
    px = max(abs(info.min - zx), abs(info.max - zx))  # largest |x - zx|
    pw = int(np.abs(wz).max()) if wz.size else 0
    taps = int(np.prod(wz.shape[2:]))
    per_channel = max(px * pw * taps, 1)
    chunk = (1 << 24) // per_channel  # input channels per exact float32 GEMM
    cg = wz.shape[1]
    if chunk >= cg:
        out = conv(xz.astype(np.float32), wz.astype(np.float32), None, **attrs)
        return np.rint(out).astype(np.int64)
    if group != 1 or chunk < 1:
        out = conv(xz.astype(np.float64), wz.astype(np.float64), None, **attrs)
        return np.rint(out).astype(np.int64)
    acc = None
    for c0 in range(0, cg, chunk):
        part = conv(xz[:, c0:c0 + chunk].astype(np.float32),
                    wz[:, c0:c0 + chunk].astype(np.float32), None, **attrs)
        part = np.rint(part).astype(np.int64)
        acc = part if acc is None else acc + part
    return acc


def _scalar_zp(zp, name: str) -> int:
    zp = np.asarray(zp)
    if zp.size != 1:
        raise OptcError(f"QLinearConv {name} must be a scalar")
    return int(zp.reshape(()))


class QConvState:
    """What a QLinearConv node keeps in the session's plan (its prepare step): its constant
    inputs, and the C kernel's plan (native.QConvPlan, or None where it does not apply) per
    input shape and type."""

    __slots__ = ("constants", "plans")

    def __init__(self, constants: tuple):
        self.constants = constants
        self.plans: dict[tuple, native.QConvPlan | None] = {}

    def holds(self, arrays: tuple) -> bool:
        return len(arrays) == len(self.constants) and \
            all(a is b for a, b in zip(arrays, self.constants))


#: the inputs of QLinearConv a plan depends on: x_scale, w, w_scale, w_zero_point, y_scale, B
_PLAN_INPUTS = (1, 3, 4, 5, 6, 8)


def prepare_qlinear_conv(config: RuntimeConfig, constants: list, attrs: dict
                         ) -> QConvState | None:
    """A QConvState when the session runs the C kernels and every input a plan depends on
    (but the optional bias, when absent) is constant."""
    if not config.native:
        return None
    arrays = tuple(constants[i] if i < len(constants) else None for i in _PLAN_INPUTS)
    if any(a is None for a in arrays[:5]):
        return None
    return QConvState(arrays)


def _native_conv(x, zx, x_scale, w, w_scale, w_zero_point, y_scale, zy, y_dtype, B, attrs,
                 state: QConvState | None, config: RuntimeConfig):
    """The C kernel (native.QConvPlan) for a 2-D conv with int8 weights of zero point 0
    (optc's symmetric quantization); None where it does not apply. The plan is made once per
    node and input shape, kept in the node's ``state`` (made per call without one)."""
    if not config.native or x.ndim != 4:
        return None
    key = (x.shape, x.dtype, zx, zy, y_dtype)
    if state is not None and state.holds((x_scale, w, w_scale, w_zero_point, y_scale, B)):
        if key not in state.plans:
            state.plans[key] = _plan(x, zx, x_scale, w, w_scale, w_zero_point, y_scale, zy,
                                     y_dtype, B, attrs)
        plan = state.plans[key]
    else:
        plan = _plan(x, zx, x_scale, w, w_scale, w_zero_point, y_scale, zy, y_dtype, B, attrs)
    return None if plan is None else plan(x, config.threads)


def _plan(x, zx, x_scale, w, w_scale, w_zero_point, y_scale, zy, y_dtype, B, attrs,
          portable: bool = False):
    if not native.QConvPlan.applies(w, x.shape, x.dtype, y_dtype, portable) or \
            np.any(np.asarray(w_zero_point) != 0):
        return None
    group = attrs["group"]
    k = list(attrs["kernel_shape"]) if attrs["kernel_shape"] else list(w.shape[2:])
    strides, dilations = conv_defaults(k, attrs["strides"], attrs["dilations"])
    begin, end = resolve_pads(x.shape[2:], k, strides, dilations, attrs["pads"],
                              attrs["auto_pad"])
    out = [out_size(x.shape[2 + i], k[i], strides[i], dilations[i], begin[i], end[i])
           for i in range(2)]
    if min(out) <= 0 or len(k) != 2:
        return None
    ws = np.asarray(w_scale, np.float64).reshape(-1)
    mult = float(np.asarray(x_scale).reshape(())) * ws / float(np.asarray(y_scale).reshape(()))
    q, shift = fixed_point(np.broadcast_to(mult, (w.shape[0],)))
    if np.any(shift < 1) or np.any(shift > 62 + 31):
        raise OptcError("requantization multiplier out of range")
    return native.QConvPlan(w, group, B, q, shift, zx, zy, y_dtype, x.shape, x.dtype, strides,
                            begin, dilations, k, out)


@kernel("QLinearConv", (10,), prepare=prepare_qlinear_conv)
def qlinear_conv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point,
                 B=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                 pads=None, strides=None, _config=None, _state=None):
    if x.dtype.kind not in "iu" or w.dtype.kind not in "iu":
        raise OptcError("QLinearConv takes 8-bit integer inputs and weights")
    m = w.shape[0]
    zx = _scalar_zp(x_zero_point, "x_zero_point")
    attrs = dict(auto_pad=auto_pad, dilations=dilations, group=group,
                 kernel_shape=kernel_shape, pads=pads, strides=strides)
    y = _native_conv(x, zx, x_scale, w, w_scale, w_zero_point, y_scale,
                     _scalar_zp(y_zero_point, "y_zero_point"), np.asarray(y_zero_point).dtype,
                     B, attrs, _state, _config or DEFAULT)
    if y is not None:
        return y
    wzp = np.asarray(w_zero_point, np.int64).reshape(-1)
    wz = w.astype(np.int64) - (wzp.reshape(-1, *([1] * (w.ndim - 1))) if wzp.size > 1
                               else wzp.reshape(()))
    acc = _integer_conv(x.astype(np.int64) - zx, wz, x.dtype, zx, group, attrs)
    if B is not None:
        acc += np.asarray(B, np.int64).reshape(1, m, *([1] * (acc.ndim - 2)))
    ws = np.asarray(w_scale, np.float64).reshape(-1)
    mult = float(np.asarray(x_scale).reshape(())) * ws / float(np.asarray(y_scale).reshape(()))
    return requantize(acc, mult, _scalar_zp(y_zero_point, "y_zero_point"),
                      np.asarray(y_zero_point).dtype)


@kernel("QLinearAdd", (1,), domain=ORT_DOMAIN)
def qlinear_add(a, a_scale, a_zero_point, b, b_scale, b_zero_point, c_scale, c_zero_point=None,
                *, _config=None):
    """onnxruntime's contrib QLinearAdd (what qlinear writes for a QDQ residual Add): c =
    saturate(rint((a - za) * (sa / sc) + (b - zb) * (sb / sc)) + zc), in float32 as
    onnxruntime computes it (its ratios of scales, rounding half to even); per-tensor scales
    and zero points, inputs broadcast (numpy rules), one 8-bit type throughout."""
    if a.dtype != b.dtype or a.dtype not in (np.uint8, np.int8):
        raise OptcError("QLinearAdd takes two uint8 or two int8 inputs")
    zps = [0 if z is None else _scalar_zp(z, name) for z, name in
           ((a_zero_point, "A_zero_point"), (b_zero_point, "B_zero_point"),
            (c_zero_point, "C_zero_point"))]
    if any(np.size(s) != 1 for s in (a_scale, b_scale, c_scale)):
        raise OptcError("QLinearAdd scales must be scalars")
    sc = np.float32(np.asarray(c_scale).reshape(()))
    ra = np.float32(np.float32(np.asarray(a_scale).reshape(())) / sc)
    rb = np.float32(np.float32(np.asarray(b_scale).reshape(())) / sc)
    if (_config or DEFAULT).native and a.shape == b.shape:
        y = np.empty(a.shape, a.dtype)
        native.qlinear_add(a, b, y, zps[0], zps[1], float(ra), float(rb), zps[2])
        return y
    v = (a.astype(np.float32) - np.float32(zps[0])) * ra + \
        (b.astype(np.float32) - np.float32(zps[1])) * rb
    info = np.iinfo(a.dtype)
    return np.clip(np.rint(v) + np.float32(zps[2]), info.min, info.max).astype(a.dtype)

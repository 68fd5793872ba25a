"""QuantizeLinear / DequantizeLinear: per-tensor, per-axis and blocked, for the 8/16/32-bit
integer types (float8 and 4-bit types are refused with a clear error); DynamicQuantizeLinear
and MatMulInteger for dynamically quantized models.

    QuantizeLinear:   y = saturate(round_half_to_even(x / scale) + zero_point)
    DequantizeLinear: y = (x - zero_point) * scale
"""

from __future__ import annotations

import numpy as np
import onnx.numpy_helper
from onnx import helper

from optc.errors import OptcError
from optc.runtime.config import DEFAULT
from optc.runtime.kernels import native
from optc.runtime.registry import kernel

_INT_KINDS = "iu"


def _broadcast_param(p, x, axis, block_size):
    """Reshape/repeat a scale or zero point so it broadcasts against x."""
    p = np.asarray(p)
    if p.ndim == 0 or p.size == 1 and p.ndim <= 1 and block_size == 0:
        return p.reshape(())
    axis = axis + x.ndim if axis < 0 else axis
    if block_size:
        if p.ndim != x.ndim:
            raise OptcError("blocked quantization needs a scale of the input's rank")
        p = np.repeat(p, block_size, axis=axis)
        return np.take(p, np.arange(x.shape[axis]), axis=axis)
    if p.ndim != 1 or p.shape[0] != x.shape[axis]:
        raise OptcError(f"per-axis scale of shape {p.shape} does not match axis {axis} of "
                        f"{x.shape}")
    shape = [1] * x.ndim
    shape[axis] = -1
    return p.reshape(shape)


#: 4- and 2-bit integers (ml_dtypes types): their ranges
_NARROW_INT = {"int4": (-8, 7), "uint4": (0, 15), "int2": (-2, 1), "uint2": (0, 3)}
#: float8/float4 quantization targets (ml_dtypes types)
_LOW_FLOAT = frozenset(("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
                        "float4_e2m1fn"))
_SUPPORTED: set[np.dtype] = set()  # dtypes _check_int has passed (dtype.name is not free)


def _check_int(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype in _SUPPORTED:
        return dtype
    if dtype.name in _NARROW_INT or dtype.name in _LOW_FLOAT:
        _SUPPORTED.add(dtype)
        return dtype
    if dtype.kind not in _INT_KINDS:
        raise OptcError(f"quantization to {dtype} is not supported by optc.runtime")
    _SUPPORTED.add(dtype)
    return dtype


def _c_params(scale, zero_point) -> tuple[float, int] | None:
    """(scale, zero point) as Python numbers for the C loops: a float32 scale and the zero
    point, both single values; None otherwise (the NumPy path then takes it)."""
    scale = np.asarray(scale)
    if scale.size != 1 or scale.dtype.char != "f" or \
            (zero_point is not None and np.size(zero_point) != 1):
        return None
    return scale.item(), 0 if zero_point is None else int(np.asarray(zero_point).item())


def quantize_array(x, scale, zero_point, axis, block_size, output_dtype, precision=0, config=None,
                   saturate=1):
    if zero_point is not None:
        dtype = _check_int(zero_point.dtype)
    elif output_dtype:
        dtype = _check_int(helper.tensor_dtype_to_np_dtype(output_dtype))
    else:
        dtype = np.dtype(np.uint8)
    params = _c_params(scale, zero_point) if (config or DEFAULT).native and \
        x.dtype.char == "f" and \
        dtype.char in "bB" and precision in (0, 1) else None
    if params is not None:
        # per tensor, float32 to 8 bits: the C loop (the same float32 division and rounding)
        y = np.empty(x.shape, dtype)
        native.quantize_linear(x, y, *params)
        return y
    s = _broadcast_param(scale, x, axis, block_size)
    compute = helper.tensor_dtype_to_np_dtype(precision) if precision else s.dtype
    q = x.astype(compute) / s.astype(compute)
    if dtype.name in _LOW_FLOAT:
        # float targets: no rounding to integers; float8 saturates to its largest finite value
        # when asked (onnx.numpy_helper.saturate_cast), float4 has no inf and always does
        if zero_point is not None:
            q = q + _broadcast_param(zero_point, x, axis, block_size).astype(np.float32)
        if saturate and dtype.name.startswith("float8"):
            return onnx.numpy_helper.saturate_cast(q, dtype)
        return q.astype(dtype)
    q = np.rint(q)
    if zero_point is not None:
        q = q + _broadcast_param(zero_point, x, axis, block_size).astype(np.float64)
    lo, hi = _NARROW_INT.get(dtype.name) or (np.iinfo(dtype).min, np.iinfo(dtype).max)
    return np.clip(q, lo, hi).astype(dtype)


def dequantize_array(x, scale, zero_point, axis, block_size, output_dtype=0, config=None):
    params = _c_params(scale, zero_point) if (config or DEFAULT).native and \
        x.dtype.char in "bB" and \
        output_dtype in (0, 1) else None
    if params is not None:
        y = np.empty(x.shape, np.float32)
        native.dequantize_linear(x, y, params[1], params[0])
        return y
    s = _broadcast_param(scale, x, axis, block_size)
    v = x.astype(np.int64) if x.dtype.kind in _INT_KINDS else x
    if zero_point is not None:
        v = v - _broadcast_param(zero_point, x, axis, block_size).astype(np.int64)
    out_dtype = helper.tensor_dtype_to_np_dtype(output_dtype) if output_dtype else s.dtype
    return (v.astype(s.dtype) * s).astype(out_dtype)


@kernel("QuantizeLinear", (10,))
def quantize10(x, y_scale, y_zero_point=None, *, _config=None):
    return quantize_array(x, y_scale, y_zero_point, 1, 0, 0, config=_config)


@kernel("QuantizeLinear", (13, 19))
def quantize13(x, y_scale, y_zero_point=None, *, axis=1, saturate=1, _config=None):
    return quantize_array(x, y_scale, y_zero_point, axis, 0, 0, config=_config,
                          saturate=saturate)


@kernel("QuantizeLinear", (21, 23, 24, 25, 28))
def quantize(x, y_scale, y_zero_point=None, *, axis=1, block_size=0, output_dtype=0,
             precision=0, saturate=1, _config=None):
    return quantize_array(x, y_scale, y_zero_point, axis, block_size, output_dtype, precision,
                          _config, saturate)


@kernel("DequantizeLinear", (10,))
def dequantize10(x, x_scale, x_zero_point=None, *, _config=None):
    return dequantize_array(x, x_scale, x_zero_point, 1, 0, config=_config)


@kernel("DequantizeLinear", (13, 19))
def dequantize13(x, x_scale, x_zero_point=None, *, axis=1, _config=None):
    return dequantize_array(x, x_scale, x_zero_point, axis, 0, config=_config)


@kernel("DequantizeLinear", (21, 23, 24, 25, 28))
def dequantize(x, x_scale, x_zero_point=None, *, axis=1, block_size=0, output_dtype=0,
               _config=None):
    return dequantize_array(x, x_scale, x_zero_point, axis, block_size, output_dtype, _config)


@kernel("DynamicQuantizeLinear", (11,))
def dynamic_quantize_linear(x):
    """uint8 quantization with a scale and zero point from x's own range (widened to hold 0):
    scale = (max - min) / 255, zero_point = saturate(round(-min / scale))."""
    lo = min(0.0, float(x.min())) if x.size else 0.0
    hi = max(0.0, float(x.max())) if x.size else 0.0
    scale = np.float32((hi - lo) / 255.0)
    if scale == 0:
        return np.zeros(x.shape, np.uint8), scale, np.uint8(0)
    zero = np.uint8(np.clip(np.rint(-lo / scale), 0, 255))
    q = np.clip(np.rint(x / scale) + zero, 0, 255).astype(np.uint8)
    return q, scale, zero


@kernel("MatMulInteger", (10,))
def matmul_integer(a, b, a_zero_point=None, b_zero_point=None):
    """(a - a_zero_point) @ (b - b_zero_point) in int32; a's zero point is a scalar or one
    per row of a, b's a scalar or one per column of b. Products of 8-bit values summed in
    float64 are exact (far below 2^53), and BLAS does the work."""
    av = a.astype(np.float64)
    bv = b.astype(np.float64)
    if a_zero_point is not None:
        za = np.asarray(a_zero_point).astype(np.float64)
        av = av - (za.reshape(-1, 1) if za.ndim == 1 and za.size > 1 else za.reshape(()))
    if b_zero_point is not None:
        zb = np.asarray(b_zero_point).astype(np.float64)
        bv = bv - (zb.reshape(1, -1) if zb.ndim == 1 and zb.size > 1 else zb.reshape(()))
    return np.matmul(av, bv).astype(np.int32)

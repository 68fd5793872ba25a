"""QuantizeLinear / DequantizeLinear: per-tensor, per-axis and blocked, for the 8/16/32-bit
integer types (float8 and 4-bit types are refused with a clear error).

    QuantizeLinear:   y = saturate(round_half_to_even(x / scale) + zero_point)
    DequantizeLinear: y = (x - zero_point) * scale
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from optc.errors import OptcError
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


def _check_int(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind not in _INT_KINDS or dtype.name in ("int4", "uint4"):
        raise OptcError(f"quantization to {dtype} is not supported by optc.runtime")
    return dtype


def _quantize(x, scale, zero_point, axis, block_size, output_dtype, precision=0):
    if zero_point is not None:
        dtype = _check_int(zero_point.dtype)
    elif output_dtype:
        dtype = _check_int(helper.tensor_dtype_to_np_dtype(output_dtype))
    else:
        dtype = np.dtype(np.uint8)
    s = _broadcast_param(scale, x, axis, block_size)
    compute = helper.tensor_dtype_to_np_dtype(precision) if precision else s.dtype
    q = np.rint(x.astype(compute) / s.astype(compute))
    if zero_point is not None:
        q = q + _broadcast_param(zero_point, x, axis, block_size).astype(np.float64)
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(x, scale, zero_point, axis, block_size, output_dtype=0):
    s = _broadcast_param(scale, x, axis, block_size)
    v = x.astype(np.int64) if x.dtype.kind in _INT_KINDS else x
    if zero_point is not None:
        v = v - _broadcast_param(zero_point, x, axis, block_size).astype(np.int64)
    out_dtype = helper.tensor_dtype_to_np_dtype(output_dtype) if output_dtype else s.dtype
    return (v.astype(s.dtype) * s).astype(out_dtype)


@kernel("QuantizeLinear", (10,))
def quantize10(x, y_scale, y_zero_point=None):
    return _quantize(x, y_scale, y_zero_point, 1, 0, 0)


@kernel("QuantizeLinear", (13, 19))
def quantize13(x, y_scale, y_zero_point=None, *, axis=1, saturate=1):
    return _quantize(x, y_scale, y_zero_point, axis, 0, 0)


@kernel("QuantizeLinear", (21, 23, 24, 25, 28))
def quantize(x, y_scale, y_zero_point=None, *, axis=1, block_size=0, output_dtype=0,
             precision=0, saturate=1):
    return _quantize(x, y_scale, y_zero_point, axis, block_size, output_dtype, precision)


@kernel("DequantizeLinear", (10,))
def dequantize10(x, x_scale, x_zero_point=None):
    return _dequantize(x, x_scale, x_zero_point, 1, 0)


@kernel("DequantizeLinear", (13, 19))
def dequantize13(x, x_scale, x_zero_point=None, *, axis=1):
    return _dequantize(x, x_scale, x_zero_point, axis, 0)


@kernel("DequantizeLinear", (21, 23, 24, 25, 28))
def dequantize(x, x_scale, x_zero_point=None, *, axis=1, block_size=0, output_dtype=0):
    return _dequantize(x, x_scale, x_zero_point, axis, block_size, output_dtype)

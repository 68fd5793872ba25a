"""The torch executor's op table: op type -> function, as optc.runtime's kernel table.

A function's positional parameters are the op's inputs in ONNX order (``None`` for an omitted
optional input); its keyword-only parameters are the ONNX attribute names with the spec's
defaults. Where an op's meaning changed between versions the function takes ``_since`` (the
schema's since_version at the model's opset). Inputs arrive as torch tensors; those that are
sizes, axes or pads (never trained) are read with ``ints()``.

Only ops through which activations or trained tensors flow need a function here: the executor
runs every node whose inputs are all constant NumPy arrays (shape arithmetic, Constant,
Range, ...) with optc.runtime's own kernel, so those ops keep one implementation.

Index and weight tables (pads, pooling geometry, Resize taps) come from optc.runtime's kernels,
so both executors agree on the spec's edge cases.

Quantization: QuantizeLinear yields its integer values as a float tensor, rounded with the
straight-through estimator (forward: round half to even; backward: identity inside the
clamp range, zero outside). Followed by DequantizeLinear this is fake quantization, and the
gradient a learnable scale receives is LSQ's (Esser et al., "Learned Step Size
Quantization", 2020).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from optc.errors import OptcError
from optc.runtime.activations import activation_params
from optc.runtime.kernels.conv import resolve_pads, transpose_geometry
from optc.runtime.kernels.pool import pool_geometry
from optc.runtime.kernels.resize import resize_plan
from optc.runtime.kernels.tensor import pad_amounts

OPS: dict[str, Callable] = {}
IGNORED_ATTRIBUTES = frozenset({"consumed_inputs"})  # legacy bookkeeping, no meaning here


def op(*names: str) -> Callable[[Callable], Callable]:
    def register(fn: Callable) -> Callable:
        for name in names:
            OPS[name] = fn
        return fn
    return register


def ints(x) -> list[int]:
    if x is None:
        return []
    if isinstance(x, torch.Tensor):
        return [int(v) for v in x.reshape(-1).tolist()]
    return [int(v) for v in np.asarray(x).reshape(-1)]


_DTYPES = {
    onnx.TensorProto.FLOAT: torch.float32, onnx.TensorProto.DOUBLE: torch.float64,
    onnx.TensorProto.FLOAT16: torch.float16, onnx.TensorProto.BFLOAT16: torch.bfloat16,
    onnx.TensorProto.INT8: torch.int8, onnx.TensorProto.UINT8: torch.uint8,
    onnx.TensorProto.INT16: torch.int16, onnx.TensorProto.INT32: torch.int32,
    onnx.TensorProto.INT64: torch.int64, onnx.TensorProto.BOOL: torch.bool,
}


def torch_dtype(onnx_type: int) -> torch.dtype:
    if onnx_type not in _DTYPES:
        raise OptcError(f"tensor type {onnx.TensorProto.DataType.Name(onnx_type)} is not "
                        f"supported by the torch executor")
    return _DTYPES[onnx_type]


# --- activations --------------------------------------------------------------------------------
def apply_activation(kind: str, params, y: torch.Tensor) -> torch.Tensor:
    """optc's fused activations (the table: optc.runtime.activations), in torch."""
    p = activation_params(kind, params)
    if kind == "Relu":
        return F.relu(y)
    if kind == "Clip":
        return torch.clamp(y, p[0], p[1])
    if kind == "LeakyRelu":
        return F.leaky_relu(y, p[0])
    if kind == "Sigmoid":
        return torch.sigmoid(y)
    if kind == "Tanh":
        return torch.tanh(y)
    if kind == "HardSigmoid":
        alpha, beta = p
        return torch.clamp(y * alpha + beta, 0, 1)
    if kind == "HardSwish":
        return y * torch.clamp(y / 6 + 0.5, 0, 1)
    if kind == "SiLU":
        return y / (1 + torch.exp(-y))  # the table's form, as optc.runtime computes it
    raise OptcError(f"unknown fused activation '{kind}'")


@op("Relu")
def relu(x, *, consumed_inputs=None):
    return F.relu(x)


@op("LeakyRelu")
def leaky_relu(x, *, alpha=0.01):
    return F.leaky_relu(x, alpha)


@op("Sigmoid")
def sigmoid(x):
    return torch.sigmoid(x)


@op("HardSigmoid")
def hard_sigmoid(x, *, alpha=0.2, beta=0.5):
    return torch.clamp(x * alpha + beta, 0, 1)


@op("HardSwish")
def hard_swish(x):
    return x * torch.clamp(x / 6 + 0.5, 0, 1)


@op("Tanh")
def tanh(x):
    return torch.tanh(x)


@op("Elu")
def elu(x, *, alpha=1.0):
    return F.elu(x, alpha)


@op("Clip")
def clip(x, min=None, max=None):  # noqa: A002  (inputs from opset 11, attributes before)
    lo = None if min is None else (min if isinstance(min, float) else min.reshape(()))
    hi = None if max is None else (max if isinstance(max, float) else max.reshape(()))
    return torch.clamp(x, lo, hi) if lo is not None or hi is not None else x


for _name, _fn in (("Exp", torch.exp), ("Log", torch.log), ("Sqrt", torch.sqrt),
                   ("Neg", torch.neg), ("Abs", torch.abs), ("Reciprocal", torch.reciprocal),
                   ("Floor", torch.floor), ("Ceil", torch.ceil), ("Erf", torch.erf),
                   ("Cos", torch.cos), ("Sin", torch.sin), ("Not", torch.logical_not)):
    op(_name)(lambda x, _fn=_fn: _fn(x))


# --- arithmetic and logic ----------------------------------------------------------------------
def _legacy(b, a, broadcast, axis):
    """Opset < 7 broadcasting: b's dims line up with a's from ``axis``."""
    if not broadcast or b.ndim == a.ndim:
        return b
    axis = a.ndim - b.ndim if axis is None else (axis + a.ndim if axis < 0 else axis)
    return b.reshape((1,) * axis + tuple(b.shape) + (1,) * (a.ndim - axis - b.ndim))


def _div(a, b):
    if not a.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


def _binary(fn):
    def run(a, b, *, broadcast=0, axis=None):
        return fn(a, _legacy(b, a, broadcast, axis))
    return run


for _name, _fn in (("Add", torch.add), ("Sub", torch.sub), ("Mul", torch.mul), ("Div", _div),
                   ("Pow", lambda a, b: torch.pow(a, b).to(a.dtype)),
                   ("Less", torch.lt), ("Greater", torch.gt), ("Equal", torch.eq),
                   ("LessOrEqual", torch.le), ("GreaterOrEqual", torch.ge),
                   ("And", torch.logical_and), ("Or", torch.logical_or)):
    op(_name)(_binary(_fn))


def _fold(fn):
    def run(*xs):
        out = xs[0]
        for x in xs[1:]:
            out = fn(out, x)
        return out
    return run


op("Sum")(_fold(torch.add))
op("Max")(_fold(torch.maximum))
op("Min")(_fold(torch.minimum))


@op("Mean")
def mean(*xs):
    return _fold(torch.add)(*xs) / len(xs)


@op("Where")
def where(condition, x, y):
    return torch.where(condition.to(torch.bool), x, y)


@op("Cast")
def cast(x, *, to, saturate=1, round_mode="up"):
    dtype = torch_dtype(to)
    if x.is_floating_point() and not dtype.is_floating_point and dtype != torch.bool:
        x = torch.trunc(x)  # float -> int truncates toward zero, as C and onnxruntime
    return x.to(dtype)


@op("CastLike")
def cast_like(x, target, *, saturate=1, round_mode="up"):
    return x.to(target.dtype)


@op("Identity")
def identity(x):
    return x


@op("Dropout")
def dropout(x, ratio=None, training_mode=None, *, is_test=0, seed=None, _outputs=1):
    # inference semantics: the executor trains the weights of a deployed graph, whose
    # Dropout is off (its mask output is all ones)
    if training_mode is not None and bool(training_mode.reshape(-1)[0]):
        raise OptcError("Dropout in training mode is not supported (the executor runs the "
                        "deployed graph)")
    if _outputs > 1:
        return x, torch.ones_like(x, dtype=torch.bool)
    return x


@op("Expand")
def expand(x, shape):
    return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(ints(shape))))


@op("Tile")
def tile(x, repeats, axis=None):
    if axis is not None:  # opset 1: tiles, axis
        reps = [1] * x.ndim
        reps[ints(axis)[0]] = ints(repeats)[0]
        return x.repeat(*reps)
    return x.repeat(*ints(repeats))


# --- conv, pooling ------------------------------------------------------------------------------
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _nd(x, table):
    nd = x.ndim - 2
    if nd not in table:
        raise OptcError(f"{nd}-d convolution and pooling are not supported by the torch "
                        f"executor")
    return nd, table[nd]


def _pad_spatial(x, begin, end, value=0.0):
    """Pad (or, for negative pads, crop) the spatial dims of x."""
    widths = []
    for b, e in zip(reversed(begin), reversed(end)):
        widths += [b, e]
    return F.pad(x, widths, value=value) if any(widths) else x


@op("Conv")
def conv(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None):
    nd, fn = _nd(x, _CONV)
    k = list(kernel_shape) if kernel_shape else list(w.shape[2:])
    strides = list(strides) if strides else [1] * nd
    dilations = list(dilations) if dilations else [1] * nd
    begin, end = resolve_pads(list(x.shape[2:]), k, strides, dilations, pads, auto_pad)
    if begin == end:
        return fn(x, w, b, strides, begin, dilations, group)
    return fn(_pad_spatial(x, begin, end), w, b, strides, 0, dilations, group)


@op("ConvTranspose")
def conv_transpose(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1,
                   kernel_shape=None, output_padding=None, output_shape=None, pads=None,
                   strides=None):
    nd, fn = _nd(x, _CONV_T)
    k = list(kernel_shape) if kernel_shape else list(w.shape[2:])
    strides = list(strides) if strides else [1] * nd
    dilations = list(dilations) if dilations else [1] * nd
    out_pad = list(output_padding) if output_padding else [0] * nd
    _, begin, end = transpose_geometry(list(x.shape[2:]), k, strides, dilations, out_pad,
                                       output_shape, pads, auto_pad)
    y = fn(x, w, None, strides, 0, 0, group, dilations)
    # the output_padding rows get no contribution; then the pads crop (or extend)
    y = _pad_spatial(y, [0] * nd, out_pad)
    y = _pad_spatial(y, [-v for v in begin], [-v for v in end])
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * nd)
    return y


@op("FusedConv")
def fused_conv(x, w, b=None, z=None, *, activation=None, activation_params=None,
               depthwise_path=None, **conv_attrs):
    y = conv(x, w, b, **conv_attrs)  # depthwise_path: which C kernel optc.runtime runs
    if z is not None:  # a residual Add fused by fuse-act
        y = y + z
    return apply_activation(activation, activation_params, y) if activation else y


@op("FusedConvTranspose")
def fused_conv_transpose(x, w, b=None, *, activation="Relu", activation_params=None,
                         **attrs):
    return apply_activation(activation, activation_params,
                            conv_transpose(x, w, b, **attrs))


def _lowest(x):
    return -math.inf if x.is_floating_point() else torch.iinfo(x.dtype).min


@op("MaxPool")
def max_pool(x, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape, pads=None,
             storage_order=0, strides=None, _outputs=1):
    if _outputs > 1:
        raise OptcError("MaxPool's Indices output is not supported by the torch executor")
    nd = x.ndim - 2
    k, strides, dilations, begin, end, extra, _ = pool_geometry(
        x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    xp = _pad_spatial(x, begin, [e + x_ for e, x_ in zip(end, extra)], _lowest(x))
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
    return fn(xp, k, strides, 0, dilations)


def _window_sum(x, k, strides, dilations):
    """Sum over each window: a depthwise conv with a kernel of ones."""
    nd, fn = _nd(x, _CONV)
    c = x.shape[1]
    ones = torch.ones((c, 1, *k), dtype=x.dtype, device=x.device)
    return fn(x, ones, None, strides, 0, dilations, c)


@op("AveragePool")
def average_pool(x, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None,
                 kernel_shape, pads=None, strides=None):
    k, strides, dilations, begin, end, extra, _ = pool_geometry(
        x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    total = _window_sum(_pad_spatial(x, begin, [e + x_ for e, x_ in zip(end, extra)]),
                        k, strides, dilations)
    # the divisor counts the window's cells inside the input (and the explicit pads when
    # count_include_pad), as optc.runtime's kernel
    ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
    if count_include_pad and auto_pad in ("NOTSET", "", None):
        mask = _pad_spatial(_pad_spatial(ones, begin, end, 1.0), [0] * len(k), extra)
    else:
        mask = _pad_spatial(ones, begin, [e + x_ for e, x_ in zip(end, extra)])
    return total / _window_sum(mask, k, strides, dilations)


@op("GlobalAveragePool")
def global_average_pool(x):
    return x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)


# --- nn -----------------------------------------------------------------------------------------
@op("BatchNormalization")
def batch_norm(x, scale, b, mean, var, *, epsilon=1e-5, momentum=0.9, spatial=1, is_test=0,
               training_mode=0, _outputs=1):
    if training_mode or _outputs > 1:
        raise OptcError("BatchNormalization in training mode is not supported (the executor "
                        "runs BN with its stored statistics)")
    shape = (1,) + tuple(scale.shape) + (1,) * (x.ndim - 1 - scale.ndim)
    inv = scale / torch.sqrt(var + epsilon)
    return x * inv.reshape(shape) + (b - mean * inv).reshape(shape)


@op("Gemm")
def gemm(a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0, broadcast=0):
    y = (a.T if transA else a) @ (b.T if transB else b)
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c * beta if beta != 1.0 else c)
    return y


@op("FusedGemm")
def fused_gemm(a, b, c=None, *, activation="Relu", activation_params=None, **attrs):
    return apply_activation(activation, activation_params, gemm(a, b, c, **attrs))


@op("MatMul")
def matmul(a, b):
    return torch.matmul(a, b)


@op("Softmax")
def softmax(x, *, axis=None, _since=13):
    if _since >= 13:
        return torch.softmax(x, -1 if axis is None else axis)
    axis = 1 if axis is None else (axis + x.ndim if axis < 0 else axis)
    flat = x.reshape(int(np.prod(x.shape[:axis])), -1)
    return torch.softmax(flat, 1).reshape(x.shape)


@op("LRN")
def lrn(x, *, size, alpha=0.0001, beta=0.75, bias=1.0):
    n, c = x.shape[:2]
    sq = (x * x).reshape(n, 1, c, -1)
    sq = F.pad(sq, [0, 0, (size - 1) // 2, size // 2])  # floor before, ceil after
    window = F.avg_pool2d(sq, (size, 1), stride=1) * size
    return x / (bias + alpha / size * window.reshape(x.shape)) ** beta


# --- quantization -------------------------------------------------------------------------------
def round_ste(x):
    """Round half to even forward, identity backward (the straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def _param(p, x, axis, block_size):
    if block_size:
        raise OptcError("blocked quantization is not supported by the torch executor")
    if p.ndim == 0 or p.numel() == 1 and p.ndim <= 1:
        return p.reshape(())
    axis = axis + x.ndim if axis < 0 else axis
    shape = [1] * x.ndim
    shape[axis] = -1
    return p.reshape(shape)


_INT_RANGES = {torch.uint8: (0, 255), torch.int8: (-128, 127), torch.int16: (-32768, 32767),
               torch.uint16: (0, 65535), torch.int32: (-2 ** 31, 2 ** 31 - 1)}


def int_range(dtype: torch.dtype) -> tuple[int, int]:
    if dtype not in _INT_RANGES:
        raise OptcError(f"quantization to {dtype} is not supported by the torch executor")
    return _INT_RANGES[dtype]


@op("QuantizeLinear")
def quantize(x, y_scale, y_zero_point=None, *, axis=1, block_size=0, output_dtype=0,
             precision=0, saturate=1):
    if y_zero_point is not None:
        lo, hi = int_range(y_zero_point.dtype)
    else:
        lo, hi = int_range(torch_dtype(output_dtype) if output_dtype else torch.uint8)
    q = round_ste(x / _param(y_scale, x, axis, block_size))
    if y_zero_point is not None:
        q = q + _param(y_zero_point, x, axis, block_size).to(q.dtype)
    return torch.clamp(q, lo, hi)  # integer values held in a float tensor (see the docstring)


@op("DequantizeLinear")
def dequantize(x, x_scale, x_zero_point=None, *, axis=1, block_size=0, output_dtype=0):
    s = _param(x_scale, x, axis, block_size)
    v = x.to(s.dtype)
    if x_zero_point is not None:
        v = v - _param(x_zero_point, x, axis, block_size).to(s.dtype)
    return v * s


@op("DynamicQuantizeLinear")
def dynamic_quantize_linear(x):
    lo = torch.clamp(x.min(), max=0)
    hi = torch.clamp(x.max(), min=0)
    scale = ((hi - lo) / 255).to(x.dtype)
    zp = torch.clamp(torch.round(-lo / scale), 0, 255) if float(scale) != 0 else \
        torch.zeros((), dtype=x.dtype, device=x.device)
    safe = scale if float(scale) != 0 else torch.ones_like(scale)
    y = torch.clamp(round_ste(x / safe) + zp, 0, 255)
    return y, scale, zp.to(torch.uint8)


@op("MatMulInteger")
def matmul_integer(a, b, a_zero_point=None, b_zero_point=None):
    # exact integer products in float64 (|values| < 2^16, sums far below 2^53)
    a = a.to(torch.float64) - (0 if a_zero_point is None else a_zero_point.to(torch.float64))
    b = b.to(torch.float64) - (0 if b_zero_point is None else b_zero_point.to(torch.float64))
    return torch.matmul(a, b).to(torch.int32)


# --- tensor -------------------------------------------------------------------------------------
@op("Resize")
def resize(x, roi=None, scales=None, sizes=None, *, _since=19, mode="nearest", **attrs):
    if _since == 10:
        attrs = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
        roi, scales = None, roi  # opset 10: (X, scales)

    def to_np(v):
        return None if v is None else v.detach().cpu().numpy()

    steps, fill = resize_plan(tuple(x.shape), to_np(roi), to_np(scales), to_np(sizes),
                              mode=mode, **attrs)
    y = x.to(torch.float64)
    for axis, idx, w, extrapolated in steps:
        index = torch.as_tensor(idx.reshape(-1), device=x.device)
        gathered = torch.index_select(y, axis, index)
        gathered = gathered.reshape(y.shape[:axis] + idx.shape + y.shape[axis + 1:])
        shape = (1,) * axis + w.shape + (1,) * (y.ndim - axis - 1)
        y = (gathered * torch.as_tensor(w.reshape(shape), device=x.device)).sum(axis + 1)
        if extrapolated is not None:
            mask = torch.as_tensor(extrapolated.reshape(
                (1,) * axis + (len(idx),) + (1,) * (y.ndim - axis - 1)), device=x.device)
            y = torch.where(mask, torch.full_like(y, fill), y)
    if not x.is_floating_point():
        lo, hi = int_range(x.dtype)
        return torch.clamp(torch.round(y), lo, hi).to(x.dtype)
    return y.to(x.dtype)


@op("Reshape")
def reshape(x, shape=None, *, allowzero=0):
    dims = ints(shape)
    if not allowzero:
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


@op("Flatten")
def flatten(x, *, axis=1):
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


@op("Transpose")
def transpose(x, *, perm=None):
    return x.permute(*(perm if perm is not None else range(x.ndim - 1, -1, -1)))


@op("Concat")
def concat(*xs, axis=1):
    return torch.cat(xs, axis)


@op("Split")
def split(x, split=None, *, axis=0, num_outputs=None, _outputs=1):
    n = num_outputs if num_outputs is not None else _outputs
    axis = axis + x.ndim if axis < 0 else axis
    sizes = ints(split) if split is not None else None
    if sizes is None:
        length = x.shape[axis]
        size = -(-length // n)
        sizes = [min(size, length - i * size) for i in range(n)]
    return tuple(torch.split(x, sizes, axis))


@op("Slice")
def slice_(x, starts, ends, axes=None, steps=None):
    starts, ends = ints(starts), ints(ends)
    axes = list(range(len(starts))) if axes is None else \
        [a + x.ndim if a < 0 else a for a in ints(axes)]
    steps = [1] * len(starts) if steps is None else ints(steps)
    for s, e, a, st in zip(starts, ends, axes, steps):
        dim = x.shape[a]
        s, e = s + dim if s < 0 else s, e + dim if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), dim), min(max(e, 0), dim)
            x = x.narrow(a, s, max(e - s, 0))[(slice(None),) * a + (slice(None, None, st),)]
        else:  # torch has no negative steps: flip, then slice forward
            s, e = min(max(s, -1), dim - 1), min(max(e, -1), dim - 1)
            idx = torch.arange(s, e, st, device=x.device)
            x = torch.index_select(x, a, idx)
    return x


def _axes(axes, rank):
    return sorted(a + rank if a < 0 else a for a in ints(axes))


@op("Squeeze")
def squeeze(x, axes=None):
    if axes is None or not ints(axes):
        return x.reshape([d for d in x.shape if d != 1])
    drop = set(_axes(axes, x.ndim))
    return x.reshape([d for i, d in enumerate(x.shape) if i not in drop])


@op("Unsqueeze")
def unsqueeze(x, axes):
    rank = x.ndim + len(ints(axes))
    shape = list(x.shape)
    for a in _axes(axes, rank):
        shape.insert(a, 1)
    return x.reshape(shape)


@op("Shape")
def shape_(x, *, start=0, end=None):
    # sizes leave torch here: what they feed is shape arithmetic, run by optc.runtime
    return np.array(x.shape[start:end], dtype=np.int64)


@op("Gather")
def gather(data, indices, *, axis=0):
    axis = axis + data.ndim if axis < 0 else axis
    idx = indices.to(torch.int64)
    idx = torch.where(idx < 0, idx + data.shape[axis], idx)
    out = torch.index_select(data, axis, idx.reshape(-1))
    return out.reshape(data.shape[:axis] + idx.shape + data.shape[axis + 1:])


@op("Pad")
def pad(x, pads=None, constant_value=None, axes=None, *, mode="constant", paddings=None,
        value=None):
    begin, end = pad_amounts(ints(pads if pads is not None else paddings),
                             None if axes is None else ints(axes), x.ndim)
    fill = float(constant_value.reshape(-1)[0]) if constant_value is not None else \
        float(value or 0.0)
    widths = []
    for b, e in zip(reversed(begin), reversed(end)):
        widths += [b, e]
    if mode == "constant":
        return F.pad(x, widths, value=fill)
    torch_mode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(mode)
    if torch_mode is None:
        raise OptcError(f"Pad mode '{mode}' is not supported")
    padded = [i for i in range(x.ndim) if begin[i] or end[i]]
    if padded and (min(padded) < 2 or x.ndim - 2 > 3):
        raise OptcError(f"Pad mode '{mode}' on the batch or channel axis is not supported "
                        f"by the torch executor")
    return F.pad(x, widths[:2 * (x.ndim - 2)], mode=torch_mode)


def _reduce(fn, identity=None):
    def run(x, axes=None, *, keepdims=1, noop_with_empty_axes=0):
        dims = ints(axes) if axes is not None else []
        if not dims:
            if noop_with_empty_axes:
                return x
            dims = list(range(x.ndim))
        if x.numel() == 0 and identity is not None:  # the empty set reduces to the identity
            shape = [1 if i in dims or i - x.ndim in dims else d for i, d in enumerate(x.shape)]
            if not keepdims:
                shape = [d for i, d in enumerate(x.shape) if i not in dims and
                         i - x.ndim not in dims]
            return torch.full(shape, identity(x.dtype), dtype=x.dtype, device=x.device)
        return fn(x, dims, bool(keepdims))
    return run


op("ReduceMean")(_reduce(lambda x, d, k: x.mean(dim=d, keepdim=k)))
op("ReduceSum")(_reduce(lambda x, d, k: x.sum(dim=d, keepdim=k)))
op("ReduceMax")(_reduce(lambda x, d, k: x.amax(dim=d, keepdim=k),
                        lambda t: -math.inf if t.is_floating_point else
                        (False if t == torch.bool else torch.iinfo(t).min)))
op("ReduceMin")(_reduce(lambda x, d, k: x.amin(dim=d, keepdim=k),
                        lambda t: math.inf if t.is_floating_point else
                        (True if t == torch.bool else torch.iinfo(t).max)))

"""Shape and data-movement kernels: Reshape, Flatten, Transpose, Concat, Split, Slice, Squeeze,
Unsqueeze, Shape, Gather, Constant, ConstantOfShape, Pad."""

from __future__ import annotations

import math

import numpy as np

from optc.errors import OptcError
from optc.runtime import plan
from optc.runtime.registry import kernel

_ALL = (1, 13, 21, 23, 24, 25)


def _ints(x) -> list[int]:
    return [int(v) for v in np.asarray(x).reshape(-1)]


def _axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise OptcError(f"axis {axis} is out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


# --- Reshape / Flatten / Transpose --------------------------------------------------------------
def _reshape(x, shape, allowzero):
    shape = _ints(shape)
    if not allowzero:
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


@kernel("Reshape", (1,))
def reshape_attr(x, *, shape, consumed_inputs=None):
    return _reshape(x, shape, 0)


@kernel("Reshape", (5, 13, 14, 19, 21, 23, 24, 25))
def reshape(x, shape, *, allowzero=0):
    return _reshape(x, shape, allowzero)


@kernel("Flatten", (1, 9, 11, 13, 21, 23, 24, 25))
def flatten(x, *, axis=1):
    axis = axis + x.ndim if axis < 0 else axis
    outer = math.prod(x.shape[:axis])  # math.prod: np.prod of a tuple makes an array
    return x.reshape(outer, -1) if x.size else x.reshape(outer, math.prod(x.shape[axis:]))


@kernel("Transpose", _ALL)
def transpose(x, *, perm=None):
    return np.transpose(x, perm)


# --- Concat / Split / Slice ---------------------------------------------------------------------
def _concat_plan(args, attrs):
    """A Concat step as a plan's op (registry: ``plan``): float32 inputs, at most
    plan.BUFS - 1 of them, copied in turn for each index of the dims before the axis."""
    if not 1 <= len(args) < plan.BUFS or any(
            a.__class__ is not np.ndarray or a.dtype != np.float32 or a.ndim != args[0].ndim
            for a in args):
        return None
    axis = _axis(attrs.get("axis", 1), args[0].ndim)
    return plan.PlanOp(plan.CONCAT, tuple(range(len(args))),
                       (math.prod(args[0].shape[:axis]), len(args),
                        *(math.prod(a.shape[axis:]) for a in args)))


@kernel("Concat", (1, 4, 11, 13), plan=_concat_plan)
def concat(*xs, axis=1):
    return np.concatenate(xs, axis=_axis(axis, xs[0].ndim))


def _split(x, axis, split, n):
    axis = _axis(axis, x.ndim)
    if split is None:
        length = x.shape[axis]
        size = -(-length // n)  # ceil: the last chunk may be smaller (opset 18)
        split = [min(size, length - i * size) for i in range(n)]
    offsets = np.cumsum([0] + list(split))
    return tuple(np.take(x, np.arange(offsets[i], offsets[i + 1]), axis=axis)
                 for i in range(len(split)))


@kernel("Split", (1, 2, 11))
def split_attr(x, split_input=None, *, axis=0, split=None, _outputs=1):
    if split_input is not None:
        split = _ints(split_input)
    return _split(x, axis, split, _outputs)


@kernel("Split", (13,))
def split13(x, split=None, *, axis=0, _outputs=1):
    return _split(x, axis, None if split is None else _ints(split), _outputs)


@kernel("Split", (18,))
def split18(x, split=None, *, axis=0, num_outputs=None, _outputs=1):
    n = num_outputs if num_outputs is not None else _outputs
    return _split(x, axis, None if split is None else _ints(split), n)


def _slice(x, starts, ends, axes, steps):
    starts, ends = _ints(starts), _ints(ends)
    axes = list(range(len(starts))) if axes is None else [_axis(a, x.ndim) for a in _ints(axes)]
    steps = [1] * len(starts) if steps is None else _ints(steps)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise OptcError("Slice step cannot be 0")
        dim = x.shape[a]
        # clamp as the spec says; Python slicing alone mishandles huge negative ends
        s = s + dim if s < 0 else s
        e = e + dim if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), dim), min(max(e, 0), dim)
        else:
            s, e = min(max(s, -1), dim - 1), min(max(e, -1), dim - 1)
        index[a] = slice(s, e if e >= 0 else None, st)
    return x[tuple(index)]


@kernel("Slice", (1,))
def slice_attr(x, *, starts, ends, axes=None):
    return _slice(x, starts, ends, axes, None)


@kernel("Slice", (10, 11, 13))
def slice_(x, starts, ends, axes=None, steps=None):
    return _slice(x, starts, ends, axes, steps)


# --- Squeeze / Unsqueeze ------------------------------------------------------------------------
def _squeeze(x, axes):
    if axes is None:
        return x.reshape([d for d in x.shape if d != 1])
    axes = [_axis(a, x.ndim) for a in _ints(axes)]
    for a in axes:
        if x.shape[a] != 1:
            raise OptcError(f"cannot squeeze axis {a} of size {x.shape[a]}")
    return x.reshape([d for i, d in enumerate(x.shape) if i not in axes])


def _unsqueeze(x, axes):
    axes = _ints(axes)
    rank = x.ndim + len(axes)
    axes = sorted(_axis(a, rank) for a in axes)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return x.reshape(shape)


@kernel("Squeeze", (1, 11))
def squeeze_attr(x, *, axes=None):
    return _squeeze(x, axes)


@kernel("Squeeze", (13, 21, 23, 24, 25))
def squeeze(x, axes=None):
    return _squeeze(x, axes)


@kernel("Unsqueeze", (1, 11))
def unsqueeze_attr(x, *, axes):
    return _unsqueeze(x, axes)


@kernel("Unsqueeze", (13, 21, 23, 24, 25))
def unsqueeze(x, axes):
    return _unsqueeze(x, axes)


# --- Shape / Gather / Constant / ConstantOfShape ------------------------------------------------
@kernel("Shape", (1, 13))
def shape_(x):
    return np.array(x.shape, dtype=np.int64)


@kernel("Shape", (15, 19, 21, 23, 24, 25))
def shape15(x, *, start=0, end=None):
    return np.array(x.shape[slice(start, end)], dtype=np.int64)


@kernel("Gather", (1, 11, 13))
def gather(data, indices, *, axis=0):
    axis = _axis(axis, data.ndim)
    dim = data.shape[axis]
    idx = np.asarray(indices).astype(np.int64)
    if idx.size and (idx.min() < -dim or idx.max() >= dim):
        raise OptcError(f"Gather index out of range for axis of size {dim}")
    return np.take(data, np.where(idx < 0, idx + dim, idx), axis=axis)


@kernel("Constant", (1, 9, 11, 12, 13, 19, 21, 23, 24, 25))
def constant(*, value=None, value_float=None, value_floats=None, value_int=None,
             value_ints=None, value_string=None, value_strings=None, sparse_value=None):
    if value is not None:
        return np.asarray(value)
    if value_float is not None:
        return np.array(value_float, dtype=np.float32)
    if value_floats is not None:
        return np.array(value_floats, dtype=np.float32)
    if value_int is not None:
        return np.array(value_int, dtype=np.int64)
    if value_ints is not None:
        return np.array(value_ints, dtype=np.int64)
    if value_string is not None:
        return np.array(value_string, dtype=object)
    if value_strings is not None:
        return np.array(value_strings, dtype=object)
    raise OptcError("Constant with sparse_value is not supported by optc.runtime")


@kernel("ConstantOfShape", (9, 20, 21, 23, 24, 25))
def constant_of_shape(shape, *, value=None):
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return np.full(_ints(shape), fill[0], dtype=fill.dtype)


# --- Pad ----------------------------------------------------------------------------------------
def pad_amounts(pads, axes, rank: int) -> tuple[list[int], list[int]]:
    """Pad's (begin, end) per axis of a rank-``rank`` input from its pads (and axes)."""
    pads = _ints(pads)
    axes = list(range(rank)) if axes is None else [_axis(a, rank) for a in _ints(axes)]
    n = len(axes)
    if len(pads) != 2 * n:
        raise OptcError(f"Pad expects {2 * n} pads, got {len(pads)}")
    begin, end = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        begin[a], end[a] = pads[i], pads[i + n]
    return begin, end


def _pad(x, pads, mode, value, axes=None):
    begin, end = pad_amounts(pads, axes, x.ndim)
    # negative pads crop
    crop = tuple(slice(-b if b < 0 else 0, x.shape[i] + e if e < 0 else None)
                 for i, (b, e) in enumerate(zip(begin, end)))
    x = x[crop]
    width = [(max(b, 0), max(e, 0)) for b, e in zip(begin, end)]
    if mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=value)
    if mode == "reflect":
        return np.pad(x, width, mode="reflect")
    if mode == "edge":
        return np.pad(x, width, mode="edge")
    if mode == "wrap":
        return np.pad(x, width, mode="wrap")
    raise OptcError(f"Pad mode '{mode}' is not supported")


@kernel("Pad", (1, 2))
def pad_attr(x, *, pads=None, paddings=None, mode="constant", value=0.0):
    return _pad(x, pads if pads is not None else paddings, mode, x.dtype.type(value))


@kernel("Pad", (11, 13))
def pad11(x, pads, constant_value=None, *, mode="constant"):
    value = x.dtype.type(0) if constant_value is None else np.asarray(constant_value).item()
    return _pad(x, pads, mode, value)


@kernel("Pad", (18, 19, 21, 23, 24, 25))
def pad18(x, pads, constant_value=None, axes=None, *, mode="constant"):
    value = x.dtype.type(0) if constant_value is None else np.asarray(constant_value).item()
    return _pad(x, pads, mode, value, axes)

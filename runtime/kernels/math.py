"""More element-wise math and logic: unary functions, comparisons, Where, Max/Min/Mean, Pow,
Elu, Expand, Tile, Range, CastLike."""

from __future__ import annotations

import math

import numpy as np

from optc.errors import OptcError
from optc.runtime.config import DEFAULT
from optc.runtime.kernels import native
from optc.runtime.kernels.elementwise import legacy_broadcast, cast
from optc.runtime.registry import kernel

_erf_vec = np.vectorize(math.erf, otypes=[np.float64])


def _unary(name, versions, fn):
    def legacy(x, *, consumed_inputs=None):
        return fn(x).astype(x.dtype, copy=False)

    def modern(x):
        return fn(x).astype(x.dtype, copy=False)

    legacy.__name__, modern.__name__ = f"{name.lower()}_legacy", name.lower()
    if 1 in versions:
        kernel(name, (1,))(legacy)
    kernel(name, tuple(v for v in versions if v != 1))(modern)


for _name, _versions, _fn in (
        ("Exp", (1, 6, 13), np.exp), ("Log", (1, 6, 13), np.log),
        ("Sqrt", (1, 6, 13), np.sqrt), ("Neg", (1, 6, 13), np.negative),
        ("Abs", (1, 6, 13), np.abs), ("Reciprocal", (1, 6, 13), np.reciprocal),
        ("Floor", (1, 6, 13), np.floor), ("Ceil", (1, 6, 13), np.ceil),
        ("Cos", (7, 22), np.cos),
        ("Sin", (7, 22), np.sin)):
    _unary(_name, _versions, _fn)


@kernel("Erf", (9, 13))
def erf(x, *, _config=None):
    if (_config or DEFAULT).native:
        y = native.map_f32(x, "erf")
        if y is not None:
            return y
    return _erf_vec(x).astype(x.dtype, copy=False)


@kernel("Not", (1,))
def not_(x):
    return np.logical_not(x)


def _compare(name, legacy_versions, versions, op):
    def legacy(a, b, *, broadcast=0, axis=None):
        return op(a, legacy_broadcast(a, b, broadcast, axis))

    def modern(a, b):
        return op(a, b)

    legacy.__name__, modern.__name__ = f"{name.lower()}_legacy", name.lower()
    if legacy_versions:
        kernel(name, legacy_versions)(legacy)
    kernel(name, versions)(modern)


for _name, _legacy_v, _versions, _op in (
        ("Less", (1,), (7, 9, 13), np.less), ("Greater", (1,), (7, 9, 13), np.greater),
        ("Equal", (1,), (7, 11, 13, 19), np.equal),
        ("LessOrEqual", (), (12, 16), np.less_equal),
        ("GreaterOrEqual", (), (12, 16), np.greater_equal),
        ("And", (1,), (7,), np.logical_and), ("Or", (1,), (7,), np.logical_or)):
    _compare(_name, _legacy_v, _versions, _op)


@kernel("Pow", (1,))
def pow_legacy(x, y, *, broadcast=0, axis=None):
    return np.power(x, legacy_broadcast(x, y, broadcast, axis)).astype(x.dtype)


@kernel("Pow", (7, 12, 13, 15))
def pow_(x, y):
    if x.dtype.kind in "iu" and y.dtype.kind == "f":
        return np.power(x.astype(np.float64), y).astype(x.dtype)
    return np.power(x, y.astype(x.dtype) if y.dtype.kind in "iu" else y).astype(x.dtype)


@kernel("Where", (9, 16))
def where(condition, x, y):
    return np.where(condition, x, y)


def _variadic(name, op):
    def legacy(*xs, consumed_inputs=None):
        return op(xs)

    def modern(*xs):
        return op(xs)

    legacy.__name__, modern.__name__ = f"{name.lower()}_legacy", name.lower()
    return legacy, modern


def _fold(fn):
    def op(xs):
        out = xs[0]
        for x in xs[1:]:
            out = fn(out, x)
        return np.array(out, copy=True) if out is xs[0] else out
    return op


def _mean(xs):
    total = _fold(np.add)(xs)
    return (total / len(xs)).astype(xs[0].dtype)


for _name, _op, _versions in (("Max", _fold(np.maximum), (6, 8, 12, 13)),
                              ("Min", _fold(np.minimum), (6, 8, 12, 13)),
                              ("Mean", _mean, (6, 8, 13))):
    _legacy, _modern = _variadic(_name, _op)
    kernel(_name, (1,))(_legacy)
    kernel(_name, _versions)(_modern)


@kernel("Elu", (1,))
def elu_legacy(x, *, alpha=1.0, consumed_inputs=None):
    return elu(x, alpha=alpha)


@kernel("Elu", (6, 22))
def elu(x, *, alpha=1.0):
    return np.where(x > 0, x, (np.exp(np.minimum(x, 0)) - 1) * x.dtype.type(alpha)).astype(
        x.dtype)


@kernel("Expand", (8, 13))
def expand(x, shape):
    target = np.broadcast_shapes(x.shape, tuple(int(d) for d in np.asarray(shape).reshape(-1)))
    return np.broadcast_to(x, target).copy()


@kernel("Tile", (1,))
def tile1(x, tiles, axis):
    reps = [1] * x.ndim
    reps[int(axis)] = int(tiles)
    return np.tile(x, reps)


@kernel("Tile", (6, 13))
def tile(x, repeats):
    return np.tile(x, [int(r) for r in np.asarray(repeats).reshape(-1)])


@kernel("Range", (11, 27))
def range_(start, limit, delta, *, stash_type=1):
    dtype = np.asarray(start).dtype
    start, limit, delta = (np.asarray(v).item() for v in (start, limit, delta))
    if delta == 0:
        raise OptcError("Range delta cannot be 0")
    n = max(int(math.ceil((limit - start) / delta)), 0)
    return (start + np.arange(n) * delta).astype(dtype)


@kernel("CastLike", (15, 19, 21, 23, 24, 25))
def cast_like(x, target_type, *, saturate=1, round_mode="up"):
    from onnx import helper

    return cast(x, to=helper.np_dtype_to_tensor_dtype(target_type.dtype), saturate=saturate,
                round_mode=round_mode)

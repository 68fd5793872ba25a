"""ReduceMean, ReduceSum, ReduceMax, ReduceMin (axes as an attribute before opset 18 -- 13
for ReduceSum -- and as an input after). Reducing an empty set gives the operation's identity
(0 for sums, -inf/+inf or the integer limits for max/min), as the spec says."""

from __future__ import annotations

import numpy as np

from optc.runtime.registry import kernel


def _identity(op: str, dtype: np.dtype):
    """The identity of max/min for dtype: the integer limits, False/True, or -inf/+inf for
    floats (NumPy's and ml_dtypes' bfloat16/float8, whose kind is "V")."""
    if dtype.kind in "iu":
        return np.iinfo(dtype).min if op == "max" else np.iinfo(dtype).max
    if dtype.kind == "b":
        return op != "max"
    return -np.inf if op == "max" else np.inf


def _reduce(op: str, x, axes, keepdims, noop_with_empty_axes=0):
    if axes is not None:
        axes = tuple(int(a) for a in np.asarray(axes).reshape(-1))
        if not axes:
            if noop_with_empty_axes:
                return x
            axes = None
    elif noop_with_empty_axes:
        return x
    keep = bool(keepdims)
    if op == "mean":
        out = np.mean(x, axis=axes, keepdims=keep,
                      dtype=None if x.dtype.kind == "f" else np.float64)
    elif op == "sum":
        out = np.sum(x, axis=axes, keepdims=keep)
    elif op == "max":
        out = np.max(x, axis=axes, keepdims=keep, initial=_identity("max", x.dtype))
    else:
        out = np.min(x, axis=axes, keepdims=keep, initial=_identity("min", x.dtype))
    return np.asarray(out).astype(x.dtype, copy=False)


def _register(name: str, op: str, attr_versions: tuple, input_versions: tuple) -> None:
    def with_attr(x, *, axes=None, keepdims=1):
        return _reduce(op, x, axes, keepdims)

    def with_input(x, axes=None, *, keepdims=1, noop_with_empty_axes=0):
        return _reduce(op, x, axes, keepdims, noop_with_empty_axes)

    with_attr.__name__ = f"{name.lower()}_attr"
    with_input.__name__ = name.lower()
    kernel(name, attr_versions)(with_attr)
    kernel(name, input_versions)(with_input)


_register("ReduceMean", "mean", (1, 11, 13), (18,))
_register("ReduceSum", "sum", (1, 11), (13,))
_register("ReduceMax", "max", (1, 11, 12, 13), (18, 20))
_register("ReduceMin", "min", (1, 11, 12, 13), (18, 20))

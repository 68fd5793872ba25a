"""Index-driven kernels: TopK, ArgMax/ArgMin, GatherElements, GatherND, ScatterElements (and
the older Scatter), ScatterND, CumSum. Negative indices count from the end, as the spec says."""

from __future__ import annotations

import numpy as np

from optc.errors import OptcError
from optc.runtime.registry import kernel


def _axis(axis: int, ndim: int) -> int:
    return axis + ndim if axis < 0 else axis


# --- TopK ---------------------------------------------------------------------------------------
def _topk(x, k, axis, largest):
    axis = _axis(axis, x.ndim)
    k = int(np.asarray(k).reshape(-1)[0])
    if k < 0 or k > x.shape[axis]:
        raise OptcError(f"TopK: k={k} outside [0, {x.shape[axis]}]")
    if largest:
        # stable sort of the negated keys: among equal values the lower index first (the
        # spec); unsigned and bool keys are widened so that negation does not wrap
        keys = -x.astype(np.int64) if x.dtype.kind in "ub" else -x
    else:
        keys = x
    order = np.argsort(keys, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)


@kernel("TopK", (1,))
def topk_1(x, *, axis=-1, k):
    return _topk(x, k, axis, True)


@kernel("TopK", (10,))
def topk_10(x, k, *, axis=-1):
    return _topk(x, k, axis, True)


@kernel("TopK", (11, 24))
def topk(x, k, *, axis=-1, largest=1, sorted=1):  # noqa: A002 -- the ONNX attribute name
    return _topk(x, k, axis, largest)


# --- ArgMax / ArgMin ----------------------------------------------------------------------------
def _arg(fn, x, axis, keepdims, select_last_index):
    axis = _axis(axis, x.ndim)
    if select_last_index:
        idx = x.shape[axis] - 1 - fn(np.flip(x, axis=axis), axis=axis)
    else:
        idx = fn(x, axis=axis)
    if keepdims:
        idx = np.expand_dims(idx, axis)
    return idx.astype(np.int64)


@kernel("ArgMax", (1, 11, 12, 13))
def argmax(x, *, axis=0, keepdims=1, select_last_index=0):
    return _arg(np.argmax, x, axis, keepdims, select_last_index)


@kernel("ArgMin", (1, 11, 12, 13))
def argmin(x, *, axis=0, keepdims=1, select_last_index=0):
    return _arg(np.argmin, x, axis, keepdims, select_last_index)


# --- gathers ------------------------------------------------------------------------------------
def _fix(indices, size):
    indices = indices.astype(np.int64, copy=False)
    if np.any((indices < -size) | (indices >= size)):
        raise OptcError(f"index out of range [-{size}, {size})")
    return np.where(indices < 0, indices + size, indices)


@kernel("GatherElements", (11, 13))
def gather_elements(data, indices, *, axis=0):
    axis = _axis(axis, data.ndim)
    return np.take_along_axis(data, _fix(indices, data.shape[axis]), axis=axis)


@kernel("GatherND", (11, 12, 13))
def gather_nd(data, indices, *, batch_dims=0):
    indices = indices.astype(np.int64, copy=False)
    b = batch_dims
    batch = data.shape[:b]
    q = indices.shape[-1]
    nb = int(np.prod(batch)) if b else 1
    d = data.reshape((nb,) + data.shape[b:])
    ind = indices.reshape((nb, -1, q))
    out = []
    for i in range(nb):
        cols = tuple(_fix(ind[i][:, j], d.shape[1 + j]) for j in range(q))
        out.append(d[i][cols])
    result = np.stack(out) if out else np.zeros((0,) + data.shape[b + q:], data.dtype)
    return result.reshape(indices.shape[:-1] + data.shape[b + q:])


# --- scatters -----------------------------------------------------------------------------------
_REDUCE = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter_elements(data, indices, updates, axis, reduction):
    axis = _axis(axis, data.ndim)
    out = data.copy()
    idx = list(np.indices(indices.shape, sparse=True))
    idx[axis] = _fix(indices, data.shape[axis])
    return _put(out, tuple(idx), updates, reduction)


def _put(out, idx, updates, reduction):
    """out[idx] = updates, or combined with what is there by ``reduction``."""
    if reduction == "none":
        out[idx] = updates
    elif reduction in _REDUCE:
        _REDUCE[reduction].at(out, idx, updates)
    else:
        raise OptcError(f"unknown reduction '{reduction}'")
    return out


@kernel("Scatter", (9, 11))  # 11: deprecated, the same op
def scatter(data, indices, updates, *, axis=0):
    return _scatter_elements(data, indices, updates, axis, "none")


@kernel("ScatterElements", (11, 13))
def scatter_elements_11(data, indices, updates, *, axis=0):
    return _scatter_elements(data, indices, updates, axis, "none")


@kernel("ScatterElements", (16, 18))
def scatter_elements(data, indices, updates, *, axis=0, reduction="none"):
    return _scatter_elements(data, indices, updates, axis, reduction)


def _scatter_nd(data, indices, updates, reduction):
    out = data.copy()
    q = indices.shape[-1]
    ind = indices.reshape(-1, q)
    upd = updates.reshape((ind.shape[0],) + data.shape[q:])
    cols = tuple(_fix(ind[:, j], data.shape[j]) for j in range(q))
    return _put(out, cols, upd, reduction)


@kernel("ScatterND", (11, 13))
def scatter_nd_11(data, indices, updates):
    return _scatter_nd(data, indices, updates, "none")


@kernel("ScatterND", (16, 18))
def scatter_nd(data, indices, updates, *, reduction="none"):
    return _scatter_nd(data, indices, updates, reduction)


# --- CumSum -------------------------------------------------------------------------------------
@kernel("CumSum", (11, 14))
def cumsum(x, axis, *, exclusive=0, reverse=0):
    a = _axis(int(np.asarray(axis).reshape(-1)[0]), x.ndim)
    v = np.flip(x, a) if reverse else x
    y = np.cumsum(v, axis=a, dtype=x.dtype)
    if exclusive:
        y = np.concatenate([np.zeros_like(np.take(y, [0], axis=a)),
                            np.take(y, np.arange(y.shape[a] - 1), axis=a)], axis=a)
    return np.flip(y, a) if reverse else y

"""BatchNormalization (inference), Gemm, MatMul, Softmax, LRN."""

from __future__ import annotations

import math

import numpy as np

from optc.errors import OptcError
from optc.runtime.config import DEFAULT
from optc.runtime.kernels import native
from optc.runtime.registry import kernel


# --- BatchNormalization -------------------------------------------------------------------------
def _bn(x, scale, b, mean, var, epsilon):
    # per-channel parameters broadcast over axis 1; spatial=0 (opset < 9) gives (C, *spatial)
    shape = (1,) + scale.shape + (1,) * (x.ndim - 1 - scale.ndim)
    inv = (scale / np.sqrt(var + x.dtype.type(epsilon))).astype(x.dtype)
    shift = (b - mean * inv).astype(x.dtype)
    return x * inv.reshape(shape) + shift.reshape(shape)


@kernel("BatchNormalization", (1, 6, 7, 9))
def batch_norm_legacy(x, scale, b, mean, var, *, epsilon=1e-5, momentum=0.9, spatial=1,
                      is_test=0, consumed_inputs=None, _outputs=1):
    if _outputs > 1:
        raise OptcError("BatchNormalization in training mode is not supported (inference only)")
    return _bn(x, scale, b, mean, var, epsilon)


@kernel("BatchNormalization", (14, 15))
def batch_norm(x, scale, b, mean, var, *, epsilon=1e-5, momentum=0.9, training_mode=0,
               _outputs=1):
    if training_mode or _outputs > 1:
        raise OptcError("BatchNormalization in training mode is not supported (inference only)")
    return _bn(x, scale, b, mean, var, epsilon)


# --- Gemm / MatMul ------------------------------------------------------------------------------
def prepare_bf16_matmul(config, constants: list, attrs: dict) -> native.Bf16MatMul | None:
    """At the session precision "bf16": the constant float32 2-D weight (MatMul's B, Gemm's
    B or B^T by transB) packed for bf16 products (native.Bf16MatMul); None otherwise (the
    node then runs in float32)."""
    b = constants[1] if len(constants) > 1 else None
    if config.precision != "bf16" or not config.native or not native.bf16_available() or \
            b is None or b.ndim != 2 or b.dtype != np.float32 or 0 in b.shape:
        return None
    return native.Bf16MatMul(b.T if attrs.get("transB", 0) else b, b)


def bf16_gemm(state, a, b, c, alpha, beta, transA, act, threads) -> np.ndarray | None:
    """a @ W (+ c) by the bf16 weights of ``state`` (prepare_bf16_matmul) where that is
    what the node computes -- no transA or alpha, c absent or one value a column at beta 1,
    float32 a of the weight's K -- else None (the float32 way)."""
    if state is None or state.source is not b:
        return None
    if transA or alpha != 1.0 or a.dtype != np.float32 or a.ndim != 2 or \
            a.shape[1] != state.k:
        return None
    bias = None
    if c is not None:
        if beta != 1.0 or c.dtype != np.float32 or c.size != state.m or \
                (c.ndim == 2 and c.shape[0] != 1):
            return None
        bias = np.ascontiguousarray(c).reshape(-1)
    return state(a, bias, act, threads)


@kernel("Gemm", (1, 6))
def gemm_legacy(a, b, c, *, alpha=1.0, beta=1.0, transA=0, transB=0, broadcast=0):
    return gemm(a, b, c, alpha=alpha, beta=beta, transA=transA, transB=transB)


@kernel("Gemm", (7, 9, 11, 13), prepare=prepare_bf16_matmul)
def gemm(a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0, _config=None, _state=None):
    if _state is not None:
        y = bf16_gemm(_state, a, b, c, alpha, beta, transA, (0, 0.0, 0.0),
                      (_config or DEFAULT).threads)
        if y is not None:
            return y
    a = a.T if transA else a
    b = b.T if transB else b
    y = a @ b
    if alpha != 1.0:
        y = y * a.dtype.type(alpha)
    if c is not None:
        y = y + (c * c.dtype.type(beta) if beta != 1.0 else c)
    return y.astype(a.dtype, copy=False)


@kernel("MatMul", (1, 9, 13), prepare=prepare_bf16_matmul)
def matmul(a, b, *, _config=None, _state=None):
    if _state is not None and _state.source is b and a.dtype == np.float32 and a.ndim >= 1 and \
            a.shape[-1] == _state.k:
        return _state(a, threads=(_config or DEFAULT).threads)
    out = np.matmul(a, b)
    # ml_dtypes' bfloat16/float8 matmul computes (and answers) in float32: back to the type
    return out if out.dtype == a.dtype else out.astype(a.dtype)


# --- Softmax ------------------------------------------------------------------------------------
def _softmax(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


@kernel("Softmax", (1, 11))
def softmax_2d(x, *, axis=1):
    # before opset 13: coerce to 2-D at `axis`, softmax over the flattened trailing dims
    axis = axis + x.ndim if axis < 0 else axis
    flat = x.reshape(math.prod(x.shape[:axis]), -1)
    return _softmax(flat, 1).reshape(x.shape)


@kernel("Softmax", (13,))
def softmax(x, *, axis=-1):
    return _softmax(x, axis)


# --- LRN ----------------------------------------------------------------------------------------
@kernel("LRN", (1, 13))
def lrn(x, *, size, alpha=0.0001, beta=0.75, bias=1.0, _config=None):
    if (_config or DEFAULT).native:
        y = native.lrn(x, size, alpha, beta, bias)
        if y is not None:
            return y
    # square_sum[c] = sum over channels c - floor((size-1)/2) .. c + ceil((size-1)/2)
    c = x.shape[1]
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
    sq = x.astype(np.float64) ** 2
    padded = np.pad(sq, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    csum = np.cumsum(padded, axis=1)
    csum = np.concatenate([np.zeros_like(csum[:, :1]), csum], axis=1)
    window = csum[:, size:size + c] - csum[:, :c]
    return (x / (bias + alpha / size * window) ** beta).astype(x.dtype)

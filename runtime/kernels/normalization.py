"""Normalizations over part of a tensor: LayerNormalization, GroupNormalization,
InstanceNormalization, MeanVarianceNormalization (statistics in float32 or wider, as the
spec's ``stash_type`` says), and the activations transformers and mobile nets add: Gelu, Mish,
PRelu, Softplus, Softsign, Selu, Celu, ThresholdedRelu, Swish."""

from __future__ import annotations

import numpy as np

from optc.errors import OptcError
from optc.runtime.config import DEFAULT
from optc.runtime.kernels import native
from optc.runtime.registry import kernel


def _stash(x: np.ndarray, stash_type: int = 1):
    """The dtype statistics are computed in: float32 (stash_type 1) or wider if x is."""
    if stash_type == 1:
        return np.promote_types(x.dtype, np.float32)
    return x.dtype


def _normalize(x, axes, epsilon, stash):
    xs = x.astype(stash, copy=False)
    mean = xs.mean(axis=axes, keepdims=True)
    d = xs - mean
    var = (d * d).mean(axis=axes, keepdims=True)
    inv = 1 / np.sqrt(var + stash.type(epsilon))
    return d * inv, mean, inv


@kernel("LayerNormalization", (17,))
def layer_norm(x, scale, b=None, *, axis=-1, epsilon=1e-5, stash_type=1, _outputs=1):
    axis = axis + x.ndim if axis < 0 else axis
    axes = tuple(range(axis, x.ndim))
    y, mean, inv = _normalize(x, axes, epsilon, _stash(x, stash_type))
    y = y * scale
    if b is not None:
        y = y + b
    out = (y.astype(x.dtype, copy=False),)
    if _outputs > 1:
        out += (mean.astype(np.float32 if stash_type == 1 else x.dtype, copy=False),
                inv.astype(np.float32 if stash_type == 1 else x.dtype, copy=False))
    return out[:_outputs] if _outputs > 1 else out[0]


def _group_norm(x, scale, b, epsilon, num_groups, per_channel, stash):
    n, c = x.shape[:2]
    if c % num_groups:
        raise OptcError(f"GroupNormalization: {c} channels do not split into {num_groups} "
                        f"groups")
    g = x.reshape(n, num_groups, -1)
    y, _, _ = _normalize(g, (2,), epsilon, stash)
    y = y.reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    if per_channel:
        s, t = scale.reshape(shape), b.reshape(shape)
    else:  # opset 18: one scale/bias per group
        s = np.repeat(scale, c // num_groups).reshape(shape)
        t = np.repeat(b, c // num_groups).reshape(shape)
    return (y * s + t).astype(x.dtype, copy=False)


@kernel("GroupNormalization", (18,))
def group_norm_18(x, scale, b, *, epsilon=1e-5, num_groups):
    return _group_norm(x, scale, b, epsilon, num_groups, False, _stash(x))


@kernel("GroupNormalization", (21,))
def group_norm(x, scale, b, *, epsilon=1e-5, num_groups, stash_type=1):
    return _group_norm(x, scale, b, epsilon, num_groups, True, _stash(x, stash_type))


@kernel("InstanceNormalization", (1, 6, 22))
def instance_norm(x, scale, b, *, epsilon=1e-5, consumed_inputs=None):
    y, _, _ = _normalize(x, tuple(range(2, x.ndim)), epsilon, _stash(x))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    return (y * scale.reshape(shape) + b.reshape(shape)).astype(x.dtype, copy=False)


@kernel("MeanVarianceNormalization", (9, 13))
def mvn(x, *, axes=[0, 2, 3]):  # noqa: B006 -- the spec default, never mutated
    # the spec's function body: (X - E[X]) / (sqrt(E[X^2] - E[X]^2) + 1e-9)
    axes = tuple(int(a) for a in axes)
    mean = x.mean(axis=axes, keepdims=True)
    var = (x * x).mean(axis=axes, keepdims=True) - mean * mean
    return ((x - mean) / (np.sqrt(var) + x.dtype.type(1e-9))).astype(x.dtype, copy=False)


# --- activations --------------------------------------------------------------------------------
def _map(x, kind, fallback, config):
    if (config or DEFAULT).native:
        y = native.map_f32(x, kind)
        if y is not None:
            return y
    return fallback(x).astype(x.dtype, copy=False)


def _erf(x):
    from optc.runtime.kernels.math import _erf_vec

    return _erf_vec(x)


@kernel("Gelu", (20,))
def gelu(x, *, approximate="none", _config=None):
    if approximate == "tanh":
        return _map(x, "gelu_tanh", lambda v: 0.5 * v * (1 + np.tanh(
            np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3))), _config)
    if approximate != "none":
        raise OptcError(f"Gelu: unknown approximate='{approximate}'")
    return _map(x, "gelu", lambda v: 0.5 * v * (1 + _erf(v / np.sqrt(2))), _config)


def _softplus(x):
    return np.logaddexp(x.dtype.type(0), x)


@kernel("Mish", (18, 22))
def mish(x, *, _config=None):
    return _map(x, "mish", lambda v: v * np.tanh(_softplus(v)), _config)


@kernel("PRelu", (1, 6))
def prelu_legacy(x, slope, *, consumed_inputs=None):
    # before opset 7 a 1-D slope of C values is per channel (axis 1)
    if slope.ndim == 1 and x.ndim > 2 and slope.size == x.shape[1] != x.shape[-1]:
        slope = slope.reshape((-1,) + (1,) * (x.ndim - 2))
    return prelu(x, slope)


@kernel("PRelu", (7, 9, 16))
def prelu(x, slope):
    return np.where(x < 0, x * slope, x).astype(x.dtype, copy=False)


@kernel("Softplus", (1, 22))
def softplus(x):
    return _softplus(x).astype(x.dtype, copy=False)


@kernel("Softsign", (1, 22))
def softsign(x):
    return (x / (1 + np.abs(x))).astype(x.dtype, copy=False)


@kernel("Selu", (1,))
def selu_1(x, *, alpha=1.6732000112533569, gamma=1.0506999492645264, consumed_inputs=None):
    return selu(x, alpha=alpha, gamma=gamma)


@kernel("Selu", (6, 22))
def selu(x, *, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875):
    t = x.dtype.type
    return np.where(x > 0, t(gamma) * x, t(gamma) * (t(alpha) * np.expm1(np.minimum(x, 0))))


@kernel("Celu", (12, 28))
def celu(x, *, alpha=1.0):
    t = x.dtype.type
    return (np.maximum(x, 0) + np.minimum(0, t(alpha) * np.expm1(np.minimum(x, 0) / t(alpha)))
            ).astype(x.dtype, copy=False)


@kernel("ThresholdedRelu", (10, 22))
def thresholded_relu(x, *, alpha=1.0):
    return np.where(x > x.dtype.type(alpha), x, x.dtype.type(0))


@kernel("Swish", (24,))
def swish(x, *, alpha=1.0):
    from optc.runtime.kernels.elementwise import sigmoid

    return x * sigmoid(x * x.dtype.type(alpha))

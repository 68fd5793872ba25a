"""optc.runtime's C kernels (runtime/csrc/ckernels.c, built by ``pip install``) and the glue
that calls them on contiguous float32 NCHW arrays without copies.

``AVAILABLE`` says whether the extension was built. Where it was not (no C compiler at install
time), a warning is issued once and every kernel runs its NumPy implementation; the callers
(conv.py, fused.py, winograd.py) fall back by themselves when a function here returns None.
``use_native(False)`` turns the C kernels off (tests compare both paths).
"""

from __future__ import annotations

import warnings

import numpy as np

try:
    from optc.runtime import _ckernels
except ImportError:  # pragma: no cover - depends on the install
    _ckernels = None
    warnings.warn("optc.runtime's C kernels are not built (no C compiler at install time?); "
                  "using the NumPy kernels", RuntimeWarning, stacklevel=2)

AVAILABLE = _ckernels is not None
_enabled = AVAILABLE

#: fused activation -> (code, default parameters) understood by ckernels.c
ACTIVATIONS = {"Relu": (1, ()), "Clip": (2, ()), "LeakyRelu": (3, (0.01,)),
               "Sigmoid": (4, ()), "HardSigmoid": (5, (0.2, 0.5)), "HardSwish": (6, ()),
               "Tanh": (7, ()), "SiLU": (8, ())}


def use_native(on: bool) -> bool:
    """Turn the C kernels on or off; returns the previous setting."""
    global _enabled
    previous = _enabled
    _enabled = bool(on) and AVAILABLE
    return previous


def enabled() -> bool:
    return _enabled


def activation_args(kind: str | None, params) -> tuple[int, float, float] | None:
    """(code, a, b) for ckernels.c, or None for an activation it does not know."""
    if not kind:
        return 0, 0.0, 0.0
    if kind not in ACTIVATIONS:
        return None
    code, defaults = ACTIVATIONS[kind]
    p = [float(v) for v in (params or defaults)] + [0.0, 0.0]
    return code, p[0], p[1]


def _f32(*arrays) -> bool:
    return all(a is None or (a.dtype == np.float32) for a in arrays)


def depthwise_conv2d(x, w, b, strides, begin, end, dilations, out_shape,
                     activation=None, params=None) -> np.ndarray | None:
    """Depthwise (group == C, one filter per channel) 2-D conv in C, or None if the C kernel
    does not apply (disabled, not float32, not 2-D)."""
    if not _enabled or x.ndim != 4 or not _f32(x, w, b) or w.shape[1] != 1 or \
            w.shape[0] != x.shape[1]:
        return None
    act = activation_args(activation, params)
    if act is None:
        return None
    y = np.empty((x.shape[0], x.shape[1], *out_shape), np.float32)
    _ckernels.depthwise_conv2d(np.ascontiguousarray(x), np.ascontiguousarray(w),
                               None if b is None else np.ascontiguousarray(b), y,
                               strides[0], strides[1], begin[0], begin[1], dilations[0],
                               dilations[1], *act)
    return y


def max_pool2d(x, k, strides, begin, dilations, out_shape) -> np.ndarray | None:
    """2-D max pooling in C (no Indices output), or None if the C kernel does not apply."""
    if not _enabled or x.ndim != 4 or x.dtype != np.float32:
        return None
    y = np.empty((x.shape[0], x.shape[1], *out_shape), np.float32)
    _ckernels.max_pool2d(np.ascontiguousarray(x), y, k[0], k[1], strides[0], strides[1],
                         begin[0], begin[1], dilations[0], dilations[1])
    return y


def winograd_conv(xp, u, b, m, th, tw, out_shape, activation=None, params=None
                  ) -> np.ndarray | None:
    """Winograd F(m x m, 3 x 3) with the transforms in C and the a*a GEMMs in BLAS: xp is the
    input padded to whole tiles (N, C, th*m + 2, tw*m + 2); None if the C path does not
    apply."""
    if not _enabled or not _f32(xp, u, b):
        return None
    act = activation_args(activation, params)
    if act is None:
        return None
    n, c = xp.shape[:2]
    a = m + 2
    v = np.empty((a * a, c, n * th * tw), np.float32)
    _ckernels.winograd_input(np.ascontiguousarray(xp), v, m, th, tw)
    prod = np.matmul(u, v)  # (a*a, M, tiles)
    y = np.empty((n, u.shape[1], *out_shape), np.float32)
    _ckernels.winograd_output(prod, y, m, th, tw,
                              None if b is None else np.ascontiguousarray(b), *act)
    return y

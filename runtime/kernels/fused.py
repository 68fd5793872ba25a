"""optc's fused ops (domain ai.optc), written by fuse-act{target=optc}: FusedConv,
FusedConvTranspose and FusedGemm run the layer and its activation in one kernel call;
FusedConv's optional fourth input Z (a residual Add) is added before the activation.
QuantizeAffine(X, scale, shift, y_scale, y_zero_point) is a per-channel Mul and Add, an
activation and a per-tensor QuantizeLinear in one pass:
y = saturate(round_half_to_even(act(X * scale[c] + shift[c]) / y_scale) + y_zero_point),
each step rounded to float32 as the four ops would (an unfolded BatchNormalization before a
quantized conv: DenseNet's pre-activations).

Attributes: the layer's own, plus ``activation`` and ``activation_params``, as in
onnxruntime's com.microsoft.FusedConv (the table: optc.runtime.activations).
"""

from __future__ import annotations

import numpy as np

from optc.errors import OptcError
from optc.runtime.activations import activation_params
from optc.runtime.config import DEFAULT
from optc.runtime.kernels.conv import (cached_conv2d, conv, conv_defaults, conv_transpose,
                                       depthwise_call, native_conv2d, prepare_conv,
                                       resolve_pads)
from optc.runtime.kernels import native
from optc.runtime.kernels.nn import bf16_gemm, gemm, prepare_bf16_matmul
from optc.runtime.kernels.quant import quantize10
from optc.runtime.registry import OPTC_DOMAIN, kernel


def apply_activation(kind: str, params, y: np.ndarray) -> np.ndarray:
    """``kind`` (optc.runtime.activations) applied to ``y`` in place where NumPy allows it."""
    p = activation_params(kind, params)
    t = y.dtype.type
    if kind == "Relu":
        return np.maximum(y, t(0), out=y)
    if kind == "Clip":
        return np.clip(y, t(p[0]), t(p[1]), out=y)
    if kind == "LeakyRelu":
        return np.where(y >= 0, y, y * t(p[0]))
    if kind == "Sigmoid":
        with np.errstate(over="ignore"):  # exp(-y) = inf at very negative y: the result is 0
            return (1 / (1 + np.exp(-y))).astype(y.dtype)
    if kind == "Tanh":
        return np.tanh(y, out=y)
    if kind == "HardSigmoid":
        alpha, beta = p
        return np.clip(y * t(alpha) + t(beta), t(0), t(1))
    if kind == "HardSwish":
        return y * np.clip(y * t(1 / 6) + t(0.5), t(0), t(1))
    if kind == "SiLU":
        with np.errstate(over="ignore"):  # as Sigmoid: y / inf = -0 at very negative y
            return (y / (1 + np.exp(-y))).astype(y.dtype)
    raise OptcError(f"unknown fused activation '{kind}'")


def _fused_conv_resolve(x, w, b, config, activation, activation_params, auto_pad, dilations,
                        group, kernel_shape, pads, strides, depthwise_path, state):
    """FusedConv's C call for x's shape: the 2-D conv's native.Conv2dCall (kept in the
    node's state) or the depthwise kernel's native.DepthwiseCall; None where neither
    applies."""
    if depthwise_path not in native.DEPTHWISE_PATHS:
        raise OptcError(f"FusedConv depthwise_path must be one of "
                        f"{', '.join(native.DEPTHWISE_PATHS)}, got '{depthwise_path}'")
    call = cached_conv2d(x, w, b, (x.shape, activation, activation_params, auto_pad,
                                   dilations, group, kernel_shape, pads, strides), state,
                         config, activation, activation_params, auto_pad, dilations, group,
                         kernel_shape, pads, strides)
    if call is not None:
        return call
    return depthwise_call(x, w, b, auto_pad=auto_pad, dilations=dilations, group=group,
                          kernel_shape=kernel_shape, pads=pads, strides=strides,
                          activation=activation, activation_params=activation_params,
                          config=config, path=native.DEPTHWISE_PATHS[depthwise_path])


def _as_run(call, w, threads: int):
    """``run(x, b, z)`` -> y of a resolved call, None where the arrays do not fit it (the
    depthwise kernel takes no residual)."""
    if isinstance(call, native.DepthwiseCall):
        return lambda x, b, z: call(x, w, b) if z is None else None
    return lambda x, b, z: call(x, b, z, threads)


def _step_call(args, attrs):
    """The resolved C call (_fused_conv_resolve) of a FusedConv step's inputs and attributes
    (a session's: the kernel's keyword defaults where absent), or None."""
    x, w = args[0], args[1]
    if not isinstance(x, np.ndarray) or not isinstance(w, np.ndarray):
        return None
    get = attrs.get
    return _fused_conv_resolve(x, w, args[2] if len(args) > 2 else None,
                               get("_config") or DEFAULT, get("activation"),
                               get("activation_params"), get("auto_pad", "NOTSET"),
                               get("dilations"), get("group", 1), get("kernel_shape"),
                               get("pads"), get("strides"), get("depthwise_path", "auto"),
                               get("_state"))


def _fused_conv_fast(args, attrs):
    """The session's fast path of a FusedConv step (registry: ``fast``): the C call resolved
    for these inputs, run while x keeps its shape and the weight is this one (at the SIMD
    level the C kernels have then: the same sums, portable C included)."""
    call = _step_call(args, attrs)
    if call is None:
        return None
    x, w = args[0], args[1]
    run = _as_run(call, w, (attrs.get("_config") or DEFAULT).threads)
    shape = x.shape

    def fast(args):
        x = args[0]
        if x.__class__ is not np.ndarray or x.shape != shape or args[1] is not w:
            return None
        return run(x, args[2] if len(args) > 2 else None, args[3] if len(args) > 3 else None)

    return fast


def _fused_conv_plan(args, attrs):
    """A FusedConv step as a session plan's op (registry: ``plan``): its C call's, where the
    residual, if any, has the output's shape (the depthwise kernel takes none)."""
    call = _step_call(args, attrs)
    z = args[3] if len(args) > 3 else None
    if call is None:
        return None
    if isinstance(call, native.DepthwiseCall):
        return call.plan_op(args[1].shape) if z is None else None
    if z is not None and getattr(z, "shape", None) != call.y_shape:
        return None
    return call.plan_op((attrs.get("_config") or DEFAULT).threads)


@kernel("FusedConv", (1,), domain=OPTC_DOMAIN, prepare=prepare_conv, fast=_fused_conv_fast,
        plan=_fused_conv_plan)
def fused_conv(x, w, b=None, z=None, *, activation=None, activation_params=None,
               auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
               strides=None, depthwise_path="auto", _config=None, _state=None):
    """act(conv(x) + b + z): z, the optional residual input (an Add fused by fuse-act),
    broadcast like Add; no activation when ``activation`` is absent. ``depthwise_path``: for a
    depthwise conv, which C path runs (native.DEPTHWISE_PATHS: auto, planes, blocks, rows;
    written by the tune-depthwise pass), the same result either way."""
    config = _config or DEFAULT
    call = _fused_conv_resolve(x, w, b, config, activation, activation_params, auto_pad,
                               dilations, group, kernel_shape, pads, strides, depthwise_path,
                               _state)
    if call is not None:
        y = _as_run(call, w, config.threads)(
            np.ascontiguousarray(x), None if b is None else np.ascontiguousarray(b), z)
        if y is not None:
            return y
    if x.ndim == 4:
        k = list(kernel_shape) if kernel_shape else list(w.shape[2:])
        strides_, dilations_ = conv_defaults(k, strides, dilations)
        begin, end = resolve_pads(x.shape[2:], k, strides_, dilations_, pads, auto_pad)
        y = native_conv2d(x, w, b, k, strides_, dilations_, begin, end, group, activation,
                          activation_params, res=z, config=config)
        if y is not None:
            return y
    y = conv(x, w, b, auto_pad=auto_pad, dilations=dilations, group=group,
             kernel_shape=kernel_shape, pads=pads, strides=strides, _config=config)
    if z is not None:
        y = y + z
    return apply_activation(activation, activation_params, y) if activation else y


@kernel("FusedConvTranspose", (1,), domain=OPTC_DOMAIN)
def fused_conv_transpose(x, w, b=None, *, activation, activation_params=None, auto_pad="NOTSET",
                         dilations=None, group=1, kernel_shape=None, output_padding=None,
                         output_shape=None, pads=None, strides=None):
    y = conv_transpose(x, w, b, auto_pad=auto_pad, dilations=dilations, group=group,
                       kernel_shape=kernel_shape, output_padding=output_padding,
                       output_shape=output_shape, pads=pads, strides=strides)
    return apply_activation(activation, activation_params, y)


@kernel("FusedGemm", (1,), domain=OPTC_DOMAIN, prepare=prepare_bf16_matmul)
def fused_gemm(a, b, c=None, *, activation, activation_params=None, alpha=1.0, beta=1.0,
               transA=0, transB=0, _config=None, _state=None):
    act = native.activation_args(activation, activation_params) if _state is not None else None
    if act is not None:  # bf16 products, the activation on the float32 sums
        y = bf16_gemm(_state, a, b, c, alpha, beta, transA, act, (_config or DEFAULT).threads)
        if y is not None:
            return y
    y = np.array(gemm(a, b, c, alpha=alpha, beta=beta, transA=transA, transB=transB))
    return apply_activation(activation, activation_params, y)


@kernel("QuantizeAffine", (1,), domain=OPTC_DOMAIN)
def quantize_affine(x, scale, shift, y_scale, y_zero_point, *, activation=None,
                    activation_params=None, _config=None):
    """Q(act(x * scale[c] + shift[c])): scale and shift one value per channel (axis 1), the
    quantization per tensor (its zero point's type: uint8 or int8)."""
    c = x.shape[1] if x.ndim >= 2 else 0
    if scale.size != c or shift.size != c or np.size(y_scale) != 1 or \
            np.size(y_zero_point) != 1:
        raise OptcError(f"QuantizeAffine needs {c} scales and shifts (one a channel) and one "
                        f"output scale and zero point, got {scale.size}, {shift.size}, "
                        f"{np.size(y_scale)} and {np.size(y_zero_point)}")
    act = native.activation_args(activation, activation_params)
    ys, zp = np.asarray(y_scale), np.asarray(y_zero_point)
    if (_config or DEFAULT).native and act is not None and x.dtype == scale.dtype == shift.dtype == \
            ys.dtype == np.float32 and zp.dtype.char in "bB":
        y = np.empty(x.shape, zp.dtype)
        native.affine_quantize(x, scale, shift, y, act, float(ys.item()), int(zp.item()))
        return y
    shape = (1, c) + (1,) * (x.ndim - 2)
    v = x * scale.reshape(shape)
    v = v + shift.reshape(shape)
    if activation:
        v = apply_activation(activation, activation_params, v)
    return quantize10(v, y_scale, y_zero_point, _config=_config)

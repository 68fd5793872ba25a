"""Conv and ConvTranspose for any number of spatial dims.

Conv is im2col + one GEMM per group: the padded input is viewed (no copy) as windows with
``as_strided`` -- shape (N, C, *out, *kernel), strides scaled by ``strides`` and ``dilations``
-- and each group's windows are multiplied by its (M/g, C/g * prod(kernel)) weight matrix.

ConvTranspose is the adjoint: one GEMM per group gives, for every input pixel, its
(M/g, *kernel) contribution; the contributions are scatter-added into the output with one
strided slice-add per kernel offset (a loop over kernel positions, never over pixels).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from optc.errors import OptcError
from optc.runtime.config import DEFAULT, RuntimeConfig
from optc.runtime.kernels import native
from optc.runtime.registry import kernel


def resolve_pads(in_shape, kernel_shape, strides, dilations, pads, auto_pad):
    """Begin/end pads per spatial dim, per the spec's auto_pad rules."""
    n = len(in_shape)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(n):
            out = -(-in_shape[i] // strides[i])
            total = max((out - 1) * strides[i] + (kernel_shape[i] - 1) * dilations[i] + 1
                        - in_shape[i], 0)
            small, big = total // 2, total - total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else big)
            end.append(big if auto_pad == "SAME_UPPER" else small)
        return begin, end
    if auto_pad == "VALID":
        return [0] * n, [0] * n
    if auto_pad not in ("NOTSET", "", None):
        raise OptcError(f"auto_pad '{auto_pad}' is not valid")
    pads = list(pads) if pads is not None else [0] * (2 * n)
    return pads[:n], pads[n:]


def out_size(size, k, s, d, pad_begin, pad_end, ceil=False):
    """Output length of a window sweep. With ``ceil`` (pooling's ceil_mode) a last, partial
    window is kept only if it starts inside the input or the begin padding."""
    span = d * (k - 1) + 1
    room = size + pad_begin + pad_end - span
    if not ceil:
        return room // s + 1
    out = -(-room // s) + 1
    if (out - 1) * s >= size + pad_begin:
        out -= 1
    return out


def windows(x, kernel_shape, strides, dilations, out_shape):
    """(N, C, *out, *kernel) strided view of an already padded x (N, C, *spatial)."""
    n, c = x.shape[:2]
    sp = x.strides[2:]
    shape = (n, c, *out_shape, *kernel_shape)
    strides_ = (x.strides[0], x.strides[1], *(st * s for st, s in zip(sp, strides)),
                *(st * d for st, d in zip(sp, dilations)))
    return as_strided(x, shape=shape, strides=strides_, writeable=False)


def conv_defaults(w_or_k, strides, dilations):
    nd = len(w_or_k)
    return (list(strides) if strides else [1] * nd, list(dilations) if dilations else [1] * nd)


def depthwise_call(x, w, b, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                   pads=None, strides=None, activation=None, activation_params=None,
                   config: RuntimeConfig = DEFAULT, path: int = 0) -> native.DepthwiseCall | None:
    """The C call (native.DepthwiseCall) of a depthwise 2-D conv (group == channels ==
    filters) for x's shape, the activation fused; None when the C kernel does not apply.
    ``path``: native.DEPTHWISE_PATHS (0: the kernel's own rule)."""
    if x.ndim != 4 or group == 1 or group != x.shape[1] or w.shape[0] != group or \
            not config.native:
        return None
    k = list(kernel_shape) if kernel_shape else list(w.shape[2:])
    strides, dilations = conv_defaults(k, strides, dilations)
    begin, end = resolve_pads(x.shape[2:], k, strides, dilations, pads, auto_pad)
    out = [out_size(x.shape[2 + i], k[i], strides[i], dilations[i], begin[i], end[i])
           for i in range(2)]
    if min(out) <= 0 or list(w.shape[2:]) != k:
        return None
    return native.DepthwiseCall.make(x, w, b, strides, begin, end, dilations, out, activation,
                                     activation_params, path)


def depthwise_native(x, w, b, **kwargs):
    """A depthwise 2-D conv by the C kernel (depthwise_call's keywords); None when the C
    kernel does not apply."""
    call = depthwise_call(x, w, b, **kwargs)
    if call is None:
        return None
    return call(np.ascontiguousarray(x), np.ascontiguousarray(w),
                None if b is None else np.ascontiguousarray(b))


class ConvState:
    """What a Conv / FusedConv node keeps in the session's plan (its prepare step): the
    constant weight, packed for the C conv once, and the C call resolved per input shape
    and attributes (native.Conv2dCall, or None where the C conv does not apply)."""

    __slots__ = ("w", "packed", "calls")

    def __init__(self, w: np.ndarray):
        self.w = w
        # group (or (group, bf16 layout)) -> packed filters
        self.packed: dict[int | tuple, np.ndarray] = {}
        # (key, call) pairs: keys hold lists (pads, activation params), compared by ==; one
        # pair per input shape unless nodes share the weight
        self.calls: list[tuple[tuple, native.Conv2dCall | None]] = []

    def packed_for(self, group: int, bf16_taps: bool | None = None) -> np.ndarray:
        """The filters for sconv2d, or (bf16_taps not None) for sconv2d_bf16 in that
        layout."""
        key = group if bf16_taps is None else (group, bf16_taps)
        p = self.packed.get(key)
        if p is None:
            p = self.packed[key] = native.pack_conv_weights(self.w, group) \
                if bf16_taps is None else native.bf16_weights(self.w, group, bf16_taps)
        return p


def prepare_conv(config: RuntimeConfig, constants: list, attrs: dict) -> ConvState | None:
    """A ConvState for a node whose weight is a float32 constant and whose session runs the
    C kernels; None otherwise (each call then goes the general way)."""
    w = constants[1] if len(constants) > 1 else None
    if not config.native or w is None or w.ndim != 4 or w.dtype != np.float32:
        return None
    return ConvState(w)


def cached_conv2d(x, w, b, key: tuple, state: ConvState | None, config: RuntimeConfig,
                  activation=None, activation_params=None, auto_pad="NOTSET", dilations=None,
                  group=1, kernel_shape=None, pads=None, strides=None):
    """The native.Conv2dCall of a 2-D conv node for ``key`` (x's shape and the node's
    attributes: everything the call depends on but its arrays), kept in the node's ``state``
    once resolved; None where there is no state for this weight, the C conv does not apply
    or a depthwise kernel does (the caller then goes the general way, which also reports bad
    shapes)."""
    if state is None or state.w is not w or not config.native or not native.simd_float():
        return None
    for k, kept in state.calls:
        if k == key:
            return kept
    call = None
    n_ch = x.shape[1] if x.ndim == 4 else 0
    if x.ndim == 4 and n_ch == w.shape[1] * group and \
            not (group != 1 and group == n_ch and w.shape[0] == group):
        k = list(kernel_shape) if kernel_shape else list(w.shape[2:])
        strides_, dilations_ = conv_defaults(k, strides, dilations)
        begin, end = resolve_pads(x.shape[2:], k, strides_, dilations_, pads, auto_pad)
        out = [out_size(x.shape[2 + i], k[i], strides_[i], dilations_[i], begin[i], end[i])
               for i in range(2)]
        if min(out) > 0 and list(w.shape[2:]) == k:
            act = native.activation_args(activation, activation_params)
            if config.precision == "bf16" and act is not None and native._f32(x, w, b):
                taps = native.bf16_taps(w.shape[1])
                call = native.Bf16ConvCall(x.shape, w, strides_, begin, dilations_, group, out,
                                           act, state.packed_for(group, taps))
            else:
                call = native.conv2d_call(x, w, b, strides_, begin, dilations_, group, out,
                                          activation, activation_params,
                                          state.packed_for(group))
    state.calls.append((key, call))
    return call


def native_conv2d(x, w, b, k, strides, dilations, begin, end, group, activation=None,
                  activation_params=None, res=None, config: RuntimeConfig = DEFAULT):
    """A 2-D conv by the C kernel (native.conv2d: bias, residual and activation fused); None
    when it does not apply."""
    if not config.native:
        return None
    out = [out_size(x.shape[2 + i], k[i], strides[i], dilations[i], begin[i], end[i])
           for i in range(2)]
    if min(out) <= 0 or list(w.shape[2:]) != list(k):
        return None
    return native.conv2d(x, w, b, strides, begin, dilations, group, out, activation,
                         activation_params, res, config.threads)


def _conv_plan(args, attrs):
    """A Conv step as a plan's op (registry: ``plan``): its native.Conv2dCall's (kept in the
    node's state, as the kernel resolves it); None where the kernel would go another way."""
    x, w = args[0], args[1]
    if x.__class__ is not np.ndarray or w.__class__ is not np.ndarray:
        return None
    get, config = attrs.get, attrs.get("_config") or DEFAULT
    attributes = (get("auto_pad", "NOTSET"), get("dilations"), get("group", 1),
                  get("kernel_shape"), get("pads"), get("strides"))
    call = cached_conv2d(x, w, args[2] if len(args) > 2 else None, (x.shape, *attributes),
                         get("_state"), config, None, None, *attributes)
    return None if call is None else call.plan_op(config.threads)


@kernel("Conv", (1, 11, 22), prepare=prepare_conv, plan=_conv_plan)
def conv(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None, _config=None, _state=None):
    config = _config or DEFAULT
    nd = x.ndim - 2
    call = cached_conv2d(x, w, b, (x.shape, auto_pad, dilations, group, kernel_shape, pads,
                                   strides), _state, config, auto_pad=auto_pad,
                         dilations=dilations, group=group, kernel_shape=kernel_shape,
                         pads=pads, strides=strides)
    if call is not None:
        y = call(x, b, None, config.threads)
        if y is not None:
            return y
    k = list(kernel_shape) if kernel_shape else list(w.shape[2:])
    strides, dilations = conv_defaults(k, strides, dilations)
    begin, end = resolve_pads(x.shape[2:], k, strides, dilations, pads, auto_pad)
    n, c = x.shape[:2]
    m = w.shape[0]
    if c != w.shape[1] * group:
        raise OptcError(f"Conv input has {c} channels but the weight expects "
                        f"{w.shape[1]} x group {group}")
    y = depthwise_native(x, w, b, dilations=dilations, group=group, kernel_shape=k,
                         pads=begin + end, strides=strides, config=config)
    if y is None and nd == 2:
        y = native_conv2d(x, w, b, k, strides, dilations, begin, end, group, config=config)
    if y is not None:
        return y
    if group == 1 and all(kk == 1 for kk in k) and not any(begin + end):
        # 1x1, unpadded: y[n] = W (M x C) @ x[n] (C x pixels), NCHW in and out, no im2col
        xs = x[(slice(None), slice(None)) + tuple(slice(None, None, st) for st in strides)]
        out = list(xs.shape[2:])
        y = np.matmul(w.reshape(m, c), np.ascontiguousarray(xs).reshape(n, c, -1))
    else:
        xp = np.pad(x, [(0, 0), (0, 0)] + list(zip(begin, end))) if any(begin + end) else x
        out = [out_size(xp.shape[2 + i], k[i], strides[i], dilations[i], 0, 0)
               for i in range(nd)]
        win = windows(np.ascontiguousarray(xp), k, strides, dilations, out)
        cg, mg = c // group, m // group
        kk = int(np.prod(k))
        pixels = int(np.prod(out))
        y = np.empty((n, m, pixels), dtype=np.result_type(x.dtype, w.dtype))
        # (N, C, *out, *k) -> (N, C, *k, *out): im2col columns (C/g * k, pixels) per image,
        # so that W (M/g x C/g * k) @ columns lands in NCHW order directly
        axes = (0, 1, *range(2 + nd, 2 + 2 * nd), *range(2, 2 + nd))
        for g in range(group):
            cols = win[:, g * cg:(g + 1) * cg].transpose(axes).reshape(n, cg * kk, pixels)
            wg = w[g * mg:(g + 1) * mg].reshape(mg, cg * kk)
            np.matmul(wg, cols, out=y[:, g * mg:(g + 1) * mg])
    if b is not None:
        y += b.reshape(1, m, 1)
    return y.reshape(n, m, *out)


def transpose_geometry(in_sp, k, strides, dilations, out_pad, output_shape, pads, auto_pad):
    """(full output size, begin crop, end crop) per spatial dim of a ConvTranspose: the full
    size is what the scatter covers; a negative crop extends the output with zeros."""
    nd = len(in_sp)
    full = [(in_sp[i] - 1) * strides[i] + (k[i] - 1) * dilations[i] + 1 + out_pad[i]
            for i in range(nd)]
    if output_shape is not None:
        # the spec's total padding, split with C's truncating division; a negative total
        # extends the output with zeros
        target = list(output_shape)[-nd:]
        total = [full[i] - target[i] for i in range(nd)]
        if auto_pad == "SAME_LOWER":
            begin = [t - int(t / 2) for t in total]
        else:
            begin = [int(t / 2) for t in total]
        end = [t - bgn for t, bgn in zip(total, begin)]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = [in_sp[i] * strides[i] for i in range(nd)]
        total = [full[i] - target[i] for i in range(nd)]
        if auto_pad == "SAME_UPPER":
            begin = [t // 2 for t in total]
        else:
            begin = [t - t // 2 for t in total]
        end = [t - bgn for t, bgn in zip(total, begin)]
    else:
        begin, end = resolve_pads(in_sp, k, strides, dilations, pads,
                                  "NOTSET" if auto_pad == "VALID" else auto_pad)
    return full, begin, end


@kernel("ConvTranspose", (1, 11, 22))
def conv_transpose(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1,
                   kernel_shape=None, output_padding=None, output_shape=None, pads=None,
                   strides=None):
    nd = x.ndim - 2
    n, c = x.shape[:2]
    k = list(kernel_shape) if kernel_shape else list(w.shape[2:])
    strides, dilations = conv_defaults(k, strides, dilations)
    out_pad = list(output_padding) if output_padding else [0] * nd
    mg = w.shape[1]
    m = mg * group
    in_sp = x.shape[2:]
    full, begin, end = transpose_geometry(in_sp, k, strides, dilations, out_pad, output_shape,
                                          pads, auto_pad)
    cg = c // group
    pixels = int(np.prod(in_sp))
    dtype = np.result_type(x.dtype, w.dtype)
    full_out = np.zeros((n, m, *full), dtype=dtype)
    for g in range(group):
        xg = x[:, g * cg:(g + 1) * cg].reshape(n, cg, pixels).transpose(0, 2, 1)
        wg = w[g * cg:(g + 1) * cg].reshape(cg, mg * int(np.prod(k)))
        contrib = (xg @ wg).reshape(n, *in_sp, mg, *k)
        # move to (N, Mg, *k, *in) so a kernel offset selects a (N, Mg, *in) block
        contrib = contrib.transpose(0, nd + 1, *range(nd + 2, 2 * nd + 2), *range(1, nd + 1))
        for offset in np.ndindex(*k):
            index = (slice(None), slice(g * mg, (g + 1) * mg)) + tuple(
                slice(offset[i] * dilations[i],
                      offset[i] * dilations[i] + (in_sp[i] - 1) * strides[i] + 1, strides[i])
                for i in range(nd))
            full_out[index] += contrib[(slice(None), slice(None)) + offset]
    crop = (slice(None), slice(None)) + tuple(slice(max(begin[i], 0), full[i] - max(end[i], 0))
                                              for i in range(nd))
    y = full_out[crop]
    if any(p < 0 for p in begin + end):
        y = np.pad(y, [(0, 0), (0, 0)] + [(max(-b, 0), max(-e, 0)) for b, e in zip(begin, end)])
    if b is not None:
        y = y + b.reshape((1, m) + (1,) * nd)
    return np.ascontiguousarray(y)

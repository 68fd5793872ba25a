"""Conv and ConvTranspose for any number of spatial dims.

Conv is im2col + one GEMM per group: the padded input is viewed (no copy) as windows with
``as_strided`` -- shape (N, C, *out, *kernel), strides scaled by ``strides`` and ``dilations``
-- and each group's windows are multiplied by its (M/g, C/g * prod(kernel)) weight matrix.

ConvTranspose is the adjoint: one GEMM per group gives, for every input pixel, its
(M/g, *kernel) contribution; the contributions are scatter-added into the output with one
strided slice-add per kernel offset (a loop over kernel positions, never over pixels).
"""

from __future__ import annotations

import weakref

import numpy as np
from numpy.lib.stride_tricks import as_strided

from optc.errors import OptcError
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


def _defaults(w_or_k, strides, dilations):
    nd = len(w_or_k)
    return (list(strides) if strides else [1] * nd, list(dilations) if dilations else [1] * nd)


def depthwise_native(x, w, b, *, auto_pad="NOTSET", dilations=None, group=1,
                     kernel_shape=None, pads=None, strides=None, activation=None,
                     activation_params=None):
    """A depthwise 2-D conv (group == channels == filters) by the C kernel, the activation
    fused; None when the C kernel does not apply."""
    if x.ndim != 4 or group == 1 or group != x.shape[1] or w.shape[0] != group or \
            not native.enabled():
        return None
    k = list(kernel_shape) if kernel_shape else list(w.shape[2:])
    strides, dilations = _defaults(k, strides, dilations)
    begin, end = resolve_pads(x.shape[2:], k, strides, dilations, pads, auto_pad)
    out = [out_size(x.shape[2 + i], k[i], strides[i], dilations[i], begin[i], end[i])
           for i in range(2)]
    if min(out) <= 0:
        return None
    return native.depthwise_conv2d(x, w, b, strides, begin, end, dilations, out, activation,
                                   activation_params)


#: id(weight) -> [(weak reference to it, key, native.Conv2dCall or None)]: the C call of each
#: node that runs a weight, resolved on its first run (see cached_conv2d)
_CALLS: dict[int, list] = {}


def cached_conv2d(x, w, b, key: tuple, activation=None, activation_params=None,
                  auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None,
                  strides=None):
    """The native.Conv2dCall of a 2-D conv node with weight ``w``, for ``key`` (x's shape and
    the node's attributes: everything the call depends on but its arrays), resolved once and
    kept while ``w`` lives; None where the C conv does not apply or a depthwise kernel does
    (the caller then goes the general way, which also reports bad shapes)."""
    if not native.simd_conv_on():  # switched off for now: nothing kept
        return None
    entries = _CALLS.get(id(w))
    if entries is not None:
        for ref, k, call in entries:
            if k == key and ref() is w:
                return call
    call = None
    n_ch = x.shape[1] if x.ndim == 4 else 0
    if x.ndim == 4 and w.ndim == 4 and n_ch == w.shape[1] * group and \
            not (group != 1 and group == n_ch and w.shape[0] == group):
        k = list(kernel_shape) if kernel_shape else list(w.shape[2:])
        strides_, dilations_ = _defaults(k, strides, dilations)
        begin, end = resolve_pads(x.shape[2:], k, strides_, dilations_, pads, auto_pad)
        out = [out_size(x.shape[2 + i], k[i], strides_[i], dilations_[i], begin[i], end[i])
               for i in range(2)]
        if min(out) > 0 and list(w.shape[2:]) == k:
            call = native.conv2d_call(x, w, b, strides_, begin, dilations_, group, out,
                                      activation, activation_params)
    try:
        ref = weakref.ref(w, lambda _, i=id(w): _CALLS.pop(i, None))
    except TypeError:  # not weakly referenceable: not kept
        return call
    _CALLS.setdefault(id(w), []).append((ref, key, call))
    return call


def native_conv2d(x, w, b, k, strides, dilations, begin, end, group, activation=None,
                  activation_params=None, res=None):
    """A 2-D conv by the C kernel (native.conv2d: bias, residual and activation fused); None
    when it does not apply."""
    out = [out_size(x.shape[2 + i], k[i], strides[i], dilations[i], begin[i], end[i])
           for i in range(2)]
    if min(out) <= 0 or list(w.shape[2:]) != list(k):
        return None
    return native.conv2d(x, w, b, strides, begin, dilations, group, out, activation,
                         activation_params, res)


@kernel("Conv", (1, 11, 22))
def conv(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None):
    nd = x.ndim - 2
    call = cached_conv2d(x, w, b, (x.shape, auto_pad, dilations, group, kernel_shape, pads,
                                   strides), auto_pad=auto_pad, dilations=dilations,
                         group=group, kernel_shape=kernel_shape, pads=pads, strides=strides)
    if call is not None:
        y = call(x, b, None)
        if y is not None:
            return y
    k = list(kernel_shape) if kernel_shape else list(w.shape[2:])
    strides, dilations = _defaults(k, strides, dilations)
    begin, end = resolve_pads(x.shape[2:], k, strides, dilations, pads, auto_pad)
    n, c = x.shape[:2]
    m = w.shape[0]
    if c != w.shape[1] * group:
        raise OptcError(f"Conv input has {c} channels but the weight expects "
                        f"{w.shape[1]} x group {group}")
    y = depthwise_native(x, w, b, dilations=dilations, group=group, kernel_shape=k,
                         pads=begin + end, strides=strides)
    if y is None and nd == 2:
        y = native_conv2d(x, w, b, k, strides, dilations, begin, end, group)
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
    strides, dilations = _defaults(k, strides, dilations)
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

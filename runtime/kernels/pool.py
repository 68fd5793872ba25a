"""MaxPool (with Indices), AveragePool, GlobalAveragePool over any number of spatial dims, on
strided window views (see conv.windows); 2-D float32 MaxPool (without Indices) and AveragePool
run in C (native.max_pool2d / avg_pool2d) where the extension is built."""

from __future__ import annotations

import math

import numpy as np

from optc.runtime import plan
from optc.runtime.config import DEFAULT
from optc.runtime.kernels import native
from optc.runtime.kernels.conv import out_size, resolve_pads, windows
from optc.runtime.registry import kernel


def pool_geometry(x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode):
    nd = x.ndim - 2
    k = list(kernel_shape)
    strides = list(strides) if strides else [1] * nd
    dilations = list(dilations) if dilations else [1] * nd
    sp = x.shape[2:]
    begin, end = resolve_pads(sp, k, strides, dilations, pads, auto_pad)
    out = [out_size(sp[i], k[i], strides[i], dilations[i], begin[i], end[i], bool(ceil_mode))
           for i in range(nd)]
    # room the last (ceil) window may need beyond the explicit end padding
    extra = [max(0, (out[i] - 1) * strides[i] + dilations[i] * (k[i] - 1) + 1
                 - (sp[i] + begin[i] + end[i])) for i in range(nd)]
    return k, strides, dilations, begin, end, extra, out


def _lowest(dtype):
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


def _maxpool(x, auto_pad, ceil_mode, dilations, kernel_shape, pads, storage_order, strides,
             outputs, config=None):
    nd = x.ndim - 2
    k, strides, dilations, begin, end, extra, out = pool_geometry(
        x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    if outputs < 2 and min(out) > 0 and (config or DEFAULT).native:
        y = native.max_pool2d(x, k, strides, begin, dilations, out)
        if y is not None:
            return y
    width = [(0, 0), (0, 0)] + [(b, e + x_) for b, e, x_ in zip(begin, end, extra)]
    xp = np.pad(x, width, constant_values=_lowest(x.dtype))
    win = windows(np.ascontiguousarray(xp), k, strides, dilations, out)
    kaxes = tuple(range(2 + nd, 2 + 2 * nd))
    y = win.max(axis=kaxes)
    if outputs < 2:
        return y
    n, c = x.shape[:2]
    flat = win.reshape(*win.shape[:2 + nd], -1)
    arg = flat.argmax(axis=-1)  # first maximum, as the reference does
    koff = np.unravel_index(arg, k)
    coords = []
    for i in range(nd):
        o = np.arange(out[i]).reshape((1, 1) + tuple(out[i] if j == i else 1 for j in range(nd)))
        coords.append(o * strides[i] - begin[i] + koff[i] * dilations[i])
    sp = x.shape[2:]
    nc = (np.arange(n).reshape(-1, 1, *([1] * nd)) * c + np.arange(c).reshape(1, -1,
                                                                            *([1] * nd)))
    if storage_order == 0:
        index = nc
        for i in range(nd):
            index = index * sp[i] + coords[i]
    else:  # column-major spatial dims
        spatial = np.zeros_like(coords[0])
        for i in reversed(range(nd)):
            spatial = spatial * sp[i] + coords[i]
        index = nc * int(np.prod(sp)) + spatial
    return y, index.astype(np.int64)


def _pool_plan(avg: bool):
    """MaxPool's (avg False) and AveragePool's plan hook (registry: ``plan``): a 2-D float32
    pool as native.max_pool2d / avg_pool2d run it (a whole-map average as
    GlobalAveragePool); None for more outputs (MaxPool's Indices) or other ranks."""
    def plan_hook(args, attrs):
        x, get = args[0], attrs.get
        if x.__class__ is not np.ndarray or x.ndim != 4 or x.dtype != np.float32 or \
                not (get("_config") or DEFAULT).native or get("_outputs", 1) > 1:
            return None
        auto_pad = get("auto_pad", "NOTSET")
        k, strides, dilations, begin, end, extra, out = pool_geometry(
            x, get("kernel_shape"), get("strides"), get("dilations"), get("pads"), auto_pad,
            get("ceil_mode", 0))
        if min(out) <= 0:
            return None
        bounds = [(0, 0), (0, 0)]
        if avg:
            if _whole_map(x, k, begin, end, extra, out):
                return _global_average_pool_plan(args, attrs)
            bounds = _avg_bounds(x, begin, end, get("count_include_pad", 0), auto_pad)
        return plan.PlanOp(plan.POOL, (0,), (*x.shape, *out, *k, *strides, *begin, *dilations,
                                             int(avg), *bounds[0], *bounds[1]))
    return plan_hook


def _whole_map(x, k, begin, end, extra, out) -> bool:
    """Whether an average pool is one window over the whole map (ResNet-50's 7x7 one)."""
    return out == [1] * (x.ndim - 2) and k == list(x.shape[2:]) and not any(begin + end + extra)


def _avg_bounds(x, begin, end, count_include_pad, auto_pad) -> list:
    """The (lo, hi) input coordinates an average pool's divisor counts per spatial dim: the
    cells inside the input, or inside it and its explicit pads (count_include_pad)."""
    include = count_include_pad and auto_pad in ("NOTSET", "", None)
    return [(-begin[i], x.shape[2 + i] + end[i]) if include else (0, x.shape[2 + i])
            for i in range(x.ndim - 2)]


@kernel("MaxPool", (1,), plan=_pool_plan(False))
def max_pool1(x, *, auto_pad="NOTSET", kernel_shape, pads=None, strides=None, _config=None):
    return _maxpool(x, auto_pad, 0, None, kernel_shape, pads, 0, strides, 1, _config)


@kernel("MaxPool", (8,), plan=_pool_plan(False))
def max_pool8(x, *, auto_pad="NOTSET", kernel_shape, pads=None, storage_order=0, strides=None,
              _outputs=1, _config=None):
    return _maxpool(x, auto_pad, 0, None, kernel_shape, pads, storage_order, strides, _outputs,
                    _config)


@kernel("MaxPool", (10, 11, 12, 22), plan=_pool_plan(False))
def max_pool(x, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape, pads=None,
             storage_order=0, strides=None, _outputs=1, _config=None):
    return _maxpool(x, auto_pad, ceil_mode, dilations, kernel_shape, pads, storage_order,
                    strides, _outputs, _config)


def _avgpool(x, auto_pad, ceil_mode, count_include_pad, dilations, kernel_shape, pads,
             strides, config=None):
    nd = x.ndim - 2
    k, strides, dilations, begin, end, extra, out = pool_geometry(
        x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    include = count_include_pad and auto_pad in ("NOTSET", "", None)
    if _whole_map(x, k, begin, end, extra, out):  # the global mean
        return global_average_pool(x, _config=config)
    if nd == 2 and min(out) > 0 and (config or DEFAULT).native:
        bounds = _avg_bounds(x, begin, end, count_include_pad, auto_pad)
        y = native.avg_pool2d(x, k, strides, begin, dilations, out, bounds[0], bounds[1])
        if y is not None:
            return y
    width = [(0, 0), (0, 0)] + [(b, e + x_) for b, e, x_ in zip(begin, end, extra)]
    xp = np.pad(x, width)
    kaxes = tuple(range(2 + nd, 2 + 2 * nd))
    total = windows(np.ascontiguousarray(xp), k, strides, dilations, out).sum(axis=kaxes)
    # divisor: the window's cells inside the input (and the explicit pads when
    # count_include_pad), never the extra room of a ceil-mode window
    ones = np.ones((1, 1) + x.shape[2:], dtype=x.dtype)
    if include:
        mask = np.pad(np.pad(ones, [(0, 0), (0, 0)] + list(zip(begin, end)), constant_values=1),
                      [(0, 0), (0, 0)] + [(0, e) for e in extra])
    else:
        mask = np.pad(ones, width)
    count = windows(np.ascontiguousarray(mask), k, strides, dilations, out).sum(axis=kaxes)
    return (total / count).astype(x.dtype)


@kernel("AveragePool", (1,), plan=_pool_plan(True))
def average_pool1(x, *, auto_pad="NOTSET", kernel_shape, pads=None, strides=None, _config=None):
    return _avgpool(x, auto_pad, 0, 0, None, kernel_shape, pads, strides, _config)


@kernel("AveragePool", (7,), plan=_pool_plan(True))
def average_pool7(x, *, auto_pad="NOTSET", count_include_pad=0, kernel_shape, pads=None,
                  strides=None, _config=None):
    return _avgpool(x, auto_pad, 0, count_include_pad, None, kernel_shape, pads, strides,
                    _config)


@kernel("AveragePool", (10, 11), plan=_pool_plan(True))
def average_pool10(x, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, kernel_shape,
                   pads=None, strides=None, _config=None):
    return _avgpool(x, auto_pad, ceil_mode, count_include_pad, None, kernel_shape, pads,
                    strides, _config)


@kernel("AveragePool", (19, 22), plan=_pool_plan(True))
def average_pool(x, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None,
                 kernel_shape, pads=None, strides=None, _config=None):
    return _avgpool(x, auto_pad, ceil_mode, count_include_pad, dilations, kernel_shape, pads,
                    strides, config=_config)


def _global_average_pool_plan(args, attrs):
    """GlobalAveragePool as a plan's op (registry: ``plan``): native.row_means' rows."""
    x = args[0]
    if not (attrs.get("_config") or DEFAULT).native or x.__class__ is not np.ndarray or \
            x.dtype != np.float32 or x.ndim < 3 or math.prod(x.shape[2:]) == 0:
        return None
    return plan.PlanOp(plan.MEANS, (0,), (x.shape[0] * x.shape[1], math.prod(x.shape[2:])))


@kernel("GlobalAveragePool", (1, 22), plan=_global_average_pool_plan)
def global_average_pool(x, *, _config=None):
    """The mean of each channel's pixels. float32: each of the (N * C, pixels) rows summed in
    C (native.row_means), or one matrix-vector product with a vector of 1 / pixels (BLAS)
    without the C kernels; both much faster than np.mean."""
    pixels = math.prod(x.shape[2:])
    if x.dtype == np.float32 and x.ndim >= 3 and pixels > 0:
        y = native.row_means(x) if (_config or DEFAULT).native else None
        if y is not None:
            return y
        weights = np.full(pixels, 1 / pixels, np.float32)
        y = np.ascontiguousarray(x).reshape(-1, pixels) @ weights
        return y.reshape(*x.shape[:2], *[1] * (x.ndim - 2))
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype, copy=False)

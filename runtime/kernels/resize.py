"""Resize, every mode (nearest / linear / cubic), coordinate transformation, nearest rounding,
antialias, exclude_outside, tf_crop_and_resize extrapolation, axes and keep_aspect_ratio_policy.

Interpolation is separable, so each resized axis is handled on its own: for every output index
the source coordinate ``x`` is computed, split as ``x = f + r`` with ``f = ceil(x) - 1`` and
``r`` in (0, 1], and the output is a weighted sum of the taps ``f + i`` (indices clamped to the
edge). For linear (support 1) and cubic (support 2) the taps are ``i = i0 .. 1 - i0`` with
``i0 = floor(-support / s) + 1`` and weights ``K(s * (i - r))``, ``s = min(scale, 1)`` with
antialias and 1 without (then i0 = 0 for linear, -1 for cubic, the usual 2 and 4 taps).
The weights and indices of one axis form an (out, taps) table applied with one gather and one
weighted sum. This follows the spec and the separable formulation of onnx's reference
implementation (onnx/reference/ops/op_resize.py).
"""

from __future__ import annotations

import numpy as np

from optc.errors import OptcError
from optc.runtime.registry import kernel


def _source_coords(mode, out_len, in_len, scale, roi):
    y = np.arange(out_len, dtype=np.float64)
    out_f = scale * in_len
    extrapolated = None
    if mode == "align_corners":
        x = np.zeros(out_len) if out_f == 1 else y * (in_len - 1) / (out_f - 1)
    elif mode == "asymmetric":
        x = y / scale
    elif mode == "tf_crop_and_resize":
        if roi is None:
            raise OptcError("Resize tf_crop_and_resize needs roi")
        start, end = roi
        if out_f == 1:
            x = np.full(out_len, (end - start) * (in_len - 1) / 2)
        else:
            x = y * (end - start) * (in_len - 1) / (out_f - 1)
        x = x + start * (in_len - 1)
        extrapolated = (x < 0) | (x > in_len - 1)
    elif mode == "pytorch_half_pixel":
        x = np.full(out_len, -0.5) if out_f == 1 else (y + 0.5) / scale - 0.5
    elif mode == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif mode == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_len / out_f)
        x = offset + (y + 0.5) / scale - 0.5
    else:
        raise OptcError(f"Resize coordinate_transformation_mode '{mode}' is not valid")
    return x, extrapolated


def _nearest_table(x, nearest_mode):
    f = np.floor(x)
    frac = x - f
    if nearest_mode == "round_prefer_floor":
        idx = np.where(frac <= 0.5, f, f + 1)
    elif nearest_mode == "round_prefer_ceil":
        idx = np.where(frac < 0.5, f, f + 1)
    elif nearest_mode == "floor":
        idx = f
    elif nearest_mode == "ceil":
        idx = np.ceil(x)
    else:
        raise OptcError(f"Resize nearest_mode '{nearest_mode}' is not valid")
    return idx[:, None].astype(np.int64), np.ones((len(x), 1))


def _cubic(a):
    def k(t):
        t = np.abs(t)
        return np.where(t <= 1, ((a + 2) * t - (a + 3)) * t * t + 1,
                        np.where(t < 2, ((a * t - 5 * a) * t + 8 * a) * t - 4 * a, 0.0))
    return k


def _linear(t):
    return np.clip(1 - np.abs(t), 0, None)


def _filter_table(x, kernel_fn, support, scale, antialias, in_len, exclude_outside):
    s = min(scale, 1.0) if antialias else 1.0
    f = np.ceil(x) - 1
    r = x - f
    i0 = int(np.floor(-support / s)) + 1
    taps = np.arange(i0, 2 - i0)
    idx = (f[:, None] + taps[None, :]).astype(np.int64)
    w = kernel_fn(s * (taps[None, :] - r[:, None]))
    if antialias:
        w = w / w.sum(axis=1, keepdims=True)
    if exclude_outside:
        w = np.where((idx < 0) | (idx >= in_len), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    return idx, w


def axis_table(in_len, out_len, scale, roi, *, mode, coord_mode, nearest_mode, cubic_a,
               exclude_outside, antialias):
    """(idx (out, taps) clamped source indices, w (out, taps) weights, extrapolated mask or
    None) for resizing one axis of length ``in_len`` to ``out_len``."""
    x, extrapolated = _source_coords(coord_mode, out_len, in_len, scale, roi)
    if mode == "nearest":
        idx, w = _nearest_table(x, nearest_mode)
    elif mode == "linear":
        idx, w = _filter_table(x, _linear, 1, scale, antialias, in_len, exclude_outside)
    elif mode == "cubic":
        idx, w = _filter_table(x, _cubic(cubic_a), 2, scale, antialias, in_len,
                               exclude_outside)
    else:
        raise OptcError(f"Resize mode '{mode}' is not valid")
    if extrapolated is not None and not extrapolated.any():
        extrapolated = None
    return np.clip(idx, 0, in_len - 1), w, extrapolated


def resize_plan(shape, roi, scales, sizes, *, axes=None, antialias=0,
                coordinate_transformation_mode="half_pixel", cubic_coeff_a=-0.75,
                exclude_outside=0, extrapolation_value=0.0, keep_aspect_ratio_policy="stretch",
                mode="nearest", nearest_mode="round_prefer_floor"):
    """[(axis, idx, w, extrapolated)] for each axis that changes, in order, and the
    extrapolation value: a description of a Resize that any array library can apply."""
    r = len(shape)
    axes = list(range(r)) if axes is None else [a + r if a < 0 else a for a in axes]
    roi = None if roi is None or np.asarray(roi).size == 0 else \
        [float(v) for v in np.asarray(roi).reshape(-1)]
    if roi is not None and len(roi) == 2 * r and len(axes) != r:
        roi = [roi[a] for a in axes] + [roi[r + a] for a in axes]
    if sizes is not None and np.asarray(sizes).size:
        sizes = [int(v) for v in np.asarray(sizes).reshape(-1)]
        in_sizes = [shape[a] for a in axes]
        scale_list = [o / i for o, i in zip(sizes, in_sizes)]
        if keep_aspect_ratio_policy != "stretch":
            if keep_aspect_ratio_policy == "not_larger":
                s = min(scale_list)
            elif keep_aspect_ratio_policy == "not_smaller":
                s = max(scale_list)
            else:
                raise OptcError(f"Resize keep_aspect_ratio_policy '{keep_aspect_ratio_policy}' "
                                f"is not valid")
            scale_list = [s] * len(axes)
            sizes = [int(s * i + 0.5) for i in in_sizes]
    elif scales is not None and np.asarray(scales).size:
        scale_list = [float(v) for v in np.asarray(scales).reshape(-1)]
        if len(scale_list) == r and len(axes) != r:
            scale_list = [scale_list[a] for a in axes]
        sizes = [int(np.floor(s * shape[a])) for s, a in zip(scale_list, axes)]
    else:
        raise OptcError("Resize needs scales or sizes")
    if len(scale_list) != len(axes):
        raise OptcError(f"Resize got {len(scale_list)} scales/sizes for {len(axes)} axes")
    steps = []
    n = len(axes)
    for i, a in enumerate(axes):
        axis_roi = None if roi is None else (roi[i], roi[n + i])
        if sizes[i] == shape[a] and scale_list[i] == 1.0 and \
                coordinate_transformation_mode != "tf_crop_and_resize":
            continue
        idx, w, extrapolated = axis_table(
            shape[a], sizes[i], scale_list[i], axis_roi, mode=mode,
            coord_mode=coordinate_transformation_mode, nearest_mode=nearest_mode,
            cubic_a=cubic_coeff_a, exclude_outside=exclude_outside, antialias=antialias)
        steps.append((a, idx, w, extrapolated))
    return steps, extrapolation_value


def _resize(x, roi, scales, sizes, **attrs):
    steps, fill = resize_plan(x.shape, roi, scales, sizes, **attrs)
    result = x.astype(np.float64)
    for axis, idx, w, extrapolated in steps:
        gathered = np.take(result, idx, axis=axis)  # (..., out, taps, ...)
        shape = (1,) * axis + w.shape + (1,) * (result.ndim - axis - 1)
        result = (gathered * w.reshape(shape)).sum(axis=axis + 1)
        if extrapolated is not None:
            mask = extrapolated.reshape((1,) * axis + (len(idx),) +
                                        (1,) * (result.ndim - axis - 1))
            result = np.where(mask, fill, result)
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        return np.clip(np.rint(result), info.min, info.max).astype(x.dtype)
    return result.astype(x.dtype)


@kernel("Resize", (10,))
def resize10(x, scales, *, mode="nearest"):
    # opset 10: asymmetric coordinates, nearest rounds down (as Upsample did)
    return _resize(x, None, scales, None, mode=mode, coordinate_transformation_mode="asymmetric",
                   nearest_mode="floor")


@kernel("Resize", (11, 13))
def resize11(x, roi=None, scales=None, sizes=None, *,
             coordinate_transformation_mode="half_pixel", cubic_coeff_a=-0.75,
             exclude_outside=0, extrapolation_value=0.0, mode="nearest",
             nearest_mode="round_prefer_floor"):
    return _resize(x, roi, scales, sizes,
                   coordinate_transformation_mode=coordinate_transformation_mode,
                   cubic_coeff_a=cubic_coeff_a, exclude_outside=exclude_outside,
                   extrapolation_value=extrapolation_value, mode=mode,
                   nearest_mode=nearest_mode)


@kernel("Resize", (18, 19))
def resize(x, roi=None, scales=None, sizes=None, *, antialias=0, axes=None,
           coordinate_transformation_mode="half_pixel", cubic_coeff_a=-0.75, exclude_outside=0,
           extrapolation_value=0.0, keep_aspect_ratio_policy="stretch", mode="nearest",
           nearest_mode="round_prefer_floor"):
    return _resize(x, roi, scales, sizes, antialias=antialias, axes=axes,
                   coordinate_transformation_mode=coordinate_transformation_mode,
                   cubic_coeff_a=cubic_coeff_a, exclude_outside=exclude_outside,
                   extrapolation_value=extrapolation_value,
                   keep_aspect_ratio_policy=keep_aspect_ratio_policy, mode=mode,
                   nearest_mode=nearest_mode)

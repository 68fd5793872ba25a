"""Bias correction: cancel the mean shift that rounding the weights puts on a layer's output.

With float weights W and dequantized int8 weights W^ = s_w * round(W / s_w), a layer's output
moves on average by
    E[y] - E[y^] = (W - W^) E[x]
per output channel, where E[x] is the per-channel mean of the layer's input over the
calibration data (kept by the observers). Adding that shift to the bias makes the quantized
layer's output mean equal the float one (exactly, for a convolution without padding; near the
borders of a padded one the zeros make it approximate). This is the empirical bias correction
of Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias Correction"
(ICCV 2019), with E[x] measured instead of derived from BatchNorm statistics; it matters most
for per-tensor weight scales and depthwise convs, whose few weights per channel round with a
visible net bias.
"""

from __future__ import annotations

import numpy as np

from optc.ir import Node


def weight_shift(layer: Node, weight: np.ndarray, dequantized: np.ndarray,
                 mean: np.ndarray | None) -> np.ndarray | None:
    """(W - W^) E[x] per output channel, or None when it cannot be computed (input channel
    means unknown or of the wrong size, a MatMul on a rank > 2 input)."""
    if mean is None:
        return None
    error = weight.astype(np.float64) - dequantized.astype(np.float64)
    if layer.op_type == "Conv":
        out_channels, per_group = error.shape[0], error.shape[1]
        group = layer.attr("group", 1)
        if mean.shape != (per_group * group,):
            return None
        summed = error.reshape(out_channels, per_group, -1).sum(axis=2)  # over the kernel
        means = mean.reshape(group, per_group)[np.arange(out_channels) //
                                                (out_channels // group)]
        return (summed * means).sum(axis=1)
    # Gemm (transB: W is [N, K]) / MatMul with a 2-D input: W is [K, N]
    if layer.op_type == "Gemm" and layer.attr("transB", 0):
        error = error.T
    if mean.shape != (error.shape[0],):
        return None
    return mean @ error

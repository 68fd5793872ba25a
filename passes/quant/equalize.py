"""equalize: cross-layer equalization of consecutive layers' weight ranges, before quantize.

For two layers joined through a positively homogeneous activation f (none, Relu, LeakyRelu,
PRelu: f(s x) = s f(x) for s > 0),
    y = L2(f(L1(x)))   with   L1 output channel c  <->  L2 input channel c,
dividing channel c of L1 (its weights and bias) by s_c and multiplying the weights that L2
reads channel c with by s_c leaves y unchanged. Choosing
    s_c = sqrt(r1_c / r2_c),   r1_c = max |W1[c, ...]|,   r2_c = max |W2[..., c, ...]|
makes both ranges sqrt(r1_c r2_c), so channels with tiny weights in one layer no longer waste
the other layer's quantization grid (Nagel et al., "Data-Free Quantization Through Weight
Equalization and Bias Correction", ICCV 2019; depthwise-separable pairs, whose depthwise filters
have very unequal ranges, gain most). Chains are equalized pair by pair, sweeping until no
scale moves by more than ``tolerance`` (a second run then changes nothing).

Pairs: L1 a Conv (any group) or Gemm, L2 a Conv (any group: channel c is read by the output
channels of its group, at its slot in the group) or Gemm, with L1's output (and the
activation's) read by nothing else, and both layers' weights and biases constants they alone
read. Not handled: Clip / ReLU6 between the layers (not homogeneous: it would change the
model), channels through Flatten/Reshape, Concat or residual Add (the scale would have to reach
every reader).
Lossless up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from optc.ir import Graph, Model, Node
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes._common import is_standard
from optc.passes.channels import owned_weight_and_bias, sole_reader

_HOMOGENEOUS = ("Relu", "LeakyRelu", "PRelu")


def _out_axis(layer: Node) -> int:
    """Axis of the output channels in ``layer``'s weight."""
    if layer.op_type == "Gemm":
        return 0 if layer.attr("transB", 0) else 1
    return 0


def _in_view(layer: Node, w: np.ndarray) -> np.ndarray:
    """``w`` arranged as (input channel, everything that channel multiplies)."""
    if layer.op_type == "Gemm":
        return w if not layer.attr("transB", 0) else w.T
    group = layer.attr("group", 1)
    out_ch, per_group = w.shape[0], w.shape[1]
    # (group, out per group, in per group, k...) -> (group, in per group, out per group * k)
    v = w.reshape(group, out_ch // group, per_group, -1).transpose(0, 2, 1, 3)
    return v.reshape(group * per_group, -1)


def _scale_inputs(layer: Node, w: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``w`` with the weights reading input channel c multiplied by s[c]."""
    if layer.op_type == "Gemm":
        return w * (s[:, None] if not layer.attr("transB", 0) else s[None, :])
    group = layer.attr("group", 1)
    out_ch, per_group = w.shape[0], w.shape[1]
    sg = s.reshape(group, 1, per_group, *([1] * (w.ndim - 2)))
    return (w.reshape(group, out_ch // group, per_group, *w.shape[2:]) * sg).reshape(w.shape)


@register
@dataclass(frozen=True)
class Equalize(Pass):
    """Cross-layer equalization of weight ranges (before quantize)."""

    name: ClassVar[str] = "equalize"
    tolerance: float = field(default=1e-3, metadata={
        "help": "stop sweeping when no channel scale differs from 1 by more than this"})
    max_sweeps: int = field(default=50, metadata={"help": "at most this many sweeps"})

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        pairs = [p for p in (self._pair(g, n) for n in g.nodes) if p is not None]
        sweeps, modified = 0, False
        while pairs and sweeps < self.max_sweeps:
            moved = False
            for first, second in pairs:
                moved |= self._equalize(g, first, second)
            sweeps += 1
            modified |= moved
            if not moved:
                break
        return PassResult(model, modified, {"pairs": len(pairs), "sweeps": sweeps})

    def _pair(self, g: Graph, first: Node) -> tuple[Node, Node] | None:
        if not is_standard(first) or first.op_type not in ("Conv", "Gemm"):
            return None
        if first.op_type == "Gemm" and first.attr("transA", 0):
            return None
        if owned_weight_and_bias(g, first) is None:
            return None
        mid = first.outputs[0]
        act = sole_reader(g, mid)
        if act is not None and is_standard(act) and act.op_type in _HOMOGENEOUS and \
                act.inputs[0] is mid:
            mid = act.outputs[0]  # PRelu's slopes, even per channel, commute with s > 0
        nxt = sole_reader(g, mid)
        if nxt is None or not is_standard(nxt) or nxt.op_type not in ("Conv", "Gemm") or \
                nxt.inputs[0] is not mid:
            return None
        if nxt.op_type == "Gemm" and nxt.attr("transA", 0):
            return None
        if owned_weight_and_bias(g, nxt) is None:
            return None
        w1, w2 = first.inputs[1].const_value, nxt.inputs[1].const_value
        channels = w1.shape[_out_axis(first)]
        if channels != _in_view(nxt, w2).shape[0]:
            return None
        b1 = first.inputs[2] if len(first.inputs) > 2 else None
        if b1 is not None and b1.const_value.size not in (1, channels):
            return None  # a full (M, N) Gemm bias
        return first, nxt

    def _equalize(self, g: Graph, first: Node, second: Node) -> bool:
        w1v, b1v = owned_weight_and_bias(g, first)
        w2v = second.inputs[1]
        w1, w2 = w1v.const_value.astype(np.float64), w2v.const_value.astype(np.float64)
        axis = _out_axis(first)
        r1 = np.abs(np.moveaxis(w1, axis, 0)).reshape(w1.shape[axis], -1).max(axis=1)
        r2 = np.abs(_in_view(second, w2)).max(axis=1)
        s = np.ones_like(r1)
        ok = (r1 > 0) & (r2 > 0)
        s[ok] = np.sqrt(r1[ok] / r2[ok])
        if np.all(np.abs(s - 1) <= self.tolerance):
            return False
        shape = [1] * w1.ndim
        shape[axis] = -1
        w1v.set_const((w1 / s.reshape(shape)).astype(w1v.const_value.dtype))
        if b1v is not None:
            b1 = b1v.const_value
            if b1.size == s.shape[0]:
                b1v.set_const((b1.reshape(-1) / s).reshape(b1.shape).astype(b1.dtype))
            else:  # a Gemm bias broadcast from one value becomes one value per channel
                b1v.set_const((np.full(s.shape[0], b1.reshape(-1)[0]) / s).astype(b1.dtype))
        w2v.set_const(_scale_inputs(second, w2, s).astype(w2v.const_value.dtype))
        return True

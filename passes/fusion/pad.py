"""fuse-pad: a zero constant Pad folded into the Conv or AveragePool that reads it.

When it fires: Pad in constant mode with value 0 (or no value), constant non-negative pads that
touch only the spatial axes (not N or C), read only by a Conv or by an AveragePool that counts
padding (count_include_pad=1, or no pads of its own so that it can be switched on), with
auto_pad NOTSET and, for AveragePool, ceil_mode 0. The spatial pads are added to the layer's.

The math: Conv and AveragePool pad with zeros, so padding first and then convolving is the same
as convolving with larger pads (an average over zeros that are counted).
Not handled: MaxPool (it pads with -inf, not 0), reflect/edge/wrap padding, negative pads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from optc.ir import Model, Node
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes._common import const_input, drop_unused_constants, is_standard
from optc.passes.channels import sole_reader


def pad_amounts(model: Model, pad: Node) -> list[int] | None:
    """The Pad's begin/end amounts over all axes, if it is a zero constant Pad we can read."""
    g = model.graph
    if pad.attr("mode", "constant") != "constant":
        return None
    if model.opset < 11:
        pads = pad.attr("pads") or pad.attr("paddings")
        value = pad.attr("value", 0.0)
    else:
        pads = const_input(g, pad, 1)
        value = const_input(g, pad, 2) if len(pad.inputs) > 2 and pad.inputs[2] is not None \
            else np.zeros(1)
        if pads is None or value is None:
            return None
        if len(pad.inputs) > 3 and pad.inputs[3] is not None:  # axes (opset 18)
            axes = const_input(g, pad, 3)
            rank = len(pad.inputs[0].shape) if pad.inputs[0].shape is not None else None
            if axes is None or rank is None:
                return None
            full = [0] * (2 * rank)
            n = len(axes)
            for i, a in enumerate(int(a) % rank for a in axes.reshape(-1)):
                full[a], full[a + rank] = int(pads[i]), int(pads[i + n])
            pads = full
    if pads is None or np.any(np.asarray(value) != 0):
        return None
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    return pads if all(p >= 0 for p in pads) else None


@register
@dataclass(frozen=True)
class FusePad(Pass):
    """Fold zero constant Pad into the pads of the Conv/AveragePool reading it."""

    name: ClassVar[str] = "fuse-pad"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        fused = 0
        for pad in g.nodes:
            if pad.graph is not g or pad.op_type != "Pad" or not is_standard(pad):
                continue
            layer = sole_reader(g, pad.outputs[0])
            if layer is None or not is_standard(layer) or layer.inputs[0] is not pad.outputs[0]:
                continue
            if layer.op_type not in ("Conv", "AveragePool"):
                continue
            amounts = pad_amounts(model, pad)
            if amounts is None or len(amounts) % 2:
                continue
            rank = len(amounts) // 2
            begin, end = amounts[:rank], amounts[rank:]
            if begin[:2] != [0, 0] or end[:2] != [0, 0]:
                continue
            if layer.attr("auto_pad", "NOTSET") not in ("NOTSET", ""):
                continue
            own = list(layer.attr("pads") or [0] * (2 * (rank - 2)))
            if layer.op_type == "AveragePool":
                if layer.attr("ceil_mode", 0):
                    continue
                if not layer.attr("count_include_pad", 0):
                    if any(own):
                        continue
                    layer.set_attr("count_include_pad", 1)
            nd = rank - 2
            new = [own[i] + begin[2 + i] for i in range(nd)] + \
                  [own[nd + i] + end[2 + i] for i in range(nd)]
            layer.set_attr("pads", new)
            inputs = [v for v in pad.inputs[1:] if v is not None]
            layer.replace_input(0, pad.inputs[0])
            g.remove(pad)
            drop_unused_constants(g, inputs)
            fused += 1
        return PassResult(model, fused > 0, {"fused": fused})

"""fold-preprocess: input normalisation (Sub/Add/Mul/Div by per-channel constants applied to a
graph input) folded into the first Conv.

When it fires: a graph input x read only by a chain of Sub(., c) / Add / Mul / Div(., c) nodes
(each read only by the next) whose constants hold one number per channel, ending in a Conv that
reads the chain's result as its input. The chain is the per-channel affine map
y = a * x + b, and the Conv absorbs it:
    W'[m, c] = W[m, c] a[c],   bias'[m] = bias[m] + sum_{c, k} W[m, c, k] b[c].
Exact only where the Conv does not pad or b is zero: the Conv pads y with zeros, and a zero of
y is x = -b / a, not a zero of x. So pure scaling (Mul/Div) folds into any Conv, a mean
subtraction only into a pad-free one (otherwise the pass leaves the chain alone).
Not handled: c - x or c / x (the input on the right), chains on values that are not graph
inputs (that is fuse-scale / fuse-bias territory).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from optc.ir import Model, Node
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes._common import drop_unused_constants, is_standard
from optc.passes.channels import affine_into_conv_input, per_channel, sole_reader


@register
@dataclass(frozen=True)
class FoldPreprocess(Pass):
    """Fold per-channel Sub/Add/Mul/Div of a graph input into the Conv that reads it."""

    name: ClassVar[str] = "fold-preprocess"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        folded = 0
        for x in list(g.inputs):
            if g.is_initializer(x) or x.shape is None or len(x.shape) < 3:
                continue
            channels = x.shape[1]
            if not isinstance(channels, int):
                continue
            chain: list[Node] = []
            a = np.ones(channels)
            b = np.zeros(channels)
            cur = x
            conv = None
            while True:
                node = sole_reader(g, cur)
                if node is None or not is_standard(node):
                    break
                if node.op_type == "Conv" and node.inputs[0] is cur:
                    conv = node
                    break
                if node.op_type not in ("Sub", "Add", "Mul", "Div") or len(node.inputs) != 2:
                    break
                first, other = node.inputs
                if first is not cur and node.op_type in ("Sub", "Div"):
                    break
                const = other if first is cur else first
                c = per_channel(g, const, channels, len(x.shape))
                if c is None:
                    break
                c = c.astype(np.float64)
                if node.op_type == "Sub":
                    b = b - c
                elif node.op_type == "Add":
                    b = b + c
                elif node.op_type == "Mul":
                    a, b = a * c, b * c
                else:
                    a, b = a / c, b / c
                chain.append(node)
                cur = node.outputs[0]
            if conv is None or not chain:
                continue
            if not affine_into_conv_input(g, conv, a, b):
                continue
            conv.replace_input(0, x)
            consts = [v for n in chain for v in n.inputs if v is not None and v is not x]
            g.remove_nodes(chain)
            drop_unused_constants(g, consts)
            folded += 1
        return PassResult(model, folded > 0, {"folded": folded})

"""eliminate-identity: remove Identity nodes and Dropout nodes in inference mode.

When it fires: any Identity of the main graph; a Dropout (opset >= 7) whose mask output is
unused and whose ``training_mode`` input is absent or a constant false (in inference, Dropout
is the identity). Readers of the output read the input instead.
Not handled: an Identity whose input is a graph input or initializer and whose output is a
graph output (the node is the only way to give that output its own name); Dropout with a used
mask (the mask would have to become a constant of ones); Dropout before opset 7 (``is_test``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from optc.ir import Model, Node
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes._common import bypass, const_input, is_standard


def is_inference_dropout(model: Model, node: Node) -> bool:
    if node.op_type != "Dropout" or model.opset < 7:
        return False
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        mode = const_input(model.graph, node, 2)
        if mode is None or bool(mode):
            return False
    return True


@register
@dataclass(frozen=True)
class EliminateIdentity(Pass):
    """Remove Identity nodes and inference-mode Dropout."""

    name: ClassVar[str] = "eliminate-identity"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        removed = {"Identity": 0, "Dropout": 0}
        for node in g.nodes:
            if not is_standard(node):
                continue
            if node.op_type == "Identity" or is_inference_dropout(model, node):
                if bypass(g, node):
                    removed[node.op_type] += 1
        return PassResult(model, sum(removed.values()) > 0,
                          {k: v for k, v in removed.items() if v})

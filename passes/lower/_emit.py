"""Shared by the lowerings: which convs can be lowered, and building the chain of nodes that
replaces one."""

from __future__ import annotations

import numpy as np

from optc.ir import Graph, Node, Value


class Emitter:
    """Collects new nodes and initializers named after ``base`` (``{base}_{tag}_...``)."""

    def __init__(self, g: Graph, base: str, tag: str):
        self.g, self.prefix = g, f"{base}_{tag}"
        self.nodes: list[Node] = []

    def const(self, name: str, array) -> Value:
        return self.g.add_initializer(self.g.unique_name(f"{self.prefix}_{name}"),
                                      np.asarray(array))

    def op(self, op_type: str, inputs, **attrs) -> Value:
        out = self.g.new_value(f"{self.prefix}_{op_type.lower()}")
        self.nodes.append(Node(op_type, inputs, [out],
                               name=self.g.unique_name(f"{self.prefix}_{op_type}"),
                               attributes=attrs))
        return out


def replace_conv(g: Graph, node: Node, nodes: list[Node], out: Value) -> None:
    """Put ``nodes`` where ``node`` was, ``out`` standing for its output; drop what only the
    old node read."""
    for n in nodes:
        g.insert_before(node, n)
    old_inputs = [v for v in node.inputs if v is not None]
    g.substitute(node.outputs[0], out)
    g.remove(node)
    for v in old_inputs:
        if g.is_initializer(v) and not v.uses() and not g.is_output(v):
            g.remove_initializer(v)


def refusal(node: Node, w: np.ndarray | None, kernel_ok, kernel_reason: str) -> str | None:
    """Why a Conv/FusedConv cannot be lowered (None if it can): the lowerings handle 2-D,
    group-1, stride-1, undilated convs with explicit pads and constant weights and bias;
    ``kernel_ok(kernel_shape)`` says whether the kernel size suits the algorithm."""
    if w is None:
        return "non-constant weight"
    if w.ndim != 4:
        return "not a 2-D conv"
    if not kernel_ok(tuple(w.shape[2:])):
        return kernel_reason
    if node.attr("group", 1) != 1:
        return "grouped"
    if any(s != 1 for s in (node.attr("strides") or [1, 1])):
        return "stride != 1"
    if any(d != 1 for d in (node.attr("dilations") or [1, 1])):
        return "dilation != 1"
    if node.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID", ""):
        return "SAME auto_pad"
    if len(node.inputs) > 2 and node.inputs[2] is not None and \
            node.inputs[2].const_value is None:
        return "non-constant bias"
    return None

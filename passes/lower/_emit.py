"""Shared by the lowerings: building a chain of nodes that replaces one Conv."""

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

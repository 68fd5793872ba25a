"""Which layers quantize may turn int8, and how the chosen layers sit in the graph.

A candidate is a standard Conv / Gemm / MatMul whose weight (input 1) is a float32 constant and
whose input is not, that an earlier quantize did not leave float on purpose (FLOAT_MARK).
``Layers`` answers the questions the probe and the rewrite both ask about a set of chosen
layers: which one makes a tensor (through its Relu/Clip and pass-through ops), which read it,
whether a quantized layer reads it. Layers are identified in plans and reports by ``key``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from optc.ir import Graph, Model, Node, Value
from optc.passes._common import is_standard
from optc.passes.channels import layer_weight, sole_reader
from optc.passes.quant import dynamic

LAYERS = ("Conv", "Gemm", "MatMul")
#: ops that move or select already quantized values: their output keeps the input's scale
PASS_THROUGH = ("MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze")
#: metadata_props key on a layer that quantize left float, with the reason
FLOAT_MARK = "optc.quantize.float"


def key(n: Node) -> str:
    """A layer's name in plans and reports: its node name, else its output's name."""
    return n.name or n.outputs[0].name


def quantizable(model: Model, n: Node) -> bool:
    g = model.graph
    w = layer_weight(g, n, LAYERS)
    if w is None or w.dtype != np.float32 or FLOAT_MARK in n.metadata_props:
        return False
    x = n.inputs[0]
    return x is not None and not g.is_constant(x)


def candidates(model: Model, mode: str) -> list[Node]:
    """The layers ``mode`` may quantize, in graph order."""
    out = [n for n in model.graph.nodes if quantizable(model, n)]
    if mode == "dynamic":
        out = [n for n in out if dynamic.supported(n)]
    return out


def activation_after(g: Graph, layer: Node) -> Node | None:
    """The Relu / Clip that alone reads ``layer``'s output, if any (its output is quantized in
    the layer's place)."""
    reader = sole_reader(g, layer.outputs[0])
    if reader is not None and is_standard(reader) and reader.op_type in ("Relu", "Clip"):
        return reader
    return None


class Layers:
    """A set of chosen layers of graph ``g`` and the graph relations between them."""

    def __init__(self, g: Graph, layers: Iterable[Node]):
        self.g = g
        self.nodes = set(layers)

    def __contains__(self, n: Node) -> bool:
        return n in self.nodes

    def source(self, x: Value) -> tuple[Node | None, Value]:
        """(the chosen layer that makes ``x`` through its activation and pass-through ops, or
        None; the value those pass-through ops start from)."""
        root = x
        p = x.producer()
        while p is not None and p.op_type in PASS_THROUGH and is_standard(p):
            root = p.inputs[0]
            p = root.producer()
        if p is not None and p.op_type in ("Relu", "Clip") and is_standard(p):
            inner = p.inputs[0].producer()
            if inner is not None and activation_after(self.g, inner) is p:
                p = inner
        return (p if p is not None and p in self.nodes else None), root

    def readers(self, y: Value) -> list[Node | None]:
        """The chosen layers reading ``y`` (through pass-through ops); None for each other
        reader and for a graph output."""
        out: list[Node | None] = [None] if self.g.is_output(y) else []
        for node, _ in y.uses():
            if node in self.nodes:
                out.append(node)
            elif node.op_type in PASS_THROUGH and is_standard(node):
                out += self.readers(node.outputs[0])
            else:
                out.append(None)
        return out

    def feeds_quantized(self, v: Value) -> bool:
        """Does a chosen layer read ``v`` (through pass-through ops)?"""
        for node, _ in v.uses():
            if node in self.nodes:
                return True
            if node.op_type in PASS_THROUGH and is_standard(node) and \
                    self.feeds_quantized(node.outputs[0]):
                return True
        return False

    def int8_output(self, layer: Node) -> bool:
        """Is ``layer``'s output (after its activation) quantized? Always for a Conv
        (onnxruntime needs the Q after it to run it in int8); a Gemm/MatMul runs in int8 with
        a float output, so only when a chosen layer reads it."""
        act = activation_after(self.g, layer)
        return layer.op_type == "Conv" or self.feeds_quantized((act or layer).outputs[0])

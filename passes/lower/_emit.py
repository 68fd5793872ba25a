"""Shared by the lowerings: which convs can be lowered, and building the chain of nodes that
replaces one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from optc.ir import Graph, Model, Node, Value, clone
from optc.ir.shapes import infer_shapes
from optc.pass_base import PassResult
from optc.passes._common import const_input
from optc.runtime.registry import OPTC_DOMAIN


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


def count(stats: dict[str, int], key: str) -> None:
    stats[key] = stats.get(key, 0) + 1


def finish(model: Model, stats: dict[str, int], lowered: str, portable: bool) -> PassResult:
    """A lowering pass's result: modified when some conv was lowered (a ``stats`` key starting
    with ``lowered``), the ai.optc domain declared when the lowering used its ops."""
    modified = any(k.startswith(lowered) for k in stats)
    if modified and not portable:
        model.use_domain(OPTC_DOMAIN)
    return PassResult(model, modified, stats)


def input_shapes(model: Model) -> dict[str, list | None]:
    """Inferred shapes by value name, from a copy (the model's own types stay as they are, so
    a run that lowers nothing changes nothing)."""
    copy = clone(model)
    infer_shapes(copy)
    return {name: v.shape for name, v in copy.graph.values().items()}


@dataclass
class Candidate:
    node: Node
    weight: np.ndarray
    pads: list[int]  # top, left, bottom, right
    shape: list | None  # the input's inferred shape
    static: bool  # spatial sizes known


def candidates(model: Model, refuse: Callable[[Node, np.ndarray | None], str | None],
               portable: bool, stats: dict[str, int]) -> Iterator[Candidate]:
    """The Conv / ai.optc FusedConv nodes a lowering may rewrite (a snapshot: rewriting one
    is safe); the others are counted in ``stats`` as "kept: <reason>"."""
    g = model.graph
    shapes = input_shapes(model)
    for node in list(g.nodes):
        fused = node.domain == OPTC_DOMAIN and node.op_type == "FusedConv"
        if not (node.op_type == "Conv" and node.domain in ("", "ai.onnx") or fused):
            continue
        w = const_input(g, node, 1)
        reason = refuse(node, w)
        shape = shapes.get(node.inputs[0].name)
        static = shape is not None and len(shape) == 4 and \
            all(isinstance(d, int) for d in shape[2:])
        if reason is None and portable and fused:
            reason = "FusedConv (portable lowers standard Conv only)"
        if reason is None and portable and not static:
            reason = "dynamic spatial size (portable)"
        if reason is not None:
            count(stats, f"kept: {reason}")
            continue
        pads = [int(p) for p in (node.attr("pads") or [0, 0, 0, 0])]
        if node.attr("auto_pad", "NOTSET") == "VALID":
            pads = [0, 0, 0, 0]
        yield Candidate(node, w, pads, shape, static)

"""eliminate-noop: remove Reshape, Transpose, Cast and Flatten nodes that do nothing.

When it fires (shapes and dtypes from onnx shape inference):
* Reshape whose constant target shape (0 = copy the input dim unless allowzero, -1 = inferred)
  equals the input's static shape;
* Transpose whose perm is the identity (no perm means reversed axes: a no-op only for rank <= 1);
* Cast to the dtype the input already has;
* Flatten of a rank-2 input with axis 1 (or -1).
The node is removed and readers read its input. Not handled: shapes that are only known
symbolically (a Reshape to [N, -1] of an [N, C] input with symbolic N is kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from optc.ir import Model, Node, infer_shapes
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes._common import bypass, const_input, is_standard

_OPS = ("Reshape", "Transpose", "Cast", "Flatten")


def reshape_target(in_shape: tuple[int, ...], target: np.ndarray, allowzero: int) -> tuple | None:
    """The output shape of Reshape(in_shape -> target) per the spec, or None if invalid."""
    out = []
    for i, d in enumerate(int(x) for x in target.reshape(-1)):
        if d == 0 and not allowzero:
            if i >= len(in_shape):
                return None
            d = in_shape[i]
        out.append(d)
    if out.count(-1) > 1:
        return None
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        total = int(np.prod(in_shape))
        if known == 0 or total % known:
            return None
        out[out.index(-1)] = total // known
    return tuple(out)


def is_noop(model: Model, node: Node) -> bool:
    x = node.inputs[0] if node.inputs else None
    if x is None:
        return False
    if node.op_type == "Transpose":
        perm = node.attr("perm")
        if perm is None:
            rank = len(x.shape) if x.shape is not None else None
            return rank is not None and rank <= 1
        return list(perm) == list(range(len(perm)))
    if node.op_type == "Cast":
        return x.dtype is not None and node.attr("to") == x.dtype
    shape = x.static_shape()
    if shape is None:
        return False
    if node.op_type == "Reshape":
        target = const_input(model.graph, node, 1)
        if target is None:
            return False
        return reshape_target(shape, target, node.attr("allowzero", 0)) == shape
    if node.op_type == "Flatten":
        return len(shape) == 2 and node.attr("axis", 1) in (1, -1)
    return False


@register
@dataclass(frozen=True)
class EliminateNoop(Pass):
    """Remove Reshape/Transpose/Cast/Flatten nodes that leave their input unchanged."""

    name: ClassVar[str] = "eliminate-noop"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        if not any(n.op_type in _OPS for n in g.nodes):
            return PassResult(model, False, {})
        infer_shapes(model)
        removed: dict[str, int] = {}
        for node in g.nodes:
            if node.op_type in _OPS and is_standard(node) and is_noop(model, node):
                if bypass(g, node):
                    removed[node.op_type] = removed.get(node.op_type, 0) + 1
        return PassResult(model, bool(removed), removed)

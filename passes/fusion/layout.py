"""fuse-layout: the Transpose and Reshape clean-ups that fusion exposes.

* Transpose(Transpose(x, p), q), the inner one read only by the outer: one Transpose with the
  composed permutation r[i] = p[q[i]], or nothing at all when r is the identity.
* A 2-D Transpose read only by a Gemm as its A or B input: the Gemm's transA / transB flips
  and it reads x directly.
* Reshape(Reshape(x, s1), s2) or Reshape(Flatten(x), s2), the inner one read only by the
  outer, s2 constant with no 0 entry (a 0 copies a dim of the inner result) unless allowzero:
  the outer reshapes x directly (the element order of a reshape never changes).
Transposes of constants are left to fold-constants. Not handled: Transpose into MatMul (MatMul
has no transpose attribute; rewriting it to Gemm needs 2-D operands and is fuse-bias's job).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from optc.ir import Model, Node
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes._common import const_input, drop_unused_constants, is_standard, sweep
from optc.passes.channels import sole_reader

def _perm(node: Node) -> list[int] | None:
    perm = node.attr("perm")
    if perm is not None:
        return list(perm)
    rank = len(node.inputs[0].shape) if node.inputs[0].shape is not None else None
    return None if rank is None else list(reversed(range(rank)))


@register
@dataclass(frozen=True)
class FuseLayout(Pass):
    """Merge consecutive Transposes / Reshapes; fold 2-D Transposes into Gemm's transA/transB."""

    name: ClassVar[str] = "fuse-layout"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        stats = {"merged": 0, "cancelled": 0, "into_gemm": 0, "reshapes_merged": 0}
        sweep(g, lambda t: self._visit(model, t), stats)
        return PassResult(model, any(stats.values()), {k: v for k, v in stats.items() if v})

    def _visit(self, model: Model, t: Node) -> str | None:
        g = model.graph
        if not is_standard(t) or t.op_type not in ("Transpose", "Reshape", "Flatten"):
            return None
        reader = sole_reader(g, t.outputs[0])
        if reader is None or not is_standard(reader):
            return None
        if t.op_type != "Transpose":
            return self._reshapes(model, t, reader) if reader.op_type == "Reshape" else None
        if reader.op_type == "Transpose":
            return self._merge(model, t, reader)
        if reader.op_type == "Gemm":
            return self._into_gemm(model, t, reader)
        return None

    def _merge(self, model: Model, inner: Node, outer: Node) -> str | None:
        g = model.graph
        p, q = _perm(inner), _perm(outer)
        if p is None or q is None or len(p) != len(q):
            return None
        composed = [p[i] for i in q]
        x = inner.inputs[0]
        if composed == list(range(len(composed))):
            if not g.can_substitute(outer.outputs[0], x):
                return None
            g.substitute(outer.outputs[0], x)
            g.remove(outer)
            g.remove(inner)
            return "cancelled"
        outer.replace_input(0, x)
        outer.set_attr("perm", composed)
        g.remove(inner)
        return "merged"

    def _reshapes(self, model: Model, inner: Node, outer: Node) -> str | None:
        g = model.graph
        if outer.inputs[0] is not inner.outputs[0] or len(outer.inputs) < 2:
            return None
        shape = const_input(g, outer, 1)
        if shape is None or (0 in shape.reshape(-1).tolist() and not outer.attr("allowzero", 0)):
            return None
        inputs = [v for v in inner.inputs[1:] if v is not None]
        outer.replace_input(0, inner.inputs[0])
        g.remove(inner)
        drop_unused_constants(g, inputs)
        return "reshapes_merged"

    def _into_gemm(self, model: Model, t: Node, gemm: Node) -> str | None:
        if _perm(t) != [1, 0]:
            return None
        index = next(i for i, v in enumerate(gemm.inputs) if v is t.outputs[0])
        if index not in (0, 1):
            return None
        flag = "transA" if index == 0 else "transB"
        gemm.set_attr(flag, 0 if gemm.attr(flag, 0) else 1)
        gemm.replace_input(index, t.inputs[0])
        model.graph.remove(t)
        return "into_gemm"


"""dce: dead-code elimination.

When it fires: nodes of the main graph none of whose outputs reaches a graph output (directly
or through other nodes, including nodes inside subgraphs that capture a value), and
initializers nothing reads that are not graph inputs or outputs. ONNX ops have no side
effects, so such nodes cannot change the model's results.
Not handled: unused graph inputs (they are part of the model's interface) and dead code
inside subgraphs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from optc.ir import Model, Node
from optc.pass_base import Pass, PassContext, PassResult, register


@register
@dataclass(frozen=True)
class DCE(Pass):
    """Remove nodes and initializers that no graph output depends on."""

    name: ClassVar[str] = "dce"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        live: set[Node] = set()
        stack = [v.producer() for v in g.outputs]
        while stack:
            n = stack.pop()
            if n is None or n in live or n.graph is not g:
                continue
            live.add(n)
            stack.extend(v.producer() for v in n.inputs if v is not None)
            stack.extend(v.producer() for v in n.captured_values())
        dead = [n for n in g.nodes if n not in live]
        if dead:
            g.remove_nodes(dead)
        keep = set(g.inputs) | set(g.outputs)
        unused = [v for v in g.initializers.values() if not v.uses() and v not in keep]
        for v in unused:
            g.remove_initializer(v)
        return PassResult(model, bool(dead or unused),
                          {"nodes_removed": len(dead), "initializers_removed": len(unused)})

"""cse: common-subexpression elimination.

When it fires: two nodes of the main graph with the same domain, op type and attributes that
read the very same input values (run dedup-initializers first so that equal constants are the
same value). The later node's outputs are replaced by the earlier node's and the later node is
removed. Nodes are visited in topological order and keyed by their inputs as they are at that
moment, so when a merge makes two consumers identical the second is caught in the same sweep.
Not handled: random ops (two draws differ), ops of non-standard domains (optc cannot know
whether a custom op is deterministic), nodes with subgraphs, a duplicate whose output is a
graph output while the original's output is one too (both names must stay).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from optc.ir import Model, Node
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes._common import NONDETERMINISTIC, is_standard


def _key(node: Node) -> tuple:
    attrs = tuple(sorted((name, a.SerializeToString(deterministic=True))
                         for name, a in node.attributes.items()))
    return (node.domain, node.op_type, node.overload, len(node.outputs),
            tuple(id(v) if v is not None else None for v in node.inputs), attrs)


@register
@dataclass(frozen=True)
class CSE(Pass):
    """Merge nodes that compute the same thing from the same inputs."""

    name: ClassVar[str] = "cse"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        merged = 0
        seen: dict[tuple, Node] = {}
        # nodes are in topological order, so a node's inputs are final when it is reached
        for node in g.nodes:
            if (not is_standard(node) or node.subgraphs or node.op_type in NONDETERMINISTIC
                    or not node.outputs):
                continue
            key = _key(node)
            original = seen.get(key)
            if original is None:
                seen[key] = node
                continue
            pairs = [(dup, orig) for dup, orig in zip(node.outputs, original.outputs)]
            if any((dup is None) != (orig is None) for dup, orig in pairs) or \
                    not all(dup is None or g.can_substitute(dup, orig) for dup, orig in pairs):
                continue
            for dup, orig in pairs:
                if dup is not None:
                    g.substitute(dup, orig)
            g.remove(node)
            merged += 1
        return PassResult(model, merged > 0, {"merged": merged})

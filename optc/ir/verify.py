"""verify(graph): the IR's structural invariants. Tests call it after every pass."""

from __future__ import annotations

from collections import Counter

from optc.errors import OptcError
from optc.ir.core import Graph, Model, Node, Value


class VerificationError(OptcError):
    """The IR broke one of its invariants (a bug in whatever edited it last)."""


def verify(graph: Graph | Model) -> None:
    """Check every invariant of ``graph`` (and its subgraphs); raise VerificationError.

    * every value read is defined exactly once before it is read: a graph input, an
      initializer, an earlier node's output, or a value of an enclosing scope;
    * value names are unique over the whole model (ONNX forbids shadowing in subgraphs);
    * producer links and use lists match the node inputs and outputs exactly;
    * nodes are in topological order.
    """
    if isinstance(graph, Model):
        graph = graph.graph
    expected_uses: dict[int, Counter] = {}
    names: dict[str, Value] = {}
    _verify_graph(graph, outer=set(), expected_uses=expected_uses, names=names)
    # use lists: every value seen anywhere must list exactly the uses its readers imply
    for v in names.values():
        actual = Counter((id(n), i) for n, i in v._uses)
        if actual != expected_uses.get(id(v), Counter()):
            raise VerificationError(f"use list of '{v.name}' does not match the node inputs")
        for n, i in v._uses:
            if i >= len(n._inputs) or n._inputs[i] is not v:
                raise VerificationError(f"use list of '{v.name}' names input {i} of {n}, "
                                        f"which reads something else")


def _verify_graph(g: Graph, outer: set[Value], expected_uses: dict[int, Counter],
                  names: dict[str, Value]) -> None:
    defined: set[Value] = set()

    def define(v: Value, what: str) -> None:
        other = names.get(v.name)
        if other is not None and other is not v:
            raise VerificationError(f"graph '{g.name}': two values are named '{v.name}'")
        if v in defined:
            raise VerificationError(f"graph '{g.name}': {what} '{v.name}' is defined twice")
        names[v.name] = v
        defined.add(v)

    for v in g.inputs:
        define(v, "input")
    for name, v in g.initializers.items():
        if v.name != name:
            raise VerificationError(f"initializer '{v.name}' is registered as '{name}'")
        if not v.is_const:
            raise VerificationError(f"initializer '{v.name}' has no data")
        if v.producer() is not None:
            raise VerificationError(f"initializer '{v.name}' also has a producer")
        if not g.is_input(v):
            define(v, "initializer")
    for st in g.sparse_initializers:
        for v in g.local_values():
            if v.name == st.values.name:
                define(v, "sparse initializer")
    for n in g.nodes:
        _verify_node(g, n, defined, outer, expected_uses, names)
        for i, v in enumerate(n.outputs):
            if v is None:
                continue
            if v._producer != (n, i):
                raise VerificationError(f"output {i} of {n} ('{v.name}') does not name it as "
                                        f"producer")
            define(v, "value")
    for v in g.outputs:
        if v not in defined and v not in outer:
            raise VerificationError(f"graph '{g.name}' output '{v.name}' is not defined")


def _verify_node(g: Graph, n: Node, defined: set[Value], outer: set[Value],
                 expected_uses: dict[int, Counter], names: dict[str, Value]) -> None:
    if n.graph is not g:
        raise VerificationError(f"{n} does not belong to graph '{g.name}'")
    for i, v in enumerate(n.inputs):
        if v is None:
            continue
        if v not in defined and v not in outer:
            raise VerificationError(f"{n} reads '{v.name}' before it is defined "
                                    f"(or it is not defined in graph '{g.name}')")
        expected_uses.setdefault(id(v), Counter())[(id(n), i)] += 1
    for sub in n.all_subgraphs():
        if sub.parent is not g or sub.owner is not n:
            raise VerificationError(f"subgraph '{sub.name}' of {n} has wrong parent links")
        _verify_graph(sub, defined | outer, expected_uses, names)

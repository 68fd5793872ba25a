"""Analyses over the IR: topological order, a networkx view, and a text printer.

networkx is a derived view for analysis only (dominators, components, coupling groups);
passes edit the IR, never the networkx graph.
"""

from __future__ import annotations

import heapq

import networkx as nx

from optc.errors import OptcError
from optc.ir.core import Graph, Node, Value


def node_dependencies(graph: Graph, node: Node) -> list[Node]:
    """Nodes of ``graph`` that ``node`` reads from, directly or through its subgraphs."""
    deps: list[Node] = []
    values = [v for v in node.inputs if v is not None] + list(node.captured_values())
    for v in values:
        p = v.producer()
        # a value captured from further out, or produced inside a subgraph, is resolved to the
        # node of this graph that (transitively) contains its producer
        while p is not None and p.graph is not graph:
            owner = p.graph.owner if p.graph is not None else None
            p = owner
        if p is not None and p is not node:
            deps.append(p)
    return deps


def topological_sort(graph: Graph) -> None:
    """Reorder ``graph``'s nodes topologically, keeping the current order where it is free.

    Raises OptcError if the graph has a cycle.
    """
    nodes = graph.nodes
    position = {n: i for i, n in enumerate(nodes)}
    users: dict[Node, list[Node]] = {n: [] for n in nodes}
    indegree = {n: 0 for n in nodes}
    for n in nodes:
        for d in set(node_dependencies(graph, n)):
            if d in users:
                users[d].append(n)
                indegree[n] += 1
    ready = [(position[n], n) for n in nodes if indegree[n] == 0]
    heapq.heapify(ready)
    order: list[Node] = []
    while ready:
        _, n = heapq.heappop(ready)
        order.append(n)
        for u in users[n]:
            indegree[u] -= 1
            if indegree[u] == 0:
                heapq.heappush(ready, (position[u], u))
    if len(order) != len(nodes):
        stuck = next(n for n in nodes if indegree[n] > 0)
        raise OptcError(f"graph '{graph.name}' has a cycle through {stuck}")
    if order != list(nodes):
        graph.set_nodes_order(order)


def to_networkx(graph: Graph) -> nx.MultiDiGraph:
    """A MultiDiGraph whose nodes are the IR Nodes and whose edges carry the Value (``value``)
    and the consumer's input index (``index``), producer -> consumer."""
    g = nx.MultiDiGraph()
    for n in graph.nodes:
        g.add_node(n, op_type=n.op_type)
    for n in graph.nodes:
        for i, v in enumerate(n.inputs):
            if v is not None and v.producer() is not None and v.producer().graph is graph:
                g.add_edge(v.producer(), n, value=v, index=i)
    return g


def format_value(v: Value | None) -> str:
    if v is None:
        return "\"\""
    shape = v.shape
    if shape is None:
        return f"%{v.name}"
    return f"%{v.name}[{'x'.join('?' if d is None else str(d) for d in shape)}]"


def format_graph(graph: Graph, indent: str = "") -> str:
    """A compact, readable text form of the graph (for --print-ir-after)."""
    lines = [f"{indent}graph {graph.name} ("]
    lines += [f"{indent}  input {format_value(v)}" for v in graph.inputs
              if not graph.is_initializer(v)]
    for v in graph.initializers.values():
        lines.append(f"{indent}  init  {format_value(v)}" + ("  (overridable input)"
                                                           if graph.is_input(v) else ""))
    lines.append(f"{indent}) {{")
    for n in graph.nodes:
        attrs = []
        for name in n.attributes:
            if name in n.subgraphs:
                attrs.append(f"{name}=<graph>")
            else:
                val = n.attr(name)
                text = repr(val) if not hasattr(val, "shape") else f"<tensor {list(val.shape)}>"
                attrs.append(f"{name}={text}")
        attr_text = f"[{', '.join(attrs)}]" if attrs else ""
        dom = f"{n.domain}." if n.domain else ""
        outs = ", ".join(format_value(v) for v in n.outputs)
        ins = ", ".join(format_value(v) for v in n.inputs)
        label = f"  # {n.name}" if n.name else ""
        lines.append(f"{indent}  {outs} = {dom}{n.op_type}{attr_text}({ins}){label}")
        for sub in n.all_subgraphs():
            lines.append(format_graph(sub, indent + "    "))
    lines.append(f"{indent}  return {', '.join(format_value(v) for v in graph.outputs)}")
    lines.append(f"{indent}}}")
    return "\n".join(lines)

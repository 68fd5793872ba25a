"""Small helpers shared by passes."""

from __future__ import annotations

import numpy as np
import onnx

from optc.ir import Graph, Node

#: ops whose result differs between runs: never folded or merged
NONDETERMINISTIC = frozenset({
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
    "Bernoulli",
})

STANDARD_DOMAINS = ("", "ai.onnx")


def is_standard(node: Node) -> bool:
    return node.domain in STANDARD_DOMAINS


MAX_SWEEPS = 64


def sweep(graph: Graph, visit, stats: dict[str, int]) -> bool:
    """Call ``visit(node)`` on every node of ``graph`` (in order, skipping nodes removed on the
    way) and repeat until a sweep changes nothing, so a pass reaches its own fixed point in one
    run. ``visit`` returns the stats key of what it did, or None. Returns whether anything
    changed."""
    changed_any = False
    for _ in range(MAX_SWEEPS):
        changed = False
        for node in graph.nodes:
            if node.graph is not graph:
                continue
            kind = visit(node)
            if kind:
                stats[kind] = stats.get(kind, 0) + 1
                changed = True
        changed_any |= changed
        if not changed:
            break
    return changed_any


def const_input(graph: Graph, node: Node, index: int) -> np.ndarray | None:
    """The constant data of ``node``'s input ``index`` (None if absent or not constant)."""
    if index >= len(node.inputs):
        return None
    v = node.inputs[index]
    if v is None or not graph.is_constant(v):
        return None
    return v.const_value


def replace_with_constants(graph: Graph, node: Node,
                           arrays: list[np.ndarray | onnx.TensorProto]) -> None:
    """Replace ``node`` by initializers holding ``arrays`` (one per output). Each initializer
    takes over its output's name. The caller checks that no output is a graph output."""
    new_values = []
    for out, array in zip(node.outputs, arrays):
        if out is None:
            continue
        if not isinstance(array, onnx.TensorProto):
            array = np.asarray(array)
        init = graph.add_initializer(out.name + "_const", array)
        out.replace_all_uses_with(init)
        new_values.append((out, init))
    graph.remove(node)
    for out, init in new_values:
        graph.transfer_name(out, init)


def bypass(graph: Graph, node: Node, output_index: int = 0, input_index: int = 0) -> bool:
    """Remove a node whose output ``output_index`` equals its input ``input_index``: readers of
    the output read the input instead. Returns False (nothing changed) when that is not
    possible: other outputs still used, or the output is a graph output that the input cannot
    stand in for."""
    out = node.outputs[output_index]
    src = node.inputs[input_index]
    if out is None or src is None:
        return False
    for i, other in enumerate(node.outputs):
        if i != output_index and other is not None and (other.uses() or graph.is_output(other)):
            return False
    if not graph.can_substitute(out, src):
        return False
    graph.substitute(out, src)
    inputs = [v for v in node.inputs if v is not None]
    graph.remove(node)
    drop_unused_constants(graph, inputs)
    return True


def drop_unused_constants(graph: Graph, values) -> int:
    """Remove those of ``values`` that are initializers nothing reads any more (not graph
    inputs or outputs): a pass that made them dead removes them itself."""
    removed = 0
    for v in set(values):
        if graph.is_initializer(v) and not v.uses() and not graph.is_input(v) \
                and not graph.is_output(v):
            graph.remove_initializer(v)
            removed += 1
    return removed

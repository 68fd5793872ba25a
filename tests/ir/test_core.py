"""Use-list invariants, safe editing, substitution and verify() on hand-built graphs."""

import pytest

from optc.errors import OptcError
from optc.ir import Graph, Node, Value, VerificationError, topological_sort, verify
from tests.util import load

CHAIN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[1,4] x) => (float[1,4] y) {
  a = Relu(x)
  b = Sigmoid(a)
  c = Add(a, b)
  y = Identity(c)
}
"""


def nodes_by_op(graph):
    return {n.op_type: n for n in graph.nodes}


def test_uses_track_every_reader():
    g = load(CHAIN).graph
    n = nodes_by_op(g)
    a = n["Relu"].outputs[0]
    assert sorted((u.op_type, i) for u, i in a.uses()) == [("Add", 0), ("Sigmoid", 0)]
    assert a.producer() is n["Relu"]
    verify(g)


def test_replace_input_moves_the_use():
    g = load(CHAIN).graph
    n = nodes_by_op(g)
    x = g.inputs[0]
    b = n["Sigmoid"].outputs[0]
    n["Add"].replace_input(1, x)
    assert (n["Add"], 1) in x.uses()
    assert b.uses() == []
    verify(g)


def test_replace_all_uses_with():
    g = load(CHAIN).graph
    n = nodes_by_op(g)
    a, x = n["Relu"].outputs[0], g.inputs[0]
    a.replace_all_uses_with(x)
    assert a.uses() == []
    assert len(x.uses()) == 3
    verify(g)


def test_remove_refuses_a_used_node_and_accepts_it_once_unused():
    g = load(CHAIN).graph
    n = nodes_by_op(g)
    with pytest.raises(OptcError, match="is used by"):
        g.remove(n["Sigmoid"])
    n["Add"].replace_input(1, n["Relu"].outputs[0])
    g.remove(n["Sigmoid"])
    assert "Sigmoid" not in [m.op_type for m in g.nodes]
    # the removed node no longer counts as a reader of its input
    assert all(u.op_type != "Sigmoid" for u, _ in n["Relu"].outputs[0].uses())
    verify(g)


def test_remove_refuses_graph_output_producer():
    g = load(CHAIN).graph
    with pytest.raises(OptcError, match="graph output"):
        g.remove(nodes_by_op(g)["Identity"])


def test_remove_nodes_allows_uses_among_the_removed():
    g = load(CHAIN).graph
    n = nodes_by_op(g)
    n["Identity"].replace_input(0, g.inputs[0])
    g.remove_nodes([n["Relu"], n["Sigmoid"], n["Add"]])
    assert [m.op_type for m in g.nodes] == ["Identity"]
    assert [u.op_type for u, _ in g.inputs[0].uses()] == ["Identity"]
    verify(g)


def test_iterating_while_editing_is_safe():
    g = load(CHAIN).graph
    seen = []
    for node in g.nodes:  # a snapshot: removing and inserting does not disturb the loop
        seen.append(node.op_type)
        if node.op_type == "Relu":
            extra = Node("Neg", [node.outputs[0]], [g.new_value("neg")])
            g.insert_after(node, extra)
    assert seen == ["Relu", "Sigmoid", "Add", "Identity"]
    assert [m.op_type for m in g.nodes] == ["Relu", "Neg", "Sigmoid", "Add", "Identity"]
    verify(g)


def test_substitute_graph_output_takes_over_its_name():
    g = load(CHAIN).graph
    n = nodes_by_op(g)
    y, c = n["Identity"].outputs[0], n["Add"].outputs[0]
    assert g.substitute(y, c)
    g.remove(n["Identity"])
    assert [v.name for v in g.outputs] == ["y"]
    assert g.outputs[0] is c
    verify(g)


def test_substitute_refuses_when_input_cannot_take_the_output_name():
    g = load("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) { y = Identity(x) }
    """).graph
    y = g.nodes[0].outputs[0]
    assert not g.can_substitute(y, g.inputs[0])
    assert g.substitute(y, g.inputs[0]) is False
    assert g.outputs[0] is y
    verify(g)


def test_unique_name_and_rename():
    g = load(CHAIN).graph
    assert g.unique_name("a") != "a"
    fresh = g.unique_name("brand_new")
    assert fresh == "brand_new" and g.unique_name("brand_new") != "brand_new"
    n = nodes_by_op(g)
    with pytest.raises(OptcError, match="taken"):
        g.rename_value(n["Relu"].outputs[0], "b")
    g.rename_value(n["Relu"].outputs[0], "relu_out")
    assert n["Relu"].outputs[0].name == "relu_out"
    verify(g)


def test_verify_catches_a_corrupted_use_list():
    g = load(CHAIN).graph
    a = nodes_by_op(g)["Relu"].outputs[0]
    a._uses.pop()  # simulate a pass that edited the lists behind the IR's back
    with pytest.raises(VerificationError, match="use list"):
        verify(g)


def test_verify_catches_out_of_order_nodes():
    g = load(CHAIN).graph
    nodes = list(g.nodes)
    g.set_nodes_order([nodes[1], nodes[0]] + nodes[2:])
    with pytest.raises(VerificationError, match="before it is defined"):
        verify(g)
    topological_sort(g)
    verify(g)
    assert [n.op_type for n in g.nodes] == ["Relu", "Sigmoid", "Add", "Identity"]


def test_verify_catches_duplicate_names():
    g = load(CHAIN).graph
    n = nodes_by_op(g)
    n["Sigmoid"].outputs[0].name = "a"
    with pytest.raises(VerificationError, match="two values are named 'a'"):
        verify(g)


def test_topological_sort_reports_a_cycle():
    g = Graph("cyclic")
    x = Value("x")
    g.inputs.append(x)
    a, b = Value("a"), Value("b")
    n1 = Node("Add", [x, b], [a])
    n2 = Node("Relu", [a], [b])
    g.append(n1)
    g.append(n2)
    g.outputs.append(b)
    with pytest.raises(OptcError, match="cycle"):
        topological_sort(g)


def test_value_already_produced_cannot_get_a_second_producer():
    v = Value("v")
    Node("Relu", [], [v])
    with pytest.raises(OptcError, match="already has a producer"):
        Node("Relu", [], [v])


def test_set_const_updates_type():
    import numpy as np
    from onnx import TensorProto

    g = Graph()
    v = g.add_initializer("w", np.zeros((2, 3), np.float32))
    assert v.shape == (2, 3) and v.dtype == TensorProto.FLOAT
    v.set_const(np.ones(4, np.int64))
    assert v.shape == (4,) and v.dtype == TensorProto.INT64
    assert v.tensor_proto().name == "w"

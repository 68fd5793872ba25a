"""dce."""

from optc.passes import DCE
from tests.util import check_pass, load, op_types, run_pass


def test_dead_nodes_and_initializers_go():
    m = check_pass(DCE(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) <float[2] unused = {1.0, 2.0}, float[2] dead_w = {3.0, 4.0}> {
      a = Relu(x)
      d1 = Mul(x, dead_w)
      d2 = Sigmoid(d1)
      y = Neg(a)
    }
    """)
    assert op_types(m) == ["Relu", "Neg"]
    assert m.graph.initializers == {}


def test_unused_graph_inputs_and_values_read_by_subgraphs_stay():
    m = load("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x, float[2] unused, bool c) => (float[2] y) {
      a = Relu(x)
      y = If(c) <then_branch = t () => (float[2] o) { o = Neg(a) },
                 else_branch = e () => (float[2] o2) { o2 = Identity(x) }>
    }
    """)
    assert run_pass(DCE(), m) is False
    assert op_types(m) == ["Relu", "If"]
    assert [v.name for v in m.graph.inputs] == ["x", "unused", "c"]


def test_multi_output_node_with_one_used_output_stays():
    check_pass(DCE(), """
    <ir_version: 8, opset_import: ["" : 18]>
    g (float[4] x) => (float[2] y) {
      a, b = Split <num_outputs = 2> (x)
      y = Relu(a)
    }
    """, expect_modified=False)

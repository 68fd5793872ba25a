"""eliminate-identity."""

from optc.passes import EliminateIdentity
from tests.util import check_pass, load, op_types, run_pass


def test_identity_and_inference_dropout_are_removed():
    m = check_pass(EliminateIdentity(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (float[2,3] y) <bool f = {0}> {
      a = Identity(x)
      b = Relu(a)
      c = Dropout(b)
      d = Dropout(c, , f)
      y = Identity(d)
    }
    """.replace("Dropout(c, , f)", "Dropout(c, , f)"))
    assert op_types(m) == ["Relu"]
    # the Relu took over the graph output's name
    assert m.graph.outputs[0].name == "y" and m.graph.outputs[0].producer().op_type == "Relu"


def test_training_dropout_and_used_mask_stay():
    check_pass(EliminateIdentity(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x, bool t) => (float[2,3] y, bool[2,3] mask) <float r = {0.0}> {
      a = Dropout(x, r, t)
      y, mask = Dropout(a)
    }
    """, expect_modified=False)


def test_input_to_output_identity_stays():
    m = check_pass(EliminateIdentity(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) { y = Identity(x) }
    """, expect_modified=False)
    assert op_types(m) == ["Identity"]


def test_identity_read_by_a_subgraph():
    m = load("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x, bool c) => (float[2] y) {
      a = Identity(x)
      y = If(c) <then_branch = t () => (float[2] o) { o = Neg(a) },
                 else_branch = e () => (float[2] o2) { o2 = Relu(a) }>
    }
    """)
    assert run_pass(EliminateIdentity(), m)
    assert op_types(m) == ["If"]
    then = m.graph.nodes[0].subgraphs["then_branch"]
    assert then.nodes[0].inputs[0] is m.graph.inputs[0]

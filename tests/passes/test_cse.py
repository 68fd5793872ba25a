"""cse."""

from optc.passes import CSE
from tests.util import check_pass, load, op_types, run_pass


def test_duplicates_merge_in_cascade():
    m = check_pass(CSE(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (float[2,3] y) {
      a = Relu(x)
      b = Relu(x)
      c = Sigmoid(a)
      d = Sigmoid(b)
      y = Add(c, d)
    }
    """)
    assert op_types(m) == ["Relu", "Sigmoid", "Add"]


def test_different_attributes_do_not_merge():
    check_pass(CSE(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (float[2,3] y) {
      a = LeakyRelu <alpha = 0.1> (x)
      b = LeakyRelu <alpha = 0.2> (x)
      y = Add(a, b)
    }
    """, expect_modified=False)


def test_random_ops_do_not_merge():
    # structural only: two random draws cannot be compared in onnxruntime
    m = load("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (float[2,3] y) {
      a = RandomUniformLike(x)
      b = RandomUniformLike(x)
      y = Sub(a, b)
    }
    """)
    assert run_pass(CSE(), m) is False
    assert op_types(m) == ["RandomUniformLike", "RandomUniformLike", "Sub"]


def test_two_graph_outputs_keep_both_names():
    m = check_pass(CSE(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (float[2,3] y, float[2,3] z) {
      y = Relu(x)
      z = Relu(x)
    }
    """, expect_modified=False)
    assert [v.name for v in m.graph.outputs] == ["y", "z"]


def test_duplicate_that_is_a_graph_output_takes_over():
    m = check_pass(CSE(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (float[2,3] y, float[2,3] z) {
      a = Relu(x)
      y = Neg(a)
      z = Relu(x)
    }
    """)
    assert op_types(m) == ["Relu", "Neg"]
    assert [v.name for v in m.graph.outputs] == ["y", "z"]


def test_custom_ops_do_not_merge():
    # structural only: onnxruntime cannot run the custom op
    m = load("""
    <ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
    g (float[2,3] x) => (float[2,3] y) {
      a = com.example.Sample(x)
      b = com.example.Sample(x)
      y = Sub(a, b)
    }
    """)
    assert run_pass(CSE(), m) is False
    assert op_types(m) == ["Sample", "Sample", "Sub"]

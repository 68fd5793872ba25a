"""fold-constants."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from optc.ir import to_proto
from optc.passes import FoldConstants
from tests.util import check_pass, load, op_types, run_pass


def test_constant_of_shape_weights_and_shape_arithmetic_fold():
    m = check_pass(FoldConstants(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,2,4,4] x) => (float[1,32] y) <int64[4] ws = {3, 2, 3, 3}, int64[1] zero = {0},
                                            int64[1] minus = {-1}> {
      w = ConstantOfShape <value = float[1] {0.25}> (ws)
      c = Conv <pads = [1, 1, 1, 1]> (x, w)
      s = Shape(c)
      n = Gather <axis = 0> (s, zero)
      shape = Concat <axis = 0> (n, minus)
      y = Reshape(c, shape)
    }
    """.replace("float[1,32] y", "float[1,48] y"))
    # ConstantOfShape -> initializer; Shape of a static shape, Gather and Concat -> constants
    assert op_types(m) == ["Conv", "Reshape"]
    w = m.graph.nodes[0].inputs[1]
    assert w.name == "w" and m.graph.is_constant(w)
    np.testing.assert_array_equal(w.const_value, np.full((3, 2, 3, 3), 0.25, np.float32))
    shape = m.graph.nodes[1].inputs[1]
    np.testing.assert_array_equal(shape.const_value, [1, -1])
    # constants that only fed folded nodes are gone too: fold leaves no dead initializers
    assert sorted(m.graph.initializers) == ["shape", "w"]


def test_symbolic_shape_is_not_folded():
    m = check_pass(FoldConstants(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,2] x) => (int64[2] s) {
      r = Relu(x)
      s = Shape(r)
    }
    """, expect_modified=False)
    assert op_types(m) == ["Relu", "Shape"]


def test_negative_cases():
    # random ops, non-constant inputs, graph outputs and DequantizeLinear stay
    check_pass(FoldConstants(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y, float[2] k) <float[2] a = {1.0, 2.0}, int8[2] q = {1, 2},
                                                float s = {0.5}> {
      k = Neg(a)
      r = RandomNormalLike(x)
      d = DequantizeLinear(q, s)
      t = Add(x, r)
      u = Mul(t, 0.0)
      y = Add(u, d)
    }
    """.replace("Mul(t, 0.0)", "Mul(t, x)"), expect_modified=False)


def test_fold_dq_option():
    m = load("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) <int8[2] q = {1, -2}, float s = {0.5}> {
      d = DequantizeLinear(q, s)
      y = Add(x, d)
    }
    """)
    assert run_pass(FoldConstants(fold_dq=True), m)
    np.testing.assert_array_equal(m.graph.nodes[0].inputs[1].const_value, [0.5, -1.0])


def test_size_limit_keeps_huge_expansions():
    m = load("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1024,1024] x) => (float[1024,1024] y) <int64[2] s = {1024, 1024}> {
      w = ConstantOfShape <value = float[1] {1.0}> (s)
      y = Add(x, w)
    }
    """)
    assert run_pass(FoldConstants(size_limit_mb=1.0), m) is False
    assert run_pass(FoldConstants(size_limit_mb=8.0), m) is True


def test_node_whose_evaluation_fails_is_left_alone():
    # Reshape of 3 elements into 2: invalid at run time too, so it is not folded
    g = helper.make_graph(
        [helper.make_node("Reshape", ["a", "s"], ["r"]),
         helper.make_node("Add", ["x", "r"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.ones(3, np.float32), "a"),
         numpy_helper.from_array(np.array([2], np.int64), "s")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m = load(model)
    result = FoldConstants()(m)
    assert result.modified is False and result.stats["evaluation_failed"] == 1
    assert op_types(m) == ["Reshape", "Add"]


def test_folded_value_keeps_its_name_and_model_passes_checker():
    m = check_pass(FoldConstants(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) <float[2] a = {1.0, 4.0}> {
      root = Sqrt(a)
      y = Mul(x, root)
    }
    """)
    assert "root" in m.graph.initializers
    onnx.checker.check_model(to_proto(m), full_check=True)

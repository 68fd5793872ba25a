"""constant-to-initializer."""

import numpy as np

from optc.passes import ConstantToInitializer
from tests.util import check_pass, load, op_types, run_pass


def test_every_constant_form_becomes_an_initializer():
    m = check_pass(ConstantToInitializer(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x, int64[3] i) => (float[2] y, int64[3] j) {
      a = Constant <value = float[2] {1.5, -2.0}> ()
      f = Constant <value_float = 3.0> ()
      fs = Constant <value_floats = [1.0, 2.0]> ()
      k = Constant <value_ints = [1, 2, 3]> ()
      t = Add(x, a)
      u = Mul(t, f)
      y = Sub(u, fs)
      j = Add(i, k)
    }
    """)
    assert "Constant" not in op_types(m)
    inits = m.graph.initializers
    np.testing.assert_array_equal(inits["a"].const_value, [1.5, -2.0])
    assert inits["f"].const_value.shape == () and inits["f"].const_value.dtype == np.float32
    assert inits["k"].const_value.dtype == np.int64


def test_constant_that_is_a_graph_output_stays():
    check_pass(ConstantToInitializer(), """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y, float[2] c) {
      c = Constant <value = float[2] {1.0, 2.0}> ()
      y = Add(x, c)
    }
    """, expect_modified=False)


def test_custom_domain_constant_is_not_touched():
    # onnxruntime cannot run a custom op, so this one is structural only
    m = load("""
    <ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
    g (float[2] x) => (float[2] y) {
      c = com.example.Constant <value = float[2] {1.0, 2.0}> ()
      y = com.example.Use(x, c)
    }
    """)
    assert run_pass(ConstantToInitializer(), m) is False
    assert op_types(m) == ["Constant", "Use"]

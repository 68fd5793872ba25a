"""fold-preprocess."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from optc.passes import FoldPreprocess
from tests.util import check_pass, op_types

RNG = np.random.default_rng(5)
MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)
W = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)


def _model(pre, conv_pads, extra=()):
    nodes = pre + [helper.make_node("Conv", ["n", "w"], ["y"], pads=conv_pads)]
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(W, "w"), numpy_helper.from_array(MEAN, "mean"),
         numpy_helper.from_array(STD, "std"),
         numpy_helper.from_array(np.array(255.0, np.float32), "k")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    import onnx
    return onnx.shape_inference.infer_shapes(m)


def test_mean_std_into_pad_free_conv():
    m = check_pass(FoldPreprocess(), _model(
        [helper.make_node("Div", ["x", "k"], ["a"]),
         helper.make_node("Sub", ["a", "mean"], ["b"]),
         helper.make_node("Div", ["b", "std"], ["n"])], [0, 0, 0, 0]))
    assert op_types(m) == ["Conv"]
    assert m.graph.nodes[0].inputs[0].name == "x"
    assert set(m.graph.initializers) == {"w", "w_bias"}


def test_pure_scaling_folds_into_padded_conv():
    m = check_pass(FoldPreprocess(), _model(
        [helper.make_node("Mul", ["x", "std"], ["a"]),
         helper.make_node("Div", ["a", "k"], ["n"])], [1, 1, 1, 1]))
    assert op_types(m) == ["Conv"]


@pytest.mark.parametrize("pre", [
    # a mean subtraction before a padded conv: the padded zeros would not be shifted
    [helper.make_node("Sub", ["x", "mean"], ["n"])],
    # the input on the right of Sub
    [helper.make_node("Sub", ["mean", "x"], ["n"])],
])
def test_negative_cases(pre):
    check_pass(FoldPreprocess(), _model(pre, [1, 1, 1, 1]), expect_modified=False)

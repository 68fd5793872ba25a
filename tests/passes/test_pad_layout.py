"""fuse-pad and fuse-layout."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from optc.passes import FusePad, FuseLayout
from tests.util import check_pass, op_types

RNG = np.random.default_rng(3)


def _model(nodes, inits, x_shape, y_shape, opset=17, extra_outputs=()):
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)]
        + [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in extra_outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


W = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)


def test_pad_into_conv():
    m = check_pass(FusePad(), _model(
        [helper.make_node("Pad", ["x", "p"], ["xp"]),
         helper.make_node("Conv", ["xp", "w"], ["y"], pads=[1, 0, 1, 0])],
        {"w": W, "p": np.array([0, 0, 1, 2, 0, 0, 1, 2], np.int64)}, [1, 3, 5, 5],
        [1, 4, 7, 7]))
    assert op_types(m) == ["Conv"]
    assert list(m.graph.nodes[0].attr("pads")) == [2, 2, 2, 2]
    assert "p" not in m.graph.initializers


def test_pad_opset_2_attribute_form():
    m = check_pass(FusePad(), _model(
        [helper.make_node("Pad", ["x"], ["xp"], pads=[0, 0, 1, 1, 0, 0, 1, 1]),
         helper.make_node("Conv", ["xp", "w"], ["y"])],
        {"w": W}, [1, 3, 5, 5], [1, 4, 5, 5], opset=10))
    assert op_types(m) == ["Conv"]


@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_pad_into_average_pool(count_include_pad):
    m = check_pass(FusePad(), _model(
        [helper.make_node("Pad", ["x", "p"], ["xp"]),
         helper.make_node("AveragePool", ["xp"], ["y"], kernel_shape=[3, 3],
                          count_include_pad=count_include_pad)],
        {"p": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}, [1, 3, 5, 5], [1, 3, 5, 5]))
    assert op_types(m) == ["AveragePool"]
    assert m.graph.nodes[0].attr("count_include_pad") == 1


@pytest.mark.parametrize("nodes, inits, y_shape", [
    # reflect padding is not zeros
    ([helper.make_node("Pad", ["x", "p"], ["xp"], mode="reflect"),
      helper.make_node("Conv", ["xp", "w"], ["y"])],
     {"w": W, "p": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}, [1, 4, 5, 5]),
    # a non-zero pad value
    ([helper.make_node("Pad", ["x", "p", "v"], ["xp"]),
      helper.make_node("Conv", ["xp", "w"], ["y"])],
     {"w": W, "p": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
      "v": np.array(1.0, np.float32)}, [1, 4, 5, 5]),
    # padding the channel axis
    ([helper.make_node("Pad", ["x", "p"], ["xp"]),
      helper.make_node("Relu", ["xp"], ["y"])],
     {"p": np.array([0, 1, 1, 1, 0, 0, 1, 1], np.int64)}, [1, 4, 7, 7]),
    # MaxPool pads with -inf
    ([helper.make_node("Pad", ["x", "p"], ["xp"]),
      helper.make_node("MaxPool", ["xp"], ["y"], kernel_shape=[3, 3])],
     {"p": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}, [1, 3, 5, 5]),
])
def test_pad_negative_cases(nodes, inits, y_shape):
    check_pass(FusePad(), _model(nodes, inits, [1, 3, 5, 5], y_shape), expect_modified=False)


def test_transposes_merge_and_cancel():
    m = check_pass(FuseLayout(), _model(
        [helper.make_node("Transpose", ["x"], ["t1"], perm=[0, 2, 3, 1]),
         helper.make_node("Transpose", ["t1"], ["t2"], perm=[0, 3, 1, 2]),
         helper.make_node("Relu", ["t2"], ["r"]),
         helper.make_node("Transpose", ["r"], ["t3"], perm=[1, 0, 2, 3]),
         helper.make_node("Transpose", ["t3"], ["y"], perm=[0, 1, 3, 2])],
        {}, [2, 3, 4, 5], [3, 2, 5, 4]))
    assert op_types(m) == ["Relu", "Transpose"]
    assert list(m.graph.nodes[1].attr("perm")) == [1, 0, 3, 2]


def test_transpose_into_gemm():
    m = check_pass(FuseLayout(), _model(
        [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0]),
         helper.make_node("Gemm", ["xt", "w"], ["y"], transA=0)],
        {"w": RNG.standard_normal((5, 3)).astype(np.float32)}, [5, 2], [2, 3]))
    assert op_types(m) == ["Gemm"] and m.graph.nodes[0].attr("transA") == 1


def test_transpose_read_twice_stays():
    check_pass(FuseLayout(), _model(
        [helper.make_node("Transpose", ["x"], ["t1"], perm=[1, 0]),
         helper.make_node("Transpose", ["t1"], ["y"], perm=[1, 0])],
        {}, [2, 3], [2, 3], extra_outputs=[("t1", [3, 2])]), expect_modified=False)


def test_reshape_chains_merge():
    m = check_pass(FuseLayout(), _model(
        [helper.make_node("Flatten", ["x"], ["f"]),
         helper.make_node("Reshape", ["f", "s1"], ["r"]),
         helper.make_node("Reshape", ["r", "s2"], ["y"])],
        {"s1": np.array([6, 10], np.int64), "s2": np.array([-1, 5], np.int64)},
        [2, 3, 10], [12, 5]))
    assert op_types(m) == ["Reshape"]
    assert m.graph.nodes[0].inputs[0].name == "x"
    assert set(m.graph.initializers) == {"s2"}


def test_reshape_with_zero_copy_stays():
    check_pass(FuseLayout(), _model(
        [helper.make_node("Reshape", ["x", "s1"], ["r"]),
         helper.make_node("Reshape", ["r", "s2"], ["y"])],
        {"s1": np.array([6, 10], np.int64), "s2": np.array([0, 2, 5], np.int64)},
        [2, 3, 10], [6, 2, 5]), expect_modified=False)

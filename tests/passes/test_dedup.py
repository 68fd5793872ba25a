"""dedup-initializers."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from optc.passes import DedupInitializers
from tests.util import check_pass


def _model(arrays, outputs=("y",)):
    nodes, prev = [], "x"
    for i, name in enumerate(arrays):
        nodes.append(helper.make_node("Add", [prev, name], [f"t{i}"]))
        prev = f"t{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [2]) for o in outputs],
        [numpy_helper.from_array(a, n) for n, a in arrays.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_identical_initializers_are_shared():
    a = np.array([1.0, 2.0], np.float32)
    m = check_pass(DedupInitializers(), _model({"a": a, "b": a.copy(), "c": a + 1, "d": a.copy()}))
    assert sorted(m.graph.initializers) == ["a", "c"]
    adds = [n for n in m.graph.nodes if n.op_type == "Add"]
    assert [n.inputs[1].name for n in adds] == ["a", "a", "c", "a"]


def test_bitwise_different_values_stay_apart():
    zero = np.array([0.0, 0.0], np.float32)
    check_pass(DedupInitializers(), _model({"a": zero, "b": -zero}), expect_modified=False)


def test_same_bytes_different_dtype_or_shape_stay_apart():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (int32[2] x, int32[1,2] z) => (int32[2] y, int32[1,2] w) <int32[2] a = {1, 2},
                                                                int32[1,2] b = {1, 2}> {
      y = Add(x, a)
      w = Add(z, b)
    }
    """)
    check_pass(DedupInitializers(), m, expect_modified=False)

"""fuse-scale and fuse-bias."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from optc.ir import to_proto
from optc.passes import FuseBias, FuseScale
from tests.util import check_pass, load, op_types, run_pass

RNG = np.random.default_rng(1)


def _model(nodes, inits, x_shape, y_shape, extra_outputs=()):
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)]
        + [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in extra_outputs],
        [numpy_helper.from_array(np.asarray(a, np.float32), n) for n, a in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


W = RNG.standard_normal((4, 3, 3, 3))
PER_CHANNEL = RNG.uniform(0.5, 1.5, (4, 1, 1))


@pytest.mark.parametrize("const_first", [False, True])
def test_scale_and_bias_fold_into_conv(const_first):
    mul_in = ["k", "c"] if const_first else ["c", "k"]
    model = _model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                    helper.make_node("Mul", mul_in, ["m"]),
                    helper.make_node("Add", ["m", "t"], ["y"])],
                   {"w": W, "k": PER_CHANNEL, "t": RNG.standard_normal((1, 4, 1, 1))},
                   [1, 3, 5, 5], [1, 4, 5, 5])
    m = check_pass(FuseScale(), model)
    assert op_types(m) == ["Conv", "Add"]
    m = check_pass(FuseBias(), to_proto(m))
    assert op_types(m) == ["Conv"]


def test_affine_chains_collapse():
    # ((x * a + b) * c + d) -> x * (a c) + (b c + d)
    model = _model([helper.make_node("Relu", ["x"], ["r"]),
                    helper.make_node("Mul", ["r", "a"], ["m1"]),
                    helper.make_node("Add", ["m1", "b"], ["a1"]),
                    helper.make_node("Mul", ["a1", "c"], ["m2"]),
                    helper.make_node("Add", ["m2", "d"], ["y"])],
                   {n: RNG.uniform(0.5, 1.5, (4, 1, 1)) for n in "abcd"},
                   [2, 4, 3, 3], [2, 4, 3, 3])
    m = check_pass(FuseScale(), model)
    assert op_types(m) == ["Relu", "Mul", "Add", "Add"]
    m = check_pass(FuseBias(), to_proto(m))
    assert op_types(m) == ["Relu", "Mul", "Add"]


def test_matmul_add_becomes_gemm_and_gemm_add_folds():
    model = _model([helper.make_node("MatMul", ["x", "w"], ["mm"]),
                    helper.make_node("Add", ["mm", "b"], ["g1"]),
                    helper.make_node("Add", ["g1", "b2"], ["y"])],
                   {"w": RNG.standard_normal((5, 6)), "b": RNG.standard_normal(6),
                    "b2": RNG.standard_normal((1, 6))}, [3, 5], [3, 6])
    m = check_pass(FuseBias(), model)
    assert op_types(m) == ["Gemm"]


def test_negative_cases():
    # a weight shared by two convs is not rescaled for one of them
    shared = _model([helper.make_node("Conv", ["x", "w"], ["c"]),
                     helper.make_node("Mul", ["c", "k"], ["y"]),
                     helper.make_node("Conv", ["x", "w"], ["z"])],
                    {"w": W, "k": PER_CHANNEL}, [1, 3, 5, 5], [1, 4, 3, 3], extra_outputs=["z"])
    check_pass(FuseScale(), shared, expect_modified=False)
    # a conv output read twice
    twice = _model([helper.make_node("Conv", ["x", "w"], ["c"]),
                    helper.make_node("Mul", ["c", "k"], ["y"])],
                   {"w": W, "k": PER_CHANNEL}, [1, 3, 5, 5], [1, 4, 3, 3], extra_outputs=["c"])
    check_pass(FuseScale(), twice, expect_modified=False)
    # not per channel: a per-pixel constant cannot go into the weights
    pixel = _model([helper.make_node("Conv", ["x", "w"], ["c"]),
                    helper.make_node("Mul", ["c", "k"], ["y"])],
                   {"w": W, "k": RNG.standard_normal((1, 1, 3, 3))}, [1, 3, 5, 5], [1, 4, 3, 3])
    check_pass(FuseScale(), pixel, expect_modified=False)
    # a non-constant scale
    m = load("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,2,3,3] x, float[2,2,1,1] w, float[1,2,1,1] k) => (float[1,2,3,3] y) {
      c = Conv(x, w)
      y = Mul(c, k)
    }
    """)
    assert run_pass(FuseScale(), m) is False
    # broadcasting that would grow the output shape
    grow = _model([helper.make_node("Relu", ["x"], ["r"]),
                   helper.make_node("Add", ["r", "a"], ["a1"]),
                   helper.make_node("Add", ["a1", "b"], ["y"])],
                  {"a": RNG.standard_normal(3), "b": RNG.standard_normal((2, 3))}, [3], [2, 3])
    check_pass(FuseBias(), grow, expect_modified=False)

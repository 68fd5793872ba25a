"""fold-bn."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from optc.errors import OptcError
from optc.passes import FoldBatchNorm
from tests.util import check_pass, load, op_types, run_pass

RNG = np.random.default_rng(0)


def _arr(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


def _bn_params(c, prefix="bn"):
    return [numpy_helper.from_array(_arr(c, lo=0.5, hi=1.5), f"{prefix}_s"),
            numpy_helper.from_array(_arr(c), f"{prefix}_b"),
            numpy_helper.from_array(_arr(c), f"{prefix}_m"),
            numpy_helper.from_array(_arr(c, lo=0.5, hi=1.5), f"{prefix}_v")]


def _model(nodes, inits, x_shape, y_shape, opset=17, extra_outputs=()):
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)]
        + [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in extra_outputs],
        inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _bn(inp="c", out="y", prefix="bn", **attrs):
    return helper.make_node("BatchNormalization", [inp] + [f"{prefix}_{k}" for k in "sbmv"],
                            [out], **attrs)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("group", [1, 2])
def test_conv_bn(bias, group):
    inits = [numpy_helper.from_array(_arr(4, 4 // group, 3, 3), "w")] + _bn_params(4)
    ins = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(_arr(4), "b"))
        ins.append("b")
    m = check_pass(FoldBatchNorm(), _model(
        [helper.make_node("Conv", ins, ["c"], pads=[1, 1, 1, 1], group=group), _bn()],
        inits, [1, 4, 5, 5], [1, 4, 5, 5]))
    assert op_types(m) == ["Conv"]
    assert m.graph.outputs[0].name == "y"
    assert sorted(m.graph.initializers) == sorted(["w", "b"] if bias else ["w", "w_bias"])


@pytest.mark.parametrize("group", [1, 2])
def test_conv_transpose_bn(group):
    inits = [numpy_helper.from_array(_arr(4, 6 // group, 3, 3), "w")] + _bn_params(6)
    m = check_pass(FoldBatchNorm(), _model(
        [helper.make_node("ConvTranspose", ["x", "w"], ["c"], strides=[2, 2], group=group),
         _bn()], inits, [1, 4, 3, 3], [1, 6, 7, 7]))
    assert op_types(m) == ["ConvTranspose"]


@pytest.mark.parametrize("trans_b, beta, with_c", [(0, 1.0, True), (1, 0.5, True),
                                                   (1, 0.0, True), (0, 1.0, False)])
def test_gemm_bn(trans_b, beta, with_c):
    w = _arr(6, 5) if trans_b else _arr(5, 6)
    inits = [numpy_helper.from_array(w, "w")] + _bn_params(6)
    ins = ["x", "w"]
    if with_c:
        inits.append(numpy_helper.from_array(_arr(6), "cc"))
        ins.append("cc")
    m = check_pass(FoldBatchNorm(), _model(
        [helper.make_node("Gemm", ins, ["c"], transB=trans_b, beta=beta), _bn()],
        inits, [3, 5], [3, 6]))
    assert op_types(m) == ["Gemm"]


def test_matmul_bn_becomes_gemm():
    inits = [numpy_helper.from_array(_arr(5, 6), "w")] + _bn_params(6)
    m = check_pass(FoldBatchNorm(), _model(
        [helper.make_node("MatMul", ["x", "w"], ["c"]), _bn()], inits, [3, 5], [3, 6]))
    assert op_types(m) == ["Gemm"]


def test_bn_before_pad_free_conv_folds_forward():
    inits = [numpy_helper.from_array(_arr(3, 4, 1, 1), "w")] + _bn_params(4)
    m = check_pass(FoldBatchNorm(), _model(
        [_bn("x", "n"), helper.make_node("Conv", ["n", "w"], ["y"])],
        inits, [1, 4, 5, 5], [1, 3, 5, 5]))
    assert op_types(m) == ["Conv"]


def test_bn_before_padded_conv_becomes_mul_add():
    # with padding, the border zeros are not shifted by BN: folding forward would be wrong
    inits = [numpy_helper.from_array(_arr(3, 4, 3, 3), "w")] + _bn_params(4)
    m = check_pass(FoldBatchNorm(), _model(
        [_bn("x", "n"), helper.make_node("Conv", ["n", "w"], ["y"], pads=[1, 1, 1, 1])],
        inits, [1, 4, 5, 5], [1, 3, 5, 5]))
    assert op_types(m) == ["Mul", "Add", "Conv"]


def test_standalone_bn_becomes_mul_add():
    m = check_pass(FoldBatchNorm(), _model(
        [helper.make_node("Relu", ["x"], ["r"]), _bn("r", "y")], _bn_params(4),
        [2, 4, 3, 3], [2, 4, 3, 3]))
    assert op_types(m) == ["Relu", "Mul", "Add"]
    assert m.graph.outputs[0].name == "y"


def test_negative_cases():
    w = numpy_helper.from_array(_arr(4, 4, 1, 1), "w")
    # shared weight: two convs read w
    shared = _model([helper.make_node("Conv", ["x", "w"], ["c"]), _bn(),
                     helper.make_node("Conv", ["x", "w"], ["z"])],
                    [w] + _bn_params(4), [1, 4, 2, 2], [1, 4, 2, 2], extra_outputs=["z"])
    m = check_pass(FoldBatchNorm(), shared)  # the BN becomes Mul+Add, the weight is untouched
    assert op_types(m).count("Conv") == 2 and "BatchNormalization" not in op_types(m)
    np.testing.assert_array_equal(m.graph.initializers["w"].const_value,
                                  numpy_helper.to_array(w))
    # conv output used twice (BN and a graph output)
    twice = _model([helper.make_node("Conv", ["x", "w"], ["c"]), _bn()],
                   [w] + _bn_params(4), [1, 4, 2, 2], [1, 4, 2, 2], extra_outputs=["c"])
    m = check_pass(FoldBatchNorm(), twice)
    assert op_types(m) == ["Conv", "Mul", "Add"]


def test_training_mode_and_non_constant_params_are_left_alone():
    train_bn = helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"],
                                ["y", "rm", "rv"], training_mode=1)
    training = _model([helper.make_node("Conv", ["x", "w"], ["c"]), train_bn],
                      [numpy_helper.from_array(_arr(4, 4, 1, 1), "w")] + _bn_params(4),
                      [1, 4, 2, 2], [1, 4, 2, 2])
    m = load(training)
    assert run_pass(FoldBatchNorm(), m) is False
    assert "BatchNormalization" in op_types(m)
    varying = load("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,2,3,3] x, float[2] s) => (float[1,2,3,3] y) <float[2] b = {0.0, 1.0},
                                                            float[2] m = {0.0, 0.5},
                                                            float[2] v = {1.0, 2.0}> {
      y = BatchNormalization(x, s, b, m, v)
    }
    """)
    assert run_pass(FoldBatchNorm(), varying) is False


@pytest.mark.parametrize("var, message", [(-1.0, "running variance 'bn_v' has negative values"),
                                          (float("nan"), "not finite")])
def test_bad_bn_is_an_error_naming_the_node(var, message):
    params = _bn_params(4)
    params[3] = numpy_helper.from_array(np.full(4, var, np.float32), "bn_v")
    m = load(_model([helper.make_node("Relu", ["x"], ["r"]),
                     helper.make_node("BatchNormalization", ["r", "bn_s", "bn_b", "bn_m", "bn_v"],
                                      ["y"], name="bn3")],
                    params, [1, 4, 2, 2], [1, 4, 2, 2]))
    with pytest.raises(OptcError) as err:
        FoldBatchNorm()(m)
    assert "node 'bn3' (BatchNormalization)" in str(err.value) and message in str(err.value)

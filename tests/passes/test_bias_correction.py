"""Bias correction: the output-mean shift of rounded weights, and its effect on digits."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import optc
from optc.pass_base import PassContext
from optc.ir import Node, Value, serialize
from optc.passes import Quantize
from optc.passes.quant.bias_correction import weight_shift
from optc.passes.quant.sensitivity import sqnr_db
from optc.validate import ort_session
from tests.util import MODELS


def _run_layer(op, attrs, x, w):
    inits = [numpy_helper.from_array(w, "w")]
    node = helper.make_node(op, ["x", "w"], ["y"], **attrs)
    g = helper.make_graph([node], "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                      x.shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    return ort_session(m.SerializeToString()).run(None, {"x": x})[0]


@pytest.mark.parametrize("op, attrs, x_shape, w_shape", [
    ("Conv", {}, (6, 4, 7, 7), (5, 4, 3, 3)),
    ("Conv", {"group": 2}, (6, 4, 7, 7), (6, 2, 3, 3)),
    ("Conv", {"group": 4}, (6, 4, 7, 7), (4, 1, 3, 3)),  # depthwise
    ("Gemm", {}, (50, 8), (8, 3)),
    ("Gemm", {"transB": 1}, (50, 8), (3, 8)),
    ("MatMul", {}, (50, 8), (8, 3)),
])
def test_shift_is_the_exact_mean_difference_without_padding(op, attrs, x_shape, w_shape):
    # per sample and channel one value (over space too, for a conv: every window without
    # padding then sees the channel's mean, and the shift is exact, not just in expectation)
    rng = np.random.default_rng(0)
    per_channel = rng.standard_normal(x_shape[:2]) + rng.standard_normal(x_shape[1])
    x = np.broadcast_to(per_channel.reshape(x_shape[:2] + (1,) * (len(x_shape) - 2)),
                        x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    w_hat = (np.round(w * 4) / 4).astype(np.float32)  # a coarse rounding: a visible shift
    layer = Node(op, [Value("x"), Value("w")], [Value("y")], attributes=attrs)
    axes = tuple(i for i in range(x.ndim) if i != 1)
    mean = x.astype(np.float64).mean(axis=axes)
    shift = weight_shift(layer, w, w_hat, mean)
    y, y_hat = _run_layer(op, attrs, x, w), _run_layer(op, attrs, x, w_hat)
    out_axes = tuple(i for i in range(y.ndim) if i != 1)
    expected = (y.astype(np.float64) - y_hat).mean(axis=out_axes)
    np.testing.assert_allclose(shift, expected, rtol=1e-4, atol=1e-4)
    assert np.abs(expected).max() > 1e-2  # the case is not trivially zero


def test_unknown_or_mismatched_means_give_no_shift():
    layer = Node("Conv", [Value("x"), Value("w")], [Value("y")])
    w = np.ones((2, 3, 1, 1), np.float32)
    assert weight_shift(layer, w, w, None) is None
    assert weight_shift(layer, w, w, np.zeros(4)) is None


def test_bias_correction_raises_digits_sqnr_on_held_out_samples():
    data = dict(np.load(MODELS / "digits_test.npz"))
    held_out = {"input": data["input"][200:]}
    fp32 = ort_session(str(MODELS / "digits_cnn.onnx")).run(None, held_out)
    sqnr = {}
    for corrected in (False, True):
        model, _ = optc.optimize(MODELS / "digits_cnn.onnx")
        q = Quantize(method="max", probe=False, bias_correction=corrected)
        q(model, PassContext(calibration_data={"input": data["input"][:200]}))
        sqnr[corrected] = sqnr_db(fp32, ort_session(serialize(model)).run(None, held_out))
    assert sqnr[True] > sqnr[False] + 0.5

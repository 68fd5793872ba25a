"""quantize{mode=dynamic} and quantize{mode=weight-only}: no calibration data needed."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import optc
from optc.ir import serialize
from optc.passes import Quantize
from optc.runtime import InferenceSession
from optc.validate import ort_session
from tests.util import MODELS

DIGITS = MODELS / "digits_cnn.onnx"
DATA = dict(np.load(MODELS / "digits_test.npz"))


def _mlp(transb: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w0 = (rng.standard_normal((32, 64)) / 6).astype(np.float32)
    w1 = (rng.standard_normal((64, 10)) / 8).astype(np.float32)
    inits = [numpy_helper.from_array(w0, "w0"),
             numpy_helper.from_array(w1.T.copy() if transb else w1, "w1"),
             numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "b1")]
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w1", "b1"], ["y"], transB=int(transb))]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                       ["n", 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("transb", [False, True])
@pytest.mark.parametrize("reduce_range", [False, True])
def test_dynamic_mlp(transb, reduce_range):
    proto = _mlp(transb)
    model, _ = optc.optimize(
        proto, passes=f"quantize{{mode=dynamic reduce-range={str(reduce_range).lower()}}}")
    ops = [n.op_type for n in model.graph.nodes]
    assert ops.count("DynamicQuantizeLinear") == 2 and ops.count("MatMulInteger") == 2
    assert "MatMul" not in ops and "Gemm" not in ops
    data = serialize(model)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    x = np.random.default_rng(1).standard_normal((16, 32)).astype(np.float32)
    ref = ort_session(proto.SerializeToString()).run(None, {"x": x})[0]
    ort = ort_session(data).run(None, {"x": x})[0]
    ours = InferenceSession(data).run(None, {"x": x})[0]
    if reduce_range:
        # with full-range weights onnxruntime's u8 x s8 MatMulInteger saturates 16-bit pair
        # sums on CPUs without VNNI (AVX2); optc's integer sums are exact on every CPU
        np.testing.assert_allclose(ours, ort, rtol=1e-5, atol=1e-5)
    for out in (ours, ort):
        cos = float(ref.ravel() @ out.ravel() / np.linalg.norm(ref) / np.linalg.norm(out))
        assert cos > (0.999 if out is ours or reduce_range else 0.99)
    assert Quantize(mode="dynamic")(model).modified is False


def test_dynamic_leaves_convs_and_keeps_digits_accuracy():
    model, _ = optc.optimize(DIGITS, passes="default,quantize{mode=dynamic}")
    ops = [n.op_type for n in model.graph.nodes]
    assert ops.count("Conv") == 2 and ops.count("MatMulInteger") == 2
    logits = ort_session(serialize(model)).run(None, {"input": DATA["input"]})[0]
    fp32 = ort_session(str(DIGITS)).run(None, {"input": DATA["input"]})[0]
    assert (logits.argmax(1) == DATA["labels"]).mean() >= \
        (fp32.argmax(1) == DATA["labels"]).mean() - 0.005


def test_weight_only_digits():
    model, _ = optc.optimize(DIGITS, passes="default,quantize{mode=weight-only}")
    g = model.graph
    layers = [n for n in g.nodes if n.op_type in ("Conv", "Gemm")]
    assert len(layers) == 4
    for n in layers:
        dq = n.inputs[1].producer()
        assert dq.op_type == "DequantizeLinear" and dq.inputs[0].const_value.dtype == np.int8
        assert n.inputs[0].producer() is None or n.inputs[0].producer().op_type != \
            "DequantizeLinear"  # activations stay float
    data = serialize(model)
    assert len(data) < 0.3 * DIGITS.stat().st_size
    logits = ort_session(data).run(None, {"input": DATA["input"]})[0]
    np.testing.assert_allclose(InferenceSession(data).run(None, {"input": DATA["input"]})[0],
                               logits, rtol=1e-4, atol=1e-4)
    fp32 = ort_session(str(DIGITS)).run(None, {"input": DATA["input"]})[0]
    assert (logits.argmax(1) == DATA["labels"]).mean() >= \
        (fp32.argmax(1) == DATA["labels"]).mean() - 0.005
    assert Quantize(mode="weight-only")(model).modified is False

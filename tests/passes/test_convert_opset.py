"""convert-opset: lossless in onnxruntime from opset 7 up, If/Loop bodies converted too (onnx's
converter leaves them), inserted by run_pipeline in front of quantize on older models."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import optc
from optc.errors import OptcError
from optc.ir import serialize
from tests.util import LIGHT_MODELS, ort_outputs, randomize_light

RTOL = 1e-4  # of the output's scale: the converted ops run other onnxruntime kernels


def _converted(proto: onnx.ModelProto, to: int) -> bytes:
    model, report = optc.optimize(proto.SerializeToString(), passes=f"convert-opset{{to={to}}}")
    assert model.opset == to
    out = serialize(model)
    onnx.checker.check_model(onnx.load_from_string(out), full_check=True)
    return out


def _assert_same(a, b, feeds=None) -> None:
    feeds, ra = ort_outputs(a, feeds)
    _, rb = ort_outputs(b, feeds)
    assert ra.keys() == rb.keys()
    for k in ra:
        scale = max(float(np.max(np.abs(ra[k]))), 1e-30)
        assert ra[k].shape == rb[k].shape
        assert float(np.max(np.abs(ra[k] - rb[k]))) <= RTOL * scale, k


@pytest.mark.slow
@pytest.mark.parametrize("path", LIGHT_MODELS, ids=lambda p: p.split("/")[-1][6:-5])
def test_light_zoo_opset_9_to_17(path):
    proto = randomize_light(path)
    assert proto.opset_import[0].version < 13
    _assert_same(proto.SerializeToString(), _converted(proto, 17))


def _opset7_model() -> onnx.ModelProto:
    """Ops whose form changes between opset 7 and 17: Upsample (-> Resize), BatchNormalization
    (spatial, consumed_inputs), Clip (min/max attributes -> inputs), Unsqueeze/Squeeze and
    ReduceSum (axes attributes -> inputs), Softmax (2-D coercion -> one axis)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    bn = [numpy_helper.from_array(v.astype(np.float32), n) for n, v in (
        ("s", rng.uniform(0.5, 1.5, 4)), ("b", rng.uniform(-.2, .2, 4)),
        ("mean", rng.uniform(-.2, .2, 4)), ("var", rng.uniform(.5, 1.5, 4)))]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "mean", "var"], ["n"]),
        helper.make_node("Clip", ["n"], ["r"], min=-1.0, max=2.0),
        helper.make_node("Upsample", ["r"], ["u"], scales=[1.0, 1.0, 2.0, 2.0], mode="nearest"),
        helper.make_node("ReduceSum", ["u"], ["p"], axes=[2], keepdims=0),
        helper.make_node("Unsqueeze", ["p"], ["q"], axes=[1]),
        helper.make_node("Squeeze", ["q"], ["sq"], axes=[1]),
        helper.make_node("Softmax", ["sq"], ["y"], axis=1),
    ]
    inits = [w, *bn]
    inputs = [helper.make_tensor_value_info("x", T.FLOAT, [1, 3, 6, 6])] + [  # IR 3: listed
        helper.make_tensor_value_info(i.name, T.FLOAT, list(i.dims)) for i in inits]
    g = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", T.FLOAT, None)],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 7)])
    m.ir_version = 3
    return m


def test_opset_7_to_17_lossless():
    proto = _opset7_model()
    out = _converted(proto, 17)
    ops = [n.op_type for n in onnx.load_from_string(out).graph.node]
    assert "Resize" in ops and "Upsample" not in ops
    _assert_same(proto.SerializeToString(), out)


def _if_model(opset: int) -> onnx.ModelProto:
    """An If whose branches Unsqueeze an outer value (axes an attribute before opset 13)."""
    def branch(name, axis):
        return helper.make_graph(
            [helper.make_node("Unsqueeze", ["x"], [f"{name}_out"], axes=[axis])], name, [],
            [helper.make_tensor_value_info(f"{name}_out", T.FLOAT, ["a", "b", "c"])])

    g = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=branch("then", 0),
                          else_branch=branch("else", 2))], "g",
        [helper.make_tensor_value_info("c", T.BOOL, []),
         helper.make_tensor_value_info("x", T.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", T.FLOAT, ["a", "b", "c"])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 6
    return m


def test_if_bodies_are_converted():
    proto = _if_model(11)
    out = _converted(proto, 13)
    then = onnx.load_from_string(out).graph.node[0].attribute[0].g
    assert [n.op_type for n in then.node] == ["Constant", "Unsqueeze"]  # axes now an input
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for c in (True, False):
        _assert_same(proto.SerializeToString(), out, {"c": np.array(c), "x": x})


def test_quantize_converts_an_old_model_and_says_so():
    proto = onnx.version_converter.convert_version(onnx.load("models/resnet_mini.onnx"), 17)
    for node in proto.graph.node:  # the same net as an opset-11 export would write it
        assert node.op_type in {"Conv", "BatchNormalization", "Relu", "Add", "GlobalAveragePool",
                                "Flatten", "Gemm"}, node.op_type
    proto.opset_import[0].version = 11
    rng = np.random.default_rng(0)
    calib = {"input": rng.standard_normal((8, 3, 32, 32)).astype(np.float32)}
    model, report = optc.optimize(proto.SerializeToString(),
                                  passes="default,quantize{probe=false}", calib=calib)
    assert "convert-opset{to=13},quantize{" in report.pipeline
    assert model.metadata_props["optc.pipeline"] == report.pipeline
    assert [r.name for r in report.records][-2:] == ["convert-opset", "quantize"]
    assert model.opset == 13
    out = serialize(model)
    onnx.checker.check_model(onnx.load_from_string(out), full_check=True)
    ort_outputs(out)  # runs in onnxruntime


def test_errors():
    with pytest.raises(OptcError, match="opset 17, newer than to=13; optc only raises"):
        optc.optimize("models/resnet_mini.onnx", passes="convert-opset{to=13}")
    with pytest.raises(OptcError, match="to=99 is outside 7"):
        optc.optimize("models/resnet_mini.onnx", passes="convert-opset{to=99}")
    with pytest.raises(OptcError, match=r"quantize needs opset >= 13 .* convert-opset\{to=13\}"):
        from optc.passes import Quantize

        Quantize(mode="dynamic")(optc.load(_if_model(11)))

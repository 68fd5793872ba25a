"""quantize (QDQ insertion) on the digits model and small graphs."""

import re

import numpy as np
import onnx
import pytest

import optc
from optc.errors import OptcError
from optc.ir import serialize
from optc.pass_base import PassContext
from optc.runtime import InferenceSession
from optc.validate import ort_session
from tests.util import MODELS

DIGITS = MODELS / "digits_cnn.onnx"
DATA = dict(np.load(MODELS / "digits_test.npz"))


def _accuracy(model_bytes_or_path, runtime="ort"):
    s = ort_session(model_bytes_or_path) if runtime == "ort" else \
        InferenceSession(model_bytes_or_path)
    logits = s.run(None, {"input": DATA["input"]})[0]
    return float((logits.argmax(1) == DATA["labels"]).mean()), logits


def _assert_int8_digits_ok(data: bytes) -> None:
    """A quantized digits model passes the checker, stays within half a point of fp32 on the
    held-out split in onnxruntime, and optc.runtime gives the same logits."""
    fp32, _ = _accuracy(str(DIGITS))
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    int8, ort_logits = _accuracy(data)
    assert int8 >= fp32 - 0.005
    _, optc_logits = _accuracy(data, "optc")
    np.testing.assert_allclose(optc_logits, ort_logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["max", "percentile", "mse", "kl"])
def test_digits_int8_accuracy_within_half_a_point(method):
    model, report = optc.optimize(DIGITS, passes=f"default,quantize{{method={method} probe=false}}",
                                  calib={"input": DATA["input"][:200]})
    data = serialize(model)
    _assert_int8_digits_ok(data)  # optc.runtime executes the same QDQ model alike too
    # weights are int8 now: the file is about a third of the float one
    assert len(data) < 0.35 * DIGITS.stat().st_size
    layers = [n for n in model.graph.nodes if n.op_type in ("Conv", "Gemm")]
    assert len(layers) == 4
    for n in layers:  # every layer reads dequantized int8 data: onnxruntime's QDQ pattern
        assert all(v.producer().op_type == "DequantizeLinear" for v in n.inputs)


def test_weights_are_int8_per_channel_and_bias_int32():
    model, _ = optc.optimize(DIGITS, passes="default,quantize{probe=false}", calib=DATA)
    g = model.graph
    conv = next(n for n in g.nodes if n.op_type == "Conv")
    w_dq, b_dq = conv.inputs[1].producer(), conv.inputs[2].producer()
    assert w_dq.op_type == b_dq.op_type == "DequantizeLinear"
    assert w_dq.inputs[0].const_value.dtype == np.int8 and w_dq.attr("axis") == 0
    assert w_dq.inputs[1].const_value.shape == (16,)
    assert b_dq.inputs[0].const_value.dtype == np.int32
    # the bias scale is computed in the graph: Mul(input scale, weight scales)
    x_dq = conv.inputs[0].producer()
    mul = b_dq.inputs[1].producer()
    assert mul.op_type == "Mul" and mul.inputs[0] is x_dq.inputs[1] and \
        mul.inputs[1] is w_dq.inputs[1]


def test_needs_calibration_data():
    with pytest.raises(OptcError, match="quantize needs calibration data: give it with --calib"):
        optc.optimize(DIGITS, passes="quantize")


def test_calibration_data_without_quantize_is_an_error():
    with pytest.raises(OptcError, match="no pass in the pipeline uses it"):
        optc.optimize(DIGITS, passes="default", calib=DATA)


def test_old_opset_is_converted_and_a_bad_conversion_named():
    """run_pipeline converts an old model before quantize (tests/passes/test_convert_opset.py);
    a model that is not valid at its own opset (BatchNormalization's training_mode is opset
    14) gets the converter's complaint as one clear error."""
    model = onnx.load(DIGITS)
    model.opset_import[0].version = 12
    with pytest.raises(OptcError, match="convert-opset.*opset 12 -> 13.*training_mode"):
        optc.optimize(model, passes="quantize", calib=DATA)


def test_pass_through_ops_keep_their_input_scale():
    model, _ = optc.optimize(DIGITS, passes="default,quantize{method=max probe=false}",
                             calib=DATA)
    g = model.graph
    pool = next(n for n in g.nodes if n.op_type == "MaxPool")
    before = pool.inputs[0].producer()  # the DQ of the Relu output
    gemm = next(n for n in g.nodes if n.op_type == "Gemm")
    after = gemm.inputs[0].producer()  # the DQ of the Flatten output
    assert before.op_type == after.op_type == "DequantizeLinear"
    assert float(before.inputs[1].const_value) == float(after.inputs[1].const_value)
    assert int(before.inputs[2].const_value) == int(after.inputs[2].const_value)


def test_concat_inputs_share_one_scale_and_the_concat_needs_no_requantization():
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = {k: numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.3, k)
         for k, s in (("w1", (4, 3, 3, 3)), ("w2", (6, 3, 1, 1)), ("w3", (5, 10, 3, 3)))}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4),
             helper.make_node("Relu", ["c1"], ["a"]),
             helper.make_node("Conv", ["x", "w2"], ["c2"]),
             helper.make_node("Relu", ["c2"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["cat"], axis=1),
             helper.make_node("Conv", ["cat", "w3"], ["y"], pads=[1] * 4)]
    g = helper.make_graph(nodes, "cat", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["n", 3, 8, 8])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["n", 5, 8, 8])], list(w.values()))
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    model, _ = optc.optimize(proto, passes="quantize{probe=false}", calib={"x": x})
    nodes = model.graph.nodes
    concat = next(n for n in nodes if n.op_type == "Concat")
    scales = {float(v.producer().inputs[1].const_value) for v in concat.inputs}
    assert all(v.producer().op_type == "DequantizeLinear" for v in concat.inputs)
    q_after = next(n for n, _ in concat.outputs[0].uses())
    assert q_after.op_type == "QuantizeLinear"
    assert scales == {float(q_after.inputs[1].const_value)}
    data = serialize(model)
    ref = ort_session(proto.SerializeToString()).run(None, {"x": x})[0].ravel()
    got = ort_session(data).run(None, {"x": x})[0].ravel()
    assert float(ref @ got / np.linalg.norm(ref) / np.linalg.norm(got)) > 0.999


def _conv_act_conv(lo: float, hi: float, act_is_output: bool = False):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), k)
         for k, s in (("w1", (6, 3, 3, 3)), ("w2", (4, 6, 3, 3)))]
    bounds = [numpy_helper.from_array(np.array(v, np.float32), k)
              for k, v in (("lo", lo), ("hi", hi))]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1] * 4),
             helper.make_node("Clip", ["c1", "lo", "hi"], ["a"]),
             helper.make_node("Conv", ["a", "w2"], ["y"], pads=[1] * 4)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if act_is_output:
        outputs.append(helper.make_tensor_value_info("a", TensorProto.FLOAT, None))
    g = helper.make_graph(nodes, "act", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["n", 3, 8, 8])], outputs, w + bounds)
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = 3 * rng.standard_normal((16, 3, 8, 8)).astype(np.float32)  # the clip is often active
    return proto, x


def test_an_activation_the_saturating_cast_reproduces_is_dropped_exactly():
    from optc.ir import Node

    proto, x = _conv_act_conv(0.0, 6.0)
    model, _ = optc.optimize(proto, passes="quantize{probe=false}", calib={"x": x})
    assert "Clip" not in [n.op_type for n in model.graph.nodes]
    data = serialize(model)
    # put the Clip back in front of the QuantizeLinear: onnxruntime gives the same bits
    g = model.graph
    q = next(n for n in g.nodes if n.op_type == "QuantizeLinear" and
             n.inputs[0].producer() is not None and n.inputs[0].producer().op_type == "Conv")
    clipped = g.new_value("clipped", q.inputs[0].type)
    g.insert_before(q, Node("Clip", [q.inputs[0], g.add_initializer("l", np.float32(0)),
                                     g.add_initializer("h", np.float32(6))], [clipped]))
    q.replace_input(0, clipped)
    np.testing.assert_array_equal(ort_session(data).run(None, {"x": x})[0],
                                  ort_session(serialize(model)).run(None, {"x": x})[0])


@pytest.mark.parametrize("lo, hi, as_output", [(-1.0, 1.0, False), (0.0, 6.0, True)])
def test_an_activation_the_cast_does_not_reproduce_is_kept(lo, hi, as_output):
    # Clip(-1, 1): signed levels (zero point 128) reach -128 * s < -1; a graph output: its
    # readers outside the graph need the float values
    proto, x = _conv_act_conv(lo, hi, as_output)
    model, _ = optc.optimize(proto, passes="quantize{probe=false}", calib={"x": x})
    assert "Clip" in [n.op_type for n in model.graph.nodes]
    ref = ort_session(proto.SerializeToString()).run(None, {"x": x})[0].ravel()
    got = ort_session(serialize(model)).run(None, {"x": x})[0].ravel()
    assert float(ref @ got / np.linalg.norm(ref) / np.linalg.norm(got)) > 0.999


def test_mobilenet_int8_file_is_at_most_three_tenths_of_fp32():
    # what the pass adds is named compactly and the ReLU6s become the saturating cast: on
    # this 1 MB model the graph is otherwise a tenth of the int8 file. probe=false: which
    # layers the latency probe keeps float depends on timings (0.295x alone; over 0.3x in one
    # full-suite run on a loaded machine, the float weights within max-float-weights)
    src = MODELS / "mobilenetv2_mini.onnx"
    x = np.random.default_rng(0).standard_normal((32, 3, 64, 64)).astype(np.float32)
    model, _ = optc.optimize(src, passes="default,quantize{probe=false}", calib={"input": x})
    data = serialize(model)
    assert len(data) <= 0.3 * src.stat().st_size
    assert "Clip" not in [n.op_type for n in model.graph.nodes]
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    ref = ort_session(src).run(None, {"input": x[:4]})[0].ravel()
    got = ort_session(data).run(None, {"input": x[:4]})[0].ravel()
    assert float(ref @ got / np.linalg.norm(ref) / np.linalg.norm(got)) > 0.99


def test_per_tensor_methods_from_a_config_file(tmp_path):
    import json

    from optc.passes import Quantize

    model, _ = optc.optimize(DIGITS)
    first_relu = next(n for n in model.graph.nodes if n.op_type == "Relu").outputs[0].name
    config = tmp_path / "q.json"
    config.write_text(json.dumps({"tensors": [
        {"match": "^" + first_relu.replace(".", r"\.") + "$", "method": "kl"},
        {"match": "input", "method": "global", "threshold": 3.0}]}))
    q = Quantize(method="max", probe=False, config=str(config))
    result = q(model, PassContext(calibration_data={"input": DATA["input"][:200]}))
    plan, observers = result.artifacts["plan"], result.artifacts["observers"]
    methods_used = {k: a.method for k, a in plan.activations.items()}
    assert methods_used[first_relu] == "kl" and methods_used["input"] == "global"
    others = {k for k, m in methods_used.items() if m == "max"}
    assert others and first_relu not in others
    def levels(name):  # unsigned (zero point 0) or signed (zero point 128)
        return 255.0 if observers[name].min >= 0 else 127.0

    kl = observers[first_relu].threshold("kl")
    activations = result.artifacts["activations"]
    assert activations[first_relu][1] == pytest.approx(kl / levels(first_relu))
    assert activations["input"][1] == pytest.approx(3.0 / levels("input"))


@pytest.mark.parametrize("text, fragment", [
    ("{", "not a readable JSON quantize config"),
    ('{"tensors": [{"method": "kl"}]}', "rule 1: a rule is an object with a 'match'"),
    ('{"tensors": [{"match": "x", "method": "entropy"}]}', "rule 1: unknown method 'entropy'"),
    ('{"tensors": [{"match": "(", "method": "kl"}]}', "rule 1: bad regular expression"),
    ('{"tensors": [{"match": "x", "bins": 3}]}', "rule 1: unknown key(s) bins"),
    ('{"tensors": [{"match": "no_such_tensor", "method": "kl"}]}',
     "rule(s) matching no quantized tensor: 'no_such_tensor'"),
])
def test_bad_config_files(tmp_path, text, fragment):
    config = tmp_path / "q.json"
    config.write_text(text)
    with pytest.raises(OptcError, match=re.escape(fragment)):
        optc.optimize(DIGITS, passes=f"default,quantize{{probe=false config={config}}}",
                      calib=DATA)
    with pytest.raises(OptcError, match="quantize config file not found"):
        optc.optimize(DIGITS, passes=f"quantize{{config={tmp_path / 'none.json'}}}", calib=DATA)


def test_activation_params_by_hand():
    from optc.passes.quant.qdq import activation_params

    # symmetric: [0, T] on 256 levels, [-T, T] on 255 around 128 (int8: shifted by -128)
    assert activation_params(2.55, 0.0, 2.0) == (pytest.approx(0.01), 0)
    assert activation_params(1.27, -1.0, 1.2) == (pytest.approx(0.01), 128)
    assert activation_params(1.27, -1.0, 1.2, signed=True) == (pytest.approx(0.01), 0)
    assert activation_params(2.55, 0.0, 2.0, signed=True) == (pytest.approx(0.01), -128)
    # asymmetric: [max(lo, -T), min(hi, T)] on 256 levels, zero point -lo / s rounded
    assert activation_params(10.0, -0.5, 2.05, symmetric=False) == (pytest.approx(0.01), 50)
    assert activation_params(1.0, -3.0, 2.0, symmetric=False) == (pytest.approx(2 / 255), 128)
    assert activation_params(10.0, -0.5, 2.05, symmetric=False, signed=True) == (
        pytest.approx(0.01), -78)
    assert activation_params(1.0, 0.5, 0.8, symmetric=False) == (pytest.approx(0.8 / 255), 0)


@pytest.mark.parametrize("atype, symmetric", [("int8", "true"), ("int8", "false"),
                                              ("uint8", "false")])
def test_int8_and_asymmetric_activations_on_digits(atype, symmetric):
    model, _ = optc.optimize(DIGITS, passes=f"default,quantize{{probe=false method=percentile "
                                            f"activation-type={atype} symmetric={symmetric}}}",
                             calib={"input": DATA["input"][:200]})
    qs = [n for n in model.graph.nodes if n.op_type == "QuantizeLinear"]
    want = np.int8 if atype == "int8" else np.uint8
    assert qs and all(n.inputs[2].const_value.dtype == want for n in qs)
    _assert_int8_digits_ok(serialize(model))


# --- decide, then apply: the plan replays --------------------------------------------------
def _without_pipeline(model) -> bytes:
    model.metadata_props.pop("optc.pipeline", None)
    return serialize(model)


@pytest.mark.parametrize("options", [
    "probe=false", "probe=false method=kl symmetric=false activation-type=int8",
    "probe=false per-channel=false reduce-range=true bias-correction=false",
    "probe=false min-sqnr=30", "probe=true", "mode=weight-only", "mode=dynamic"])
def test_plan_replays_the_run_bit_identically(tmp_path, options):
    from optc.passes import Quantize
    from optc.pipeline import Pipeline

    base, _ = optc.optimize(DIGITS)
    decided = optc.load(serialize(base))
    q = Pipeline.parse(f"quantize{{{options}}}").passes[0]
    result = q(decided, PassContext(calibration_data={"input": DATA["input"][:64]}))
    assert result.modified
    path = tmp_path / "plan.json"
    result.artifacts["plan"].write(path)
    replayed = optc.load(serialize(base))
    again = Quantize(plan=str(path))(replayed)  # no calibration data, no timing
    assert again.stats["layers"] == result.stats["layers"]
    assert _without_pipeline(replayed) == _without_pipeline(decided)
    # the pass and the plan are data: the same pass object decides the same plan again
    if "probe=true" not in options:
        other = optc.load(serialize(base))
        q(other, PassContext(calibration_data={"input": DATA["input"][:64]}))
        assert _without_pipeline(other) == _without_pipeline(decided)


def test_apply_is_deterministic_and_leaves_decide_inputs_alone():
    from optc.passes import Quantize

    model, _ = optc.optimize(DIGITS)
    before = serialize(model)
    q = Quantize(probe=False)
    plan, _ = q.decide(model, PassContext(calibration_data={"input": DATA["input"][:64]}))
    assert serialize(model) == before  # decide measures on copies only
    copies = [optc.load(before) for _ in range(2)]
    for m in copies:
        q.apply(m, plan)
    assert serialize(copies[0]) == serialize(copies[1])


def test_passes_are_frozen():
    import dataclasses

    from optc.passes import Quantize

    with pytest.raises(dataclasses.FrozenInstanceError):
        Quantize().probe = False


@pytest.mark.parametrize("content, fragment", [
    (None, "quantization plan not found"),
    ("{not json", "not a readable JSON quantization plan"),
    ('{"groups": []}', "not a quantization plan"),
    ('{"format": "optc.quantize-plan", "version": 99}', "plan version 99"),
    ('{"format": "optc.quantize-plan", "version": 1, "mode": "static"}', "malformed"),
])
def test_bad_plan_files_are_one_line_errors(tmp_path, content, fragment):
    path = tmp_path / "plan.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(OptcError, match=fragment):
        optc.optimize(DIGITS, passes=f"quantize{{plan={path}}}")


def test_plan_for_another_model_is_refused(tmp_path):
    from optc.passes import Quantize

    model, _ = optc.optimize(DIGITS)
    result = Quantize(probe=False)(model, PassContext(calibration_data={"input":
                                                                         DATA["input"][:32]}))
    plan = result.artifacts["plan"]
    plan.layers["no_such_layer"] = (True, "quantized")
    path = tmp_path / "plan.json"
    plan.write(path)
    with pytest.raises(OptcError, match="no_such_layer are not quantizable layers"):
        optc.optimize(DIGITS, passes=f"quantize{{plan={path}}}")


def _gemm_chain(x_scale: float, bias: float, weight_nan: bool = False):
    """x -> Gemm(W, B) -> Relu -> Gemm: inputs scaled by ``x_scale`` (1e-30: an almost-zero
    activation whose bias scale s_x * s_w underflows), first bias ``bias``."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 6)).astype(np.float32)
    if weight_nan:
        w1[0, 0] = np.nan
    inits = [numpy_helper.from_array(w1, "w1"),
             numpy_helper.from_array(np.full(6, bias, np.float32), "b1"),
             numpy_helper.from_array(rng.standard_normal((6, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.float32(x_scale), "k")]
    nodes = [helper.make_node("Mul", ["x", "k"], ["xs"]),
             helper.make_node("Gemm", ["xs", "w1", "b1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2"], ["y"], name="fc2")]
    m = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits),
        opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


CHAIN_DATA = {"x": np.random.default_rng(1).standard_normal((16, 8)).astype(np.float32)}


@pytest.mark.parametrize("x_scale, bias", [(1e-30, 0.5), (1e-8, 1e4), (0.0, 0.5)])
def test_tiny_ranges_and_big_biases_never_give_nan_or_overflowed_parameters(x_scale, bias):
    """An (almost) all-zero input and a bias the int32 grid of s_x * s_w cannot hold: every
    written parameter is finite, the int32 bias is in range, and the output matches float."""
    import warnings

    from onnx import numpy_helper

    from optc.errors import OptcWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # "invalid value in cast" included
        warnings.simplefilter("ignore", OptcWarning)
        model, _ = optc.optimize(_gemm_chain(x_scale, bias), passes="quantize{probe=false}",
                                 calib=CHAIN_DATA)
    data = serialize(model)
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    for t in proto.graph.initializer:
        arr = numpy_helper.to_array(t)
        if arr.dtype.kind == "f":
            assert np.all(np.isfinite(arr)) and np.all(arr[arr != 0] != 0), t.name
    ref = ort_session(_gemm_chain(x_scale, bias).SerializeToString()).run(None, CHAIN_DATA)[0]
    got = ort_session(data).run(None, CHAIN_DATA)[0]
    assert np.all(np.isfinite(got))
    assert np.abs(got - ref).max() <= 0.02 * np.abs(ref).max()


def test_nan_weight_is_a_clear_error():
    with pytest.raises(OptcError, match="node 'fc1' \\(Gemm\\): its weight 'w1' holds NaN"):
        optc.optimize(_gemm_chain(1.0, 0.5, weight_nan=True), passes="quantize{probe=false}",
                      calib=CHAIN_DATA)


def test_sqnr_below_the_floor_warns_naming_layers_and_the_fix():
    from optc.errors import OptcWarning

    with pytest.warns(OptcWarning, match=r"output SQNR [\d.]+ dB .* below 60 dB; most "
                                         r"sensitive layers: 'fc\d' \([\d.]+ dB alone\).*"
                                         r"quantize\{min-sqnr=60\}"):
        optc.optimize(_gemm_chain(1.0, 0.5), passes="quantize{probe=false warn-sqnr=60}",
                      calib=CHAIN_DATA)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", OptcWarning)
        optc.optimize(_gemm_chain(1.0, 0.5), passes="quantize{probe=false warn-sqnr=10}",
                      calib=CHAIN_DATA)
        optc.optimize(_gemm_chain(1.0, 0.5), passes="quantize{probe=false warn-sqnr=0}",
                      calib=CHAIN_DATA)


def test_cli_prints_the_sqnr_warning_on_one_line(tmp_path):
    from click.testing import CliRunner

    from optc.cli import main

    src, out, calib = tmp_path / "m.onnx", tmp_path / "q.onnx", tmp_path / "c.npz"
    src.write_bytes(_gemm_chain(1.0, 0.5).SerializeToString())
    np.savez(calib, **CHAIN_DATA)
    r = CliRunner().invoke(main, ["optimize", str(src), "-o", str(out), "--passes",
                                  "quantize{probe=false warn-sqnr=60}", "--calib", str(calib)])
    assert r.exit_code == 0 and out.exists()
    lines = [x for x in r.stderr.splitlines() if "warning" in x]
    assert len(lines) == 1 and lines[0].startswith("optc: warning: quantize: output SQNR")

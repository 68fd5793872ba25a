"""optc.engine: analyses run on optc.runtime or onnxruntime, auto falls back, both engines
observe the same values; calibration and quantize on a model only onnxruntime runs."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import optc
from optc.engine import Runner
from optc.errors import OptcError
from optc.passes.quant.calibrate import calibrate


def _model(contrib: bool):
    """Conv -> Relu -> (com.microsoft Gelu, which only onnxruntime runs | Sigmoid) -> Conv."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("w1", (4, 3, 3, 3)), ("w2", (2, 4, 1, 1)))]
    act = (helper.make_node("Gelu", ["r"], ["a"], domain="com.microsoft") if contrib
           else helper.make_node("Sigmoid", ["r"], ["a"]))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1] * 4, name="conv1"),
             helper.make_node("Relu", ["c"], ["r"]), act,
             helper.make_node("Conv", ["a", "w2"], ["y"], name="conv2")]
    opsets = [helper.make_opsetid("", 17)] + (
        [helper.make_opsetid("com.microsoft", 1)] if contrib else [])
    m = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 6, 6])], inits),
        opset_imports=opsets)
    m.ir_version = 8
    return optc.load(m)


def _feeds(n=2, seed=0):
    return {"x": np.random.default_rng(seed).standard_normal((n, 3, 6, 6)).astype(np.float32)}


def _seen(runner):
    out = {}
    runner.run(_feeds(), on_value=lambda name, v: out.__setitem__(name, v.copy()))
    return out


def test_both_engines_observe_the_same_values():
    model = _model(contrib=False)
    a, b = Runner(model, "optc"), Runner(model, "ort")
    assert (a.engine, b.engine) == ("optc", "ort")
    seen_a, seen_b = _seen(a), _seen(b)
    assert {"x", "c", "r", "a", "y"} <= set(seen_a) and set(seen_a) == set(seen_b)
    for k in seen_a:
        np.testing.assert_allclose(seen_b[k], seen_a[k], rtol=1e-5, atol=1e-5)


def test_observe_limits_what_is_seen():
    seen = _seen(Runner(_model(contrib=False), "ort", observe={"r"}))
    assert set(seen) == {"r"}


def test_auto_falls_back_to_onnxruntime_and_says_why():
    model = _model(contrib=True)
    with pytest.raises(OptcError, match="com.microsoft"):
        Runner(model, "optc")
    r = Runner(model, "auto")
    assert r.engine == "ort" and "com.microsoft" in r.why
    assert "a" in _seen(r)


def test_bad_engine_and_bad_feeds():
    with pytest.raises(OptcError, match="unknown engine 'gpu'"):
        Runner(_model(contrib=False), "gpu")
    r = Runner(_model(contrib=False), "auto")
    with pytest.raises(OptcError, match="dim 1 must be 3"):  # the caller's error: no fallback
        r.run({"x": np.zeros((1, 4, 6, 6), np.float32)})
    assert r.engine == "optc"


def test_calibration_on_either_engine_gives_the_same_ranges():
    data = _feeds(8, seed=3)
    model = _model(contrib=False)
    a = calibrate(model, data, batch_size=4, engine="optc")
    info = {}
    b = calibrate(model, data, batch_size=4, engine="ort", runner_info=info)
    assert info["engine"] == "ort" and set(a) == set(b)
    for k in a:
        assert a[k].min == pytest.approx(b[k].min, rel=1e-5, abs=1e-6)
        assert a[k].max == pytest.approx(b[k].max, rel=1e-5, abs=1e-6)


def test_quantize_a_model_only_onnxruntime_runs():
    """The contrib Gelu makes optc.runtime refuse the model; quantize calibrates it in
    onnxruntime (the stats say so) and the result runs in onnxruntime."""
    from optc.ir import serialize
    from optc.validate import ort_session

    model, report = optc.optimize(_model(contrib=True), passes="quantize{probe=false}",
                                  calib=_feeds(8, seed=4))
    stats = report.records[-1].stats
    assert stats["engine"] == "ort" and stats["layers"] == 2
    out = ort_session(serialize(model)).run(None, _feeds(2, seed=5))[0]
    assert out.shape == (2, 2, 6, 6) and np.all(np.isfinite(out))
    with pytest.raises(OptcError, match="com.microsoft"):
        optc.optimize(_model(contrib=True), passes="quantize", calib=_feeds(8), engine="optc")

"""Hypothesis property tests: on random Conv/BN/Relu/Clip/Add/Concat graphs (plus the things
cleanup removes), every pass and the default pipeline keep verify() true, leave the outputs
unchanged in onnxruntime, pass the checker, and are idempotent."""

import pytest
from hypothesis import HealthCheck, given, settings

import optc
from optc.pass_base import PassContext
from optc.ir import serialize, verify
from optc.pass_base import registry
from optc.pipeline import run_pipeline
from tests.util import assert_same_outputs, random_models, run_pass

PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("name", sorted(n for n, cls in registry().items() if cls.lossless))
@PROPERTY
@given(model=random_models())
def test_pass_properties(name, model):
    p = registry()[name]()
    m = optc.load(model)
    run_pass(p, m)
    assert_same_outputs(model, serialize(m))
    once = serialize(m)
    assert run_pass(p, m) is False
    assert serialize(m) == once


@PROPERTY
@given(model=random_models(max_ops=14))
def test_default_pipeline_properties(model):
    m = optc.load(model)
    bns = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
    report = run_pipeline(m, "default")
    verify(m.graph)
    # a BN with nothing to fold into becomes Mul+Add (one node more), everything else shrinks
    assert report.nodes_after <= report.nodes_before + bns
    assert "BatchNormalization" not in {n.op_type for n in m.graph.nodes}
    assert_same_outputs(model, serialize(m))
    # default has reached a fixed point: running it again changes nothing
    once = serialize(m)
    again = run_pipeline(m, "default")
    assert not any(r.modified for r in again.records), [r.name for r in again.records
                                                         if r.modified]
    assert serialize(m) == once


@PROPERTY
@given(model=random_models(max_ops=14))
def test_fused_targets_properties(model):
    """default + fuse-act{target=ort} runs in onnxruntime, + fuse-act{target=optc} in
    optc.runtime, both with the original's outputs."""
    import numpy as np

    from optc.runtime import InferenceSession
    from optc.validate import ort_session, random_feeds, run

    m = optc.load(model)
    run_pipeline(m, "default,fuse-act{target=ort}")
    assert_same_outputs(model, serialize(m))
    m = optc.load(model)
    run_pipeline(m, "default,fuse-act{target=optc}")
    s = ort_session(model.SerializeToString())
    feeds = random_feeds(s, seed=5)
    for r, o in zip(run(s, feeds).values(), InferenceSession(serialize(m)).run(None, feeds)):
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-6 * max(np.abs(r).max(), 1e-30))


@PROPERTY
@given(model=random_models(max_ops=10))
def test_quantize_properties(model):
    """quantize on random graphs: valid, runs in onnxruntime and optc.runtime with the same
    results, and a second run changes nothing."""
    import numpy as np
    import onnx

    from optc.passes import Quantize
    from optc.runtime import InferenceSession
    from optc.validate import ort_session, random_feeds, run

    x = model.graph.input[0]
    shape = [d.dim_value for d in x.type.tensor_type.shape.dim]
    calib = {x.name: np.random.default_rng(0).standard_normal([8] + shape[1:]).astype(
        np.float32)}
    m = optc.load(model)
    q = Quantize(batch_size=1, probe=False)
    q(m, PassContext(calibration_data=calib))
    verify(m.graph)
    data = serialize(m)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    s = ort_session(data)
    feeds = random_feeds(s, seed=6)
    for r, o in zip(run(s, feeds).values(), InferenceSession(data).run(None, feeds)):
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-5 * max(np.abs(r).max(), 1e-30))
    assert q(m, PassContext(calibration_data=calib)).modified is False

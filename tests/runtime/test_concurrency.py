"""Sessions own their settings: two sessions with different RuntimeConfigs, run at the same
time from several threads, each give exactly the outputs they give alone."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

import optc
from optc.ir import serialize
from optc.runtime import InferenceSession
from tests.util import MODELS


def _fused_mobilenet() -> bytes:
    # FusedConv (C conv, depthwise and residual paths), pools and the Gemm head
    model, _ = optc.optimize(MODELS / "mobilenetv2_mini.onnx",
                             passes="default,fuse-act{target=optc}")
    return serialize(model)


def test_sessions_with_different_configs_run_concurrently():
    data = _fused_mobilenet()
    rng = np.random.default_rng(0)
    feeds = [{"input": rng.standard_normal((2, 3, 64, 64)).astype(np.float32)}
             for _ in range(3)]
    sessions = {"c": InferenceSession(data), "numpy": InferenceSession(data, native=False)}
    assert sessions["c"].config.native and not sessions["numpy"].config.native
    alone = {k: [s.run(None, f)[0] for f in feeds] for k, s in sessions.items()}
    # the two paths round differently: a session running the other's path would show
    assert any(not np.array_equal(a, b) for a, b in zip(alone["c"], alone["numpy"]))
    np.testing.assert_allclose(alone["c"][0], alone["numpy"][0], rtol=1e-4, atol=1e-4)

    def work(job):
        kind, i = job
        return kind, i, sessions[kind].run(None, feeds[i])[0]

    jobs = [(kind, i) for _ in range(6) for kind in sessions for i in range(len(feeds))]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, jobs))
    for kind, i, got in results:
        np.testing.assert_array_equal(got, alone[kind][i], err_msg=f"{kind} session, feed {i}")


def test_a_session_keeps_its_prepared_state_to_itself():
    # two sessions of one model each prepare their own per-node state (packed weights,
    # resolved calls): one switching to NumPy never touches the other's
    data = _fused_mobilenet()
    feeds = {"input": np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(
        np.float32)}
    a, b = InferenceSession(data), InferenceSession(data)
    states_a = [s.attrs.get("_state") for s in a._steps]
    states_b = [s.attrs.get("_state") for s in b._steps]
    assert any(x is not None for x in states_a)
    assert all(x is None or x is not y for x, y in zip(states_a, states_b))
    np.testing.assert_array_equal(a.run(None, feeds)[0], b.run(None, feeds)[0])

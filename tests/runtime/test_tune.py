"""Per-CPU tuning (optc.runtime.tune) and the winograd pass's tile=tune: what the CPU reports,
the tuning file (one timing per layer shape and CPU, atomic, robust to a broken file), and
that every choice the tuner can make computes the same convolution as the NumPy reference."""

import json

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import optc
from optc.errors import OptcError
from optc.runtime import InferenceSession
from optc.runtime import tune
from optc.runtime.kernels import native


@pytest.fixture
def tune_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTC_TUNE_DIR", str(tmp_path))
    return tmp_path


def _conv_model(c, m, h, w, pads, act=None, residual=False, seed=0, batch=1):
    """x -> Conv 3x3 (-> Add z) (-> act) -> y, seeded weights, a symbolic batch dim if batch
    is None."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((m, c, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(m).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=pads)]
    ho, wo = h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2
    n = batch if batch else "N"
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, c, h, w])]
    last = "c"
    if residual:
        inputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [n, m, ho, wo]))
        nodes.append(helper.make_node("Add", [last, "z"], ["r"]))
        last = "r"
    if act:
        nodes.append(helper.make_node(act, [last], ["a"]))
        last = "a"
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(nodes, "conv", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _file(tune_dir):
    [path] = list(tune_dir.glob("*.json"))
    return path, json.loads(path.read_text())


def test_cpu_info_reports_what_the_kernels_run():
    info = tune.cpu_info()
    assert info.simd_float == native.ssimd() and info.simd_int8 == native.qsimd()
    assert set(info.flags) <= set(tune.ISA_FLAGS)
    if native.ssimd() >= 2:  # the AVX-512 GEMM runs only where the CPU says avx512f
        assert "avx512f" in info.flags
    if native.ssimd() >= 1:
        assert {"avx2", "fma"} <= set(info.flags)
    assert info.l1d >= 0 and info.l2 >= 0 and info.l3 >= 0
    assert len(tune.cpu_key(info)) == 12


def test_a_capped_simd_level_is_another_cpu_to_the_tuning_file():
    top = native.ssimd()
    key = tune.cpu_key()
    try:
        native.ssimd(0)
        assert tune.cpu_key() != key  # timings taken at another level are not reused
    finally:
        native.ssimd(top)
    assert tune.cpu_key() == key


def test_each_layer_shape_is_timed_once_per_cpu(tune_dir):
    model = _conv_model(16, 16, 12, 12, [1, 1, 1, 1], act="Relu")
    out, report = optc.optimize(model, passes="fuse-act{target=optc},winograd{tile=tune}")
    path, data = _file(tune_dir)
    assert data["cpu"]["model"] == tune.cpu_info().model
    [(signature, entry)] = data["choices"].items()
    assert "c16 m16 in1x16x12x12" in signature and "actRelu" in signature
    assert set(entry["ms"]) == {"0", "2", "4"} and entry["choice"] in entry["ms"]
    assert min(entry["ms"], key=entry["ms"].get) == entry["choice"]
    lowered = [n for n in out.graph.nodes if n.op_type == "WinogradConv"]
    if entry["choice"] == "0":
        assert not lowered
    else:
        assert [n.attr("tile") for n in lowered] == [int(entry["choice"])]
    before = path.read_text()
    calls = []
    real = tune.time_candidates
    try:
        tune.time_candidates = lambda runs, **kw: calls.append(runs) or real(runs, **kw)
        again, _ = optc.optimize(model, passes="fuse-act{target=optc},winograd{tile=tune}")
    finally:
        tune.time_candidates = real
    assert calls == [] and path.read_text() == before  # read from the file, nothing timed
    assert [n.op_type for n in again.graph.nodes] == [n.op_type for n in out.graph.nodes]


def test_a_broken_tuning_file_is_timed_again_and_rewritten(tune_dir):
    path = tune_dir / f"{tune.cpu_key()}.json"
    path.write_text("{ not json")
    optc.optimize(_conv_model(8, 8, 6, 6, [1, 1, 1, 1]), passes="winograd{tile=tune}")
    data = json.loads(path.read_text())
    assert len(data["choices"]) == 1
    assert not list(tune_dir.glob(".tune-*"))  # the atomic write left no temporary file


def test_tune_needs_the_optc_lowering():
    with pytest.raises(OptcError, match="tile=tune times optc.runtime's kernels"):
        optc.optimize(_conv_model(8, 8, 6, 6, [1, 1, 1, 1]),
                      passes="winograd{tile=tune portable=true}")


@settings(max_examples=12, deadline=None)
@given(c=st.integers(1, 12), m=st.integers(1, 12), h=st.integers(3, 13), w=st.integers(3, 13),
       pads=st.lists(st.integers(0, 1), min_size=4, max_size=4),
       act=st.sampled_from([None, "Relu", "HardSwish", "Sigmoid"]), residual=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_every_choice_the_tuner_can_make_matches_numpy(c, m, h, w, pads, act, residual, seed):
    # each candidate (direct, F(2x2), F(4x4)) forced in turn through the tuner's own path
    # (tuned_tile builds and runs the candidates; the choice is then what lowers the layer),
    # against the NumPy kernels on the original model, within the Winograd error
    model = _conv_model(c, m, h, w, pads, act, residual, seed, batch=None)
    rng = np.random.default_rng(seed)
    feeds = {"x": rng.standard_normal((2, c, h, w)).astype(np.float32)}
    if residual:
        feeds["z"] = rng.standard_normal((2, m, h + pads[0] + pads[2] - 2,
                                          w + pads[1] + pads[3] - 2)).astype(np.float32)
    ref = InferenceSession(model, native=False, optimization="off").run(None, feeds)[0]

    class Forced:
        def __init__(self, choice):
            self.choice, self.ran = choice, []

        def choose(self, signature, runs):
            for name, run in runs().items():  # every candidate builds and runs
                run()
                self.ran.append(name)
            return self.choice

    real = tune.TuningCache
    try:
        for choice in ("0", "2", "4"):
            forced = Forced(choice)
            tune.TuningCache = lambda: forced
            out, _ = optc.optimize(model, passes="fuse-act{target=optc},winograd{tile=tune}")
            assert forced.ran == ["0", "2", "4"]
            kinds = {n.op_type for n in out.graph.nodes}
            assert ("WinogradConv" in kinds) == (choice != "0")
            got = InferenceSession(out, optimization="off").run(None, feeds)[0]
            scale = max(np.abs(ref).max(), 1.0)
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * scale,
                                       err_msg=f"choice {choice}")
    finally:
        tune.TuningCache = real


def test_a_tuned_session_records_its_choices_and_computes_the_same(tune_dir):
    model = _conv_model(24, 16, 20, 20, [1, 1, 1, 1], act="Relu", batch=None)
    x = {"x": np.random.default_rng(3).standard_normal((2, 24, 20, 20)).astype(np.float32)}
    plain = InferenceSession(model).run(None, x)[0]
    tuned = InferenceSession(model, tune=True)
    _, data = _file(tune_dir)
    [signature] = data["choices"]
    assert "in1x24x20x20" in signature  # a symbolic batch is timed at 1
    np.testing.assert_allclose(tuned.run(None, x)[0], plain, rtol=1e-4,
                               atol=1e-4 * np.abs(plain).max())


def _depthwise_model(c, h, w, k, stride, pads, act, seed, fused_act=True):
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((c, 1, k, k)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(c).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y" if not act else "c"], group=c,
                              strides=[stride, stride], pads=pads)]
    if act:
        nodes.append(helper.make_node(act, ["c"], ["y"]))
    graph = helper.make_graph(
        nodes, "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@settings(max_examples=15, deadline=None)
@given(c=st.integers(2, 40), h=st.integers(3, 30), w=st.integers(3, 30),
       k=st.sampled_from([3, 5]), stride=st.integers(1, 2),
       pads=st.lists(st.integers(0, 2), min_size=4, max_size=4),
       act=st.sampled_from([None, "Relu", "HardSwish"]), seed=st.integers(0, 2 ** 16))
def test_every_depthwise_path_the_tuner_can_choose_matches_numpy(c, h, w, k, stride, pads, act,
                                                                 seed):
    if h + pads[0] + pads[2] < k or w + pads[1] + pads[3] < k:
        return  # no output
    model = _depthwise_model(c, h, w, k, stride, pads, act, seed)
    x = {"x": np.random.default_rng(seed).standard_normal((2, c, h, w)).astype(np.float32)}
    ref = InferenceSession(model, native=False, optimization="off").run(None, x)[0]

    class Forced:
        def __init__(self, choice):
            self.choice, self.ran = choice, []

        def choose(self, signature, runs):
            assert signature.startswith(f"depthwise c{c} k{k}x{k} in1x{c}x{h}x{w}")
            for name, run in runs().items():
                run()
                self.ran.append(name)
            return self.choice

    real = tune.TuningCache
    try:
        rows = native.dw_rows_applies((k, k), (stride, stride), (1, 1))
        paths = ["planes", "blocks"] + (["rows"] if rows else [])
        for choice in paths:
            forced = Forced(choice)
            tune.TuningCache = lambda: forced
            out, report = optc.optimize(model, passes="fuse-act{target=optc},tune-depthwise")
            assert forced.ran == paths
            [node] = [n for n in out.graph.nodes if n.op_type == "FusedConv"]
            assert node.attr("depthwise_path") == choice
            got = InferenceSession(out, optimization="off").run(None, x)[0]
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5, err_msg=choice)
    finally:
        tune.TuningCache = real


def test_tune_depthwise_rewrites_a_plain_conv_and_skips_what_it_cannot_time(tune_dir):
    model = _depthwise_model(16, 20, 20, 3, 1, [1, 1, 1, 1], None, 0)
    out, report = optc.optimize(model, passes="tune-depthwise")
    [node] = out.graph.nodes
    assert (node.op_type, node.domain) == ("FusedConv", "ai.optc")
    assert node.attr("depthwise_path") in ("planes", "blocks", "rows")
    _, data = _file(tune_dir)
    [entry] = data["choices"].values()
    assert entry["choice"] == node.attr("depthwise_path")
    # a regular conv is not a candidate, and a dynamic spatial size is counted, not timed
    dyn = _depthwise_model(16, 20, 20, 3, 1, [1, 1, 1, 1], None, 0)
    dyn.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    out, report = optc.optimize(dyn, passes="tune-depthwise")
    assert [n.op_type for n in out.graph.nodes] == ["Conv"]
    assert "kept: unknown input size" in str(report)


def test_an_unknown_depthwise_path_is_an_error():
    from optc.runtime.kernels.fused import fused_conv

    x = np.zeros((1, 4, 5, 5), np.float32)
    with pytest.raises(OptcError, match="depthwise_path must be one of auto, planes, blocks, rows"):
        fused_conv(x, np.zeros((4, 1, 3, 3), np.float32), group=4, depthwise_path="fast")


def test_tune_depthwise_twice_is_once(tune_dir):
    model = _depthwise_model(16, 20, 20, 3, 1, [1, 1, 1, 1], "Relu", 0)
    once, r1 = optc.optimize(model, passes="fuse-act{target=optc},tune-depthwise")
    twice, r2 = optc.optimize(once, passes="tune-depthwise")
    assert "kept: path already chosen" in str(r2)
    assert [(n.op_type, n.attr("depthwise_path")) for n in twice.graph.nodes] == \
        [(n.op_type, n.attr("depthwise_path")) for n in once.graph.nodes]


def test_an_unwritable_tuning_directory_warns_and_still_tunes(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("OPTC_TUNE_DIR", str(blocker / "tune"))
    model = _conv_model(8, 8, 6, 6, [1, 1, 1, 1])
    with pytest.warns(RuntimeWarning, match="cannot write the tuning file .*choices are not kept"):
        out, _ = optc.optimize(model, passes="winograd{tile=tune}")
    x = {"x": np.random.default_rng(0).standard_normal((1, 8, 6, 6)).astype(np.float32)}
    ref = InferenceSession(model, optimization="off").run(None, x)[0]
    np.testing.assert_allclose(InferenceSession(out, optimization="off").run(None, x)[0], ref,
                               rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert blocker.read_text() == ""  # nothing written where it cannot go

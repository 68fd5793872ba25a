"""Calibration DATA for models whose inputs are not all batched (per-run feeds: a list of
dicts, or a folder of *.feed.npz), and --input-shape (fixing dynamic dims)."""

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import optc
from optc.cli import main
from optc.data import read_calibration
from optc.errors import OptcError
from optc.ir import serialize, set_input_shapes
from optc.validate import ort_session


def stateful():
    """A VAD-like step: x [B, 16] audio, state [2, B, 8], a scalar gain; a Gemm of the audio
    and the state's first half, Relu, a Gemm to the new state and an output."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.3, n)
             for n, s in (("w1", (16, 8)), ("w2", (8, 8)), ("w3", (8, 1)))]
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "zero"))
    nodes = [
        helper.make_node("Gather", ["state", "zero"], ["s0"], axis=0),
        helper.make_node("Squeeze", ["s0", "zero"], ["h"]),
        helper.make_node("MatMul", ["x", "w1"], ["a"], name="fc1"),
        helper.make_node("Add", ["a", "h"], ["ah"]),
        helper.make_node("Mul", ["ah", "gain"], ["g"]),
        helper.make_node("Relu", ["g"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["h2"], name="fc2"),
        helper.make_node("Unsqueeze", ["h2", "zero"], ["h3"]),
        helper.make_node("Concat", ["h3", "h3"], ["new_state"], axis=0),
        helper.make_node("MatMul", ["r", "w3"], ["y"], name="head"),
    ]
    g = helper.make_graph(nodes, "vad", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 16]),
        helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "B", 8]),
        helper.make_tensor_value_info("gain", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 1]),
         helper.make_tensor_value_info("new_state", TensorProto.FLOAT, [2, "B", 8])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def runs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, 16)).astype(np.float32),
             "state": rng.standard_normal((2, 1, 8)).astype(np.float32),
             "gain": np.array(rng.uniform(0.5, 2), np.float32)} for _ in range(n)]


def test_a_list_of_feeds_calibrates_a_stateful_model():
    model, report = optc.optimize(stateful(), passes="quantize{probe=false}", calib=runs(12))
    assert report.records[-1].stats["layers"] == 3
    s_ref, s_new = ort_session(stateful().SerializeToString()), ort_session(serialize(model))
    for f in runs(4, seed=9):
        for r, o in zip(s_ref.run(None, f), s_new.run(None, f)):
            assert o.shape == r.shape
            assert np.abs(o - r).max() <= 0.05 * np.abs(r).max() + 1e-3


def test_a_folder_of_feed_files(tmp_path):
    for i, f in enumerate(runs(5)):
        np.savez(tmp_path / f"run{i:02d}.feed.npz", **f)
    data = read_calibration(tmp_path, optc.load(stateful()))
    assert isinstance(data, list) and len(data) == 5
    np.testing.assert_array_equal(data[2]["x"], runs(5)[2]["x"])
    src, out = tmp_path / "m.onnx", tmp_path / "q.onnx"
    src.write_bytes(stateful().SerializeToString())
    r = CliRunner().invoke(main, ["optimize", str(src), "-o", str(out), "--passes",
                                  "quantize{probe=false}", "--calib", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert sum(n.op_type == "DequantizeLinear" for n in onnx.load(out).graph.node) >= 3


@pytest.mark.parametrize("bad, fragment", [
    (lambda f: {k: v for k, v in f.items() if k != "gain"}, "no value for model input(s) gain"),
    (lambda f: {**f, "extra": f["gain"]}, "key(s) extra match no model input"),
    (lambda f: {**f, "state": f["state"][:1]}, "input 'state' has shape [1, 1, 8], the model "
                                               "takes [2, '?', 8]"),
    (lambda f: {**f, "x": f["x"].astype(np.float64)}, "input 'x' is float64"),
])
def test_bad_feed_files_are_named(tmp_path, bad, fragment):
    good = runs(2)
    np.savez(tmp_path / "a.feed.npz", **good[0])
    np.savez(tmp_path / "b.feed.npz", **bad(good[1]))
    with pytest.raises(OptcError) as e:
        read_calibration(tmp_path, optc.load(stateful()))
    assert "b.feed.npz" in str(e.value) and fragment in str(e.value)


def test_mixed_forms_and_the_hint_for_unbatched_samples(tmp_path):
    np.savez(tmp_path / "a.feed.npz", **runs(1)[0])
    np.savez(tmp_path / "samples.npz", x=np.zeros((3, 16), np.float32))
    with pytest.raises(OptcError, match="mixes per-run feeds"):
        read_calibration(tmp_path, optc.load(stateful()))
    single = tmp_path / "one.npz"
    np.savez(single, x=np.zeros((4, 16), np.float32), state=np.zeros((2, 4, 8), np.float32),
             gain=np.array(1.0, np.float32))
    with pytest.raises(OptcError, match=r"different sample counts.*\*\.feed\.npz"):
        read_calibration(single, optc.load(stateful()))


def test_set_input_shapes_fixes_dims_and_what_follows():
    model = optc.load(stateful())
    set_input_shapes(model, {"x": (3, 16), "state": (2, 3, 8)})
    g = model.graph
    assert g.inputs[0].shape == (3, 16) and g.inputs[1].shape == (2, 3, 8)
    assert g.outputs[0].shape == (3, 1)


@pytest.mark.parametrize("shapes, fragment", [
    ({"nope": (1, 16)}, "no input 'nope' (inputs: x, state, gain)"),
    ({"x": (1, 16, 1)}, "the input has rank 2"),
    ({"x": (1, 15)}, "dim 1 is fixed to 16"),
    ({"x": (0, 16)}, "dims must be positive"),
])
def test_bad_input_shapes(shapes, fragment):
    with pytest.raises(OptcError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        set_input_shapes(optc.load(stateful()), shapes)


def test_cli_input_shape(tmp_path):
    from tests.util import MODELS

    src = tmp_path / "dyn.onnx"
    m = onnx.load(MODELS / "resnet_mini.onnx")
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    src.write_bytes(m.SerializeToString())
    out = tmp_path / "fixed.onnx"
    r = CliRunner().invoke(main, ["optimize", str(src), "-o", str(out), "--input-shape",
                                  f"{m.graph.input[0].name}=2,3,32,32"])
    assert r.exit_code == 0, r.output
    dims = [d.dim_value for d in onnx.load(out).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 3, 32, 32]
    r = CliRunner().invoke(main, ["optimize", str(src), "-o", str(out), "--input-shape",
                                  "a=1,2"])
    assert r.exit_code != 0 and "no input 'a'" in r.output

"""The optc command line: happy paths and every kind of bad input (one-line error, non-zero
exit, nothing written)."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
from pathlib import Path

from click.testing import CliRunner

import optc
from optc.cli import main
from optc.pass_base import PassResult
from optc.pipeline import METADATA_KEY
from tests.util import LIGHT_MODELS, MODELS, assert_same_outputs

RESNET = str(MODELS / "resnet_mini.onnx")
DIGITS = str(MODELS / "digits_cnn.onnx")


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("optc: error: "), lines[0]
    for f in fragments:
        assert f in lines[0], lines[0]


def test_optimize_validate_report_timing(tmp_path):
    out = tmp_path / "out.onnx"
    r = invoke("optimize", RESNET, "-o", out, "--validate", "--report", tmp_path / "rep",
               "--timing")
    assert r.exit_code == 0, r.stderr
    assert "validate logits" in r.stderr and "pass timing" in r.stderr
    assert_same_outputs(RESNET, str(out))
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["nodes_before"] == 52 and report["validation"][0]["within_tolerance"]
    assert [p["name"] for p in report["passes"]][0] == "freeze-initializers"
    assert optc.load(out).metadata_props[METADATA_KEY].startswith("freeze-initializers,")


def test_optimize_light_model_shrinks(tmp_path):
    out = tmp_path / "squeezenet.onnx"
    path = next(p for p in LIGHT_MODELS if "squeezenet" in p)
    r = invoke("optimize", path, "-o", out, "--validate")
    assert r.exit_code == 0, r.stderr
    assert "105 -> 65 nodes" in r.stderr
    onnx.checker.check_model(str(out), full_check=True)


def test_print_ir_after(tmp_path):
    r = invoke("optimize", RESNET, "-o", tmp_path / "o.onnx", "--passes", "cleanup",
               "--print-ir-after", "dce")
    assert r.exit_code == 0
    assert "IR after dce" in r.stdout and "= Conv[" in r.stdout


def test_passes_lists_every_pass_with_options():
    r = invoke("passes")
    assert r.exit_code == 0
    for name in optc.pass_base.registry():
        assert name in r.stdout
    assert "size-limit-mb=1024.0" in r.stdout and "default" in r.stdout


def test_inspect_counts_macs():
    r = invoke("inspect", DIGITS)
    assert r.exit_code == 0, r.stderr
    # conv1 1->16 3x3 on 8x8: 9,216 MACs; conv2 16->32: 294,912; fc 512x64 + 64x10
    assert "9,216" in r.stdout and "294,912" in r.stdout and "32,768" in r.stdout
    assert "MACs: 337,536" in r.stdout


def test_compare_with_data_reports_top1():
    r = invoke("compare", DIGITS, DIGITS, "--data", MODELS / "digits_test.npz")
    assert r.exit_code == 0, r.stderr
    assert "1.000" in r.stdout and "logits" in r.stdout


def test_unknown_op_passes_through_untouched(tmp_path):
    model = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
    g (float[2] x) => (float[2] y) {
      a = Identity(x)
      b = com.example.Mystery <k = 3> (a)
      y = Relu(b)
    }
    """)
    src = tmp_path / "custom.onnx"
    onnx.save(model, src)
    out = tmp_path / "out.onnx"
    r = invoke("optimize", src, "-o", out)
    assert r.exit_code == 0, r.stderr
    result = onnx.load(out)
    mystery = [n for n in result.graph.node if n.op_type == "Mystery"]
    assert len(mystery) == 1 and mystery[0].domain == "com.example"
    assert mystery[0].attribute[0].i == 3
    assert [n.op_type for n in result.graph.node] == ["Mystery", "Relu"]


@pytest.mark.parametrize("content, fragment", [
    (None, "no such file"),
    (b"", "empty file"),
    (os.urandom(2048), "not an ONNX model"),
    ("truncated", "not an ONNX model"),
])
def test_bad_model_files(tmp_path, content, fragment):
    src = tmp_path / "in.onnx"
    if content == "truncated":
        data = open(RESNET, "rb").read()
        src.write_bytes(data[: len(data) // 2])
    elif content is not None:
        src.write_bytes(content)
    out = tmp_path / "out.onnx"
    r = invoke("optimize", src, "-o", out)
    assert_one_line_error(r, str(src), fragment)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if content is None else ["in.onnx"])


@pytest.mark.parametrize("passes, fragment", [
    ("fold-constans", "did you mean 'fold-constants'?"),
    ("dce{aggressive=true}", "pass 'dce' has no option 'aggressive'"),
    ("fold-constants{size-limit-mb=lots}", "expects a number, got 'lots'"),
])
def test_bad_pipelines(tmp_path, passes, fragment):
    out = tmp_path / "out.onnx"
    r = invoke("optimize", RESNET, "-o", out, "--passes", passes)
    assert_one_line_error(r, fragment)
    assert list(tmp_path.iterdir()) == []


def test_output_directory_missing(tmp_path):
    r = invoke("optimize", RESNET, "-o", tmp_path / "no" / "out.onnx")
    assert_one_line_error(r, "does not exist")


def test_validate_failure_writes_nothing(tmp_path, monkeypatch):
    # a "lossless" pass with a bug that changes the numbers must be caught by --validate
    from optc.passes.cleanup.dce import DCE

    real_run = DCE.run

    def buggy(self, model, ctx):
        result = real_run(self, model, ctx)
        w = next(v for v in model.graph.initializers.values() if v.const_value.ndim == 4)
        w.set_const(w.const_value * 1.01)
        return result

    monkeypatch.setattr(DCE, "run", buggy)
    out = tmp_path / "out.onnx"
    r = invoke("optimize", RESNET, "-o", out, "--validate")
    assert r.exit_code != 0
    assert "optc: error: validation failed: output 'logits'" in r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_pass_crash_is_one_line_with_reproducer(tmp_path, monkeypatch):
    from optc.passes.cleanup.cse import CSE

    def crash(self, model, ctx):
        raise KeyError("boom")

    monkeypatch.setattr(CSE, "run", crash)
    out = tmp_path / "out.onnx"
    r = invoke("optimize", RESNET, "-o", out)
    assert_one_line_error(r, "pass 'cse' failed: KeyError", "reproducer written to")
    repro = r.stderr.split("reproducer written to ")[1].strip()
    assert (open(os.path.join(repro, "pipeline.txt")).read().strip().endswith(",cse"))
    assert not out.exists()


def test_compare_data_that_does_not_match_inputs(tmp_path):
    import numpy as np

    data = tmp_path / "d.npz"
    np.savez(data, wrong_name=np.zeros((2, 1, 8, 8), np.float32))
    r = invoke("compare", DIGITS, DIGITS, "--data", data)
    assert_one_line_error(r, "no data for model input(s) input", "wrong_name")


def test_console_script_and_module_entry_points(tmp_path):
    # the installed `optc` script and `python -m optc` both work and exit non-zero on errors
    r = subprocess.run([sys.executable, "-m", "optc", "optimize", str(tmp_path / "x.onnx"),
                        "-o", str(tmp_path / "y.onnx")], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip() == f"optc: error: {tmp_path / 'x.onnx'}: no such file"
    r = subprocess.run(["optc", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "optimize" in r.stdout


def test_debug_shows_traceback(tmp_path):
    result = CliRunner().invoke(main, ["--debug", "optimize", str(tmp_path / "x.onnx"), "-o",
                                       str(tmp_path / "y.onnx")])
    assert result.exit_code != 0
    assert isinstance(result.exception, optc.OptcError)


def test_run_with_given_and_random_inputs(tmp_path):
    import numpy as np

    x = tmp_path / "x.npy"
    np.save(x, np.load(MODELS / "digits_test.npz")["input"][:4])
    out = tmp_path / "out.npz"
    r = invoke("run", DIGITS, "--input", f"input={x}", "-o", out)
    assert r.exit_code == 0, r.stderr
    assert "peak activation memory" in r.stdout
    logits = np.load(out)["logits"]
    labels = np.load(MODELS / "digits_test.npz")["labels"][:4]
    assert logits.shape == (4, 10) and (logits.argmax(1) == labels).all()
    r = invoke("run", RESNET, "--runtime", "ort")
    assert r.exit_code == 0 and "logits" in r.stdout


@pytest.mark.parametrize("args, fragment", [
    (["--input", "nope=x.npy"], "the model has no such input"),
    (["--input", "input"], "is not NAME=FILE.npy"),
    (["--input", "input=missing.npy"], "cannot read it as a .npy array"),
])
def test_run_bad_inputs(tmp_path, args, fragment):
    r = invoke("run", DIGITS, *args)
    assert_one_line_error(r, fragment)


def test_run_wrong_shape_is_one_line(tmp_path):
    import numpy as np

    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 8, 8), np.float32))
    r = invoke("run", DIGITS, "--input", f"input={x}")
    assert_one_line_error(r, "input 'input' must have rank 4")


def test_bench_prints_ratio_against_onnxruntime():
    r = invoke("bench", DIGITS, "--repeat", "3", "--warmup", "1")
    assert r.exit_code == 0, r.stderr
    assert "onnxruntime" in r.stdout and "ratio optc/ort" in r.stdout
    assert "peak activation memory" in r.stdout


def test_bench_a_lowered_model_against_onnxruntime_on_the_original():
    r = invoke("bench", RESNET, "--repeat", "2", "--warmup", "1", "--passes",
               "default,fuse-act{target=optc},winograd")
    assert r.exit_code == 0, r.stderr
    assert "ratio optc/ort" in r.stdout
    r = invoke("bench", RESNET, "--runtime", "ort", "--passes", "default")
    assert_one_line_error(r, "use --runtime optc")


def test_bench_at_bf16_reports_its_error_or_why_it_cannot_run():
    from optc.runtime.kernels import native

    r = invoke("bench", RESNET, "--repeat", "2", "--warmup", "1", "--precision", "bf16")
    if native.bf16_available():
        assert r.exit_code == 0, r.stderr
        line = r.stdout.strip().splitlines()[-1]
        error = float(line.split("bf16: max error ")[1].split()[0])
        assert 0 < error < 2e-2  # bf16 products: a small error, and not none
    else:
        assert_one_line_error(r, "AMX-BF16")
    r = invoke("bench", RESNET, "--runtime", "ort", "--precision", "bf16")
    assert_one_line_error(r, "use --runtime optc")


@pytest.mark.parametrize("passes", ["default,winograd", "default,fft{min-kernel=3}"])
def test_validate_a_lowered_model_in_optc_runtime(tmp_path, passes):
    out = tmp_path / "out.onnx"
    r = invoke("optimize", RESNET, "-o", out, "--passes", passes, "--validate")
    assert r.exit_code == 0, r.stderr
    assert "validate logits" in r.stderr and out.exists()


def test_compare_in_optc_runtime():
    r = invoke("compare", RESNET, RESNET, "--runtime", "optc")
    assert r.exit_code == 0, r.stderr
    assert "(optc)" in r.stdout and "1.00000000" in r.stdout


@pytest.mark.parametrize("target, domain", [("ort", "com.microsoft"), ("optc", "ai.optc")])
def test_optimize_target(tmp_path, target, domain):
    src = str(MODELS / "mobilenetv2_mini.onnx")
    out = tmp_path / "out.onnx"
    r = invoke("optimize", src, "-o", out, "--validate", "--target", target)
    assert r.exit_code == 0, r.stderr
    model = onnx.load(out)
    fused = [n for n in model.graph.node if n.op_type == "FusedConv"]
    assert fused and all(n.domain == domain for n in fused)
    assert not any(n.op_type in ("BatchNormalization", "Clip") for n in model.graph.node)
    if target == "ort":
        assert_same_outputs(src, str(out))
    else:
        from optc.runtime import InferenceSession
        from optc.validate import ort_session, random_feeds, run

        s = ort_session(src)
        feeds = random_feeds(s, batch=2)
        ref = run(s, feeds)["logits"]
        got = InferenceSession(out).run(None, feeds)[0]
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6 * abs(ref).max())


def test_target_needs_fuse_act(tmp_path):
    r = invoke("optimize", RESNET, "-o", tmp_path / "o.onnx", "--passes", "cleanup",
               "--target", "ort")
    assert_one_line_error(r, "--target sets fuse-act's target")


def test_bn_with_negative_variance_is_one_line(tmp_path):
    model = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,2,3,3] x) => (float[1,2,3,3] y) <float[2] s = {1.0, 1.0}, float[2] b = {0.0, 0.0},
                                                float[2] m = {0.0, 0.0},
                                                float[2] v = {1.0, -2.0}> {
      r = Relu(x)
      y = BatchNormalization <epsilon = 0.001> (r, s, b, m, v)
    }
    """)
    model.graph.node[1].name = "bn_bad"
    src = tmp_path / "bad_bn.onnx"
    onnx.save(model, src)
    out = tmp_path / "out.onnx"
    r = invoke("optimize", src, "-o", out)
    assert_one_line_error(r, "pass 'fold-bn'", "node 'bn_bad' (BatchNormalization)",
                          "running variance 'v' has negative values")
    assert not out.exists()


def test_optimize_quantize_with_calib(tmp_path):
    out = tmp_path / "int8.onnx"
    r = invoke("optimize", DIGITS, "-o", out, "--passes", "default,quantize{method=mse}",
               "--calib", MODELS / "digits_test.npz", "--validate")
    assert r.exit_code == 0, r.stderr
    assert "validate logits" in r.stderr  # lossy: reported, not failed
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(out).graph.node)


def test_quantize_report(tmp_path):
    out, rep = tmp_path / "int8.onnx", tmp_path / "rep"
    r = invoke("optimize", DIGITS, "-o", out, "--passes",
               "default,quantize{method=kl probe=false min-sqnr=47}",
               "--calib", MODELS / "digits_test.npz", "--report", rep)
    assert r.exit_code == 0, r.stderr
    assert json.loads((rep / "report.json").read_text())["passes"]
    md = (rep / "report.md").read_text()
    assert "## quantize (mode=static, method=kl)" in md
    layers = [n.name for n in onnx.load(out).graph.node if n.op_type in ("Conv", "Gemm")]
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    for name in layers:  # one row per layer, with its SQNR measured
        row = next(line for line in rows if line.startswith(f"| `{name}` | "))
        assert row.split(" | ")[2] != "-"
    assert "back to float for accuracy" in md  # 47 dB is above the all-int8 model's 44.7
    plots = sorted((rep / "quantize").glob("*.png"))
    assert plots and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)
    for p in plots:
        assert f"(quantize/{p.name})" in md


@pytest.mark.parametrize("make, fragment", [
    (lambda p: np.savez(p, other=np.zeros((4, 1, 8, 8), np.float32)),
     "no data for model input(s) input"),
    (lambda p: np.savez(p, input=np.full((4, 1, 8, 8), np.inf, np.float32)),
     "input 'input' holds NaN or Inf"),
    (lambda p: np.savez(p, input=np.zeros((4, 8, 8), np.float32)),
     "input 'input' has samples of shape [4, 8, 8], the model takes"),
    (lambda p: np.savez(p, input=np.zeros((0, 1, 8, 8), np.float32)),
     "calibration data is empty"),
])
def test_bad_calibration_data_is_one_line(tmp_path, make, fragment):
    data = tmp_path / "calib.npz"
    make(data)
    out = tmp_path / "int8.onnx"
    r = invoke("optimize", DIGITS, "-o", out, "--passes", "quantize", "--calib", data)
    assert_one_line_error(r, fragment)
    assert not out.exists()


def test_quantize_without_calib_says_how(tmp_path):
    r = invoke("optimize", DIGITS, "-o", tmp_path / "o.onnx", "--passes", "quantize")
    assert_one_line_error(r, "quantize needs calibration data: give it with --calib DATA")


def test_prune_report_plan_and_replay(tmp_path):
    out, rep, again = tmp_path / "p.onnx", tmp_path / "rep", tmp_path / "again.onnx"
    r = invoke("optimize", MODELS / "resnet_mini.onnx", "-o", out, "--passes",
               "default,prune{ratio=0.5 criterion=l2}", "--report", rep, "--validate")
    assert r.exit_code == 0, r.stderr
    md = (rep / "report.md").read_text()
    assert "## prune (ratio=0.5, criterion=l2" in md and "reaches the graph output" in md
    plan = json.loads((rep / "prune_plan.json").read_text())
    assert plan["groups"] and all(len(g["kept"]) == g["channels"] // 2 for g in plan["groups"])
    # the plan replays to the same model
    r = invoke("optimize", MODELS / "resnet_mini.onnx", "-o", again, "--passes",
               f"default,prune{{plan={rep / 'prune_plan.json'}}}")
    assert r.exit_code == 0, r.stderr
    a, b = onnx.load(out), onnx.load(again)
    assert [t.SerializeToString() for t in a.graph.initializer] == \
        [t.SerializeToString() for t in b.graph.initializer]


@pytest.mark.parametrize("text, fragment", [
    ("{", "not a pruning plan"),
    ('{"groups": [{"layers": ["nope"], "channels": 3, "kept": [0]}]}',
     "no prunable group of layers nope in this graph"),
])
def test_bad_prune_plans(tmp_path, text, fragment):
    plan = tmp_path / "plan.json"
    plan.write_text(text)
    out = tmp_path / "p.onnx"
    r = invoke("optimize", MODELS / "resnet_mini.onnx", "-o", out, "--passes",
               f"default,prune{{plan={plan}}}")
    assert_one_line_error(r, fragment)
    assert not out.exists()


def test_prune_then_quantize(tmp_path):
    # the product's main flow: fuse, prune, quantize; the result runs the same in both runtimes
    from optc.runtime import InferenceSession
    from optc.validate import ort_session

    calib = tmp_path / "calib.npz"
    np.savez(calib, input=np.random.default_rng(0).standard_normal((16, 3, 32, 32)).astype(
        np.float32))
    out = tmp_path / "small_int8.onnx"
    r = invoke("optimize", MODELS / "resnet_mini.onnx", "-o", out, "--passes",
               "default,prune{ratio=0.5 round-to=8},quantize{probe=false}", "--calib", calib,
               "--validate")
    assert r.exit_code == 0, r.stderr
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    assert out.stat().st_size < 0.15 * (MODELS / "resnet_mini.onnx").stat().st_size
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    a = ort_session(str(out)).run(None, {"input": x})[0]
    b = InferenceSession(str(out)).run(None, {"input": x})[0]
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())


def test_report_plan_replays_the_quantized_model(tmp_path):
    """--report writes quantize_plan.json; quantize{plan=...} remakes the same model without
    calibration data or probe timings."""
    out, rep, again = tmp_path / "int8.onnx", tmp_path / "rep", tmp_path / "again.onnx"
    r = invoke("optimize", DIGITS, "-o", out, "--passes", "default,quantize",
               "--calib", MODELS / "digits_test.npz", "--report", rep)
    assert r.exit_code == 0, r.stderr
    plan = rep / "quantize_plan.json"
    assert f"quantize{{plan={plan}}}" in (rep / "report.md").read_text()
    r = invoke("optimize", DIGITS, "-o", again, "--passes", f"default,quantize{{plan={plan}}}")
    assert r.exit_code == 0, r.stderr
    first, second = onnx.load(out), onnx.load(again)
    for m in (first, second):
        del m.metadata_props[:]  # the pipeline text differs (plan=...), nothing else may
    assert first.SerializeToString() == second.SerializeToString()


def test_reproducer_replays_the_passes_before_the_failing_one(tmp_path, monkeypatch):
    from optc.passes.cleanup.dce import DCE

    calls = []

    def crash_second_time(self, model, ctx):
        calls.append(1)
        if len(calls) > 1:
            raise KeyError("boom")
        return PassResult(model, False)

    monkeypatch.setattr(DCE, "run", crash_second_time)
    r = invoke("optimize", DIGITS, "-o", tmp_path / "out.onnx", "--passes",
               "dce,prune{ratio=0.3},quantize,dce", "--calib", MODELS / "digits_test.npz")
    assert_one_line_error(r, "pass 'dce' failed: KeyError", "reproducer written to")
    repro = Path(r.stderr.split("reproducer written to ")[1].strip())
    text = (repro / "pipeline.txt").read_text().strip()
    # the probing quantize and the scoring prune are written as their plans: exact replays
    prune_plan = re.search(r"prune\{[^}]*plan=(\S+?\.json)", text).group(1)
    quant_plan = re.search(r"quantize\{[^}]*plan=(\S+?\.json)", text).group(1)
    assert Path(prune_plan).parent == repro and Path(quant_plan).parent == repro
    assert json.loads(Path(quant_plan).read_text())["format"] == "optc.quantize-plan"
    assert text.endswith(",dce")

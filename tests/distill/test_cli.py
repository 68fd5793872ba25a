"""``optc distill`` on the command line: the written model (checker, onnxruntime, optc.runtime,
only initializer values changed), --taylor, torchrun with 2 gloo processes equal to one
process, and bad input (one-line error, non-zero exit, nothing written)."""

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

import optc
from optc.ir.serde import to_proto
from optc.runtime import InferenceSession
from optc.validate import ort_session
from tests.cli.test_cli import assert_one_line_error, invoke
from tests.util import MODELS

DIGITS = str(MODELS / "digits_cnn.onnx")
TRAIN = str(MODELS / "digits_train.npz")
TEST = str(MODELS / "digits_test.npz")


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    path = tmp_path_factory.mktemp("pruned") / "pruned.onnx"
    r = invoke("optimize", DIGITS, "-o", path, "--passes", "default,prune{ratio=0.5}")
    assert r.exit_code == 0, r.stderr
    return path


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    d = dict(np.load(TRAIN))
    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(path, input=d["input"][:256], labels=d["labels"][:256])
    return path


def test_distill_writes_a_valid_model_with_only_new_weights(tmp_path, pruned):
    out = tmp_path / "kd.onnx"
    r = invoke("distill", "--teacher", DIGITS, "--student", pruned, "--data", TRAIN,
               "--val", TEST, "-o", out, "--epochs", 3, "--lr", 3e-3)
    assert r.exit_code == 0, r.stderr
    assert "epoch 3" in r.stderr and "per epoch" in r.stderr
    onnx.checker.check_model(str(out), full_check=True)
    x = np.load(TEST)["input"][:32]
    ref = ort_session(out).run(None, {"input": x})[0]
    got = InferenceSession(str(out)).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    before, after = to_proto(optc.load(str(pruned))), to_proto(optc.load(str(out)))
    changed = [a.name for a, b in zip(before.graph.initializer, after.graph.initializer)
               if not np.array_equal(onnx.numpy_helper.to_array(a),
                                     onnx.numpy_helper.to_array(b))]
    assert changed
    before.graph.ClearField("initializer")
    after.graph.ClearField("initializer")
    assert before == after


def test_taylor_only(tmp_path):
    scores = tmp_path / "taylor.json"
    r = invoke("distill", "--teacher", DIGITS, "--student", DIGITS, "--data", TRAIN,
               "--epochs", 0, "--taylor", scores)
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "p.onnx"
    r = invoke("optimize", DIGITS, "-o", out, "--passes",
               "default,prune{ratio=0.3 criterion=taylor scores=" + str(scores) + "}")
    # scores of the unfused model apply after BN folding: the weights keep their names, and
    # w * dL/dw is unchanged when BN's per-channel scale is folded into w
    assert r.exit_code == 0, r.stderr


def test_torchrun_two_gloo_processes_equal_one_process(tmp_path, pruned, small_data):
    args = ["--teacher", DIGITS, "--student", str(pruned), "--data", str(small_data),
            "--epochs", "2", "--batch-size", "32", "--seed", "1"]
    single = tmp_path / "single.onnx"
    r = invoke("distill", *args, "-o", single)
    assert r.exit_code == 0, r.stderr
    ddp = tmp_path / "ddp.onnx"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", "29561",
                           "-m", "optc", "distill", *args, "-o", str(ddp)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(single).graph.initializer}
    b = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(ddp).graph.initializer}
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-4,
                                   atol=1e-5 * max(np.abs(a[name]).max(), 1e-6), err_msg=name)


def _bad_data(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_bad_input(tmp_path, pruned):
    d = dict(np.load(TRAIN))
    out = tmp_path / "out.onnx"
    cases = [
        (["--teacher", str(MODELS / "resnet_mini.onnx")], "input 'input' has shape"),
        (["--data", _bad_data(tmp_path, "nolabels.npz", input=d["input"])],
         "no 'labels', which alpha=0.9 < 1 needs"),
        (["--data", _bad_data(tmp_path, "shape.npz", input=d["input"][:, :, :4],
                              labels=d["labels"])], "has samples of shape"),
        (["--data", _bad_data(tmp_path, "dtype.npz", input=d["input"].astype(np.float64),
                              labels=d["labels"])], "is float64"),
        (["--data", _bad_data(tmp_path, "nan.npz", input=np.full_like(d["input"], np.nan),
                              labels=d["labels"])], "NaN or Inf"),
        (["--data", tmp_path / "missing.npz"], "no such file"),
        (["--hint", "no-colon"], "is not T_TENSOR:S_TENSOR"),
        (["--alpha", "2"], "alpha must be in [0, 1]"),
    ]
    for change, fragment in cases:
        args = {"--teacher": DIGITS, "--student": str(pruned), "--data": TRAIN}
        extra = []
        for i in range(0, len(change), 2):
            if change[i] in args:
                args[change[i]] = change[i + 1]
            else:
                extra += change[i:i + 2]
        flat = [x for kv in args.items() for x in kv] + extra
        r = invoke("distill", *flat, "-o", out, "--epochs", 1)
        assert_one_line_error(r, fragment)
        assert not out.exists()


def test_student_op_the_executor_lacks(tmp_path):
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N, 1, 8, 8] input) => (float[N, 10] logits) {
        f = Flatten (input)
        e = Einsum <equation = "ij->ij"> (f)
        logits = Slice <starts = [0], ends = [10], axes = [1]> (e)
    }""")
    student = tmp_path / "einsum.onnx"
    onnx.save(m, student)
    out = tmp_path / "out.onnx"
    r = invoke("distill", "--teacher", DIGITS, "--student", student, "--data", TRAIN, "-o",
               out, "--epochs", 1)
    assert_one_line_error(r, "Einsum", "not supported by the torch executor")
    assert not out.exists()


def test_without_torch_the_command_says_how_to_install_it(tmp_path):
    out = tmp_path / "out.onnx"
    code = ("import sys; sys.modules['torch'] = None\n"  # as if torch were not installed
            "from optc.cli import main\n"
            f"main(['distill', '--teacher', {DIGITS!r}, '--student', {DIGITS!r}, '--data', "
            f"{TRAIN!r}, '-o', {str(out)!r}])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["optc: error: optc distill needs PyTorch: pip install 'optc[distill]'"]
    assert not out.exists()


def test_teacher_with_other_input_names(tmp_path):
    m = onnx.load(DIGITS)
    old = m.graph.input[0].name
    m.graph.input[0].name = "image"
    for n in m.graph.node:
        n.input[:] = ["image" if i == old else i for i in n.input]
    teacher = tmp_path / "renamed.onnx"
    onnx.save(m, teacher)
    out = tmp_path / "out.onnx"
    r = invoke("distill", "--teacher", teacher, "--student", DIGITS, "--data", TRAIN, "-o", out,
               "--epochs", 1)
    assert_one_line_error(r, "have different inputs", "image")
    assert not out.exists()

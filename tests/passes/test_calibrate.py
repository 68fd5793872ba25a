"""Calibration over a model: every float activation observed, constant memory, bad data."""

import tracemalloc

import numpy as np
import pytest

import optc
from optc.errors import OptcError
from optc.passes.quant import calibrate
from tests.util import MODELS

DIGITS = MODELS / "digits_cnn.onnx"


def _data(n, seed=0):
    x = np.random.default_rng(seed).uniform(-1, 1, (n, 1, 8, 8)).astype(np.float32)
    return {"input": x}


def test_every_float_activation_is_observed():
    model = optc.load(DIGITS)
    data = dict(np.load(MODELS / "digits_test.npz"))
    observers = calibrate(model, data, batch_size=64)
    produced = {v.name for n in model.graph.nodes for v in n.outputs if v is not None}
    assert set(observers) == produced | {"input"}
    assert observers["input"].count == data["input"].size
    logits = observers["logits"]
    assert logits.count == 360 * 10
    for method in ("max", "percentile", "mse", "kl"):
        t = logits.threshold(method)
        assert 0 < t <= logits.threshold("max")


def test_iterable_of_feeds():
    model = optc.load(DIGITS)
    batches = [_data(8, seed) for seed in range(3)]
    observers = calibrate(model, iter(batches))
    assert observers["input"].count == 3 * 8 * 64


def test_memory_does_not_grow_with_samples():
    model = optc.load(DIGITS)

    def peak(n):
        data = _data(n)
        tracemalloc.start()
        calibrate(model, data, batch_size=16)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    peak(16)  # warm caches (imports, kernel table)
    assert peak(512) <= peak(64) * 1.1


@pytest.mark.parametrize("data, message", [
    ({"wrong": np.zeros((4, 1, 8, 8), np.float32)}, "no values for model input(s) input"),
    ({"input": np.zeros((0, 1, 8, 8), np.float32)}, "calibration data is empty"),
    ({"input": np.zeros((4, 1, 9, 9), np.float32)}, "input 'input' dim 2 must be 8"),
    ({"input": np.zeros((4, 1, 8, 8), np.float64)}, "input 'input' must be tensor(float)"),
    ({"input": np.full((4, 1, 8, 8), np.nan, np.float32)}, "tensor 'input': calibration saw "
                                                            "NaN or Inf"),
])
def test_bad_calibration_data(data, message):
    with pytest.raises(OptcError) as err:
        calibrate(optc.load(DIGITS), data)
    assert message in str(err.value)


def test_empty_iterable():
    with pytest.raises(OptcError, match="calibration data is empty"):
        calibrate(optc.load(DIGITS), iter([]))

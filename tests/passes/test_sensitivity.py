"""quantize's accuracy budget: per-layer SQNR and the return of sensitive layers to float."""

import numpy as np
import pytest

import optc
from optc.pass_base import PassContext
from optc.passes import Quantize
from optc.passes.quant.qdq import FLOAT_MARK
from optc.passes.quant.sensitivity import fall_back, sqnr_db
from tests.util import MODELS

DATA = dict(np.load(MODELS / "digits_test.npz"))


def test_sqnr_by_hand():
    ref = [np.array([3.0, 4.0])]  # signal 25
    assert sqnr_db(ref, [np.array([3.0, 4.5])]) == pytest.approx(10 * np.log10(25 / 0.25))
    assert sqnr_db(ref, ref) == float("inf")


def test_fall_back_goes_from_the_most_sensitive_layer_and_stops_at_the_budget():
    layers = ["a", "b", "c"]
    sensitivity = {"a": 40.0, "b": 20.0, "c": 30.0}
    noise = {"a": 1.0, "b": 8.0, "c": 4.0}  # each int8 layer's share of the noise

    def evaluate(subset):
        total = sum(noise[n] for n in subset)
        return float("inf") if total == 0 else -10 * np.log10(total / 1000)

    kept, dropped, final = fall_back(layers, sensitivity, 20.0, tuple, evaluate)
    # 13 -> 18.9 dB: b goes first (lowest SQNR), then 5 -> 23 dB holds the budget
    assert kept == ["a", "c"] and [n for n, _ in dropped] == ["b"]
    assert final == pytest.approx(evaluate(("a", "c")))
    kept, dropped, _ = fall_back(layers, sensitivity, 100.0, tuple, evaluate)
    assert kept == [] and [n for n, _ in dropped] == ["b", "c", "a"]


def _all_int8_sqnr() -> float:
    model, _ = optc.optimize(MODELS / "digits_cnn.onnx")
    q = Quantize(method="max", probe=False)
    # a report measures the SQNR without a budget
    result = q(model, PassContext(calibration_data={"input": DATA["input"][:200]},
                                  collect_report=True))
    return result.artifacts["plan"].model_sqnr


@pytest.mark.parametrize("above", [1.5, 1000.0])
def test_budget_on_digits(above):
    budget = _all_int8_sqnr() + above
    model, _ = optc.optimize(MODELS / "digits_cnn.onnx")
    q = Quantize(method="max", probe=False, min_sqnr=budget)
    result = q(model, PassContext(calibration_data={"input": DATA["input"][:200]}))
    layer_sqnr = result.artifacts["plan"].layer_sqnr
    layers = [n for n in model.graph.nodes if n.op_type in ("Conv", "Gemm")]
    assert set(layer_sqnr) == {n.name for n in layers}
    back = [n for n in layers if FLOAT_MARK in n.metadata_props]
    assert back, "a budget above the all-int8 SQNR must return a layer to float"
    assert result.stats["float"] == len(back)
    if budget < 100:
        assert result.stats["sqnr_db"] >= budget and len(back) < len(layers)
        worst = min(layer_sqnr, key=layer_sqnr.get)
        assert worst in {n.name for n in back}
    else:  # unreachable: every layer goes back, the model is float again
        assert len(back) == len(layers)
        assert not any(n.op_type == "DequantizeLinear" for n in model.graph.nodes)

"""quantize's latency probe: the int8/float choice (an exact minimum cut) and the timings."""

import itertools

import numpy as np
import onnx
from hypothesis import given, settings
from hypothesis import strategies as st

import optc
from optc.pass_base import PassContext
from optc.ir import Node, serialize
from optc.passes import Quantize
from optc.passes.quant.probe import LayerCost, Prober, Tensor, choose
from optc.passes.quant.qdq import FLOAT_MARK
from tests.util import MODELS


def _total(costs, tensors, int8: set, margin=0.05) -> float:
    """The modelled latency of a choice, written out plainly (the oracle for choose)."""
    total = sum(c.int8_ms if k in int8 else c.float_ms * (1 + margin) for k, c in costs.items())
    for t in tensors:
        producer_int8 = t.producer is not None and t.producer in int8
        readers_int8 = [r is not None and r in int8 for r in t.readers]
        if not producer_int8 and any(readers_int8):
            total += t.quantize_ms
        if producer_int8 and not all(readers_int8):
            total += t.dequantize_ms
    return total


@st.composite
def _instances(draw):
    n = draw(st.integers(1, 6))
    ms = st.floats(0.0, 1.0, allow_nan=False)
    costs = {k: LayerCost(draw(ms), draw(ms), 0.0, 0.0) for k in range(n)}
    tensors = []
    for _ in range(draw(st.integers(0, 8))):
        producer = draw(st.sampled_from([None, *range(n)]))
        readers = draw(st.lists(st.sampled_from([None, *range(n)]), min_size=1, max_size=3))
        tensors.append(Tensor(producer, tuple(readers), draw(ms), draw(ms)))
    return costs, tensors


@settings(max_examples=200, deadline=None)
@given(_instances())
def test_choice_is_the_exact_optimum(instance):
    costs, tensors = instance
    chosen = choose(costs, tensors)
    best = min(_total(costs, tensors, set(s)) for r in range(len(costs) + 1)
               for s in itertools.combinations(costs, r))
    assert abs(_total(costs, tensors, chosen) - best) < 1e-9


def test_a_slightly_slower_layer_between_int8_layers_stays_int8():
    # a -> b -> c: b alone loses in int8 (1.1 vs 1.0), but as float it would need a
    # Dequantize before it and a Quantize after it (0.5 each): int8 wins overall -- a greedy
    # that drops b first and looks again would not find this
    costs = {"a": LayerCost(2.0, 1.0, 0.0, 0.0), "b": LayerCost(1.0, 1.1, 0.0, 0.0),
             "c": LayerCost(2.0, 1.0, 0.0, 0.0)}
    tensors = [Tensor("a", ("b",), 0.5, 0.5), Tensor("b", ("c",), 0.5, 0.5)]
    assert choose(costs, tensors) == {"a", "b", "c"}
    # with free conversions, b goes back to float
    free = [Tensor("a", ("b",), 0.0, 0.0), Tensor("b", ("c",), 0.0, 0.0)]
    assert choose(costs, free) == {"a", "c"}


def test_unmeasured_layers_stay_int8():
    costs = {"a": LayerCost(1.0, 5.0, 0.0, 0.0)}
    assert choose(costs, [], unmeasured={"u"}) == {"u"}


def test_prober_times_a_conv_once_per_signature():
    w = np.random.default_rng(0).standard_normal((16, 8, 3, 3)).astype(np.float32)
    from optc.ir import Graph, Value

    g = Graph()
    x, wv, y = Value("x"), g.add_initializer("w", w), Value("y")
    conv = Node("Conv", [x, wv], [y], attributes={"pads": [1, 1, 1, 1]})
    prober = Prober(opset=17)
    first = prober.cost(conv, None, (1, 8, 16, 16), (1, 16, 16, 16), True)
    for v in (first.float_ms, first.int8_ms, first.quantize_in_ms, first.dequantize_out_ms):
        assert 0.0 <= v < 1000.0
    assert prober.cost(conv, None, (1, 8, 16, 16), (1, 16, 16, 16), True) is first


def test_mobilenet_layers_are_chosen_by_measurement_and_the_choice_is_stable():
    rng = np.random.default_rng(0)
    calib = {"input": rng.standard_normal((8, 3, 64, 64)).astype(np.float32)}
    model, _ = optc.optimize(MODELS / "mobilenetv2_mini.onnx")
    q = Quantize(method="max")
    result = q(model, PassContext(calibration_data=calib))
    assert result.modified
    decisions = result.artifacts["plan"].layers
    layers = [n for n in model.graph.nodes if n.op_type in ("Conv", "Gemm")]
    assert {n.name for n in layers} == set(decisions)
    for n in layers:
        int8, why = decisions[n.name]
        assert "onnxruntime" in why and "ms float" in why
        weight_is_int8 = n.inputs[1].producer() is not None and \
            n.inputs[1].producer().op_type == "DequantizeLinear"
        assert weight_is_int8 == int8
        assert (FLOAT_MARK in n.metadata_props) == (not int8)
    assert result.stats["layers"] == sum(ok for ok, _ in decisions.values())
    onnx.checker.check_model(onnx.load_from_string(serialize(model)), full_check=True)
    # the layers left float are not quantized by a second run
    again = Quantize(method="max")
    assert again(model, PassContext(calibration_data=calib)).modified is False


def test_forced_layers_stay_int8_even_when_measured():
    costs = {"a": LayerCost(1.0, 5.0, 0.0, 0.0), "b": LayerCost(1.0, 5.0, 0.0, 0.0)}
    assert choose(costs, []) == set()
    assert choose(costs, [], unmeasured={"a"}) == {"a"}


def test_layers_left_float_hold_at_most_the_size_budget():
    data = dict(np.load(MODELS / "digits_test.npz"))
    for budget in (0.05, 0.5):
        model, _ = optc.optimize(MODELS / "digits_cnn.onnx")
        total = sum(n.inputs[1].const_value.nbytes for n in model.graph.nodes
                    if n.op_type in ("Conv", "Gemm"))
        q = Quantize(method="max", max_float_weights=budget)
        q(model, PassContext(calibration_data={"input": data["input"][:64]}))
        floats = [n for n in model.graph.nodes if FLOAT_MARK in n.metadata_props]
        assert sum(n.inputs[1].const_value.nbytes for n in floats) <= budget * total

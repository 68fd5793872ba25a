"""TorchGraph against onnxruntime (optimizations off): the shipped models, light models with
random weights, a QDQ int8 model; gradients; what is trainable; write_back changes nothing
but initializer values; unsupported graphs are refused naming the node."""

import numpy as np
import onnx
import onnx.parser
import pytest

import torch

import optc
from optc.distill import TorchGraph
from optc.errors import OptcError
from optc.ir import serialize
from optc.ir.serde import to_proto
from optc.testing import randomize_light, light_model
from optc.validate import ort_session, random_feeds, run
from tests.util import MODELS, SHIPPED_MODELS, parse

RTOL = 1e-4  # the bound: relative to each output's scale


def _assert_matches_ort(data: bytes, batch: int = 2, seed: int = 0) -> None:
    s = ort_session(data)
    feeds = random_feeds(s, seed, batch=batch)
    ref = run(s, feeds)
    tg = TorchGraph(data)
    with torch.no_grad():
        got = tg(feeds)
    for name, r in ref.items():
        g = got[name].numpy()
        assert g.shape == r.shape, name
        scale = float(np.abs(r).max())
        err = float(np.abs(g - r).max())
        assert err <= RTOL * scale, f"{name}: max error {err} vs scale {scale}"


@pytest.mark.parametrize("path", SHIPPED_MODELS, ids=lambda p: p.split("/")[-1])
def test_shipped_models_match_onnxruntime(path):
    _assert_matches_ort(open(path, "rb").read())


@pytest.mark.parametrize("name", ["resnet50", "inception_v2", "densenet121"])
def test_light_models_match_onnxruntime(name):
    _assert_matches_ort(randomize_light(light_model(name)).SerializeToString(), batch=1)


def _digits_int8() -> optc.Model:
    d = np.load(MODELS / "digits_test.npz")
    model, _ = optc.optimize(str(MODELS / "digits_cnn.onnx"),
                             passes="default,quantize{probe=false}",
                             calib={"input": d["input"][:64]})
    return model


def test_qdq_model_matches_onnxruntime_and_writes_back_unchanged():
    model = _digits_int8()
    data = serialize(model)
    _assert_matches_ort(data, batch=8)
    tg = TorchGraph(data)
    # int8 weights and int32 biases become float latent parameters
    assert tg.param_names and all(model.graph.initializers[n].const_value.dtype.kind == "i"
                                  for n in tg.param_names)
    back = tg.write_back()
    for name, v in model.graph.initializers.items():
        np.testing.assert_array_equal(back.graph.initializers[name].const_value,
                                      v.const_value)
        assert back.graph.initializers[name].const_value.dtype == v.const_value.dtype


def test_fake_quantization_passes_gradients_straight_through():
    model = _digits_int8()
    tg = TorchGraph(serialize(model), learn_scales=True)
    x = torch.from_numpy(np.load(MODELS / "digits_test.npz")["input"][:16])
    out = tg({"input": x})["logits"]
    out.square().mean().backward()
    named = dict(zip(tg.param_names, tg.params))
    for name, p in named.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    weights = [n for n in named if n.endswith("weight_q")]
    # weight scales always see rounding error; an activation scale that re-quantizes values
    # already on its grid (after MaxPool/Flatten) rightly gets a zero LSQ gradient
    scales = [n.inputs[1].name for n in model.graph.nodes
              if n.op_type == "DequantizeLinear" and n.inputs[0].name in weights]
    assert len(weights) == len(scales) == 4
    assert all(named[n].grad.abs().sum() > 0 for n in weights + scales)


def test_trainable_weights_are_layer_weights_and_biases():
    tg = TorchGraph(str(MODELS / "digits_cnn.onnx"))
    g = tg.model.graph
    chosen = set(tg.param_names)
    for node in g.nodes:
        if node.op_type in ("Conv", "Gemm"):
            assert {v.name for v in node.inputs[1:] if v is not None} <= chosen
        if node.op_type == "BatchNormalization":
            assert {node.inputs[1].name, node.inputs[2].name} <= chosen
            assert not {node.inputs[3].name, node.inputs[4].name} & chosen  # statistics
    assert TorchGraph(str(MODELS / "digits_cnn.onnx"), trainable="none").param_names == []


def test_gradients_match_finite_differences():
    m = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (double[2, 3, 5, 5] x) => (double[2, 4] y) <double[4, 3, 3, 3] w, double[4] b> {
        c = Conv <pads = [1, 0, 1, 2], strides = [2, 1]> (x, w, b)
        r = LeakyRelu <alpha = 0.1> (c)
        p = AveragePool <kernel_shape = [2, 2], pads = [0, 0, 1, 1]> (r)
        q = GlobalAveragePool (p)
        y = Flatten (q)
    }""")
    rng = np.random.default_rng(0)
    m.graph.ClearField("initializer")
    m.graph.initializer.extend([
        onnx.numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)), "w"),
        onnx.numpy_helper.from_array(rng.standard_normal(4), "b")])
    tg = TorchGraph(m)
    assert tg.param_names == ["w", "b"]
    x = torch.from_numpy(rng.standard_normal((2, 3, 5, 5)))

    def loss(w, b):
        out = torch.func.functional_call(tg, {"params.0": w, "params.1": b}, ({"x": x},))
        return out["y"].pow(2).sum()

    inputs = tuple(p.detach().clone().requires_grad_() for p in tg.params)
    assert torch.autograd.gradcheck(loss, inputs)


def test_write_back_changes_only_initializer_values(tmp_path):
    tg = TorchGraph(str(MODELS / "resnet_mini.onnx"))
    with torch.no_grad():
        for p in tg.params:
            p.add_(0.01)
    back = tg.write_back()
    original = optc.load(str(MODELS / "resnet_mini.onnx"))
    a, b = to_proto(original), to_proto(back)
    changed = {t.name for t, u in zip(a.graph.initializer, b.graph.initializer)
               if t.name != u.name or t.data_type != u.data_type or list(t.dims) != list(u.dims)
               or not np.array_equal(onnx.numpy_helper.to_array(t),
                                     onnx.numpy_helper.to_array(u))}
    assert changed == set(tg.param_names)
    a.graph.ClearField("initializer")
    b.graph.ClearField("initializer")
    assert a == b  # structure, names, metadata, value_info untouched
    path = tmp_path / "out.onnx"
    optc.save(back, path)
    onnx.checker.check_model(str(path), full_check=True)


def test_unsupported_op_is_refused_naming_the_node():
    m = parse("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 3] x) => (float[2, 3] y) {
        y = Einsum <equation = "ij->ij"> (x)
    }""")
    with pytest.raises(OptcError, match="Einsum.*not supported by the torch executor"):
        TorchGraph(m)

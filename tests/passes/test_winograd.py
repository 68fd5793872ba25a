"""winograd: the kernel against direct convolution on hypothesis shapes, the lowering (optc
op in optc.runtime, portable form in onnxruntime) against the original in onnxruntime, where
it must not fire, the auto cost model, idempotence.

Error bounds (float32, relative to the output's largest magnitude), from the measured error
documented in optc.runtime.kernels.winograd: F(2x2,3x3) 1e-5 (its transforms are exact; the
error is the GEMM's, as for direct convolution), F(4x4,3x3) 1e-4 (measured up to 1.1e-5 with
256 input channels; its transform constants 1/6, 1/24, 8 amplify rounding).
"""

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import optc
from optc.ir import serialize, to_proto, verify
from optc.passes import Winograd
from optc.passes.lower.winograd import choose_tile
from optc.runtime import InferenceSession
from optc.runtime.kernels.conv import conv
from optc.runtime.kernels.winograd import transform_weights, winograd_conv
from optc.validate import ort_session, random_feeds, run
from tests.util import MODELS, check_pass, load, op_types, parse

BOUND = {2: 1e-5, 4: 1e-4}


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 9), m=st.integers(1, 7), h=st.integers(1, 13),
       w=st.integers(1, 13), pads=st.lists(st.integers(0, 2), min_size=4, max_size=4),
       tile=st.sampled_from([2, 4]), seed=st.integers(0, 2 ** 16))
def test_kernel_matches_direct_convolution(n, c, m, h, w, pads, tile, seed):
    if h + pads[0] + pads[2] < 3 or w + pads[1] + pads[3] < 3:
        return  # no output
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    k = rng.standard_normal((m, c, 3, 3)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    ref = conv(x.astype(np.float64), k.astype(np.float64), b.astype(np.float64), pads=pads)
    got = winograd_conv(x, transform_weights(k, tile), b, tile=tile, pads=pads)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert np.abs(got - ref).max() <= BOUND[tile] * max(np.abs(ref).max(), 1.0)


@pytest.mark.parametrize("tile", [2, 4])
def test_error_with_many_channels(tile):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 256, 14, 14)).astype(np.float32)
    k = rng.standard_normal((64, 256, 3, 3)).astype(np.float32)
    ref = conv(x.astype(np.float64), k.astype(np.float64), pads=[1, 1, 1, 1])
    got = winograd_conv(x, transform_weights(k, tile), tile=tile, pads=[1, 1, 1, 1])
    assert np.abs(got - ref).max() <= BOUND[tile] * np.abs(ref).max()


def _conv_model(attrs: str = "pads = [1, 1, 1, 1]", c: int = 8, k: int = 3, group: int = 1):
    return f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, {c}, 9, 10] x) => (float[2, 6, H, W] y) <float[6, {c // group}, {k}, {k}] w =
        {{{", ".join(str((i % 7) * 0.1 - 0.3) for i in range(6 * (c // group) * k * k))}}},
        float[6] b = {{0.1, -0.2, 0.3, 0.0, 0.5, -0.1}}> {{
        c = Conv <{attrs}, group = {group}> (x, w, b)
        y = Relu (c)
    }}"""


@pytest.mark.parametrize("tile", ["2", "4"])
@pytest.mark.parametrize("portable", [False, True])
def test_lowering_matches_the_original(tile, portable):
    original = parse(_conv_model("pads = [1, 0, 2, 1]"))
    model = load(original)
    assert Winograd(tile=tile, min_channels_f4=1, portable=portable)(model).modified
    verify(model.graph)
    ops = op_types(model)
    ref_s = ort_session(original.SerializeToString())
    feeds = random_feeds(ref_s, 0)
    ref = run(ref_s, feeds)["y"]
    if portable:  # standard ops only: onnx.checker and onnxruntime accept it
        assert "WinogradConv" not in ops and ops.count("MatMul") == 2
        proto = to_proto(model)
        onnx.checker.check_model(proto, full_check=True)
        got = run(ort_session(proto.SerializeToString()), feeds)["y"]
    else:
        assert ops == ["WinogradConv", "Relu"]
        got = InferenceSession(serialize(model)).run(None, feeds)[0]
    assert np.abs(got - ref).max() <= BOUND[4] * np.abs(ref).max()
    again = serialize(model)
    assert not Winograd(tile=tile, min_channels_f4=1, portable=portable)(model).modified
    assert serialize(model) == again


@pytest.mark.parametrize("attrs, group, k, reason", [
    ("strides = [2, 2]", 1, 3, "stride != 1"),
    ("dilations = [2, 2]", 1, 3, "dilation != 1"),
    ("pads = [2, 2, 2, 2]", 1, 5, "kernel not 3x3"),
    ("pads = [1, 1, 1, 1]", 2, 3, "grouped"),
    ("auto_pad = \"SAME_UPPER\"", 1, 3, "SAME auto_pad"),
])
def test_does_not_fire(attrs, group, k, reason):
    check_pass(Winograd(tile="2"), _conv_model(attrs, k=k, group=group),
               expect_modified=False)


def test_stats_name_the_reason():
    model = load(_conv_model("strides = [2, 2]"))
    result = Winograd(tile="2")(model)
    assert result.modified is False and result.stats == {"kept: stride != 1": 1}


def test_auto_cost_model():
    assert choose_tile(64, 64, 56, 56) == 4  # wide layer, big map: F(4x4)
    # few channels: direct (measured 0.10 ms against 0.15 / 0.13 for F(2x2) / F(4x4))
    assert choose_tile(8, 16, 32, 32, min_channels_f4=16) == 0
    # few filters: the direct conv (sgemm.c's tap mode, no im2col) 1.10-1.20 ms against
    # F(2x2) / F(4x4) 1.14-1.35 / 1.12-1.39 ms; DenseNet's 128->32 at 14x14: 0.34-0.37 ms
    # against 0.46-0.51 / 0.50-0.59
    assert choose_tile(32, 32, 56, 56) == 0
    assert choose_tile(128, 32, 14, 14) == 0
    assert choose_tile(128, 32, 28, 28) == 4  # 0.77-1.35 ms against direct's 0.88-1.25
    assert choose_tile(512, 512, 7, 7) == 2  # F(4x4) reads 2.25x the weights: 1.4x slower
    assert choose_tile(3, 64, 224, 224) == 0  # VGG's first layer: F(2x2) 3-4x slower
    assert choose_tile(3, 16, 32, 32) == 0  # 3 input channels: transforms dominate
    assert choose_tile(1, 1, 2, 2) == 0  # tiny: the transforms cost more than they save


# digits_cnn's convs are too small for auto to lower them (8x8 images, few channels): tile 2
@pytest.mark.parametrize("path,tile", [("resnet_mini.onnx", "auto"), ("digits_cnn.onnx", "2")])
@pytest.mark.parametrize("portable", [False, True])
def test_shipped_models(path, tile, portable):
    ref_s = ort_session(str(MODELS / path))
    feeds = random_feeds(ref_s, 0, batch=2)
    ref = list(run(ref_s, feeds).values())[0]
    model, report = optc.optimize(
        str(MODELS / path),
        passes=f"default,winograd{{tile={tile} portable={str(portable).lower()}}}")
    assert any(k.startswith("F(") for k in report.records[-1].stats)
    data = serialize(model)
    got = list(run(ort_session(data), feeds).values())[0] if portable else \
        InferenceSession(data).run(None, feeds)[0]
    assert np.abs(got - ref).max() <= BOUND[4] * np.abs(ref).max()


def test_fused_activation_is_kept():
    ref_s = ort_session(str(MODELS / "resnet_mini.onnx"))
    feeds = random_feeds(ref_s, 0, batch=2)
    ref = list(run(ref_s, feeds).values())[0]
    model, _ = optc.optimize(str(MODELS / "resnet_mini.onnx"),
                             passes="default,fuse-act{target=optc},winograd{tile=2}")
    lowered = [n for n in model.graph.nodes if n.op_type == "WinogradConv"]
    assert any(n.attr("activation") == "Relu" for n in lowered)  # from FusedConv
    got = InferenceSession(serialize(model)).run(None, feeds)[0]
    assert np.abs(got - ref).max() <= BOUND[2] * np.abs(ref).max()

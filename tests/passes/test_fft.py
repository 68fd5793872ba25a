"""fft: the FFTConv kernel against direct convolution on hypothesis shapes, the lowering of
the light Inception v1 (its 5x5 convs) against onnxruntime on the original, where it must not
fire, idempotence.

Error bound (float32, relative to the output's largest magnitude): 1e-5; the measured FFT
round-off is about 1e-6 or below (documented in optc.runtime.kernels.fft)."""

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import optc
from optc.errors import OptcError
from optc.ir import serialize, to_proto, verify
from optc.passes import FFTLower
from optc.passes.lower.fft import choose_fft_size
from optc.runtime import InferenceSession
from optc.runtime.kernels.conv import conv
from optc.runtime.kernels.fft import fft_conv, transform_filters
from optc.testing import light_at_opset, light_model, randomize_light
from optc.validate import ort_session, random_feeds, run
from tests.util import check_pass, load, op_types

BOUND = 1e-5


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 5), m=st.integers(1, 5), h=st.integers(1, 20),
       w=st.integers(1, 20), kh=st.integers(2, 7), kw=st.integers(2, 7),
       pads=st.lists(st.integers(0, 3), min_size=4, max_size=4),
       f=st.sampled_from([8, 16, 32]), bias=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_kernel_matches_direct_convolution(n, c, m, h, w, kh, kw, pads, f, bias, seed):
    if h + pads[0] + pads[2] < kh or w + pads[1] + pads[3] < kw or max(kh, kw) >= f:
        return  # no output, or a kernel the tile cannot hold
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    k = rng.standard_normal((m, c, kh, kw)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    ref = conv(x.astype(np.float64), k.astype(np.float64),
               None if b is None else b.astype(np.float64), pads=pads)
    got = fft_conv(x, transform_filters(k, f), b, fft_size=f, kernel_shape=[kh, kw], pads=pads)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert np.abs(got - ref).max() <= BOUND * max(np.abs(ref).max(), 1.0)


def _model(attrs: str = "pads = [2, 2, 2, 2]", k: int = 5, group: int = 1) -> str:
    c = 4
    values = ", ".join(str((i % 5) * 0.1 - 0.2) for i in range(4 * (c // group) * k * k))
    return f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, {c}, 12, 11] x) => (float[1, 4, H, W] y)
      <float[4, {c // group}, {k}, {k}] w = {{{values}}}, float[4] b = {{0.1, -0.2, 0.3, 0}}> {{
        y = Conv <{attrs}, group = {group}> (x, w, b)
    }}"""


@pytest.mark.parametrize("portable", [False, True])
def test_lowering_matches_the_original(portable):
    from tests.util import parse

    original = parse(_model("pads = [2, 1, 0, 3]"))
    model = load(original)
    result = FFTLower(portable=portable)(model)
    assert result.modified and result.stats == {"F=16": 1}
    verify(model.graph)
    ref_s = ort_session(original.SerializeToString())
    feeds = random_feeds(ref_s, 0)
    ref = run(ref_s, feeds)["y"]
    if portable:  # standard ops: onnx.checker and onnxruntime accept it
        assert "FFTConv" not in op_types(model) and op_types(model).count("MatMul") == 5
        proto = to_proto(model)
        onnx.checker.check_model(proto, full_check=True)
        got = run(ort_session(proto.SerializeToString()), feeds)["y"]
    else:
        assert op_types(model) == ["FFTConv"]
        got = InferenceSession(serialize(model)).run(None, feeds)[0]
    assert np.abs(got - ref).max() <= BOUND * np.abs(ref).max()
    again = serialize(model)
    assert not FFTLower(portable=portable)(model).modified and serialize(model) == again


@pytest.mark.parametrize("attrs, k, group, reason", [
    ("pads = [1, 1, 1, 1]", 3, 1, "kernel under 5"),
    ("strides = [2, 2]", 5, 1, "stride != 1"),
    ("dilations = [2, 2], pads = [4, 4, 4, 4]", 5, 1, "dilation != 1"),
    ("pads = [2, 2, 2, 2]", 5, 2, "grouped"),
])
def test_does_not_fire(attrs, k, group, reason):
    model = check_pass(FFTLower(), _model(attrs, k=k, group=group), expect_modified=False)
    assert FFTLower()(model).stats == {f"kept: {reason}": 1}


def test_bad_options():
    with pytest.raises(OptcError, match="power of two"):
        optc.optimize(load(_model()), passes="fft{fft-size=12}")
    with pytest.raises(OptcError, match="not under fft-size"):
        model, report = optc.optimize(load(_model()), passes="fft{fft-size=4}")
        raise OptcError(str(report.records[-1].stats))


def test_auto_size():
    assert choose_fft_size(5, 224) == 16
    assert choose_fft_size(7, 224) == 32
    assert choose_fft_size(5, 9) == 16  # the 9-pixel input needs 16
    assert choose_fft_size(5, 6) == 8  # never more than the padded input needs (and > k)


@pytest.mark.parametrize("portable", [False, True])
def test_light_inception_v1(portable):
    base, _ = optc.optimize(light_at_opset("inception_v1", 13),
                            passes="freeze-initializers,fold-constants")
    data = serialize(base)
    ref_s = ort_session(data)
    feeds = random_feeds(ref_s, 0)
    ref = list(run(ref_s, feeds).values())[0]
    model, report = optc.optimize(data, passes=f"default,fft{{portable={str(portable).lower()}}}")
    assert report.records[-1].stats.get("F=16") == 9  # its nine 5x5 convs
    lowered = serialize(model)
    got = list(run(ort_session(lowered), feeds).values())[0] if portable else \
        InferenceSession(lowered).run(None, feeds)[0]
    assert np.abs(got - ref).max() <= BOUND * np.abs(ref).max()


def test_portable_needs_opset_13():
    with pytest.raises(OptcError, match="opset-13 ops"):
        optc.optimize(randomize_light(light_model("inception_v1")), passes="fft{portable=true}")

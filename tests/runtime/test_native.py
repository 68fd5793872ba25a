"""The C kernels (optc.runtime._ckernels) against the NumPy kernels on hypothesis shapes, the
switch between them, and that a fresh install built them."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optc.runtime.kernels import native
from optc.runtime.kernels.conv import conv
from optc.runtime.kernels.fused import apply_activation, fused_conv
from optc.runtime.kernels.winograd import transform_weights, winograd_conv

ACTS = [(None, None), ("Relu", None), ("Clip", [0.0, 6.0]), ("LeakyRelu", [0.1]),
        ("Sigmoid", None), ("HardSigmoid", [0.2, 0.5]), ("HardSwish", None), ("Tanh", None),
        ("SiLU", None)]


@pytest.fixture
def numpy_only():
    previous = native.use_native(False)
    yield
    native.use_native(previous)


def test_the_extension_is_built():
    # pip install builds it wherever a C compiler exists, as on every machine CI runs on
    assert native.AVAILABLE and native.enabled()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 6), h=st.integers(1, 12), w=st.integers(1, 12),
       k=st.integers(1, 5), stride=st.integers(1, 3), dil=st.integers(1, 2),
       pads=st.lists(st.integers(0, 2), min_size=4, max_size=4), bias=st.booleans(),
       act=st.sampled_from(ACTS), seed=st.integers(0, 2 ** 16))
def test_depthwise_matches_numpy(n, c, h, w, k, stride, dil, pads, bias, act, seed):
    if h + pads[0] + pads[2] < dil * (k - 1) + 1 or w + pads[1] + pads[3] < dil * (k - 1) + 1:
        return  # no output
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((c, 1, k, k)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32) if bias else None
    attrs = dict(group=c, pads=pads, strides=[stride, stride], dilations=[dil, dil])
    previous = native.use_native(False)
    try:
        ref = apply_activation(act[0], act[1], conv(x, wt, b, **attrs)) if act[0] else \
            conv(x, wt, b, **attrs)
    finally:
        native.use_native(previous)
    got = fused_conv(x, wt, b, activation=act[0], activation_params=act[1], **attrs) \
        if act[0] else conv(x, wt, b, **attrs)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 8), m=st.integers(1, 6), h=st.integers(1, 11),
       w=st.integers(1, 11), pads=st.lists(st.integers(0, 2), min_size=4, max_size=4),
       tile=st.sampled_from([2, 4]), act=st.sampled_from(ACTS), bias=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_winograd_transforms_match_numpy(n, c, m, h, w, pads, tile, act, bias, seed):
    if h + pads[0] + pads[2] < 3 or w + pads[1] + pads[3] < 3:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    u = transform_weights(rng.standard_normal((m, c, 3, 3)).astype(np.float32), tile)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    previous = native.use_native(False)
    try:
        ref = winograd_conv(x, u, b, tile=tile, pads=pads, activation=act[0],
                            activation_params=act[1])
    finally:
        native.use_native(previous)
    got = winograd_conv(x, u, b, tile=tile, pads=pads, activation=act[0],
                        activation_params=act[1])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * max(np.abs(ref).max(), 1))


def test_numpy_fallback_gives_the_same_model_outputs(numpy_only):
    from optc.runtime import InferenceSession
    from optc.validate import ort_session, random_feeds, run
    from tests.util import MODELS

    path = str(MODELS / "mobilenetv2_mini.onnx")  # depthwise convs: the C kernel's op
    ref_s = ort_session(path)
    feeds = random_feeds(ref_s, 0, batch=2)
    ref = list(run(ref_s, feeds).values())[0]
    assert not native.enabled()
    got = InferenceSession(path).run(None, feeds)[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_c_kernels_give_the_same_model_outputs():
    from optc.runtime import InferenceSession
    from optc.validate import ort_session, random_feeds, run
    from tests.util import MODELS

    path = str(MODELS / "mobilenetv2_mini.onnx")
    ref_s = ort_session(path)
    feeds = random_feeds(ref_s, 0, batch=2)
    ref = list(run(ref_s, feeds).values())[0]
    assert native.enabled()
    got = InferenceSession(path).run(None, feeds)[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 4), h=st.integers(1, 12), w=st.integers(1, 12),
       k=st.integers(1, 4), stride=st.integers(1, 3), dil=st.integers(1, 2),
       pad=st.integers(0, 1), ceil=st.integers(0, 1), seed=st.integers(0, 2 ** 16))
def test_max_pool_matches_numpy(n, c, h, w, k, stride, dil, pad, ceil, seed):
    from optc.runtime.kernels.pool import max_pool

    if pad * 2 >= k or h + 2 * pad < dil * (k - 1) + 1 or w + 2 * pad < dil * (k - 1) + 1:
        return  # invalid pads (the spec wants pads < kernel) or no output
    x = np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32)
    attrs = dict(kernel_shape=[k, k], strides=[stride, stride], dilations=[dil, dil],
                 pads=[pad] * 4, ceil_mode=ceil)
    previous = native.use_native(False)
    try:
        ref = max_pool(x, **attrs)
    finally:
        native.use_native(previous)
    np.testing.assert_array_equal(max_pool(x, **attrs), ref)

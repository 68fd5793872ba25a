"""The C kernels (optc.runtime._ckernels) against the NumPy kernels on hypothesis shapes, the
switch between them, and that a fresh install built them."""

import contextlib

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from optc.runtime.config import DEFAULT, RuntimeConfig
from optc.runtime.kernels import native
from optc.runtime.kernels.conv import conv
from optc.runtime.kernels.fused import apply_activation, fused_conv
from optc.runtime.kernels.winograd import transform_weights, winograd_conv

ACTS = [(None, None), ("Relu", None), ("Clip", [0.0, 6.0]), ("LeakyRelu", [0.1]),
        ("Sigmoid", None), ("HardSigmoid", [0.2, 0.5]), ("HardSwish", None), ("Tanh", None),
        ("SiLU", None)]


#: the NumPy reference: a kernel called with _config=NUMPY runs without the C kernels
NUMPY = RuntimeConfig(native=False)


def test_the_extension_is_built():
    # pip install builds it wherever a C compiler exists, as on every machine CI runs on
    assert native.AVAILABLE and DEFAULT.native


@contextlib.contextmanager
def c_paths(**modes):
    """The C library's process-wide switches (native.ssimd, native.sconv_mode,
    native.dw_mode: keyword = the value to set) for the with block, restored after it."""
    before = {name: getattr(native, name)() for name in modes}
    try:
        for name, value in modes.items():
            getattr(native, name)(value)
        yield
    finally:
        for name, value in before.items():
            getattr(native, name)(value)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 20), h=st.integers(1, 12), w=st.integers(1, 12),
       k=st.integers(1, 5), stride=st.integers(1, 3), dil=st.integers(1, 2),
       pads=st.lists(st.integers(0, 2), min_size=4, max_size=4), bias=st.booleans(),
       act=st.sampled_from(ACTS), seed=st.integers(0, 2 ** 16))
def test_depthwise_matches_numpy(n, c, h, w, k, stride, dil, pads, bias, act, seed):
    # every path: one channel's plane at a time (dw_mode 1), a vector of channels at a time
    # (2: dwconv.c, 8 or 16 lanes, a partial last block past 8 or 16 channels) and the rows read
    # in place (3: AVX-512, 3x3/5x5 at stride 1/2; elsewhere the planes), per SIMD level
    if h + pads[0] + pads[2] < dil * (k - 1) + 1 or w + pads[1] + pads[3] < dil * (k - 1) + 1:
        return  # no output
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((c, 1, k, k)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32) if bias else None
    attrs = dict(group=c, pads=pads, strides=[stride, stride], dilations=[dil, dil])
    ref = (apply_activation(act[0], act[1], conv(x, wt, b, **attrs, _config=NUMPY))
                 if act[0] else conv(x, wt, b, **attrs, _config=NUMPY))
    for level in range(native.ssimd(), -1, -1):
        for path in (1, 2, 3):
            with c_paths(ssimd=level, dw_mode=path):
                got = fused_conv(x, wt, b, activation=act[0], activation_params=act[1],
                                 **attrs) if act[0] else conv(x, wt, b, **attrs)
            assert got.shape == ref.shape
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5,
                                       err_msg=f"level {level}, path {path}")


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 4), h=st.integers(1, 30), w=st.integers(1, 80),
       k=st.sampled_from([3, 5, 7]), stride=st.integers(1, 2),
       pads=st.lists(st.integers(0, 6), min_size=4, max_size=4), bias=st.booleans(),
       act=st.sampled_from(ACTS), seed=st.integers(0, 2 ** 16))
def test_depthwise_rows_match_numpy(n, c, h, w, k, stride, pads, bias, act, seed):
    # the direct rows (dw_mode 3): several tiles of 16 columns and of 8 output rows, the
    # masked loads at both ends of a row (pads up to 6, wider than the kernel's half, and
    # uneven), rows past the image skipped, the last tile's columns and rows cut
    if h + pads[0] + pads[2] < k or w + pads[1] + pads[3] < k:
        return  # no output
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((c, 1, k, k)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32) if bias else None
    attrs = dict(group=c, pads=pads, strides=[stride, stride])
    ref = conv(x, wt, b, **attrs, _config=NUMPY)
    if act[0]:
        ref = apply_activation(act[0], act[1], ref)
    assert native.dw_rows_applies((k, k), (stride, stride), (1, 1)) == (native.ssimd() >= 2)
    with c_paths(dw_mode=3):
        got = fused_conv(x, wt, b, activation=act[0], activation_params=act[1], **attrs) \
            if act[0] else conv(x, wt, b, **attrs)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_depthwise_rows_apply_to_their_shapes_only():
    if native.ssimd() < 2:
        assert not native.dw_rows_applies((3, 3), (1, 1), (1, 1))  # no AVX-512: never
        return
    assert native.dw_rows_applies((7, 7), (2, 2), (1, 1))
    for kernel, strides, dilations in [((3, 5), (1, 1), (1, 1)), ((4, 4), (1, 1), (1, 1)),
                                       ((3, 3), (3, 3), (1, 1)), ((3, 3), (1, 2), (1, 1)),
                                       ((3, 3), (1, 1), (2, 2))]:
        assert not native.dw_rows_applies(kernel, strides, dilations), (kernel, strides)


#: values where the activations' vector forms (runtime/csrc/vact.h) are easiest to get wrong:
#: NaN, infinities, signed zeros, tiny values, Tanh's switch at 0.625, exp's overflow and
#: underflow (and subnormal results) near +-88 and -104
EDGES = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 1e-8, -3e-6, 0.3, 0.6249,
                  0.6251, -0.7, 1.0, -2.5, 5.0, -5.0, 9.0, 20.0, -20.0, 44.0, 87.0, -87.0, 88.5,
                  -88.5, 89.0, -89.0, 100.0, -100.0, -103.0, -104.5, -120.0, 1e30, -1e30],
                 np.float32)


@pytest.mark.parametrize("act", [a for a in ACTS if a[0]], ids=lambda a: a[0])
def test_vector_activations_match_numpy_on_edge_values(act):
    # a 1x1 depthwise conv of weight 1 is act(x) alone (channel_affine -> activate_span), and
    # a 1x1 conv of one input channel goes through the GEMM micro-kernels' register epilogue;
    # both against NumPy in float64 rounded to float32 (2 ulp), at every SIMD level
    x = np.concatenate([EDGES, np.linspace(-12, 12, 61, dtype=np.float32)]).reshape(1, -1, 1, 1)
    c = x.shape[1]
    with np.errstate(all="ignore"):
        ref = apply_activation(act[0], act[1], x.astype(np.float64)).astype(np.float32)
    ones = np.ones((c, 1, 1, 1), np.float32)
    plane = x.reshape(1, 1, 1, c)  # one channel: the values along a row of the GEMM's output
    for level in range(native.ssimd(), -1, -1):
        with c_paths(ssimd=level), np.errstate(all="ignore"):
            got = [fused_conv(x, ones, None, group=c, activation=act[0],
                              activation_params=act[1]),
                   fused_conv(plane, np.ones((1, 1, 1, 1), np.float32), None,
                              activation=act[0], activation_params=act[1]).reshape(x.shape)]
        for path, y in zip(("span", "micro-kernel"), got):
            where = f"level {level}, {path}, {act[0]}"
            np.testing.assert_array_equal(np.isnan(y), np.isnan(ref), err_msg=where)
            # 2 ulp; float32 overflow of exp(89) is inf where float64 still has e^89 (SiLU(-89):
            # -0 against -4e-37, both 0 to float32's precision: 1e-36); the Hard* affine
            # v * alpha + beta rounds to an ulp of beta, which its cancellation near the lower
            # knee makes relative (HardSwish then multiplies it by v): 1.2e-7 * |v|
            tol = 2.5e-7 * np.abs(ref) + 1e-36
            if act[0].startswith("Hard"):
                tol = tol + 1.2e-7 * np.abs(np.where(np.isfinite(x), x, 0))
            finite = np.isfinite(ref)
            np.testing.assert_array_equal(y[~finite], ref[~finite], err_msg=where)
            bad = np.abs(y[finite] - ref[finite]) > tol[finite]
            assert not bad.any(), (where, x[finite][bad], y[finite][bad], ref[finite][bad])


@pytest.mark.parametrize("path", [1, 2, 3], ids=["planes", "channel-blocks", "rows"])
@pytest.mark.parametrize("shape, k, stride, dil, pads", [
    ((1, 3, 40, 700), 3, 2, 1, [1, 0, 1, 1]),  # bands of a few rows
    ((1, 2, 9, 3000), 5, 1, 2, [2, 1, 0, 2]),  # one row wider than a band
    ((2, 4, 30, 100), 3, 1, 1, [1, 1, 1, 1]),  # two bands
    ((1, 2, 33, 90), 2, 3, 1, [0, 1, 1, 0]),  # a kernel other than 3x3
    ((1, 20, 60, 900), 3, 2, 1, [1, 1, 1, 1]),  # channel blocks of 16 + 4, bands of rows
    ((2, 17, 25, 2500), 5, 1, 1, [2, 2, 2, 2]),  # a band of one output row
    ((1, 20, 400, 40), 3, 1, 1, [1, 1, 1, 1]),  # narrow rows placed flat, in several bands
    ((1, 33, 300, 30), 5, 2, 1, [2, 1, 2, 0]),  # the same strided, uneven padding
])
def test_wide_depthwise_matches_numpy_across_bands(shape, k, stride, dil, pads, path):
    # the C depthwise conv works through bands of whole rows sized to the caches: L1 for
    # the planes (as the pools), L2 for the channel blocks (without AVX2 they fall back to
    # the planes)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    c = shape[1]
    wt = rng.standard_normal((c, 1, k, k)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    attrs = dict(group=c, pads=pads, strides=[stride, stride], dilations=[dil, dil])
    ref = (np.clip(conv(x, wt, b, **attrs, _config=NUMPY), 0, 6))
    with c_paths(dw_mode=path):
        got = fused_conv(x, wt, b, activation="Clip", activation_params=[0.0, 6.0], **attrs)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def _winograd_case(n, c, m, h, w, pads, tile, act, bias, residual, seed):
    """A seeded WinogradConv case: x, the transformed filters u, the bias b and residual z
    (or None), and the NumPy kernels' output with the activation and without it."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    u = transform_weights(rng.standard_normal((m, c, 3, 3)).astype(np.float32), tile)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    ho, wo = h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2
    z = rng.standard_normal((n, m, ho, wo)).astype(np.float32) if residual else None
    ref, pre = ((
        winograd_conv(x, u, b, z, tile=tile, pads=pads, activation=act[0],
                      activation_params=act[1], _config=NUMPY),
        winograd_conv(x, u, b, z, tile=tile, pads=pads, _config=NUMPY)))
    return x, u, b, z, ref, pre


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 8), m=st.integers(1, 6), h=st.integers(1, 11),
       w=st.integers(1, 40), pads=st.lists(st.integers(0, 2), min_size=4, max_size=4),
       tile=st.sampled_from([2, 4]), act=st.sampled_from(ACTS), bias=st.booleans(),
       seed=st.integers(0, 2 ** 16))
@example(n=1, c=3, m=2, h=6, w=16, pads=[1, 1, 1, 1], tile=4, act=(None, None), bias=False,
         seed=1)  # 4 tiles a row, the last one's right columns inside the output
@example(n=1, c=3, m=2, h=6, w=28, pads=[1, 1, 1, 1], tile=4, act=(None, None), bias=False,
         seed=1)  # 7 tiles a row
def test_winograd_transforms_match_numpy(n, c, m, h, w, pads, tile, act, bias, seed):
    # rows up to 10 tiles of F(4x4) (the input transform reads narrow and wide rows of tiles
    # differently) and 20 of F(2x2): its vectorised loops with their remainders
    if h + pads[0] + pads[2] < 3 or w + pads[1] + pads[3] < 3:
        return
    x, u, b, _, ref, pre = _winograd_case(n, c, m, h, w, pads, tile, act, bias, False, seed)
    got = winograd_conv(x, u, b, tile=tile, pads=pads, activation=act[0],
                        activation_params=act[1])
    # both paths round in float32, their GEMMs summing in different orders: the difference
    # scales with the sums before the activation (F(4x4)'s transforms amplify it), and no
    # fused activation has a slope above 1.5 (HardSwish), so it carries through scaled by that
    scale = (1.5 if act[0] else 1.0) * max(np.abs(pre).max(), 1)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * scale)


@contextlib.contextmanager
def winograd_blocks(floats: int, tiles: int):
    """winograd_conv2d's block budget (floats of V and P) and least tiles per block, set for
    the block of the with statement."""
    from optc.runtime import _ckernels

    previous = _ckernels.wblock()
    _ckernels.wblock(floats, tiles)
    try:
        yield
    finally:
        _ckernels.wblock(*previous)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 9), m=st.integers(1, 10), h=st.integers(1, 17),
       w=st.integers(1, 23), pads=st.lists(st.integers(0, 2), min_size=4, max_size=4),
       tile=st.sampled_from([2, 4]), act=st.sampled_from(ACTS), bias=st.booleans(),
       residual=st.booleans(), threads=st.sampled_from([1, 2, 3]), seed=st.integers(0, 2 ** 16))
def test_winograd_blocks_match_numpy(n, c, m, h, w, pads, tile, act, bias, residual, threads,
                                     seed):
    # one block per tile row (the least budget and tile count), shared among threads: every
    # block's first and last rows, the padding read into the strips, the residual input
    from optc.runtime import _ckernels

    if h + pads[0] + pads[2] < 3 or w + pads[1] + pads[3] < 3:
        return
    x, u, b, z, ref, pre = _winograd_case(n, c, m, h, w, pads, tile, act, bias, residual, seed)
    ho, wo = h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2
    th, tw = -(-ho // tile), -(-wo // tile)
    with winograd_blocks(1, 1):
        assert _ckernels.wblock_rows(c, m, tile, th, tw) == 1
        blocked = native.winograd_blocked(x, u, b, tile, th, tw, pads, (ho, wo), act[0],
                                          act[1], z, threads)
        # through the kernel: the blocked path, or the unblocked one where it declines
        kernel = winograd_conv(x, u, b, z, tile=tile, pads=pads, activation=act[0],
                               activation_params=act[1],
                               _config=RuntimeConfig(threads=threads))
    scale = (1.5 if act[0] else 1.0) * max(np.abs(pre).max(), 1)
    np.testing.assert_allclose(kernel, ref, rtol=1e-5, atol=1e-5 * scale)
    if n * th < threads:  # fewer blocks than threads: the unblocked path shares the GEMMs
        assert blocked is None
    else:
        np.testing.assert_allclose(blocked, ref, rtol=1e-5, atol=1e-5 * scale)


def test_winograd_block_rows():
    from optc.runtime import _ckernels

    # one channel in and out, F(4x4), 10 tiles a row: 36 * 2 * 10 floats of V and P a row
    row = 36 * 2 * 10
    with winograd_blocks(4 * row, 1):
        assert _ckernels.wblock_rows(1, 1, 4, 16, 10) == 4
        assert _ckernels.wblock_rows(1, 1, 4, 9, 10) == 3  # 3 + 3 + 3, not 4 + 4 + 1
        assert _ckernels.wblock_rows(1, 1, 4, 3, 10) == 3  # a small image is one block
    with winograd_blocks(1, 48):  # never fewer tiles than the GEMM's strips of 48
        assert _ckernels.wblock_rows(64, 64, 4, 14, 14) == 4  # 56 tiles (of 196)
        assert _ckernels.wblock_rows(128, 128, 4, 7, 7) == 7
    # the shipped budget: ResNet-50's 64 -> 64 at 56x56, F(4x4), in blocks of tile rows
    assert 1 < _ckernels.wblock_rows(64, 64, 4, 14, 14) < 14


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 2), c=st.integers(1, 7), p=st.integers(1, 70),
       signed=st.booleans(), zp=st.integers(-128, 255), scale=st.floats(0.005, 2.0),
       act=st.sampled_from(ACTS), seed=st.integers(0, 2 ** 16))
def test_quantize_affine_matches_numpy(n, c, p, signed, zp, scale, act, seed):
    # ai.optc QuantizeAffine in C (the vector loops with their tails, planes of P values)
    # against its NumPy reference: every code bit-equal, saturation at both ends included
    from optc.runtime.kernels.fused import quantize_affine

    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c, p)) * 4).astype(np.float32)
    s = rng.standard_normal(c).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    zp = np.int8(min(max(zp, -128), 127)) if signed else np.uint8(max(zp, 0))
    ys = np.float32(scale)
    ref = (quantize_affine(x, s, b, ys, zp, activation=act[0],
                                         activation_params=act[1], _config=NUMPY))
    got = quantize_affine(x, s, b, ys, zp, activation=act[0], activation_params=act[1])
    assert got.dtype == zp.dtype and got.shape == x.shape
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("ys", [0.1, 0.37, 1.7, 0.0123])
@pytest.mark.parametrize("signed", [False, True])
def test_quantize_affine_is_exact_next_to_halves(ys, signed):
    # values whose quotient by the output scale lies on a half or a few ulp either side:
    # where a product by 1 / ys may round the other way than the division the spec asks for
    from optc.runtime.kernels.fused import quantize_affine

    ys = np.float32(ys)
    halves = np.arange(-300, 300, dtype=np.float32) + np.float32(0.5)
    v = (halves * ys).astype(np.float32)
    near = [v]
    for _ in range(3):
        near.append(np.nextafter(near[-1], np.float32(np.inf)))
    below = [v]
    for _ in range(3):
        below.append(np.nextafter(below[-1], np.float32(-np.inf)))
    x = np.concatenate(near + below[1:]).reshape(1, 1, -1)
    one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
    zp = np.int8(3) if signed else np.uint8(128)
    for act in ACTS:
        ref = quantize_affine(x, one, zero, ys, zp, activation=act[0],
                              activation_params=act[1], _config=NUMPY)
        got = quantize_affine(x, one, zero, ys, zp, activation=act[0], activation_params=act[1])
        np.testing.assert_array_equal(got, ref, err_msg=str(act))


def test_quantize_affine_refuses_parameters_not_one_a_channel():
    from optc.errors import OptcError
    from optc.runtime.kernels.fused import quantize_affine

    x = np.zeros((1, 3, 4), np.float32)
    with pytest.raises(OptcError, match="QuantizeAffine needs 3 scales and shifts"):
        quantize_affine(x, np.ones(2, np.float32), np.zeros(3, np.float32), np.float32(1),
                        np.uint8(0))


def test_numpy_fallback_gives_the_same_model_outputs():
    from optc.runtime import InferenceSession
    from optc.validate import ort_session, random_feeds, run
    from tests.util import MODELS

    path = str(MODELS / "mobilenetv2_mini.onnx")  # depthwise convs: the C kernel's op
    ref_s = ort_session(path)
    feeds = random_feeds(ref_s, 0, batch=2)
    ref = list(run(ref_s, feeds).values())[0]
    session = InferenceSession(path, native=False)
    assert not session.config.native
    got = session.run(None, feeds)[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_c_kernels_give_the_same_model_outputs():
    from optc.runtime import InferenceSession
    from optc.validate import ort_session, random_feeds, run
    from tests.util import MODELS

    path = str(MODELS / "mobilenetv2_mini.onnx")
    ref_s = ort_session(path)
    feeds = random_feeds(ref_s, 0, batch=2)
    ref = list(run(ref_s, feeds).values())[0]
    session = InferenceSession(path)
    assert session.config.native
    got = session.run(None, feeds)[0]
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
    ref = (max_pool(x, **attrs, _config=NUMPY))
    np.testing.assert_array_equal(max_pool(x, **attrs), ref)


def _pool_has_output(h, w, kh, kw, dil, pads) -> bool:
    """Whether a pool of that geometry is valid (the spec wants pads under the kernel) and has
    an output."""
    return not (pads[0] >= kh or pads[2] >= kh or pads[1] >= kw or pads[3] >= kw or
                h + pads[0] + pads[2] < dil * (kh - 1) + 1 or
                w + pads[1] + pads[3] < dil * (kw - 1) + 1)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 4), h=st.integers(1, 12), w=st.integers(1, 12),
       kh=st.integers(1, 4), kw=st.integers(1, 4), stride=st.integers(1, 3),
       dil=st.integers(1, 2), pads=st.lists(st.integers(0, 2), min_size=4, max_size=4),
       ceil=st.integers(0, 1), include=st.integers(0, 1), seed=st.integers(0, 2 ** 16))
def test_average_pool_matches_numpy(n, c, h, w, kh, kw, stride, dil, pads, ceil, include,
                                    seed):
    from optc.runtime.kernels.pool import average_pool

    if not _pool_has_output(h, w, kh, kw, dil, pads):
        return
    x = np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32)
    attrs = dict(kernel_shape=[kh, kw], strides=[stride, stride], dilations=[dil, dil],
                 pads=pads, ceil_mode=ceil, count_include_pad=include)
    ref = (average_pool(x, **attrs, _config=NUMPY))
    np.testing.assert_allclose(average_pool(x, **attrs), ref, rtol=1e-6, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=3, max_size=5), size=st.integers(1, 7),
       alpha=st.floats(1e-5, 1.0), beta=st.sampled_from([0.75, 0.5, 0.3, 1.0]),
       bias=st.floats(0.5, 3.0), seed=st.integers(0, 2 ** 16))
def test_lrn_matches_numpy_and_onnxruntime(shape, size, alpha, beta, bias, seed):
    # the C kernel (float32 window sums; sqrt for beta 0.75 and 0.5, powf otherwise) against
    # the float64 NumPy kernel and (odd sizes, 4-D) onnxruntime's LRN
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from optc.runtime.kernels.nn import lrn

    x = (np.random.default_rng(seed).standard_normal(shape) * 4).astype(np.float32)
    attrs = dict(size=size, alpha=alpha, beta=beta, bias=bias)
    ref = (lrn(x, **attrs, _config=NUMPY))
    got = lrn(x, **attrs)
    assert native.lrn(x, **attrs) is not None  # the C kernel ran
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=1e-7)
    if size % 2 == 0 or len(shape) != 4:
        return  # onnxruntime's LRN takes odd sizes and 4-D inputs only
    graph = helper.make_graph(
        [helper.make_node("LRN", ["x"], ["y"], **attrs)], "lrn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    [want] = ort.InferenceSession(model.SerializeToString(), options,
                                  providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("shape, k, stride, dil, pads, ceil", [
    ((1, 3, 37, 700), 3, 2, 1, [1, 0, 1, 1], 1),  # bands of a few rows
    ((2, 2, 9, 3000), 3, 1, 2, [2, 1, 0, 2], 0),  # one row wider than a band
    ((1, 2, 50, 260), 2, 2, 1, [0, 0, 0, 0], 1),
])
def test_wide_pools_match_numpy_across_bands(shape, k, stride, dil, pads, ceil):
    # the C pools work through bands of whole rows sized to L1: maps wide enough for several
    # bands, and for a single row over the budget
    from optc.runtime.kernels.pool import average_pool, max_pool

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    attrs = dict(kernel_shape=[k, k], strides=[stride, stride], dilations=[dil, dil],
                 pads=pads, ceil_mode=ceil)
    ref_max, ref_avg = (max_pool(x, **attrs, _config=NUMPY),
                        average_pool(x, **attrs, _config=NUMPY))
    np.testing.assert_array_equal(max_pool(x, **attrs), ref_max)
    np.testing.assert_allclose(average_pool(x, **attrs), ref_avg, rtol=1e-6, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(48, 90),
       kh=st.integers(1, 4), kw=st.integers(1, 4), stride=st.integers(2, 3),
       dil=st.integers(1, 2), pads=st.lists(st.integers(0, 3), min_size=4, max_size=4),
       ceil=st.integers(0, 1), include=st.integers(0, 1), seed=st.integers(0, 2 ** 16))
@example(n=1, c=1, h=9, w=60, kh=3, kw=3, stride=2, dil=2, pads=[1, 0, 1, 2], ceil=1,
         include=1, seed=0)  # dilated rows and columns, asymmetric pads
def test_strided_pools_on_wide_rows_match_numpy(n, c, h, w, kh, kw, stride, dil, pads, ceil,
                                                include, seed):
    # rows of 48 pixels or more take the C pools' row-at-a-time strided path: every window
    # row inside or outside the map, the padding on either side, ceil mode's last window
    from optc.runtime.kernels.pool import average_pool, max_pool

    if not _pool_has_output(h, w, kh, kw, dil, pads):
        return
    x = np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32)
    attrs = dict(kernel_shape=[kh, kw], strides=[stride, stride], dilations=[dil, dil],
                 pads=pads, ceil_mode=ceil)
    ref_max, ref_avg = (max_pool(x, **attrs, _config=NUMPY),
                        average_pool(x, count_include_pad=include, **attrs, _config=NUMPY))
    np.testing.assert_array_equal(max_pool(x, **attrs), ref_max)
    np.testing.assert_allclose(average_pool(x, count_include_pad=include, **attrs), ref_avg,
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 2048, 7, 7), (2, 5, 3, 4), (1, 3, 6)])
def test_average_pool_over_the_whole_map_is_the_global_mean(shape):
    # ResNet-50's 7x7 AveragePool on a 7x7 map: the global average pool's path, against
    # onnxruntime's AveragePool
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from optc.runtime.kernels.pool import average_pool

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    k = list(shape[2:])
    graph = helper.make_graph(
        [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=k)], "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    [want] = ort.InferenceSession(model.SerializeToString(), options,
                                  providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = average_pool(x, kernel_shape=k)
    assert got.shape == want.shape == (*shape[:2], *[1] * len(k))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _qconv_case(draw_shape, seed):
    """Random QLinearConv inputs: 8-bit x and y of either signedness, int8 weights (zero
    point 0, as optc's quantize writes them), int32 bias, per-channel scales."""
    n, c, m, group, h, w, k, stride, dil, pads, x_signed, y_signed, bias, narrow = draw_shape
    rng = np.random.default_rng(seed)
    xt = np.int8 if x_signed else np.uint8
    info = np.iinfo(xt)
    x = rng.integers(info.min, info.max + 1, (n, c, h, w), dtype=xt)
    # narrow: 7-bit weights (quantize's reduce-range), which take AVX2's vpmaddubsw GEMM
    wmax = 64 if narrow else 127
    wt = rng.integers(-wmax, wmax + 1, (m, c // group, k, k), dtype=np.int8)
    b = rng.integers(-5000, 5000, m).astype(np.int32) if bias else None
    args = (x, np.float32(rng.uniform(0.01, 0.1)), xt(rng.integers(info.min, info.max + 1)), wt,
            rng.uniform(0.001, 0.01, m).astype(np.float32), np.zeros(m, np.int8),
            np.float32(rng.uniform(0.05, 0.5)),
            (np.int8 if y_signed else np.uint8)(rng.integers(-20, 20) if y_signed else
                                                rng.integers(0, 40)))
    attrs = dict(group=group, pads=pads, strides=[stride, stride], dilations=[dil, dil])
    return args, b, attrs


@st.composite
def _qconv_shapes(draw):
    group = draw(st.sampled_from([1, 1, 2, "dw"]))
    cg = draw(st.integers(1, 9))
    c = cg if group == 1 else cg * group if group == 2 else draw(st.integers(1, 40))
    if group == "dw":  # 16 channels and more on short rows take the channels-last loop
        group, m = c, c
    else:
        m = group * draw(st.integers(1, 7))
    k = draw(st.sampled_from([1, 2, 3, 5]))
    dil = draw(st.integers(1, 2))
    pads = draw(st.lists(st.integers(0, 2), min_size=4, max_size=4))
    h, w = draw(st.integers(1, 19)), draw(st.integers(1, 19))
    assume_ok = h + pads[0] + pads[2] >= dil * (k - 1) + 1 and \
        w + pads[1] + pads[3] >= dil * (k - 1) + 1
    if not assume_ok:
        h, w = h + dil * (k - 1), w + dil * (k - 1)
    return (draw(st.integers(1, 2)), c, m, group, h, w, k, draw(st.integers(1, 3)), dil, pads,
            draw(st.booleans()), draw(st.booleans()), draw(st.booleans()), draw(st.booleans()))


@settings(max_examples=80, deadline=None)
@given(shape=_qconv_shapes(), seed=st.integers(0, 2 ** 16))
def test_int8_conv_kernels_match_numpy_bit_for_bit(shape, seed):
    # the reference: exact integer sums through float GEMMs and NumPy fixed-point requantizing
    from optc.runtime.kernels.qlinear import qlinear_conv

    args, b, attrs = _qconv_case(shape, seed)
    _assert_int8_paths_match(args, b, attrs, (qlinear_conv(*args, b, **attrs, _config=NUMPY)))
    assert np.array_equal(qlinear_conv(*args, b, **attrs),
                          qlinear_conv(*args, b, **attrs, _config=NUMPY))  # the entry point


@st.composite
def _qconv_wide_shapes(draw):
    """Channel counts past one tile of the wide GEMMs (AMX: 32 filter rows, 64 taps a step;
    VNNI: 8 rows): several row blocks and tap steps, and their ragged ends."""
    group = draw(st.sampled_from([1, 2]))
    c = group * draw(st.integers(1, 60))
    m = group * draw(st.integers(1, 80))
    k = draw(st.sampled_from([1, 3]))
    h, w = draw(st.integers(k, 12)), draw(st.integers(k, 12))
    return (1, c, m, group, h, w, k, draw(st.integers(1, 2)), 1, [k // 2] * 4,
            draw(st.booleans()), draw(st.booleans()), draw(st.booleans()), draw(st.booleans()))


@settings(max_examples=25, deadline=None)
@given(shape=_qconv_wide_shapes(), seed=st.integers(0, 2 ** 16))
def test_int8_conv_kernels_match_numpy_on_many_channels(shape, seed):
    from optc.runtime.kernels.qlinear import qlinear_conv

    args, b, attrs = _qconv_case(shape, seed)
    _assert_int8_paths_match(args, b, attrs, (qlinear_conv(*args, b, **attrs, _config=NUMPY)))


def _assert_int8_paths_match(args, b, attrs, ref):
    """Every int8 GEMM this CPU has and the portable C one give ``ref``: with blocks of the
    default size and of 32 pixels (small images cross block edges too), on 1 and 3 threads."""
    from optc.runtime.kernels.qlinear import _plan

    top, block = native.qsimd(), native._ckernels.qblock()
    try:
        for level in range(top, -1, -1):
            native.qsimd(level)
            for size in (block, 128):
                native._ckernels.qblock(size)
                a = args
                plan = _plan(a[0], int(a[2]), a[1], a[3], a[4], a[5], a[6], int(a[7]),
                             np.asarray(a[7]).dtype, b,
                             dict(auto_pad="NOTSET", kernel_shape=None, **attrs), portable=True)
                assert plan is not None
                where = f"simd level {level}, block {size}"
                np.testing.assert_array_equal(plan(a[0]), ref, err_msg=where)
                # blocks of pixels or of filters per thread
                np.testing.assert_array_equal(plan(a[0], 3), ref, err_msg=f"3 threads, {where}")
    finally:
        native.qsimd(top)
        native._ckernels.qblock(block)


@pytest.mark.parametrize("case", ["pairs at 64", "pairs at -64", "a pair at 65",
                                  "multiplier over 1", "bias past int32",
                                  "depthwise, multiplier over 1", "depthwise, bias past int32"])
def test_int8_conv_avx2_edges(case):
    # the AVX2 GEMM's limits: vpmaddubsw where a pair of taps reaches 255 * 128 at most (x at
    # 255 everywhere, the pairs' weights at the bound), vpmaddwd just past it; requantization
    # in AVX2 (the GEMM's and the depthwise loop's) only for multipliers below 1 and
    # |acc + bias| < 2^30, scalar otherwise (both cases built so that the AVX2 arithmetic
    # would overflow)
    from optc.runtime.kernels.qlinear import qlinear_conv

    rng = np.random.default_rng(3)
    depthwise = case.startswith("depthwise")
    case = case.removeprefix("depthwise, ")
    m, c = (8, 8) if depthwise else (7, 8)
    x = np.full((1, c, 9, 11), 255, np.uint8)
    w = rng.integers(-20, 21, (m, 1 if depthwise else c, 3, 3)).astype(np.int8)
    bias = rng.integers(-5000, 5000, m).astype(np.int32)
    y_scale = np.float32(40.0)
    if case in ("pairs at 64", "pairs at -64"):
        w[:] = 64 if case == "pairs at 64" else -64
    elif case == "a pair at 65":
        w[:] = 64
        w[2, 0, 1, 1] = 65
    elif case == "multiplier over 1":  # 64: row 3's product leaves 32 bits
        y_scale = np.float32(0.05 * 0.01 / 64)
        bias[3] = 2 ** 26 + 12345
        if depthwise:  # inside the image, 64 * (2^26 + 1): its low 32 bits would give 164
            bias[3] = 2 ** 26 + 1 - 252 * int(w[3].sum())
    else:  # row 3's bias plus its (positive) products passes 2^31
        bias[3] = 2 ** 31 - 1
        w[3] = np.abs(w[3]) + 1
    args = (x, np.float32(0.05), np.uint8(3), w, np.full(m, 0.01, np.float32),
            np.zeros(m, np.int8), y_scale, np.uint8(100))
    attrs = dict(group=c if depthwise else 1, pads=[1, 1, 1, 1], strides=[1, 1],
                 dilations=[1, 1])
    ref = (qlinear_conv(*args, bias, **attrs, _config=NUMPY))
    if case.startswith("pairs"):
        packed = native.pack_qweights(w, 1)[0]
        assert native.avx2_panels(packed, m).dtype == np.int8
    elif case == "a pair at 65":
        assert native.avx2_panels(native.pack_qweights(w, 1)[0], m).dtype == np.int16
    assert len(np.unique(ref)) > 1 or case.startswith("pairs")
    _assert_int8_paths_match(args, bias, attrs, ref)


def test_int8_conv_without_simd_runs_numpy_except_depthwise():
    from optc.runtime.kernels.qlinear import _plan

    x = np.zeros((1, 8, 6, 6), np.uint8)
    common = (np.float32(0.1), np.zeros(8, np.int8), np.float32(0.5), 0, np.dtype(np.uint8),
              None)
    conv_w = np.ones((8, 8, 3, 3), np.int8)
    dw_w = np.ones((8, 1, 3, 3), np.int8)
    attrs = dict(auto_pad="NOTSET", kernel_shape=None, pads=[1] * 4, strides=None,
                 dilations=None)
    top = native.qsimd()
    try:
        native.qsimd(0)
        # portable C is slower than NumPy's float GEMMs: only the depthwise loop stays in C
        assert _plan(x, 0, np.float32(0.1), conv_w, *common, dict(attrs, group=1)) is None
        assert _plan(x, 0, np.float32(0.1), dw_w, *common, dict(attrs, group=8)) is not None
    finally:
        native.qsimd(top)


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 3), m=st.integers(1, 40), k=st.integers(1, 300),
       n=st.integers(1, 70), seed=st.integers(0, 2 ** 16))
def test_float_gemm_matches_numpy_at_every_simd_level(batch, m, k, n, seed):
    # packed panels of 8 rows, partial strips and k passes, narrow (N <= one vector) and wide
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((batch, m, k)).astype(np.float32)
    b = rng.standard_normal((batch, k, n)).astype(np.float32)
    ref = a.astype(np.float64) @ b
    packed = native.pack_panels(a)
    top = native.ssimd()
    try:
        for level in range(top, -1, -1):
            native.ssimd(level)
            for threads in (1, 3):
                c = np.full((batch, m, n), np.nan, np.float32)
                native._ckernels.sgemm_batch(packed, b, c, batch, m, n, k, threads)
                np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-4 * np.sqrt(k),
                                           err_msg=f"level {level}, {threads} threads")
    finally:
        native.ssimd(top)


@pytest.mark.parametrize("n", [1, 3, 4, 5, 28, 49, 196])
def test_float_gemm_and_conv_last_columns_match_numpy(n):
    # AVX2 and AVX-512 send a last strip of at most 4 columns to the column kernels (3 panels
    # a call; AVX-512's strips are 48 wide: 49 and 196 end in one of 1 and 4 columns):
    # here past one block of rows (MC = 144: 150 rows, the last panel partial), over three k
    # passes, and through a 1x1 conv's epilogue (bias, residual input, ReLU) on those columns
    rng = np.random.default_rng(n)
    m, k = 150, 600
    a = rng.standard_normal((1, m, k)).astype(np.float32)
    b = rng.standard_normal((1, k, n)).astype(np.float32)
    ref = a.astype(np.float64) @ b
    bias = rng.standard_normal(m).astype(np.float32)
    z = rng.standard_normal((1, m, 1, n)).astype(np.float32)
    conv_ref = np.maximum(ref.reshape(1, m, 1, n) + bias.reshape(1, m, 1, 1) + z, 0)
    packed = native.pack_panels(a)
    top = native.ssimd()
    try:
        for level in range(top, -1, -1):
            native.ssimd(level)
            c = np.full((1, m, n), np.nan, np.float32)
            native._ckernels.sgemm_batch(packed, b, c, 1, m, n, k, 1)
            np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-3, err_msg=f"level {level}")
            if level == 0:
                continue
            y = np.full(conv_ref.shape, np.nan, np.float32)
            native._ckernels.sconv2d(b.reshape(1, k, 1, n), packed, bias, z, y, 1, k, 1, n, 1,
                                     m, 1, 1, 1, 1, 0, 0, 1, 1, 1, n, 1, 0.0, 0.0, 1)
            np.testing.assert_allclose(y, conv_ref, rtol=1e-4, atol=1e-3,
                                       err_msg=f"conv, level {level}")
    finally:
        native.ssimd(top)


@st.composite
def _fconv_shapes(draw):
    group = draw(st.sampled_from([1, 1, 1, 2, 3]))
    cg, mg = draw(st.integers(1, 9)), draw(st.integers(1, 30))
    k = draw(st.sampled_from([1, 1, 2, 3, 3, 5, 7]))
    dil, stride = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    pads = draw(st.lists(st.integers(0, 3), min_size=4, max_size=4))
    span = dil * (k - 1) + 1
    h = draw(st.integers(max(1, span - pads[0] - pads[2]), 20))
    w = draw(st.integers(max(1, span - pads[1] - pads[3]), 20))
    return (draw(st.integers(1, 2)), cg * group, mg * group, group, h, w, k, stride, dil, pads,
            draw(st.booleans()), draw(st.booleans()), draw(st.sampled_from(ACTS)))


@settings(max_examples=80, deadline=None)
@given(shape=_fconv_shapes(), seed=st.integers(0, 2 ** 16))
def test_float_conv_kernel_matches_numpy_at_every_simd_level(shape, seed):
    # both paths of the C conv -- im2col'd blocks (strided convs through their phases, 1x1 ones
    # read directly) through the packed GEMM, and tap mode (the padded phases read in place
    # through an offset table) -- the bias, residual input and activation fused into the store
    n, c, m, group, h, w, k, stride, dil, pads, bias, res, act = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((m, c // group, k, k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    attrs = dict(group=group, pads=pads, strides=[stride, stride], dilations=[dil, dil])
    ref = (conv(x, wt, b, **attrs, _config=NUMPY))
    z = rng.standard_normal(ref.shape).astype(np.float32) if res else None
    pre = ref + z if res else ref
    ref = apply_activation(act[0], act[1], pre.copy()) if act[0] else pre
    # float32 sums in another order: the difference scales with the sums before the
    # activation, whose slope is at most 1.5 (HardSwish)
    atol = 1e-4 * (1.5 if act[0] else 1.0) * max(np.abs(pre).max(), 1)
    code, pa, pb = native.activation_args(*act)
    packed = native.pack_panels(wt.reshape(group, m // group, -1))
    top, mode = native.ssimd(), native.sconv_mode()
    try:
        for level, path in [(lv, p) for lv in range(top, 0, -1) for p in (1, 2)] + [(0, 0)]:
            native.ssimd(level)
            native.sconv_mode(path)
            for threads in (1, 3):
                y = np.full(ref.shape, np.nan, np.float32)
                native._ckernels.sconv2d(x, packed, b, z, y, n, c, h, w, group, m // group, k,
                                         k, stride, stride, pads[0], pads[1], dil, dil,
                                         ref.shape[2], ref.shape[3], code, pa, pb, threads)
                np.testing.assert_allclose(
                    y, ref, rtol=1e-4, atol=atol,
                    err_msg=f"level {level}, path {path}, {threads} threads")
    finally:
        native.ssimd(top)
        native.sconv_mode(mode)
    if top >= 1:  # the kernel entry points take it
        got = fused_conv(x, wt, b, activation=act[0], activation_params=act[1], **attrs) \
            if act[0] else conv(x, wt, b, **attrs)
        if not res:
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=atol)


@pytest.mark.parametrize("shape", [(1, 5, 7, 9, 2, 2), (2, 3, 11, 6, 3, 2), (1, 40, 8, 8, 2, 1)])
def test_float_strided_1x1_conv_matches_numpy(shape):
    # an unpadded strided 1x1 conv reads only its input's phase (0, 0): the one case the
    # hypothesis shapes above rarely draw
    n, c, h, w, stride, res = shape
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((24, c, 1, 1)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    attrs = dict(strides=[stride, stride])
    ref = (conv(x, wt, b, **attrs, _config=NUMPY))
    z = rng.standard_normal(ref.shape).astype(np.float32) if res else None
    ref = np.maximum(ref + z, 0) if res else np.maximum(ref, 0)
    packed = native.pack_panels(wt.reshape(1, 24, c))
    mode = native.sconv_mode()
    try:
        for path in (1, 2):
            native.sconv_mode(path)
            y = np.full(ref.shape, np.nan, np.float32)
            native._ckernels.sconv2d(x, packed, b, z, y, n, c, h, w, 1, 24, 1, 1, stride, stride,
                                     0, 0, 1, 1, ref.shape[2], ref.shape[3], 1, 0.0, 0.0, 1)
            np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5, err_msg=f"path {path}")
    finally:
        native.sconv_mode(mode)


def _conv_calls_on(w, b, rng, state=None):
    """FusedConv and Conv with weight w on two input shapes and five sets of attributes (the
    first three differing in one attribute each), each against NumPy, twice (the call
    resolved, then the kept one)."""
    for x in (rng.standard_normal((1, 4, 9, 9)).astype(np.float32),
              rng.standard_normal((2, 4, 5, 7)).astype(np.float32)):
        for attrs in (dict(pads=[1, 1, 1, 1]), dict(pads=[0, 0, 0, 0]),
                      dict(pads=[1, 1, 1, 1], strides=[2, 2]),
                      dict(pads=[1, 1, 1, 1], activation="Relu"),
                      dict(pads=[2, 1, 0, 1], dilations=[2, 1], activation="Clip",
                           activation_params=[0.0, 0.5])):
            ref = (fused_conv(x, w, b, **attrs, _config=NUMPY))
            for _ in range(2):
                np.testing.assert_allclose(fused_conv(x, w, b, **attrs, _state=state), ref,
                                           rtol=1e-4, atol=1e-4, err_msg=str(attrs))
                if "activation" not in attrs:
                    np.testing.assert_allclose(conv(x, w, b, **attrs, _state=state), ref,
                                               rtol=1e-4, atol=1e-4, err_msg=str(attrs))
    return x


def test_conv_calls_are_resolved_per_weight_attributes_and_shape():
    # FusedConv and Conv keep each node's resolved C call in the node's prepared state
    # (conv.prepare_conv, made by the session when it plans): one weight shared by nodes of
    # other pads, strides and activations, and inputs of other shapes, each get their own;
    # a NumPy session and bad channel counts still take effect; a state prepared for another
    # weight array is never used
    from optc.errors import OptcError
    from optc.runtime.kernels.conv import prepare_conv

    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    state = prepare_conv(DEFAULT, [None, w, b], {})
    assert prepare_conv(NUMPY, [None, w, b], {}) is None  # nothing to keep without C
    x = _conv_calls_on(w, b, rng, state)
    if native.ssimd() >= 1:  # 2 shapes x (5 FusedConv + 3 Conv keys)
        assert len(state.calls) == 16
        assert all(call is not None for _, call in state.calls)
        assert list(state.packed) == [1]  # the weight packed once
    np.testing.assert_allclose(fused_conv(x, w, b, pads=[1, 1, 1, 1], _config=NUMPY,
                                          _state=state),
                               conv(x, w, b, pads=[1, 1, 1, 1], _config=NUMPY), rtol=1e-5)
    with pytest.raises(OptcError, match="channels"):
        conv(rng.standard_normal((1, 3, 9, 9)).astype(np.float32), w, b, pads=[1, 1, 1, 1],
             _state=state)
    other = w.copy()
    kept = len(state.calls)
    np.testing.assert_allclose(conv(x, other * 2, b, pads=[1, 1, 1, 1], _state=state),
                               conv(x, other * 2, b, pads=[1, 1, 1, 1], _config=NUMPY),
                               rtol=1e-4, atol=1e-4)
    assert len(state.calls) == kept


@pytest.mark.parametrize("config", [DEFAULT, NUMPY], ids=["c", "numpy"])
@pytest.mark.parametrize("shape, dtype", [((1, 2048, 7, 7), np.float32),
                                          ((2, 5, 3, 4, 2), np.float32),
                                          ((3, 4, 9), np.float32), ((2, 3, 1, 1), np.float32),
                                          ((1, 3, 56, 57), np.float32),
                                          ((2, 6, 5, 5), np.float64)])
def test_global_average_pool_matches_onnxruntime(shape, dtype, config):
    # float32 in C (row sums: rows of 49, 48, 9, 1 and 3192 pixels, vector and tail) or as a
    # matrix-vector product with 1 / pixels (a NumPy session), 1-D to 3-D maps, against
    # onnxruntime; other types through np.mean (onnxruntime has no float64 kernel for it)
    from onnx import TensorProto, helper

    from optc.runtime.kernels.pool import global_average_pool
    from optc.validate import ort_session

    x = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    if dtype == np.float32:
        graph = helper.make_graph(
            [helper.make_node("GlobalAveragePool", ["x"], ["y"])], "gap",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        ref = ort_session(model.SerializeToString()).run(None, {"x": x})[0]
    else:
        ref = x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)
    got = global_average_pool(x, _config=config)
    assert got.dtype == dtype and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)


def test_float_conv_with_no_input_channels_is_bias_and_activation():
    # K = 0: no k pass writes the output, which is act(bias) (it was left unwritten once)
    x, w = np.ones((1, 0, 6, 6), np.float32), np.ones((5, 0, 3, 3), np.float32)
    b = np.linspace(-2, 2, 5).astype(np.float32)
    mode = native.sconv_mode()
    try:
        for path in (0, 1, 2):
            native.sconv_mode(path)
            y = fused_conv(x, w, b, activation="Relu", pads=[1] * 4)
            np.testing.assert_array_equal(y, np.broadcast_to(np.maximum(b, 0).reshape(1, 5, 1, 1),
                                                             (1, 5, 6, 6)))
    finally:
        native.sconv_mode(mode)


def test_float_conv_without_simd_runs_numpy():
    # the portable C GEMM is slower than NumPy's BLAS: without AVX2 + FMA convs stay in NumPy
    x, w = np.ones((1, 4, 5, 5), np.float32), np.ones((6, 4, 3, 3), np.float32)
    top = native.ssimd()
    try:
        native.ssimd(0)
        assert native.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1, [5, 5]) is None
        np.testing.assert_array_equal(conv(x, w, pads=[1] * 4)[0, 0, 2, 2], 36.0)
    finally:
        native.ssimd(top)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 300), scale=st.floats(1e-3, 10.0), zp=st.integers(-128, 255),
       signed=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_quantize_and_dequantize_match_numpy(n, scale, zp, signed, seed):
    from optc.runtime.kernels.quant import dequantize13, quantize13

    dtype = np.int8 if signed else np.uint8
    info = np.iinfo(dtype)
    zp = dtype(np.clip(zp, info.min, info.max))
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 200 * scale).astype(np.float32)
    s = np.float32(scale)
    if n >= 4:  # exact ties (half to even), overflow both ways, NaN and infinities
        x[:4] = np.array([2.5, -3.5, 1e30, -1e30], np.float32) * s
    if n >= 7:
        x[4:7] = [np.nan, np.inf, -np.inf]
    q = rng.integers(info.min, info.max + 1, n).astype(dtype)
    got_q, got_d = quantize13(x, s, zp), dequantize13(q, s, zp)
    with np.errstate(invalid="ignore"):
        ref_q = quantize13(x, s, zp, _config=NUMPY)
    ref_d = dequantize13(q, s, zp, _config=NUMPY)
    np.testing.assert_array_equal(got_q, ref_q)
    np.testing.assert_array_equal(got_d, ref_d)
    assert got_q.dtype == dtype and got_d.dtype == np.float32


@settings(max_examples=40, deadline=None)
@given(signed=st.booleans(), shape=st.lists(st.integers(1, 9), min_size=1, max_size=4),
       broadcast=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_qlinear_add_matches_onnxruntime(signed, shape, broadcast, seed):
    # com.microsoft QLinearAdd (qlinear's residual Add): the C loops (one shape; AVX-512, AVX2 and
    # plain) and the NumPy one (broadcast, or no extension) against onnxruntime's contrib
    # kernel
    import onnx
    from onnx import TensorProto, helper

    from optc.runtime.kernels.qlinear import qlinear_add
    from optc.validate import ort_session

    rng = np.random.default_rng(seed)
    dt, tp = (np.int8, TensorProto.INT8) if signed else (np.uint8, TensorProto.UINT8)
    info = np.iinfo(dt)
    b_shape = [1 if broadcast and rng.random() < 0.5 else d for d in shape]
    a = rng.integers(info.min, info.max + 1, shape).astype(dt)
    b = rng.integers(info.min, info.max + 1, b_shape).astype(dt)
    consts = {"sa": np.float32(rng.uniform(0.01, 0.1)), "sb": np.float32(rng.uniform(0.01, 0.1)),
              "sc": np.float32(rng.uniform(0.01, 0.2))}
    consts.update({k: np.array(rng.integers(info.min // 4, info.max // 4), dt)
                   for k in ("za", "zb", "zc")})
    node = helper.make_node("QLinearAdd", ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], ["c"],
                            domain="com.microsoft")
    graph = helper.make_graph(
        [node], "add", [helper.make_tensor_value_info("a", tp, a.shape),
                        helper.make_tensor_value_info("b", tp, b.shape)],
        [helper.make_tensor_value_info("c", tp, None)],
        [onnx.numpy_helper.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    ref = ort_session(model.SerializeToString()).run(None, {"a": a, "b": b})[0]
    args = (a, consts["sa"], consts["za"], b, consts["sb"], consts["zb"], consts["sc"],
            consts["zc"])
    top = native.qsimd()
    try:
        results = []
        for level in range(top, -1, -1):  # AVX-512 16 at a time, AVX2 eight, the C loop
            native.qsimd(level)
            results.append(qlinear_add(*args))
    finally:
        native.qsimd(top)
    for got in results + [(qlinear_add(*args, _config=NUMPY))]:
        assert got.dtype == dt and got.shape == ref.shape
        assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1


def test_int8_conv_plans_per_attributes_on_shared_weights():
    # plans are kept per set of constant arrays: two convs sharing them but not their
    # attributes (pads, strides) each get their own
    from optc.runtime.kernels.qlinear import qlinear_conv

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (1, 8, 9, 9), dtype=np.uint8)
    w = rng.integers(-63, 64, (8, 8, 3, 3)).astype(np.int8)
    args = (x, np.float32(0.05), np.uint8(3), w, np.full(8, 0.01, np.float32),
            np.zeros(8, np.int8), np.float32(0.2), np.uint8(5))
    for attrs in (dict(pads=[1, 1, 1, 1]), dict(pads=[0, 0, 0, 0], strides=[2, 2]),
                  dict(pads=[1, 1, 1, 1])):
        ref = (qlinear_conv(*args, None, **attrs, _config=NUMPY))
        np.testing.assert_array_equal(qlinear_conv(*args, None, **attrs), ref)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 70), m=st.integers(1, 40), bias=st.booleans(),
       res=st.booleans(), act=st.sampled_from(ACTS), seed=st.integers(0, 2 ** 16))
def test_one_pixel_conv_matches_numpy(n, c, m, bias, res, act, seed):
    # a 1x1 conv over a 1x1 map (squeeze-excitation, classifier heads) runs as a
    # matrix-vector product on the packed panels (sgemm.c's gemv), at every SIMD level
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, 1, 1)).astype(np.float32)
    wt = rng.standard_normal((m, c, 1, 1)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    z = rng.standard_normal((n, m, 1, 1)).astype(np.float32) if res else None
    ref = fused_conv(x, wt, b, z, activation=act[0], activation_params=act[1], _config=NUMPY)
    for level in range(native.ssimd(), -1, -1):
        with c_paths(ssimd=level):
            got = fused_conv(x, wt, b, z, activation=act[0], activation_params=act[1])
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(ref).max()),
                                   err_msg=f"level {level}")

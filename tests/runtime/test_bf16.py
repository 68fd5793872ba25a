"""The session precision "bf16" (runtime/csrc/bf16.c, AMX-BF16): the C conv against a NumPy
reference on the same bf16-rounded operands (so the only difference left is the order of
float32 sums), both of its B layouts (taps in the stride's phases from 16 channels a group,
im2col blocks below), and the
session's contract -- opt-in, every non-conv node float32, a clear error where the CPU has
no AMX-BF16."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from optc.errors import OptcError
from optc.runtime import InferenceSession
from optc.runtime.config import RuntimeConfig
from optc.runtime.kernels import native
from optc.runtime.kernels.conv import conv
from optc.runtime.kernels.fused import apply_activation, fused_conv

NUMPY = RuntimeConfig(native=False)
BF16 = RuntimeConfig(precision="bf16")
needs_amx = pytest.mark.skipif(not native.bf16_available(),
                               reason="this CPU has no AMX-BF16 (the bf16 convs cannot run)")


def _from_bf16(u: np.ndarray) -> np.ndarray:
    return (u.astype(np.uint32) << 16).view(np.float32)


def test_bf16_rounding_is_nearest_even():
    x = np.array([1.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 1.0 + 2 ** -8 + 2 ** -20, -2.5,
                  np.inf, -np.inf, 0.0, -0.0, np.finfo(np.float32).max, np.nan], np.float32)
    got = _from_bf16(native.to_bf16(x))
    # 1 + 2^-8 is halfway between 1 and 1 + 2^-7: to the even one (1); 1 + 3 * 2^-8 halfway
    # between 1 + 2^-7 and 1 + 2^-6: to 1 + 2^-6; just above halfway rounds up
    want = np.array([1.0, 1.0, 1.0 + 2 ** -6, 1.0 + 2 ** -7, -2.5, np.inf, -np.inf, 0.0, -0.0],
                    np.float32)
    np.testing.assert_array_equal(got[:9], want)
    assert np.signbit(got[8])
    assert np.isinf(got[9])  # past bf16's largest finite value: inf, as vcvtneps2bf16
    assert np.isnan(got[10])


def _reference(x, w, b, z, act, attrs):
    """conv of the bf16-rounded x and w in float64, then bias, residual and activation in
    float32 (what bf16.c computes, up to the order of its float32 sums), and the scale of
    the sums (sum of |products|) each output's float32 rounding error is bounded by."""
    xr = _from_bf16(native.to_bf16(x)).astype(np.float64)
    wr = _from_bf16(native.to_bf16(w)).astype(np.float64)
    sums = conv(xr, wr, None, **attrs, _config=NUMPY)
    scale = conv(np.abs(xr), np.abs(wr), None, **attrs, _config=NUMPY)
    m = w.shape[0]
    y = sums.astype(np.float32) + (0 if b is None else b.reshape(1, m, 1, 1))
    if z is not None:
        y = y + z
    return (apply_activation(act[0], act[1], y) if act[0] else y), scale


@st.composite
def _shapes(draw):
    group = draw(st.sampled_from([1, 1, 2]))
    # channel pairs and 32-channel tiles, ragged ends; both layouts (taps from 16 a group)
    c = group * draw(st.integers(1, 40))
    m = group * draw(st.integers(1, 40))  # 32-row tiles, ragged
    if group > 1 and c == m == group:  # a depthwise conv: not this kernel's
        m += group
    k = draw(st.sampled_from([1, 2, 3, 5]))
    stride = draw(st.sampled_from([1, 1, 2, 3]))
    dil = draw(st.integers(1, 2))
    pads = draw(st.lists(st.integers(0, 2), min_size=4, max_size=4))
    span = dil * (k - 1) + 1
    h = draw(st.integers(max(1, span - pads[0] - pads[2]), 20))
    w = draw(st.integers(max(1, span - pads[1] - pads[3]), 40))
    act = draw(st.sampled_from([(None, None), ("Relu", None), ("HardSwish", None),
                                ("Clip", [0.0, 6.0])]))
    return (draw(st.integers(1, 2)), c, m, group, h, w, k, stride, dil, pads, act,
            draw(st.booleans()), draw(st.booleans()))


@needs_amx
@settings(max_examples=60, deadline=None)
@given(shape=_shapes(), seed=st.integers(0, 2 ** 16), threads=st.sampled_from([1, 3]))
def test_bf16_conv_matches_the_reference_on_bf16_operands(shape, seed, threads):
    n, c, m, group, h, w, k, stride, dil, pads, act, bias, residual = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((m, c // group, k, k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    attrs = dict(group=group, pads=pads, strides=[stride, stride], dilations=[dil, dil])
    ho = (h + pads[0] + pads[2] - dil * (k - 1) - 1) // stride + 1
    wo = (w + pads[1] + pads[3] - dil * (k - 1) - 1) // stride + 1
    z = rng.standard_normal((n, m, ho, wo)).astype(np.float32) if residual else None
    ref, scale = _reference(x, wt, b, z, act, attrs)
    config = RuntimeConfig(precision="bf16", threads=threads)
    from optc.runtime.kernels.conv import prepare_conv

    state = prepare_conv(config, [None, wt], {})
    got = fused_conv(x, wt, b, z, activation=act[0], activation_params=act[1], **attrs,
                     _config=config, _state=state)
    call = state.calls[0][1]
    assert isinstance(call, native.Bf16ConvCall)  # the bf16 kernel ran, not the fp32 one
    assert call.geometry[-1] == int(c // group >= 16)  # in the layout the channels choose
    # float32 sums of up to K exact products: each within K * 2^-24 of the sum of |products|
    # (plus the float32 rounding of bias, residual and activation)
    kk = c // group * k * k
    # (twice that: the activation's slope is at most 1.5)
    tol = 2 * (kk + 4) * 2.0 ** -24 * (scale + np.abs(ref) + 1.0)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert np.all(np.abs(got - ref) <= tol), np.abs(got - ref).max()


def _conv_relu_model(c=24, m=40, h=17, seed=0):
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal((m, c, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(m).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["y"])]
    graph = helper.make_graph(nodes, "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, h])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@needs_amx
def test_a_bf16_session_is_within_bf16_error_of_float32():
    model = _conv_relu_model()
    x = np.random.default_rng(1).standard_normal((1, 24, 17, 17)).astype(np.float32)
    fp32 = InferenceSession(model, threads=1).run(None, {"x": x})[0]
    bf16 = InferenceSession(model, threads=1, precision="bf16").run(None, {"x": x})[0]
    err = np.abs(bf16 - fp32).max() / np.abs(fp32).max()
    assert 0 < err < 1e-2  # bf16 products: not float32's result, and not far from it
    # the planned convs are the bf16 calls, no Winograd in the pipeline
    session = InferenceSession(model, threads=1, precision="bf16")
    assert not any("Winograd" in n.op_type for n in session._model.graph.nodes)


def test_bf16_is_opt_in_and_says_where_it_cannot_run(monkeypatch):
    model = _conv_relu_model()
    with pytest.raises(OptcError, match="unknown precision 'fp16'"):
        InferenceSession(model, precision="fp16")
    with pytest.raises(OptcError, match="native=False"):
        InferenceSession(model, native=False, precision="bf16")
    with pytest.raises(ValueError, match="precision must be one of"):
        RuntimeConfig(precision="int4")
    assert InferenceSession(model).config.precision == "fp32"
    # a CPU without AMX-BF16 (this one, or one made so)
    import optc.runtime.session as session_module

    monkeypatch.setattr(session_module, "bf16_available", lambda: False)
    with pytest.raises(OptcError, match="this CPU has none"):
        InferenceSession(model, precision="bf16")


@needs_amx
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 20), k=st.integers(1, 200), m=st.integers(1, 80),
       bias=st.booleans(), act=st.sampled_from([(None, None), ("Relu", None), ("Sigmoid", None)]),
       threads=st.sampled_from([1, 3]), seed=st.integers(0, 2 ** 16))
def test_bf16_matmul_matches_the_reference_on_bf16_operands(n, k, m, bias, act, threads, seed):
    # row groups of 8, 4 and 1, column blocks of 16 in pairs (an odd last one), odd K
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, k)).astype(np.float32)
    w = rng.standard_normal((k, m)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) if bias else None
    ar = _from_bf16(native.to_bf16(a)).astype(np.float64)
    wr = _from_bf16(native.to_bf16(w)).astype(np.float64)
    sums = (ar @ wr).astype(np.float32) + (0 if b is None else b)
    ref = apply_activation(act[0], act[1], sums) if act[0] else sums
    scale = np.abs(ar) @ np.abs(wr)
    got = native.Bf16MatMul(w)(a, b, native.activation_args(*act), threads)
    assert got.shape == (n, m) and got.dtype == np.float32
    tol = 2 * (k + 4) * 2.0 ** -24 * (scale + np.abs(ref) + 1.0)
    assert np.all(np.abs(got - ref) <= tol), np.abs(got - ref).max()


def _gemm_model():
    """MatMul with batch dims, Gemm with transB and a bias, Gemm + Relu (FusedGemm after
    fuse-act), and a Gemm with alpha (not the bf16 kernel's: it stays float32)."""
    rng = np.random.default_rng(3)
    inits = {"w1": rng.standard_normal((24, 40)), "w2": rng.standard_normal((30, 40)),
             "b2": rng.standard_normal(30), "w3": rng.standard_normal((30, 20)),
             "w4": rng.standard_normal((20, 10))}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m"]),
             helper.make_node("Reshape", ["m", "shape"], ["f"]),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["g"], transB=1),
             helper.make_node("Gemm", ["g", "w3"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w4"], ["y"], alpha=0.5)]
    graph = helper.make_graph(
        nodes, "gemms", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 24])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()] +
        [numpy_helper.from_array(np.array([6, 40], np.int64), "shape")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@needs_amx
def test_a_bf16_session_multiplies_its_matmuls_in_bf16():
    model = _gemm_model()
    x = np.random.default_rng(4).standard_normal((2, 3, 24)).astype(np.float32)
    fp32 = InferenceSession(model, threads=1).run(None, {"x": x})[0]
    session = InferenceSession(model, threads=1, precision="bf16")
    bf16 = session.run(None, {"x": x})[0]
    err = np.abs(bf16 - fp32).max() / np.abs(fp32).max()
    assert 0 < err < 2e-2
    states = {s.kernel.fn.__name__: s.attrs.get("_state") for s in session._steps}
    assert isinstance(states["matmul"], native.Bf16MatMul)
    assert isinstance(states["fused_gemm"], native.Bf16MatMul)


@needs_amx
def test_a_gemm_the_bf16_kernel_does_not_compute_stays_float32():
    from optc.runtime.kernels.nn import gemm, prepare_bf16_matmul

    rng = np.random.default_rng(5)
    a = rng.standard_normal((4, 16)).astype(np.float32)
    b = rng.standard_normal((16, 8)).astype(np.float32)
    c = rng.standard_normal((4, 8)).astype(np.float32)  # a bias per row and column
    state = prepare_bf16_matmul(BF16, [None, b], {})
    assert isinstance(state, native.Bf16MatMul)
    for kwargs in (dict(alpha=0.5), dict(c=c), dict(transA=1)):
        aa = rng.standard_normal((16, 4)).astype(np.float32) if "transA" in kwargs else a
        want = gemm(aa, b, **kwargs)
        got = gemm(aa, b, **kwargs, _config=BF16, _state=state)
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(gemm(a, b, _config=BF16, _state=state), gemm(a, b))
    assert prepare_bf16_matmul(RuntimeConfig(), [None, b], {}) is None  # fp32 sessions


@needs_amx
def test_control_flow_bodies_run_at_the_session_precision():
    rng = np.random.default_rng(6)
    w = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w")
    branch = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)], [w])
    other = helper.make_graph([helper.make_node("Identity", ["z"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=other)], "if",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"c": np.array(True), "x": rng.standard_normal((4, 16)).astype(np.float32),
             "z": np.zeros((4, 8), np.float32)}
    fp32 = InferenceSession(model, threads=1).run(None, feeds)[0]
    bf16 = InferenceSession(model, threads=1, precision="bf16").run(None, feeds)[0]
    assert 0 < np.abs(bf16 - fp32).max() / np.abs(fp32).max() < 2e-2

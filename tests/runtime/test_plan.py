"""Session plans (optc.runtime.plan): stretches of steps run in one C call (run_plan) give
exactly what the same steps give one by one, follow the input shape, keep their buffers to
themselves, and the C side refuses a plan that does not fit its buffers."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from optc.runtime import InferenceSession, plan
from optc.runtime.kernels import native
from optc.validate import ort_session

pytestmark = pytest.mark.skipif(not native.AVAILABLE, reason="plans need the C extension")


def _mobile_block(weight_input: bool = False) -> bytes:
    """A PP-LCNet-like stretch on dynamic H, W: conv + HardSwish, depthwise + HardSwish, an SE
    block (GlobalAveragePool, 1x1 convs, the channel Mul), a residual Add, a Mul by a scalar,
    and a value read after the stretch (the Flatten head) as well as a second graph output
    from inside it. weight_input: the first conv's weight is an initializer a feed may
    override (also a graph input)."""
    rng = np.random.default_rng(3)
    shapes = (("w", (16, 8, 3, 3)), ("b", (16,)), ("dw", (16, 1, 3, 3)), ("db", (16,)),
              ("s1", (4, 16, 1, 1)), ("s1b", (4,)), ("s2", (16, 4, 1, 1)), ("s2b", (16,)),
              ("half", ()))
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.3).astype(np.float32), n)
             for n, s in shapes]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("HardSwish", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "dw", "db"], ["d"], pads=[1, 1, 1, 1], group=16),
             helper.make_node("HardSwish", ["d"], ["h"]),
             helper.make_node("GlobalAveragePool", ["h"], ["g"]),
             helper.make_node("Conv", ["g", "s1", "s1b"], ["e1"]),
             helper.make_node("Relu", ["e1"], ["e2"]),
             helper.make_node("Conv", ["e2", "s2", "s2b"], ["e3"]),
             helper.make_node("HardSigmoid", ["e3"], ["e4"], alpha=1 / 6, beta=0.5),
             helper.make_node("Mul", ["h", "e4"], ["se"]),
             helper.make_node("Add", ["se", "r"], ["sum"]),
             helper.make_node("Mul", ["half", "sum"], ["y"]),
             helper.make_node("Flatten", ["y"], ["flat"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, "H", "W"])]
    if weight_input:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [16, 8, 3, 3]))
    graph = helper.make_graph(nodes, "plan", inputs,
                              [helper.make_tensor_value_info("flat", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("h", TensorProto.FLOAT, None)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]) \
        .SerializeToString()


def _segments(session):
    return [item for item in session._program or [] if isinstance(item, plan.Segment)]


def test_a_planned_stretch_gives_the_steps_results_and_follows_the_shape():
    model = _mobile_block()
    planned, steps = InferenceSession(model), InferenceSession(model, plans=False)
    reference = ort_session(model)
    rng = np.random.default_rng(0)
    held = []
    for h, w in ((9, 20), (9, 20), (12, 7), (12, 7), (12, 7), (9, 20), (9, 20)):
        x = rng.standard_normal((1, 8, h, w)).astype(np.float32)
        got, want = planned.run(None, {"x": x}), steps.run(None, {"x": x})
        for g, s, r in zip(got, want, reference.run(None, {"x": x})):
            np.testing.assert_array_equal(g, s)  # the same C kernels, the same sums
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)
        assert (planned.peak_bytes, planned.total_activation_bytes) == \
            (steps.peak_bytes, steps.total_activation_bytes)
        held.append((got, [a.copy() for a in got]))
        # a run with another shape than the plan's runs the steps and drops the plan; the
        # next run plans again
        segments = _segments(planned)
        if segments:
            [segment] = segments
            # everything up to the Flatten: 2 convs, the pool, 2 convs, Mul, Add, Mul
            assert segment.last - segment.first + 1 == 8
            assert segment.inputs[0][2] == x.shape
    assert _segments(planned)
    for got, copy in held:  # the outputs are the caller's: later runs do not write them
        for g, c in zip(got, copy):
            np.testing.assert_array_equal(g, c)


def _pooled_block() -> bytes:
    """A DenseNet/ResNet-like stretch on dynamic H, W, lowered by optc as a session's "all"
    would (a 3x3 conv as WinogradConv F(2x2), a plain 1x1 Conv): MaxPool (pads), the Concat of
    two branches, AveragePool with count_include_pad and ceil_mode, GlobalAveragePool."""
    import optc
    from optc.ir import serialize

    rng = np.random.default_rng(4)
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.3).astype(np.float32), n)
             for n, s in (("w", (16, 8, 3, 3)), ("b", (16,)), ("w1", (8, 16, 1, 1)))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["p", "w1"], ["q"]),
             helper.make_node("Concat", ["p", "q"], ["cat"], axis=1),
             helper.make_node("AveragePool", ["cat"], ["a"], kernel_shape=[2, 2],
                              strides=[2, 2], pads=[0, 0, 1, 1], count_include_pad=1,
                              ceil_mode=1),
             helper.make_node("GlobalAveragePool", ["a"], ["y"])]
    graph = helper.make_graph(
        nodes, "pooled", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("a", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    lowered, _ = optc.optimize(model, passes="default,fuse-act{target=optc},winograd{tile=2}")
    return model.SerializeToString(), serialize(lowered)


def test_pools_concat_and_winograd_in_a_plan():
    # one thread: with more, a Winograd layer of fewer tile blocks than threads shares its
    # GEMMs among them instead (native.winograd_conv), which has no plan op
    original, lowered = _pooled_block()
    planned = InferenceSession(lowered, 1, optimization="off")
    steps = InferenceSession(lowered, 1, optimization="off", plans=False)
    reference = ort_session(original)
    rng = np.random.default_rng(5)
    for h, w in ((17, 12), (17, 12), (9, 30), (9, 30)):
        x = rng.standard_normal((1, 8, h, w)).astype(np.float32)
        got = planned.run(None, {"x": x})
        for g, s, r in zip(got, steps.run(None, {"x": x}), reference.run(None, {"x": x})):
            np.testing.assert_array_equal(g, s)
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)
    [segment] = _segments(planned)
    assert (segment.first, segment.last) == (0, len(planned._steps) - 1)
    assert set(segment.ops[:, 0]) == {plan.WINOGRAD, plan.POOL, plan.CONV, plan.CONCAT,
                                      plan.MEANS}


def test_a_plan_is_not_used_with_on_value_or_when_off():
    model = _mobile_block()
    x = np.random.default_rng(1).standard_normal((1, 8, 6, 6)).astype(np.float32)
    off = InferenceSession(model, plans=False)
    off.run(None, {"x": x})
    off.run(None, {"x": x})
    assert off._program is None
    on = InferenceSession(model)
    on.run(None, {"x": x})
    seen = []
    on.run(None, {"x": x}, on_value=lambda name, a: seen.append(name))
    assert {"g", "h", "se", "sum", "y"} <= set(seen)  # every step's value, one by one


def test_a_conv_whose_weight_a_feed_overrides_is_not_planned():
    # the plan's conv op owns the packed filters: a weight a feed may replace (an initializer
    # that is also a graph input; the session's optimizations would freeze it, so the model
    # is fused already and runs with optimization "off") stays a step of its own
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.3).astype(np.float32), n)
             for n, s in (("w", (16, 8, 3, 3)), ("b", (16,)), ("w2", (16, 16, 1, 1)))]
    nodes = [helper.make_node("FusedConv", ["x", "w", "b"], ["c"], domain="ai.optc",
                              pads=[1, 1, 1, 1], activation="Relu"),
             helper.make_node("FusedConv", ["c", "w2"], ["d"], domain="ai.optc",
                              activation="Relu"),
             helper.make_node("GlobalAveragePool", ["d"], ["y"])]
    graph = helper.make_graph(
        nodes, "overridable",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 7, 7]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [16, 8, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14),
                                                    helper.make_opsetid("ai.optc", 1)])
    session = InferenceSession(model.SerializeToString(), optimization="off")
    steps = InferenceSession(model.SerializeToString(), optimization="off", plans=False)
    x = rng.standard_normal((1, 8, 7, 7)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    for feeds in ({"x": x}, {"x": x}, {"x": x, "w": w}, {"x": x}):
        np.testing.assert_array_equal(session.run(None, feeds)[0], steps.run(None, feeds)[0])
    [segment] = _segments(session)
    assert (segment.first, segment.last) == (1, 2)  # not the conv whose weight is fed
    with_w = session.run(None, {"x": x, "w": w})[0]
    assert not np.array_equal(with_w, session.run(None, {"x": x})[0])


def test_build_leaves_out_a_step_whose_baked_input_is_not_fixed():
    # plan.build on three steps that each read slot 0 and a weight (slot 10 + i), baked into
    # their op: the one whose weight is not a fixed constant is left a step, and a run of one
    # planned step is not a segment
    steps = [SimpleNamespace(inputs=[i, 10 + i], outputs=[i + 1], release=[]) for i in range(4)]
    op = plan.PlanOp(plan.MEANS, (0,), (1, 4), baked=(1,))
    records = {i: (op, (1, 4), ((1, 4), (1,))) for i in range(4)}
    weights = {10 + i: np.ones(1, np.float32) for i in range(4)}
    program = plan.build(steps, records, weights, {10, 11, 13}, {4})
    assert [type(p).__name__ for p in program] == ["Segment", "SimpleNamespace",
                                                   "SimpleNamespace"]
    assert (program[0].first, program[0].last) == (0, 1)
    program = plan.build(steps, records, weights, {10, 11, 12, 13}, {4})
    assert [(p.first, p.last) for p in program] == [(0, 3)]


_SHAPES = st.lists(st.integers(1, 5), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(_SHAPES, st.data(), st.booleans())
def test_binary_ops_match_numpy_broadcasting(shape, data, mul):
    # the other operand: the same shape, a leading-dims prefix with ones after it, a single
    # value, or anything else broadcastable (which binary_op may refuse, never get wrong)
    keep = data.draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)))
    other = [d if k else 1 for d, k in zip(shape, keep)][data.draw(st.integers(0, len(shape))):]
    a_shape, b_shape = (shape, other) if data.draw(st.booleans()) else (other, shape)
    rng = np.random.default_rng(0)
    a = rng.standard_normal(a_shape).astype(np.float32)
    b = rng.standard_normal(b_shape).astype(np.float32)
    op = plan.binary_op(mul, a.shape, b.shape)
    want = a * b if mul else a + b
    t = (1,) * (len(shape) - len(other)) + tuple(other)
    rows = any(t[:k] == tuple(shape[:k]) and all(d == 1 for d in t[k:])
               for k in range(len(t) + 1))  # one value per row of shape's leading dims
    assert (op is not None) == rows
    if op is None:
        return
    y = np.empty(want.shape, np.float32)
    args = (a, b)
    bufs = [args[op.operands[0]], args[op.operands[1]], y]
    row = [op.code, 0, 1, 2] + [-1] * (plan.BUFS - 3) + list(op.ints)
    native._ckernels.run_plan(np.array([row + [0] * (plan.COLS - len(row))], np.int64),
                              np.zeros((1, 2), np.float32), bufs)
    np.testing.assert_array_equal(y, want)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 12), st.integers(0, 5)),
                min_size=1, max_size=25))
def test_arena_views_of_values_alive_together_do_not_overlap(values):
    # (floats, first step, steps it lives on): every view has its size, starts on a cache
    # line, and no two values alive at one step share a float
    spans = {i: (n, lo, lo + extra) for i, (n, lo, extra) in enumerate(values)}
    views, nbytes = plan._arena(spans)
    assert set(views) == set(spans) and nbytes > 0
    base = next(iter(views.values())).base
    for s, v in views.items():
        assert v.base is base and v.size == spans[s][0]
        assert v.size == 0 or v.ctypes.data % 64 == 0
    for s, (n, lo, hi) in spans.items():
        for t, (m, lo2, hi2) in spans.items():
            if s < t and lo <= hi2 and lo2 <= hi and n and m:
                a, b = views[s].ctypes.data, views[t].ctypes.data
                assert a + 4 * n <= b or b + 4 * m <= a, (s, t)


def _row(code, bufs, ints):
    row = [code] + list(bufs) + [-1] * (plan.BUFS - len(bufs)) + list(ints)
    return np.array([row + [0] * (plan.COLS - len(row))], np.int64)


def test_run_plan_refuses_what_does_not_fit_and_writes_nothing():
    x = np.ones((4, 6), np.float32)
    y = np.full(4, 7.0, np.float32)
    floats = np.zeros((1, 2), np.float32)
    run = native._ckernels.run_plan
    run(_row(plan.MEANS, (0, 1), (4, 6)), floats, [x, y])
    np.testing.assert_array_equal(y, 1.0)
    y[:] = 7.0
    with pytest.raises(ValueError, match="op 0 operand 0"):  # x holds 24 floats, not 28
        run(_row(plan.MEANS, (0, 1), (4, 7)), floats, [x, y])
    with pytest.raises(ValueError, match="op 0 operand 1"):  # no output buffer
        run(_row(plan.MEANS, (0, -1), (4, 6)), floats, [x, y])
    with pytest.raises(ValueError, match="op 0 operand 2"):  # the output is an input
        run(_row(plan.BINARY, (0, 1, 0), (1, 1, 4, 6)), floats, [x, y])
    with pytest.raises(ValueError, match="op 0 has an unknown code"):
        run(_row(99, (0, 1), (4, 6)), floats, [x, y])
    with pytest.raises(TypeError, match="float32"):
        run(_row(plan.MEANS, (0, 1), (4, 6)), floats, [x.astype(np.float64), y])
    with pytest.raises(ValueError, match="read-only"):  # an output must be writable
        y.flags.writeable = False
        run(_row(plan.MEANS, (0, 1), (4, 6)), floats, [x, y])
    y.flags.writeable = True
    np.testing.assert_array_equal(y, 7.0)  # nothing ran

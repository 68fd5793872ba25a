"""optc.runtime on control flow (If, Loop: bodies as sessions, outer-scope captures), the
onnx.reference fallback for ops without a kernel, and -1 dims; against onnxruntime."""

import numpy as np
import pytest
from onnx import TensorProto, helper

from optc.errors import OptcError
from optc.runtime import InferenceSession
from optc.validate import ort_session
from tests.util import parse

RTOL = 1e-4


def both(model, feeds):
    data = model.SerializeToString()
    ref = ort_session(data).run(None, feeds)
    got = InferenceSession(data).run(None, feeds)
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        assert r.shape == g.shape and r.dtype == g.dtype
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=RTOL * max(float(np.abs(r).max()), 1e-30)
                                   if r.size else 0)
    return got


IF_MODEL = """
<ir_version: 8, opset_import: ["" : 16]>
g (float[N, 4] x, bool c) => (float[N, 4] y) {
    w = Constant <value = float[1] {3.0}> ()
    y = If (c) <
        then_branch = t () => (float[N, 4] a) { a = Mul (x, w) },
        else_branch = e () => (float[N, 4] b) { r = Relu (x)  b = Sub (r, w) }
    >
}
"""


@pytest.mark.parametrize("cond", [True, False])
def test_if_runs_the_chosen_branch_with_outer_values(cond):
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    got = both(parse(IF_MODEL), {"x": x, "c": np.array(cond)})
    assert np.allclose(got[0], x * 3 if cond else np.maximum(x, 0) - 3)


LOOP_MODEL = """
<ir_version: 8, opset_import: ["" : 16]>
g (float[2, 3] x, int64 n) => (float[2, 3] acc, float[K, 2, 3] steps) {
    t = Constant <value = bool {1}> ()
    acc, steps = Loop (n, t, x) <
        body = b (int64 i, bool cin, float[2, 3] a) => (bool cout, float[2, 3] a2, float[2, 3] s) {
            cout = Identity (cin)
            fi = Cast <to = 1> (i)
            h = Add (a, x)
            a2 = Add (h, fi)
            inner = If (cin) <
                then_branch = tb () => (float[2, 3] o) { o = Mul (a2, x) },
                else_branch = eb () => (float[2, 3] o2) { o2 = Identity (x) }
            >
            s = Identity (inner)
        }
    >
}
"""


@pytest.mark.parametrize("trips", [0, 1, 4])
def test_loop_carries_values_and_stacks_scan_outputs(trips):
    """A Loop whose body reads the outer ``x`` and nests an If that reads a body value and
    the outer ``x``; zero trips gives an empty scan output."""
    x = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    feeds = {"x": x, "n": np.array(trips, np.int64)}
    data = parse(LOOP_MODEL).SerializeToString()
    ref = ort_session(data).run(None, feeds)
    got = InferenceSession(data).run(None, feeds)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6)
    if trips:
        np.testing.assert_allclose(got[1], ref[1], rtol=1e-6)
    else:
        assert got[1].size == 0 and ref[1].size == 0


def test_ops_without_kernel_run_through_onnx_reference():
    """LayerNormalization, GatherElements and LSTM have no optc kernel: onnx.reference's
    implementation runs them, and the results match onnxruntime."""
    rng = np.random.default_rng(2)
    model = parse("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 5, 8] x, int64[2, 5, 3] idx) => (float[2, 5, 8] y, float[2, 5, 3] z) {
        s = Constant <value = float[8] {1, 2, 3, 4, 5, 6, 7, 8}> ()
        b = Constant <value = float[8] {0, 1, 0, 1, 0, 1, 0, 1}> ()
        y = LayerNormalization <axis = -1> (x, s, b)
        z = GatherElements <axis = 2> (y, idx)
    }""")
    both(model, {"x": rng.standard_normal((2, 5, 8)).astype(np.float32),
                 "idx": rng.integers(0, 8, (2, 5, 3)).astype(np.int64)})
    hidden, inputs = 4, 3
    w = helper.make_tensor("W", TensorProto.FLOAT, [1, 4 * hidden, inputs],
                           rng.standard_normal(4 * hidden * inputs).tolist())
    r = helper.make_tensor("R", TensorProto.FLOAT, [1, 4 * hidden, hidden],
                           rng.standard_normal(4 * hidden * hidden).tolist())
    node = helper.make_node("LSTM", ["x", "W", "R"], ["y", "yh"], hidden_size=hidden)
    lstm = helper.make_model(helper.make_graph(
        [node], "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("yh", TensorProto.FLOAT, None)], [w, r]),
        opset_imports=[helper.make_opsetid("", 14)])
    lstm.ir_version = 8
    for t in (5, 9):  # one session, two sequence lengths
        both(lstm, {"x": rng.standard_normal((t, 2, 3)).astype(np.float32)})


def test_op_of_another_domain_is_a_clear_error():
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Mystery", ["x"], ["y"], domain="com.example")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    with pytest.raises(OptcError, match="no kernel for op com.example.Mystery"):
        InferenceSession(model.SerializeToString())


def test_minus_one_dims_are_dynamic():
    """paddle2onnx writes dim_value -1 for a dynamic dim: any size is accepted."""
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 3])]),
        opset_imports=[helper.make_opsetid("", 17)])
    s = InferenceSession(model.SerializeToString())
    for n in (1, 4):
        x = np.random.default_rng(n).standard_normal((n, 3)).astype(np.float32)
        np.testing.assert_array_equal(s.run(None, {"x": x})[0], np.maximum(x, 0))
    with pytest.raises(OptcError, match="dim 1 must be 3"):
        s.run(None, {"x": np.zeros((2, 4), np.float32)})

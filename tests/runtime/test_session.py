"""optc.runtime.InferenceSession on whole models against onnxruntime, its memory accounting,
its onnxruntime-shaped API and its errors."""

import inspect
import os

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from onnx import TensorProto, helper, numpy_helper

import optc
from optc.errors import OptcError
from optc.ir import serialize
from optc.runtime import InferenceSession, registry, supported_ops
from optc.validate import ort_session, random_feeds, run
from tests.util import (LIGHT_MODELS, MODELS, SHIPPED_MODELS, parse, random_models,
                        randomize_light)

RTOL = 1e-4  # the runtime issue's bar against onnxruntime


def assert_close(ref: dict, got: list, names=None):
    for (name, r), g in zip(ref.items(), got):
        assert g.shape == r.shape and g.dtype == r.dtype, name
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=RTOL * scale, err_msg=name)


@pytest.fixture(scope="module")
def folded_light():
    """The light models with seeded random weights, constant-folded by optc (their weights are
    ConstantOfShape fills otherwise), as (original proto, folded bytes)."""
    cache = {}

    def get(path):
        if path not in cache:
            original = randomize_light(path)
            model, _ = optc.optimize(original, passes="freeze-initializers,fold-constants")
            cache[path] = (original, serialize(model))
        return cache[path]

    return get


@pytest.mark.parametrize("path", LIGHT_MODELS, ids=os.path.basename)
def test_light_models_match_onnxruntime(path, folded_light):
    original, folded = folded_light(path)
    s = ort_session(original.SerializeToString())
    feeds = random_feeds(s, seed=1)
    ref = run(s, feeds)  # with a final Softmax: its output and the logits before it
    assert_close(ref, InferenceSession(folded).run(None, feeds))


@pytest.mark.parametrize("path", SHIPPED_MODELS, ids=os.path.basename)
@pytest.mark.parametrize("batch", [1, 3])
def test_shipped_models_match_onnxruntime_at_any_batch(path, batch):
    s = ort_session(path)
    feeds = random_feeds(s, seed=2, batch=batch)
    assert next(iter(feeds.values())).shape[0] == batch
    sess = InferenceSession(path)
    assert_close(run(s, feeds), sess.run(None, feeds))


def test_digits_accuracy_in_optc_runtime():
    data = np.load(MODELS / "digits_test.npz")
    logits = InferenceSession(MODELS / "digits_cnn.onnx").run(None, {"input": data["input"]})[0]
    assert float((logits.argmax(1) == data["labels"]).mean()) > 0.95


def test_peak_memory_below_sum_of_activations_on_resnet50(folded_light):
    _, folded = folded_light(next(p for p in LIGHT_MODELS if "resnet50" in p))
    sess = InferenceSession(folded)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    sess.run(None, {"gpu_0/data_0": x})
    assert 0 < sess.peak_bytes < sess.total_activation_bytes
    # the largest activations of ResNet-50 are 1x256x56x56 floats (3.2 MB): a few of them
    # must be alive together, nowhere near all ~150 MB of the network
    assert sess.peak_bytes < sess.total_activation_bytes / 5


def test_liveness_releases_each_buffer_after_its_last_use():
    nodes = [helper.make_node("Relu", [f"v{i}"], [f"v{i + 1}"]) for i in range(10)]
    nodes[0].input[0] = "x"
    nodes[-1].output[0] = "y"
    g = helper.make_graph(nodes, "chain",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [256])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [256])])
    sess = InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    sess.run(None, {"x": np.ones(256, np.float32)})
    assert sess.peak_bytes == 2 * 1024  # the value being read and the one being written
    assert sess.total_activation_bytes == 11 * 1024


def test_api_is_shaped_like_onnxruntime():
    path = str(MODELS / "resnet_mini.onnx")
    ours, theirs = InferenceSession(path), ort_session(path)
    for a, b in zip(ours.get_inputs() + ours.get_outputs(),
                    theirs.get_inputs() + theirs.get_outputs()):
        assert (a.name, a.shape, a.type) == (b.name, b.shape, b.type)
    x = np.zeros((2, 3, 32, 32), np.float32)
    assert ours.run(["logits"], {"input": x})[0].shape == (2, 10)
    with pytest.raises(OptcError, match="unknown output 'nope'"):
        ours.run(["nope"], {"input": x})


def test_accepts_path_bytes_proto_model_and_graph():
    path = MODELS / "digits_cnn.onnx"
    x = {"input": np.zeros((1, 1, 8, 8), np.float32)}
    expected = InferenceSession(path).run(None, x)[0]
    proto = onnx.load(path)
    for source in (str(path), proto.SerializeToString(), proto, optc.load(path),
                   optc.load(path).graph):
        np.testing.assert_array_equal(InferenceSession(source).run(None, x)[0], expected)


@pytest.mark.parametrize("feeds, message", [
    ({"inp": np.zeros((1, 3, 32, 32), np.float32)}, "unknown input 'inp'; the model's inputs "
                                                     "are: input"),
    ({}, "missing input(s) input"),
    ({"input": np.zeros((1, 3, 32, 32), np.float64)}, "input 'input' must be tensor(float) "
                                                       "(float32), got float64"),
    ({"input": np.zeros((3, 32, 32), np.float32)}, "input 'input' must have rank 4"),
    ({"input": np.zeros((1, 4, 32, 32), np.float32)}, "input 'input' dim 1 must be 3"),
])
def test_bad_feeds(feeds, message):
    sess = InferenceSession(MODELS / "resnet_mini.onnx")
    with pytest.raises(OptcError) as err:
        sess.run(None, feeds)
    assert message in str(err.value)


def test_unsupported_op_is_named():
    model = parse("""
    <ir_version: 8, opset_import: ["" : 17, "com.example" : 1]>
    g (float[2] x) => (float[2] y) { y = com.example.Mystery(x) }
    """)
    with pytest.raises(OptcError, match="a Mystery node: optc.runtime has no kernel for op "
                                        "com.example.Mystery"):
        InferenceSession(model)


def test_unsupported_version_is_named(monkeypatch):
    table = dict(registry.table())
    del table[("", "Relu", 14)]
    monkeypatch.setattr(registry, "_TABLE", table)
    model = parse("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) { y = Relu(x) }
    """)
    with pytest.raises(OptcError, match=r"does not support ai.onnx.Relu version 14 \(opset 17\); "
                                        r"it implements versions \[1, 6, 13\]"):
        registry.lookup("Relu", "", 17)
    # the session runs the missing version through onnx.reference (runtime/control.py)
    x = np.array([-1.0, 2.0], np.float32)
    np.testing.assert_array_equal(InferenceSession(model).run(None, {"x": x})[0], [0.0, 2.0])


def test_kernel_runtime_error_names_the_node():
    model = parse("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] a, float[4,5] b) => (float[2,5] y) { y = MatMul(a, b) }
    """)
    sess = InferenceSession(model)
    with pytest.raises(OptcError, match="a MatMul node: ValueError"):
        sess.run(None, {"a": np.zeros((2, 3), np.float32), "b": np.zeros((4, 5), np.float32)})


def test_every_version_onnx_defines_is_implemented_with_its_attributes():
    """Each op covers every schema version onnx has for it, and each kernel takes exactly the
    attributes its schema versions define as keyword arguments."""
    by_op: dict[str, dict[int, set]] = {}
    for s in onnx.defs.get_all_schemas_with_history():
        if s.domain == "":
            by_op.setdefault(s.name, {})[s.since_version] = set(s.attributes)
    for (domain, op), versions in supported_ops().items():
        if domain in ("ai.optc", "com.microsoft"):  # no onnx schema: optc's own ops and
            continue  # onnxruntime's contrib QLinearAdd
        assert domain == ""
        assert versions == sorted(by_op[op]), op
        for v in versions:
            k = registry.table()[("", op, v)]
            assert by_op[op][v] <= k.attributes, (op, v, by_op[op][v] - k.attributes)
            defined = set().union(*(by_op[op][u] for u in versions
                                    if registry.table()[("", op, u)].fn is k.fn))
            assert k.attributes <= defined, (op, v, k.attributes - defined)


def test_kernel_defaults_are_the_specs():
    """A kernel's keyword defaults are the attribute defaults of its schema versions."""
    from onnx import helper

    for (domain, op), versions in supported_ops().items():
        if domain in ("ai.optc", "com.microsoft"):
            continue
        for v in versions:
            k = registry.table()[(domain, op, v)]
            params = inspect.signature(k.fn).parameters
            for name, a in onnx.defs.get_schema(op, v, domain).attributes.items():
                if a.default_value.type == onnx.AttributeProto.UNDEFINED:
                    continue
                spec = helper.get_attribute_value(a.default_value)
                spec = spec.decode() if isinstance(spec, bytes) else spec
                if isinstance(spec, onnx.TensorProto):
                    continue  # ConstantOfShape's value: checked by its node tests
                ours = params[name].default
                if isinstance(spec, float):
                    assert ours == pytest.approx(spec, rel=1e-6), (op, v, name)
                else:
                    assert ours == spec, (op, v, name, ours, spec)


def test_outputs_never_alias_constants_or_inputs():
    model = parse("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,2] x) => (float[4] a, float[2,2] b, float[2,2] c) <float[2,2] w = {1.0, 2.0,
                                                                                 3.0, 4.0},
                                                                  int64[1] s = {4}> {
      a = Reshape(w, s)
      b = Identity(w)
      c = Identity(x)
    }
    """)
    sess = InferenceSession(model)
    x = np.ones((2, 2), np.float32)
    a, b, c = sess.run(None, {"x": x})
    a[:] = 0
    b[:] = 0
    c[:] = 0
    assert x.sum() == 4
    a2, b2, _ = sess.run(None, {"x": x})
    np.testing.assert_array_equal(a2, [1, 2, 3, 4])
    np.testing.assert_array_equal(b2, [[1, 2], [3, 4]])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(model=random_models(max_ops=12))
def test_random_graphs_match_onnxruntime(model):
    s = ort_session(model.SerializeToString())
    feeds = random_feeds(s, seed=3)
    assert_close(run(s, feeds), InferenceSession(model).run(None, feeds))


def test_constant_subgraphs_run_once_at_load():
    # DequantizeLinear of an int8 weight and Mul of two constants: folded when the session is
    # made, as onnxruntime folds them; an initializer the caller may override is not
    w = numpy_helper.from_array(np.arange(-6, 6, dtype=np.int8).reshape(3, 4), "w")
    s = numpy_helper.from_array(np.float32(0.5), "s")
    k = numpy_helper.from_array(np.float32(3.0), "k")
    nodes = [helper.make_node("DequantizeLinear", ["w", "s"], ["wf"]),
             helper.make_node("Mul", ["wf", "k"], ["w3"]),
             helper.make_node("MatMul", ["x", "w3"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
              helper.make_tensor_value_info("k", TensorProto.FLOAT, [])]
    g = helper.make_graph(nodes, "fold", inputs, [helper.make_tensor_value_info(
        "y", TensorProto.FLOAT, [2, 4])], [w, s, k])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    sess = InferenceSession(proto.SerializeToString(), optimization="off")
    # k is a graph input with a default: the Mul and the MatMul stay, the DequantizeLinear goes
    assert [st.op_type for st in sess._steps] == ["Mul", "MatMul"]
    x = np.ones((2, 3), np.float32)
    seen = {}
    y = sess.run(None, {"x": x}, on_value=lambda n, v: seen.__setitem__(n, v))[0]
    np.testing.assert_array_equal(seen["wf"], (np.arange(-6, 6).reshape(3, 4) * 0.5))
    np.testing.assert_allclose(y, ort_session(proto.SerializeToString()).run(None, {"x": x})[0])
    y2 = sess.run(None, {"x": x, "k": np.float32(1.0)})[0]  # the override is honoured
    np.testing.assert_allclose(y2, y / 3, rtol=1e-6)


def test_a_weight_folded_at_load_is_prepared_once():
    # a Conv whose weight is the DequantizeLinear of an int8 initializer: once the
    # DequantizeLinear is folded, the Conv's prepare step sees the weight as a constant and
    # keeps it (packed once), as it does for a float initializer
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.integers(-100, 100, (8, 4, 3, 3)).astype(np.int8), "w")
    s = numpy_helper.from_array(np.float32(0.02), "s")
    nodes = [helper.make_node("DequantizeLinear", ["w", "s"], ["wf"]),
             helper.make_node("Conv", ["x", "wf"], ["y"], pads=[1, 1, 1, 1])]
    g = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 4, 9, 9])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], [w, s])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    sess = InferenceSession(proto.SerializeToString(), optimization="off")
    [step] = sess._steps
    wslot = step.inputs[1]
    assert step.attrs["_state"].w is sess._constants[wslot]
    x = rng.standard_normal((1, 4, 9, 9)).astype(np.float32)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0],
                               ort_session(proto.SerializeToString()).run(None, {"x": x})[0],
                               rtol=1e-5, atol=1e-5)


def test_optimization_levels_match_and_leave_the_model_alone():
    """off / basic / all give the same outputs (within Winograd's error); the caller's Model
    is not changed; an unknown level is one clear error."""
    import optc
    from optc.errors import OptcError

    model = optc.load(str(MODELS / "resnet_mini.onnx"))
    before = optc.ir.serialize(model)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    outs = {}
    for level in ("off", "basic", "all"):
        sess = InferenceSession(model, optimization=level)
        assert sess.optimization == level
        outs[level] = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert optc.ir.serialize(model) == before
    scale = float(np.max(np.abs(outs["off"])))
    for level in ("basic", "all"):
        assert float(np.max(np.abs(outs[level] - outs["off"]))) <= 1e-4 * scale
    with pytest.raises(OptcError, match="unknown optimization level 'max'"):
        InferenceSession(model, optimization="max")


def test_fast_paths_follow_the_input_shape():
    # FusedConv steps (a dense 3x3 conv and a depthwise one, each with its activation, and a
    # residual Add) keep a call resolved for the last input shape (registry: ``fast``) and
    # run it on later runs; a new shape (dynamic H, W) goes the kernel's way again and gets
    # its own: every run matches onnxruntime
    from optc.runtime.kernels import native

    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.3, n)
             for n, s in (("w", (16, 8, 3, 3)), ("b", (16,)), ("dw", (16, 1, 3, 3)),
                          ("db", (16,)))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "dw", "db"], ["d"], pads=[1, 1, 1, 1], group=16),
             helper.make_node("HardSwish", ["d"], ["h"]),
             helper.make_node("Add", ["h", "r"], ["y"])]
    graph = helper.make_graph(
        nodes, "fast", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model = model.SerializeToString()
    session, reference = InferenceSession(model), ort_session(model)
    convs = [s for s in session._steps if s.node_label.endswith("(FusedConv)")]
    assert len(convs) == 2 and all(s.fast is None for s in convs)  # nothing run yet

    def check(h, w):
        x = rng.standard_normal((1, 8, h, w)).astype(np.float32)
        np.testing.assert_allclose(session.run(None, {"x": x})[0],
                                   reference.run(None, {"x": x})[0], rtol=1e-4, atol=1e-4)

    check(9, 20)
    fast = [s.fast for s in convs]
    assert all(callable(f) for f in fast) or not native.AVAILABLE
    check(9, 20)  # the fast calls ran: they are kept
    assert [s.fast for s in convs] == fast
    check(12, 7)  # another shape: resolved again
    assert all(s.fast is not f for s, f in zip(convs, fast)) or not native.AVAILABLE
    check(12, 7)

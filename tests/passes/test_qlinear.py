"""qlinear and the integer-only QLinearConv kernel: the kernel against onnxruntime's
QLinearConv on hypothesis shapes (within 1 LSB), the fixed-point multiplier, the rewrite of the
quantize pass's QDQ convs on the models/ nets (every layer's int8 output within 1 LSB of
onnxruntime, digits accuracy kept), where it must not fire."""

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import optc
from optc.ir import Node, serialize, to_proto
from optc.passes import QLinear
from optc.runtime import InferenceSession
from optc.runtime.kernels.conv import conv
from optc.runtime.kernels.qlinear import fixed_point, qlinear_conv, requantize
from optc.validate import ort_session
from tests.util import MODELS, op_types


def _ort_qlinear_conv(x, xs, xz, w, ws, wz, ys, yz, b, **attrs):
    inits = [numpy_helper.from_array(np.asarray(a), n) for a, n in
             ((xs, "xs"), (xz, "xz"), (w, "w"), (ws, "ws"), (wz, "wz"), (ys, "ys"), (yz, "yz"))]
    names = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"]
    if b is not None:
        inits.append(numpy_helper.from_array(b, "b"))
        names.append("b")
    g = helper.make_graph([helper.make_node("QLinearConv", names, ["y"], **attrs)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.UINT8, x.shape)],
                          [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    return ort_session(m.SerializeToString()).run(None, {"x": x})[0]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 2), cg=st.integers(1, 4), mg=st.integers(1, 4), group=st.integers(1, 2),
       h=st.integers(3, 9), w=st.integers(3, 9), k=st.integers(1, 3), stride=st.integers(1, 2),
       pad=st.integers(0, 1), bias=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_kernel_matches_onnxruntime_within_one_lsb(n, cg, mg, group, h, w, k, stride, pad,
                                                  bias, seed):
    # onnxruntime's u8 x s8 kernels on CPUs without VNNI (AVX2 vpmaddubsw) saturate pairs of
    # products in int16 -- its quantization docs recommend reduce_range (7-bit weights) there
    # -- so it is compared on 7-bit weights; the full int8 range is compared with the exact
    # real-valued result (within the 1 LSB the fixed-point multiplier may round away)
    rng = np.random.default_rng(seed)
    c, m = cg * group, mg * group
    x = rng.integers(0, 256, (n, c, h, w)).astype(np.uint8)
    xs, ys = np.float32(rng.uniform(0.01, 0.1)), np.float32(rng.uniform(0.05, 0.5))
    ws = rng.uniform(0.001, 0.02, m).astype(np.float32)
    xz, yz = np.uint8(rng.integers(0, 256)), np.uint8(rng.integers(0, 256))
    wz = np.zeros(m, np.int8)
    b = rng.integers(-2000, 2000, m).astype(np.int32) if bias else None
    attrs = dict(group=group, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)
    for limit in (63, 127):
        wt = rng.integers(-limit, limit + 1, (m, cg, k, k)).astype(np.int8)
        got = qlinear_conv(x, xs, xz, wt, ws, wz, ys, yz, b, **attrs)
        if limit == 63:
            ref = _ort_qlinear_conv(x, xs, xz, wt, ws, wz, ys, yz, b, **attrs)
        else:
            acc = conv(x.astype(np.float64) - float(xz), wt.astype(np.float64),
                       None if b is None else b.astype(np.float64), **attrs)
            real = acc * (np.float64(xs) * ws.astype(np.float64) / np.float64(ys)
                          ).reshape(1, -1, 1, 1)
            ref = np.clip(np.round(real) + int(yz), 0, 255)
        assert got.dtype == np.uint8 and got.shape == ref.shape
        assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1, f"weights within {limit}"


def test_fixed_point_multiplier():
    m = np.array([0.75, 0.001234, 1.5, 3.0e-7])
    q, shift = fixed_point(m)
    assert np.all((q >= 1 << 30) & (q < 1 << 31))  # M0 in [0.5, 1) as Q31
    np.testing.assert_allclose(q / 2.0 ** shift, m, rtol=1e-9)
    acc = np.array([[1000, -1000, 7, -7]] * 4).T  # per row of channels
    got = requantize(acc, m, 0, np.dtype(np.int32), axis=0)
    np.testing.assert_array_equal(got, np.sign(acc) * np.floor(np.abs(acc) * m[:, None] + 0.5))


def _quantized(path: str, x: np.ndarray, options: str = ""):
    q, _ = optc.optimize(str(path), passes=f"default,quantize{{probe=false{options}}}",
                         calib={"input": x})
    return q


@pytest.mark.parametrize("name, shape, stats", [
    ("digits_cnn", (16, 1, 8, 8), {"QLinearConv": 2}),
    # the last residual Add feeds the float head (GlobalAveragePool), unquantized
    ("resnet_mini", (4, 3, 32, 32), {"QLinearConv": 15, "QLinearAdd": 5,
                                     "kept: Add: output not quantized": 1}),
    ("mobilenetv2_mini", (2, 3, 64, 64), {"QLinearConv": 28, "QLinearAdd": 4})])
def test_every_layer_within_one_lsb_of_onnxruntime(name, shape, stats):
    # 7-bit weights: onnxruntime's u8 x s8 kernels saturate on CPUs without VNNI otherwise
    # (test_kernel_matches_onnxruntime_within_one_lsb checks full-range weights exactly)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    model = _quantized(MODELS / f"{name}.onnx", x, " reduce-range=true")
    weights = [n.inputs[1].producer().inputs[0].const_value for n in model.graph.nodes
               if n.op_type == "Conv" and n.inputs[1].producer() is not None]
    assert weights and max(int(np.abs(w.astype(int)).max()) for w in weights) <= 63
    result = QLinear()(model)
    assert result.stats == stats
    assert "Conv" not in op_types(model)
    assert op_types(model).count("QLinearAdd") == stats.get("QLinearAdd", 0)
    # nothing left dead (the bias scales' Muls, x_scale * w_scale, went with their convs)
    assert all(o.uses() or model.graph.is_output(o) for n in model.graph.nodes
               for o in n.outputs)
    proto = to_proto(model)
    onnx.checker.check_model(proto, full_check=True)
    layers = [n.output[0] for n in proto.graph.node if n.op_type == "QLinearConv"]
    proto.graph.output.extend(helper.make_tensor_value_info(v, TensorProto.UINT8, None)
                              for v in layers)
    ref = dict(zip([o.name for o in proto.graph.output],
                   ort_session(proto.SerializeToString()).run(None, {"input": x})))
    seen = {}
    InferenceSession(serialize(model)).run(None, {"input": x},
                                           on_value=lambda k, v: seen.__setitem__(k, v))
    for v in layers:
        assert np.abs(seen[v].astype(int) - ref[v].astype(int)).max() <= 1, v
    # a QLinearAdd on optc's own inputs: a 1-LSB difference in an input would come out
    # (input scale / output scale) LSBs apart, more than 1 where that ratio is over 1
    inits = {i.name: i for i in proto.graph.initializer}
    for n in proto.graph.node:
        if n.op_type == "QLinearAdd":
            alone = helper.make_graph(
                [n], "add", [helper.make_tensor_value_info(v, TensorProto.UINT8, None)
                             for v in (n.input[0], n.input[3])],
                [helper.make_tensor_value_info(n.output[0], TensorProto.UINT8, None)],
                [inits[v] for v in n.input if v in inits])
            one = helper.make_model(alone, opset_imports=list(proto.opset_import))
            got = ort_session(one.SerializeToString()).run(
                None, {v: seen[v] for v in (n.input[0], n.input[3])})[0]
            assert np.abs(seen[n.output[0]].astype(int) - got.astype(int)).max() <= 1, n.name


def test_digits_accuracy_is_kept():
    d = np.load(MODELS / "digits_test.npz")
    model = _quantized(MODELS / "digits_cnn.onnx", d["input"][:64])
    QLinear()(model)
    logits = InferenceSession(serialize(model)).run(None, {"input": d["input"]})[0]
    assert float((logits.argmax(1) == d["labels"]).mean()) >= 0.99


def test_relu_above_an_inner_zero_point_is_kept():
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    model = _quantized(MODELS / "digits_cnn.onnx", x)
    g = model.graph
    for n in g.nodes:  # quantize dropped the first conv's Relu (the cast reproduced it): put
        # it back, with the output zero point moved inside the range, where it is not
        if n.op_type == "QuantizeLinear" and n.inputs[0].producer() is not None and \
                n.inputs[0].producer().op_type == "Conv":
            relu_out = g.new_value("relu_out", n.inputs[0].type)
            g.insert_before(n, Node("Relu", [n.inputs[0]], [relu_out], name="relu"))
            n.replace_input(0, relu_out)
            n.replace_input(2, g.add_initializer("zp_inner", np.array(128, np.uint8)))
            break
    else:
        raise AssertionError("no Conv -> QuantizeLinear in the quantized digits model")
    result = QLinear()(model)
    assert result.stats["kept: Relu that the saturating cast does not reproduce"] == 1
    assert result.stats["QLinearConv"] == 1  # the second conv
    again = serialize(model)  # a second run changes nothing
    assert not QLinear()(model).modified and serialize(model) == again


def _qdq_add(b_type: str, b_scale: str, relu: bool) -> str:
    """Q(Add(DQ(a), DQ(b))) in onnx text, b of ``b_type`` (float: read as it is)."""
    b_in = f"{b_type}[1, 4, 3, 3] b"
    db = "db = DequantizeLinear(b, sb, zb)" if b_type != "float" else "db = Identity(b)"
    add = "t = Add(da, db)\n        s = Relu(t)" if relu else "s = Add(da, db)"
    return f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (uint8[1, 4, 3, 3] a, {b_in}) => (uint8[1, 4, 3, 3] y)
    <float sa = {{0.04}}, uint8 za = {{3}}, {b_scale}, {b_type if b_type != "float" else
     "uint8"} zb = {{5}}, float sy = {{0.07}}, uint8 zy = {{0}}> {{
        da = DequantizeLinear(a, sa, za)
        {db}
        {add}
        y = QuantizeLinear(s, sy, zy)
    }}
    """


@pytest.mark.parametrize("b_type, b_scale, relu, expected", [
    ("uint8", "float sb = {0.05}", True, {"QLinearAdd": 1}),
    ("uint8", "float[4] sb = {0.05, 0.05, 0.05, 0.05}", False,
     {"kept: Add: per-channel input quantization": 1}),
    ("int8", "float sb = {0.05}", False, {"kept: Add: inputs and output not one 8-bit type": 1}),
    ("float", "float sb = {0.05}", False, {"kept: Add: inputs not dequantized": 1}),
])
def test_add_rewrite_and_where_it_does_not_fire(b_type, b_scale, relu, expected):
    import onnx.parser

    from optc.ir import from_proto

    proto = onnx.parser.parse_model(_qdq_add(b_type, b_scale, relu))
    model = from_proto(proto)
    result = QLinear()(model)
    assert result.stats == expected
    assert result.modified == ("QLinearAdd" in expected)
    if "QLinearAdd" not in expected:
        assert op_types(model) == [n.op_type for n in proto.graph.node]
        return
    assert op_types(model) == ["QLinearAdd"]  # the DequantizeLinears, Relu, Q went with it
    rng = np.random.default_rng(0)
    feeds = {"a": rng.integers(0, 256, (1, 4, 3, 3), dtype=np.uint8),
             "b": rng.integers(0, 256, (1, 4, 3, 3), dtype=np.uint8)}
    ref = ort_session(proto.SerializeToString()).run(None, feeds)[0]
    got = InferenceSession(serialize(model)).run(None, feeds)[0]
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    assert not QLinear()(model).modified  # a second run changes nothing

"""fuse-act."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import optc
from optc.ir import serialize
from optc.passes import FuseActivation
from optc.runtime import InferenceSession
from optc.validate import ort_session, random_feeds, run
from tests.util import check_pass, load, op_types, run_pass

RNG = np.random.default_rng(2)
W = numpy_helper.from_array(RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
B = numpy_helper.from_array(RNG.standard_normal(4).astype(np.float32), "b")


def _model(nodes, inits=(), opset=17, extra_outputs=(), x_shape=(1, 3, 5, 5),
           y_shape=(1, 4, 5, 5)):
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1])] + nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))]
        + [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(y_shape))
           for n in extra_outputs],
        [W, B] + [numpy_helper.from_array(np.asarray(v, np.float32), k)
                  for k, v in dict(inits).items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


ACTIVATIONS = {
    "Relu": ([helper.make_node("Relu", ["c"], ["y"])], {}),
    "ReLU6": ([helper.make_node("Clip", ["c", "lo", "hi"], ["y"])], {"lo": 0.0, "hi": 6.0}),
    "LeakyRelu": ([helper.make_node("LeakyRelu", ["c"], ["y"], alpha=0.2)], {}),
    "Sigmoid": ([helper.make_node("Sigmoid", ["c"], ["y"])], {}),
    "HardSigmoid": ([helper.make_node("HardSigmoid", ["c"], ["y"], alpha=0.3, beta=0.4)], {}),
    "Tanh": ([helper.make_node("Tanh", ["c"], ["y"])], {}),
    "HardSwish": ([helper.make_node("HardSwish", ["c"], ["y"])], {}),
    "HardSwish-decomposed-hsig": ([
        helper.make_node("HardSigmoid", ["c"], ["h"], alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", ["c", "h"], ["y"])], {}),
    "HardSwish-decomposed-clip": ([
        helper.make_node("Add", ["c", "three"], ["a"]),
        helper.make_node("Clip", ["a", "zero", "six"], ["cl"]),
        helper.make_node("Mul", ["c", "cl"], ["m"]),
        helper.make_node("Div", ["m", "six"], ["y"])], {"three": 3.0, "zero": 0.0, "six": 6.0}),
    "SiLU": ([helper.make_node("Sigmoid", ["c"], ["s"]),
              helper.make_node("Mul", ["s", "c"], ["y"])], {}),
}


def _optc_and_numpy_match_ort(original, fused_model):
    """optc.runtime matches onnxruntime with its C kernels and with the NumPy fallback."""
    _optc_matches_ort(original, fused_model)
    _optc_matches_ort(original, fused_model, native=False)


def _optc_matches_ort(original, fused_model, native=True):
    s = ort_session(original.SerializeToString())
    feeds = random_feeds(s, seed=4)
    ref = run(s, feeds)
    got = InferenceSession(serialize(fused_model), native=native).run(None, feeds)
    for r, o in zip(ref.values(), got):
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-6 * np.abs(r).max())


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_target_optc_fuses_every_activation(name):
    nodes, inits = ACTIVATIONS[name]
    model = _model(nodes, inits)
    m = optc.load(model)
    assert run_pass(FuseActivation(target="optc"), m)
    assert [(n.domain, n.op_type) for n in m.graph.nodes] == [("ai.optc", "FusedConv")]
    assert m.graph.outputs[0].name == "y"
    _optc_matches_ort(model, m)
    assert run_pass(FuseActivation(target="optc"), m) is False


@pytest.mark.parametrize("name", ["Relu", "ReLU6", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh"])
def test_target_ort_writes_fused_conv_that_onnxruntime_runs(name):
    nodes, inits = ACTIVATIONS[name]
    m = check_pass(FuseActivation(target="ort"), _model(nodes, inits))
    assert [(n.domain, n.op_type) for n in m.graph.nodes] == [("com.microsoft", "FusedConv")]
    assert m.opset_imports["com.microsoft"] == 1


def test_target_ort_keeps_standard_form_for_what_onnxruntime_cannot_fuse():
    nodes, inits = ACTIVATIONS["HardSwish-decomposed-hsig"]
    m = check_pass(FuseActivation(target="ort"), _model(nodes, inits))
    assert op_types(m) == ["Conv", "HardSwish"]


@pytest.mark.parametrize("name", ["HardSwish-decomposed-hsig", "HardSwish-decomposed-clip"])
def test_target_onnx_rewrites_decomposed_hardswish(name):
    nodes, inits = ACTIVATIONS[name]
    m = check_pass(FuseActivation(), _model(nodes, inits))
    assert op_types(m) == ["Conv", "HardSwish"]
    assert m.graph.initializers.keys() == {"w", "b"}  # the pattern's constants went too


def test_target_onnx_silu_needs_opset_24_for_swish():
    nodes, inits = ACTIVATIONS["SiLU"]
    check_pass(FuseActivation(), _model(nodes, inits), expect_modified=False)
    m = optc.load(_model(nodes, inits, opset=24))
    assert run_pass(FuseActivation(), m)
    assert op_types(m) == ["Conv", "Swish"]


def test_target_onnx_leaves_conv_relu_as_two_standard_nodes():
    nodes, inits = ACTIVATIONS["Relu"]
    check_pass(FuseActivation(), _model(nodes, inits), expect_modified=False)


def test_gemm_fuses_for_optc_only():
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w2"], ["c"], transB=1),
         helper.make_node("Relu", ["c"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(RNG.standard_normal((3, 5)).astype(np.float32), "w2")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    check_pass(FuseActivation(target="ort"), model, expect_modified=False)
    m = optc.load(model)
    assert run_pass(FuseActivation(target="optc"), m)
    assert op_types(m) == ["FusedGemm"]
    _optc_matches_ort(model, m)


def test_negative_cases():
    # the conv output is read twice before the activation: fusing would lose one reader
    relu = [helper.make_node("Relu", ["c"], ["y"])]
    for target in ("ort", "optc"):
        check_pass(FuseActivation(target=target), _model(relu, extra_outputs=["c"]),
                   expect_modified=False)
    two_readers = _model([helper.make_node("Relu", ["c"], ["y"]),
                          helper.make_node("Sigmoid", ["c"], ["z"])], extra_outputs=["z"])
    check_pass(FuseActivation(target="ort"), two_readers, expect_modified=False)
    # non-constant Clip bounds
    g = load("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,2,3,3] x, float[2,2,1,1] w, float hi) => (float[1,2,3,3] y) <float lo = {0.0}> {
      c = Conv(x, w)
      y = Clip(c, lo, hi)
    }
    """)
    assert run_pass(FuseActivation(target="ort"), g) is False
    # a decomposed pattern whose inner value is read elsewhere is not rewritten
    nodes, inits = ACTIVATIONS["HardSwish-decomposed-hsig"]
    check_pass(FuseActivation(), _model(nodes, inits, extra_outputs=["h"]),
               expect_modified=False)


def test_conv_transpose_fuses_for_optc_only():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1,2,3,3] x) => (float[1,3,7,7] y) <float[2,3,3,3] w = {%s}> {
      c = ConvTranspose <strides = [2, 2]> (x, w)
      y = LeakyRelu <alpha = 0.1> (c)
    }
    """ % ", ".join(f"{v:.3f}" for v in RNG.standard_normal(54))
    from tests.util import parse

    model = parse(text)
    check_pass(FuseActivation(target="ort"), model, expect_modified=False)
    m = optc.load(model)
    assert run_pass(FuseActivation(target="optc"), m)
    assert op_types(m) == ["FusedConvTranspose"]
    _optc_matches_ort(model, m)


def _residual(after, z_first=False, z_shape=(1, 4, 5, 5), add="Add"):
    """x -> Conv -> Add(., z) [-> after], z = Conv2(x) computed after the first Conv (or
    before it with z_first), or a constant of z_shape."""
    z_node = helper.make_node("Conv", ["x", "w"], ["z"], pads=[1, 1, 1, 1])
    conv = helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1])
    out = "s" if after else "y"
    nodes = [z_node, conv] if z_first else [conv, z_node]
    inits = [W, B]
    if z_shape != (1, 4, 5, 5):
        nodes = [conv]
        inits.append(numpy_helper.from_array(RNG.standard_normal(z_shape).astype(np.float32),
                                             "z"))
    nodes.append(helper.make_node(add, ["c", "z"], [out]))
    if after:
        nodes.append(helper.make_node(after, [out], ["y"]))
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("after,z_first,add", [("Relu", False, "Add"), ("Relu", True, "Sum"),
                                                (None, False, "Add"), ("Sigmoid", True, "Add")])
def test_target_optc_fuses_a_residual_add_into_the_conv(after, z_first, add):
    model = _residual(after, z_first, add=add)
    m = optc.load(model)
    assert run_pass(FuseActivation(target="optc"), m)
    fused = [n for n in m.graph.nodes if n.op_type == "FusedConv"]
    # the conv met first fuses the Add (and the activation); the other one stays a Conv
    # whose output is Z, computed before the fused node (which sits where the Add was)
    first = "z" if z_first else "c"
    assert len(fused) == 1 and fused[0].outputs[0].name.startswith("y")
    assert fused[0].inputs[3].name == ("c" if z_first else "z")
    assert fused[0].inputs[3].producer().op_type == "Conv"
    assert first not in [v.name for v in m.graph.values().values() if v.producer() is not None
                         and v.producer().op_type == "Conv"]
    assert fused[0].attr("activation") == after
    assert "Add" not in op_types(m) and "Sum" not in op_types(m) and after not in op_types(m)
    _optc_and_numpy_match_ort(model, m)


def test_residual_with_a_broadcast_addend_keeps_add_semantics():
    # a (1, 4, 1, 1) addend: the C kernel's residual must have the output's shape, so the
    # NumPy path runs it, broadcasting as Add does
    model = _residual("Relu", z_shape=(1, 4, 1, 1))
    m = optc.load(model)
    assert run_pass(FuseActivation(target="optc"), m)
    assert op_types(m) == ["FusedConv"]
    _optc_matches_ort(model, m)


def test_residual_not_fused_when_the_conv_output_is_read_elsewhere():
    model = _residual("Relu", z_shape=(1, 4, 5, 1))  # z: a constant, c: also an output
    model.graph.output.append(helper.make_tensor_value_info("c", TensorProto.FLOAT,
                                                            [1, 4, 5, 5]))
    m = optc.load(model)
    run_pass(FuseActivation(target="optc"), m)
    assert "Add" in op_types(m)
    # onnxruntime's FusedConv "sum" input is not written for target=ort
    check_pass(FuseActivation(target="ort"), _residual("Relu"), expect_modified=False)


def test_resnet_residuals_fuse_and_lower_with_winograd():
    from tests.util import MODELS

    path = str(MODELS / "resnet_mini.onnx")
    s = ort_session(path)
    feeds = random_feeds(s, seed=3, batch=2)
    ref = list(run(s, feeds).values())[0]
    m, _ = optc.optimize(path, passes="default,fuse-act{target=optc}")
    residual = [n for n in m.graph.nodes if n.op_type == "FusedConv" and len(n.inputs) == 4]
    assert residual and "Add" not in op_types(m)
    np.testing.assert_allclose(InferenceSession(serialize(m)).run(None, feeds)[0], ref,
                               rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    m, _ = optc.optimize(m, passes="winograd{tile=2}")
    assert any(n.op_type == "WinogradConv" and len(n.inputs) == 4 for n in m.graph.nodes)
    np.testing.assert_allclose(InferenceSession(serialize(m)).run(None, feeds)[0], ref,
                               rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def _affine(chain, x_shape=(1, 3, 5, 5), y_shape=(1, 3, 5, 5)):
    """x -> chain of per-channel Mul/Add by constants and activations -> y."""
    nodes, inits, prev = [], [], "x"
    for i, (op, const_shape) in enumerate(chain):
        out = "y" if i == len(chain) - 1 else f"t{i}"
        if const_shape is None:
            nodes.append(helper.make_node(op, [prev], [out]))
        else:
            inits.append(numpy_helper.from_array(
                RNG.standard_normal(const_shape).astype(np.float32), f"k{i}"))
            nodes.append(helper.make_node(op, [prev, f"k{i}"], [out]))
        prev = out
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("chain", [
    [("Mul", (3, 1, 1)), ("Add", (3, 1, 1)), ("Relu", None)],  # BatchNormalization + ReLU
    [("Mul", (1, 3, 1, 1)), ("Add", (3, 1, 1))],
    [("Add", (3, 1, 1)), ("Sigmoid", None)],
    [("Mul", ()), ("Relu", None)],
])
def test_target_optc_fuses_a_channel_affine_map_as_a_1x1_depthwise_conv(chain):
    model = _affine(chain)
    m = optc.load(model)
    assert run_pass(FuseActivation(target="optc"), m)
    [node] = m.graph.nodes
    assert (node.op_type, node.attr("group"), node.attr("kernel_shape")) == \
        ("FusedConv", 3, [1, 1])
    _optc_and_numpy_match_ort(model, m)


@pytest.mark.parametrize("chain,y_shape", [
    ([("Mul", (3, 1, 1))], (1, 3, 5, 5)),  # a lone Mul: nothing to save
    ([("Mul", (3, 5, 1)), ("Relu", None)], (1, 3, 5, 5)),  # not one number per channel
    ([("Add", (2, 3, 1, 1)), ("Relu", None)], (2, 3, 5, 5)),  # broadcasts x to a batch of 2
])
def test_channel_affine_left_alone(chain, y_shape):
    check_pass(FuseActivation(target="optc"), _affine(chain, y_shape=y_shape),
               expect_modified=False)


def _affine_quantized(chain, zp_type=TensorProto.UINT8, zp=0, scale=0.05, axis_scale=False):
    """x -> per-channel Mul/Add [-> activation] -> QuantizeLinear -> DequantizeLinear -> y (a
    quantized model's unfolded BatchNormalization before a quantized conv)."""
    model = _affine(chain)
    g = model.graph
    g.node[-1].output[0] = "a"
    s = np.full(3, scale, np.float32) if axis_scale else np.float32(scale)
    z = np.full(3, zp) if axis_scale else np.asarray(zp)
    np_type = helper.tensor_dtype_to_np_dtype(zp_type)
    g.initializer.extend([numpy_helper.from_array(np.asarray(s, np.float32), "qs"),
                          numpy_helper.from_array(z.astype(np_type), "qz")])
    g.node.extend([helper.make_node("QuantizeLinear", ["a", "qs", "qz"], ["q"]),
                   helper.make_node("DequantizeLinear", ["q", "qs", "qz"], ["y"])])
    return model


@pytest.mark.parametrize("chain, zp_type, zp", [
    ([("Mul", (3, 1, 1)), ("Add", (3, 1, 1))], TensorProto.UINT8, 0),  # BN, the cast's ReLU
    ([("Mul", (3, 1, 1)), ("Add", (3, 1, 1)), ("Relu", None)], TensorProto.UINT8, 7),
    ([("Mul", (1, 3, 1, 1)), ("Add", (3, 1, 1)), ("Relu", None)], TensorProto.INT8, -3),
    ([("Add", (3, 1, 1)), ("Sigmoid", None)], TensorProto.UINT8, 0),
    ([("Mul", ())], TensorProto.INT8, 0),  # a lone Mul: the quantization is worth fusing
])
def test_target_optc_fuses_a_quantized_channel_affine_map(chain, zp_type, zp):
    model = _affine_quantized(chain, zp_type, zp)
    m = optc.load(model)
    assert run_pass(FuseActivation(target="optc"), m)
    assert op_types(m) == ["QuantizeAffine", "DequantizeLinear"]
    feeds, ref = ort_outputs_q(model)
    step = 0.05
    for on in (True, False):  # the C loop and the NumPy reference
        got = InferenceSession(serialize(m), native=on).run(None, feeds)[0]
        # the same float32 steps as onnxruntime's Mul, Add and QuantizeLinear: bit-equal
        np.testing.assert_array_equal(got, ref, err_msg=f"C kernels {on}")
        assert np.abs(ref).max() > 4 * step  # not all one value
    again = serialize(m)
    assert not run_pass(FuseActivation(target="optc"), m)
    assert serialize(m) == again


def ort_outputs_q(model):
    s = ort_session(model.SerializeToString())
    feeds = {"x": (RNG.standard_normal((1, 3, 5, 5)) * 3).astype(np.float32)}
    return feeds, s.run(None, feeds)[0]


def test_quantized_channel_affine_left_as_fused_conv_where_quantize_affine_does_not_apply():
    chain = [("Mul", (3, 1, 1)), ("Add", (3, 1, 1)), ("Relu", None)]
    # per-channel output scales: not QuantizeAffine's per-tensor quantization
    m = optc.load(_affine_quantized(chain, axis_scale=True))
    assert run_pass(FuseActivation(target="optc"), m)
    assert op_types(m) == ["FusedConv", "QuantizeLinear", "DequantizeLinear"]
    # the activation's output also read elsewhere: the QuantizeLinear is not its sole reader
    model = _affine_quantized(chain)
    model.graph.output.extend([helper.make_tensor_value_info("a", TensorProto.FLOAT,
                                                             [1, 3, 5, 5])])
    m = optc.load(model)
    assert run_pass(FuseActivation(target="optc"), m)
    assert "QuantizeAffine" not in op_types(m)
    # 16-bit quantization (opset 21)
    model = _affine_quantized(chain, zp_type=TensorProto.UINT16)
    model.opset_import[0].version = 21
    m = optc.load(model)
    assert run_pass(FuseActivation(target="optc"), m)
    assert "QuantizeAffine" not in op_types(m)
    # target onnx never writes it
    m = optc.load(_affine_quantized(chain))
    run_pass(FuseActivation(target="onnx"), m)
    assert "QuantizeAffine" not in op_types(m)

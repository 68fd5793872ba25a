"""ONNX -> IR -> ONNX is lossless; loading bad files gives one clear error; saving is atomic."""

import os

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from onnx import TensorProto, helper, numpy_helper

import optc
from optc.errors import OptcError
from optc.ir import from_proto, serde, to_proto, verify
from tests.util import LIGHT_MODELS, SHIPPED_MODELS, assert_same_outputs, random_models


def roundtrip(proto: onnx.ModelProto) -> onnx.ModelProto:
    model = from_proto(proto)
    verify(model.graph)
    return to_proto(model)


@pytest.mark.parametrize("path", LIGHT_MODELS + SHIPPED_MODELS, ids=os.path.basename)
def test_roundtrip_is_byte_identical_and_runs_the_same(path):
    original = onnx.load(path)
    back = roundtrip(original)
    assert back.SerializeToString() == original.SerializeToString()
    onnx.checker.check_model(back, full_check=True)
    assert_same_outputs(path, back, rtol=0, atol=0)


def test_light_models_are_all_there():
    names = {os.path.basename(p) for p in LIGHT_MODELS}
    assert len(names) == 9, names


@pytest.mark.parametrize("opset", range(7, onnx.defs.onnx_opset_version() + 1))
def test_roundtrip_every_opset(opset):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    w = numpy_helper.from_array(np.ones((3, 2, 3, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Add", ["r", "r"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 3 if opset < 8 else min(onnx.IR_VERSION, 8)
    if opset < 8:  # IR version 3 requires initializers to be listed as inputs too
        model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT,
                                                               [3, 2, 3, 3]))
    onnx.checker.check_model(model)
    back = roundtrip(model)
    assert back.SerializeToString() == model.SerializeToString()
    onnx.checker.check_model(back, full_check=True)


def test_roundtrip_keeps_metadata_doc_strings_value_info_and_domains():
    text = """
    <ir_version: 8, opset_import: ["" : 17, "com.example" : 1], producer_name: "me",
     producer_version: "1.2", domain: "org.test", model_version: 7, doc_string: "model doc">
    g (float[N,2] x) => (float[N,2] y) {
      t = com.example.Custom <alpha = 0.5> (x)
      y = Relu(t)
    }
    """
    model = onnx.parser.parse_model(text)
    model.metadata_props.add(key="author", value="optc tests")
    model.graph.doc_string = "graph doc"
    model.graph.node[0].doc_string = "node doc"
    model.graph.value_info.append(helper.make_tensor_value_info("t", TensorProto.FLOAT,
                                                                ["N", 2]))
    model.graph.input[0].doc_string = "input doc"
    model.graph.input[0].metadata_props.add(key="layout", value="NC")
    model.graph.node[1].metadata_props.add(key="origin", value="relu1")
    model.graph.metadata_props.add(key="stage", value="test")
    # a NodeProto field optc does not model is carried as loaded
    model.graph.node[1].device_configurations.add(configuration_id="cfg0")
    back = roundtrip(model)
    assert back.SerializeToString() == model.SerializeToString()
    ir = from_proto(model)
    assert ir.metadata_props == {"author": "optc tests"}
    assert ir.opset_imports == {"": 17, "com.example": 1}
    assert ir.graph.nodes[0].domain == "com.example"


def _if_model() -> onnx.ModelProto:
    # the branches read the outer value 'a' directly (captured from the enclosing scope)
    then_g = helper.make_graph([helper.make_node("Add", ["a", "a"], ["t_out"])], "then", [],
                               [helper.make_tensor_value_info("t_out", TensorProto.FLOAT, [2])])
    else_g = helper.make_graph([helper.make_node("Neg", ["a"], ["e_out"])], "else", [],
                               [helper.make_tensor_value_info("e_out", TensorProto.FLOAT, [2])])
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)]
    g = helper.make_graph(nodes, "if_graph",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                           helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _loop_model() -> onnx.ModelProto:
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["acc_in", "step"], ["acc_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [2])])
    nodes = [helper.make_node("Relu", ["x"], ["step"]),
             helper.make_node("Loop", ["n", "", "x"], ["y"], body=body)]
    g = helper.make_graph(nodes, "loop_graph",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                           helper.make_tensor_value_info("n", TensorProto.INT64, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _scan_model() -> onnx.ModelProto:
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "row"], ["s_out"]),
         helper.make_node("Identity", ["s_out"], ["row_out"])],
        "scan_body",
        [helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [3]),
         helper.make_tensor_value_info("row", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [3]),
         helper.make_tensor_value_info("row_out", TensorProto.FLOAT, [3])])
    nodes = [helper.make_node("Scan", ["init", "xs"], ["final", "ys"], body=body,
                              num_scan_inputs=1)]
    g = helper.make_graph(nodes, "scan_graph",
                          [helper.make_tensor_value_info("init", TensorProto.FLOAT, [3]),
                           helper.make_tensor_value_info("xs", TensorProto.FLOAT, [4, 3])],
                          [helper.make_tensor_value_info("final", TensorProto.FLOAT, [3]),
                           helper.make_tensor_value_info("ys", TensorProto.FLOAT, [4, 3])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("build", [_if_model, _loop_model, _scan_model],
                         ids=["if", "loop", "scan"])
def test_roundtrip_subgraphs(build):
    model = build()
    onnx.checker.check_model(model, full_check=True)
    back = roundtrip(model)
    assert back.SerializeToString() == model.SerializeToString()
    onnx.checker.check_model(back, full_check=True)
    assert_same_outputs(model, back, rtol=0, atol=0)


def test_subgraph_reads_of_outer_values_are_uses():
    ir = from_proto(_if_model())
    relu = ir.graph.nodes[0]
    users = [(u.op_type, u.graph.name) for u, _ in relu.outputs[0].uses()]
    assert sorted(users) == [("Add", "then"), ("Add", "then"), ("Neg", "else")]
    # the If node depends on the Relu through its branches
    from optc.ir import node_dependencies
    assert node_dependencies(ir.graph, ir.graph.nodes[1]) == [relu]
    with pytest.raises(OptcError, match="is used by"):
        ir.graph.remove(relu)


def test_out_of_order_nodes_load_sorted():
    model = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) { a = Relu(x)  y = Neg(a) }
    """)
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    ir = from_proto(model)
    assert [n.op_type for n in ir.graph.nodes] == ["Relu", "Neg"]
    verify(ir.graph)


def test_external_data_is_used_above_the_threshold(tmp_path):
    model = optc.load(SHIPPED_MODELS[0])
    path = tmp_path / "big.onnx"
    serde.save(model, path, external_threshold=1024)
    data = tmp_path / "big.onnx.data"
    assert data.exists() and data.stat().st_size > 1024
    assert path.stat().st_size < data.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    back = optc.load(path)
    for name, v in model.graph.initializers.items():
        np.testing.assert_array_equal(back.graph.initializers[name].const_value, v.const_value)
    assert_same_outputs(SHIPPED_MODELS[0], str(path), rtol=0, atol=0)
    # under the threshold: one self-contained file
    small = tmp_path / "small.onnx"
    serde.save(model, small)
    assert not (tmp_path / "small.onnx.data").exists()


def test_missing_external_data_is_one_clear_error(tmp_path):
    model = optc.load(SHIPPED_MODELS[0])
    path = tmp_path / "big.onnx"
    serde.save(model, path, external_threshold=1024)
    (tmp_path / "big.onnx.data").unlink()
    with pytest.raises(OptcError, match="external data"):
        optc.load(path)


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (os.urandom(4096), "not an ONNX model"),
    (b"\x08\x07", "not an ONNX model"),  # parses as protobuf, but has no graph
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(OptcError, match=message):
        optc.load(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(OptcError, match="no such file"):
        optc.load(tmp_path / "nope.onnx")
    with pytest.raises(OptcError, match="is a directory"):
        optc.load(tmp_path)


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.9, 0.999])
def test_truncated_model(tmp_path, fraction):
    data = open(SHIPPED_MODELS[0], "rb").read()
    path = tmp_path / "trunc.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(OptcError) as err:
        optc.load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_undefined_input_is_named():
    model = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2] x) => (float[2] y) { y = Add(x, ghost) }
    """)
    with pytest.raises(OptcError, match="reads 'ghost'"):
        from_proto(model)


def test_save_is_atomic(tmp_path, monkeypatch):
    model = optc.load(SHIPPED_MODELS[0])
    path = tmp_path / "out.onnx"
    path.write_bytes(b"previous contents")

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(serde, "to_proto", explode)
    with pytest.raises(RuntimeError):
        serde.save(model, path)
    assert path.read_bytes() == b"previous contents"
    assert [p.name for p in tmp_path.iterdir()] == ["out.onnx"]


def test_save_into_missing_directory(tmp_path):
    model = optc.load(SHIPPED_MODELS[0])
    with pytest.raises(OptcError, match="does not exist"):
        serde.save(model, tmp_path / "no" / "out.onnx")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_models())
def test_roundtrip_random_graphs(model):
    back = roundtrip(model)
    assert back.SerializeToString() == model.SerializeToString()
    assert_same_outputs(model, back, rtol=0, atol=0)


def test_clone_shares_weights_and_is_independent():
    from optc.ir import clone, load, serialize
    from tests.util import MODELS

    model = load(MODELS / "resnet_mini.onnx")
    copy = clone(model)
    assert serialize(copy) == serialize(model)
    big = [v for v in model.graph.initializers.values() if v.nbytes > 1024]
    assert big
    for v in big:  # the same arrays, not copies
        c = copy.graph.initializers[v.name]
        assert c is not v and np.shares_memory(c.const_value, v.const_value)
    # editing the clone leaves the original alone
    before = serialize(model)
    w = copy.graph.initializers[big[0].name]
    w.set_const(np.zeros_like(w.const_value))
    conv = next(n for n in copy.graph.nodes if n.op_type == "Conv")
    conv.name = "renamed"
    assert serialize(model) == before
    assert not np.any(copy.graph.initializers[big[0].name].const_value)

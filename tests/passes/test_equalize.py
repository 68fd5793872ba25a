"""equalize: cross-layer equalization keeps the outputs and balances the weight ranges."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from optc.passes import Equalize
from optc.passes.quant.equalize import _in_view, _out_axis
from tests.util import check_pass


def _pair_model(first: str, act: str | None, second: str, *, extra_reader: bool = False):
    """x -> first -> act -> second -> y, with badly balanced random weights."""
    rng = np.random.default_rng(0)
    spread = np.exp(rng.uniform(-3, 3, 8)).astype(np.float32)  # channel ranges 1/20 .. 20
    nodes, inits = [], []
    if first == "conv":
        w1 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * spread[:, None, None, None]
        nodes.append(helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[1, 1, 1, 1]))
        x_shape = [2, 3, 6, 6]
    else:  # gemm, transB
        w1 = rng.standard_normal((8, 5)).astype(np.float32) * spread[:, None]
        nodes.append(helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1))
        x_shape = [2, 5]
    inits += [numpy_helper.from_array(w1, "w1"),
              numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b1")]
    mid = "h"
    if act == "prelu":
        inits.append(numpy_helper.from_array(
            rng.uniform(0, 0.3, (8, 1, 1) if first == "conv" else (8,)).astype(np.float32),
            "slope"))
        nodes.append(helper.make_node("PRelu", ["h", "slope"], ["a"]))
        mid = "a"
    elif act == "clip":
        inits += [numpy_helper.from_array(np.array(0, np.float32), "lo"),
                  numpy_helper.from_array(np.array(6, np.float32), "hi")]
        nodes.append(helper.make_node("Clip", ["h", "lo", "hi"], ["a"]))
        mid = "a"
    elif act is not None:
        nodes.append(helper.make_node(act, ["h"], ["a"]))
        mid = "a"
    if second.startswith("conv"):
        group = int(second[4:] or 1)
        w2 = rng.standard_normal((8, 8 // group, 3, 3)).astype(np.float32)
        nodes.append(helper.make_node("Conv", [mid, "w2"], ["y"], pads=[1, 1, 1, 1],
                                      group=group))
    else:
        w2 = rng.standard_normal((8, 4)).astype(np.float32)
        nodes.append(helper.make_node("Gemm", [mid, "w2"], ["y"]))
    inits.append(numpy_helper.from_array(w2, "w2"))
    rank = [None] * len(x_shape)
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, rank)]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info(mid, TensorProto.FLOAT, rank))
    g = helper.make_graph(nodes, "pair", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, x_shape)], outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _ranges(model):
    g = model.graph
    first = next(n for n in g.nodes if n.op_type in ("Conv", "Gemm"))
    second = [n for n in g.nodes if n.op_type in ("Conv", "Gemm")][1]
    w1, w2 = first.inputs[1].const_value, second.inputs[1].const_value
    axis = _out_axis(first)
    r1 = np.abs(np.moveaxis(w1, axis, 0)).reshape(w1.shape[axis], -1).max(axis=1)
    r2 = np.abs(_in_view(second, w2)).max(axis=1)
    return r1, r2


@pytest.mark.parametrize("first, act, second", [
    ("conv", "Relu", "conv"),
    ("conv", None, "conv2"),  # grouped
    ("conv", "prelu", "conv8"),  # depthwise, per-channel PRelu slopes
    ("conv", "LeakyRelu", "conv"),
    ("gemm", "Relu", "gemm"),
])
def test_pairs_are_equalized_and_outputs_kept(first, act, second):
    proto = _pair_model(first, act, second)
    model = check_pass(Equalize(), proto)
    r1, r2 = _ranges(model)
    np.testing.assert_allclose(r1, r2, rtol=1e-2)


@pytest.mark.parametrize("kwargs", [
    dict(first="conv", act="clip", second="conv"),  # ReLU6 is not scale-equivariant
    dict(first="conv", act="Relu", second="conv", extra_reader=True),  # the activation escapes
])
def test_where_it_must_not_fire(kwargs):
    check_pass(Equalize(), _pair_model(**kwargs), expect_modified=False)

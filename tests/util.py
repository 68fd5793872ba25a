"""Shared test helpers: model builders, the onnxruntime oracle, random graphs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnx.parser
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import optc
from optc.ir import Model, serialize, verify
from optc.pass_base import Pass
from optc.testing import LIGHT_MODELS, randomize_light  # noqa: F401  (re-exported)
from optc.validate import ATOL, RTOL, ort_session, random_feeds, run

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
SHIPPED_MODELS = sorted(str(p) for p in MODELS.glob("*.onnx"))


def parse(text: str) -> onnx.ModelProto:
    """A model from onnx.parser text (checked)."""
    m = onnx.parser.parse_model(text)
    onnx.checker.check_model(m)
    return m


def load(text_or_proto) -> Model:
    if isinstance(text_or_proto, str) and not os.path.exists(text_or_proto):
        text_or_proto = parse(text_or_proto)
    return optc.load(text_or_proto)


def ort_outputs(model, feeds=None, seed: int = 0) -> tuple[dict, dict]:
    """(feeds, outputs) of ``model`` (path, bytes, proto or Model) in onnxruntime with its
    optimizations off."""
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    s = ort_session(model)
    if feeds is None:
        feeds = random_feeds(s, seed)
    return feeds, run(s, feeds)


def assert_same_outputs(reference, candidate, *, seed: int = 0, rtol: float = RTOL,
                        atol: float = ATOL) -> None:
    """``candidate`` computes what ``reference`` computes (ORT, optimizations off): within
    rtol, and atol relative to each output's scale."""
    feeds, ref = ort_outputs(reference, seed=seed)
    _, got = ort_outputs(candidate, feeds)
    assert set(ref) <= set(got), f"outputs missing: {set(ref) - set(got)}"
    for name, r in ref.items():
        g = got[name]
        assert r.shape == g.shape, (name, r.shape, g.shape)
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        np.testing.assert_allclose(g, r, rtol=rtol, atol=atol * max(scale, 1e-30),
                                   err_msg=f"output {name}")


def run_pass(p: Pass, model: Model) -> bool:
    """Run a pass, verify the IR, check the checker accepts the result; return modified."""
    result = p(model)
    verify(model.graph)
    onnx.checker.check_model(optc.ir.to_proto(model), full_check=True)
    return result.modified


def check_pass(p: Pass, text_or_proto, *, expect_modified: bool = True) -> Model:
    """The standard trio for a lossless pass on one model: it fires (or not) as expected, the
    outputs are unchanged in onnxruntime, and a second run changes nothing."""
    model = load(text_or_proto)
    original = serialize(model)
    assert run_pass(p, model) is expect_modified
    assert_same_outputs(original, serialize(model))
    again = serialize(model)
    assert run_pass(p, model) is False, "second run reported modified=True"
    assert serialize(model) == again, "second run changed the model"
    return model


def op_types(model: Model) -> list[str]:
    return [n.op_type for n in model.graph.nodes]


# --------------------------------------------------------------------------------------------
# random graphs for property tests
# --------------------------------------------------------------------------------------------
@st.composite
def random_models(draw, max_ops: int = 10, cleanup_ops: bool = True) -> onnx.ModelProto:
    """Small random CNN-ish graphs: Conv/BN/Relu/Clip/Add/Concat, plus (with cleanup_ops) the
    things the cleanup passes remove: Identity, Dropout, no-op Reshape/Transpose/Cast,
    Constant nodes, duplicated subexpressions, ConstantOfShape-built weights, dead branches."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    h = w = draw(st.sampled_from([3, 5, 6]))
    c0 = draw(st.integers(1, 4))
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    values: list[tuple[str, int]] = [("x", c0)]  # (name, channels); spatial size stays h x w
    counter = [0]

    def fresh(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    def const(array: np.ndarray, prefix: str = "w") -> str:
        name = fresh(prefix)
        inits.append(numpy_helper.from_array(array.astype(array.dtype), name))
        return name

    kinds = ["conv", "bn", "relu", "clip", "add", "concat"]
    if cleanup_ops:
        kinds += ["identity", "dropout", "reshape", "transpose", "cast", "constant", "dup",
                  "cos_weight", "dead", "padconv", "tpair", "hswish"]
    for _ in range(draw(st.integers(1, max_ops))):
        kind = draw(st.sampled_from(kinds))
        src, c = values[draw(st.integers(0, len(values) - 1))]
        out = fresh("v")
        if kind == "conv":
            cout = draw(st.integers(1, 4))
            k = draw(st.sampled_from([1, 3]))
            wname = const(rng.standard_normal((cout, c, k, k)).astype(np.float32) * 0.5)
            ins = [src, wname]
            if draw(st.booleans()):
                ins.append(const(rng.standard_normal(cout).astype(np.float32), "b"))
            nodes.append(helper.make_node("Conv", ins, [out], pads=[k // 2] * 4))
            values.append((out, cout))
        elif kind == "bn":
            params = [const(rng.uniform(0.5, 1.5, c).astype(np.float32), p)
                      for p in ("s", "b", "m", "var")]
            nodes.append(helper.make_node("BatchNormalization", [src] + params, [out]))
            values.append((out, c))
        elif kind == "relu":
            nodes.append(helper.make_node("Relu", [src], [out]))
            values.append((out, c))
        elif kind == "clip":
            lo = const(np.array(0.0, np.float32), "lo")
            hi = const(np.array(6.0, np.float32), "hi")
            nodes.append(helper.make_node("Clip", [src, lo, hi], [out]))
            values.append((out, c))
        elif kind == "add":
            same = [v for v in values if v[1] == c]
            other = same[draw(st.integers(0, len(same) - 1))][0]
            nodes.append(helper.make_node("Add", [src, other], [out]))
            values.append((out, c))
        elif kind == "concat":
            other, c2 = values[draw(st.integers(0, len(values) - 1))]
            nodes.append(helper.make_node("Concat", [src, other], [out], axis=1))
            values.append((out, c + c2))
        elif kind == "identity":
            nodes.append(helper.make_node("Identity", [src], [out]))
            values.append((out, c))
        elif kind == "dropout":
            nodes.append(helper.make_node("Dropout", [src], [out]))
            values.append((out, c))
        elif kind == "reshape":
            shape = const(np.array([1, c, h, w], np.int64), "shape")
            nodes.append(helper.make_node("Reshape", [src, shape], [out]))
            values.append((out, c))
        elif kind == "transpose":
            nodes.append(helper.make_node("Transpose", [src], [out], perm=[0, 1, 2, 3]))
            values.append((out, c))
        elif kind == "cast":
            nodes.append(helper.make_node("Cast", [src], [out], to=TensorProto.FLOAT))
            values.append((out, c))
        elif kind == "constant":
            cname = fresh("k")
            data = rng.standard_normal((1, c, 1, 1)).astype(np.float32)
            nodes.append(helper.make_node("Constant", [], [cname],
                                          value=numpy_helper.from_array(data)))
            nodes.append(helper.make_node("Mul", [src, cname], [out]))
            values.append((out, c))
        elif kind == "dup":
            # the same Relu twice on the same input, both used: CSE must merge them
            a, b = fresh("d"), fresh("d")
            nodes.append(helper.make_node("Relu", [src], [a]))
            nodes.append(helper.make_node("Relu", [src], [b]))
            nodes.append(helper.make_node("Add", [a, b], [out]))
            values.append((out, c))
        elif kind == "cos_weight":
            # a weight built at run time from a constant shape: fold-constants must fold it
            shape = const(np.array([1, c, 1, 1], np.int64), "cs")
            filled = fresh("f")
            fill = float(rng.uniform(0.5, 1.5))
            nodes.append(helper.make_node(
                "ConstantOfShape", [shape], [filled],
                value=numpy_helper.from_array(np.array([fill], np.float32))))
            nodes.append(helper.make_node("Mul", [src, filled], [out]))
            values.append((out, c))
        elif kind == "padconv":
            # an explicit zero Pad before an unpadded 3x3 conv (fuse-pad's pattern)
            cout = draw(st.integers(1, 4))
            padded = fresh("p")
            pads = const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
            nodes.append(helper.make_node("Pad", [src, pads], [padded]))
            wname = const(rng.standard_normal((cout, c, 3, 3)).astype(np.float32) * 0.5)
            nodes.append(helper.make_node("Conv", [padded, wname], [out]))
            values.append((out, cout))
        elif kind == "tpair":
            # NCHW -> NHWC -> NCHW (fuse-layout cancels the pair)
            t = fresh("t")
            nodes.append(helper.make_node("Transpose", [src], [t], perm=[0, 2, 3, 1]))
            nodes.append(helper.make_node("Transpose", [t], [out], perm=[0, 3, 1, 2]))
            values.append((out, c))
        elif kind == "hswish":
            # x * HardSigmoid(x): decomposed HardSwish (fuse-act's pattern)
            hs = fresh("hs")
            nodes.append(helper.make_node("HardSigmoid", [src], [hs], alpha=1 / 6, beta=0.5))
            nodes.append(helper.make_node("Mul", [src, hs], [out]))
            values.append((out, c))
        elif kind == "dead":
            nodes.append(helper.make_node("Sigmoid", [src], [fresh("dead")]))
    final = values[-1]
    outputs = [final]
    if draw(st.booleans()) and len(values) > 2:
        extra = values[draw(st.integers(1, len(values) - 2))]
        if extra[0] != final[0]:
            outputs.append(extra)
    graph = helper.make_graph(
        nodes, "random",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c0, h, w])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, c, h, w])
         for name, c in outputs],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model

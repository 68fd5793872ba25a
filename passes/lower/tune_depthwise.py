"""tune-depthwise: per depthwise conv, the fastest of optc.runtime's C paths on this CPU.

optc.runtime runs a depthwise 2-D conv (group == input channels == filters) one channel's
plane at a time ("planes": long loops over padded bands of rows), a vector of channels at a
time ("blocks": the channels in the SIMD lanes, best on small maps; runtime/csrc/dwconv.c) or,
with AVX-512 and a square 3x3/5x5/7x7 kernel at stride 1 or 2, straight from the NCHW rows
("rows": 16 columns of a row in the lanes, best on wide maps; dwconv.c). The kernel's own rule
between them was measured on one CPU. This pass times those that apply for each layer shape -- each as a one-node FusedConv model run in
an InferenceSession on seeded data, batch 1 for a symbolic batch -- keeps the choice in the
per-CPU tuning file (optc.runtime.tune: a shape is timed once per machine), and writes it as
the layer's ``depthwise_path`` attribute (a plain depthwise Conv becomes the equivalent
ai.optc FusedConv to carry it). The paths compute the same sums (the tests compare them with
NumPy), so the choice changes speed, not results beyond float rounding order.

Layers of unknown spatial size, non-constant weights, 1-D/3-D convs and 1x1 depthwise convs
(a per-channel affine map: one path) are left as they are, counted by reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from onnx import helper

from optc.ir import Model, Node
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes._common import const_input
from optc.passes.lower._emit import count, input_shapes
from optc.runtime.registry import OPTC_DOMAIN

#: the C paths, as FusedConv's depthwise_path values ("rows" only where it applies)
PATHS = ("planes", "blocks", "rows")


def _reason(node: Node, w: np.ndarray | None, shape) -> str | None:
    if w is None:
        return "non-constant weight"
    if w.ndim != 4:
        return "not a 2-D conv"
    if shape is None or len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
        return "unknown input size"
    group = node.attr("group", 1)
    if not (group == shape[1] == w.shape[0] and w.shape[1] == 1) or group == 1:
        return "not depthwise"
    if tuple(w.shape[2:]) == (1, 1):
        return "1x1 (one path)"
    if len(node.inputs) > 2 and node.inputs[2] is not None and \
            node.inputs[2].const_value is None:
        return "non-constant bias"
    if len(node.inputs) > 3 and node.inputs[3] is not None:
        return "residual input"
    return None


def _one_node_model(node: Node, w: np.ndarray, b, shape, path: str):
    """``node`` alone as a FusedConv taking ``path``, its weight and bias as they are."""
    from optc.runtime.tune import one_node_model

    attrs = [a for k, a in node.attributes.items() if k != "depthwise_path"]
    attrs.append(helper.make_attribute("depthwise_path", path))
    consts = {"w": w} if b is None else {"w": w, "b": b}
    return one_node_model("FusedConv", OPTC_DOMAIN, attrs, ["x", *consts], {"x": shape}, consts)


def tuned_path(cache, node: Node, w: np.ndarray, b, shape) -> str:
    """One of PATHS: the fastest for this layer on this CPU, from ``cache``
    (optc.runtime.tune.TuningCache) or timed now."""
    from optc.runtime.kernels import native
    from optc.runtime.tune import session_runs

    shape = [1] + list(shape[1:])  # a symbolic batch: 1
    attrs = {k: node.attr(k) for k in ("strides", "pads", "dilations", "auto_pad",
                                       "activation")}
    candidates = [p for p in PATHS if p != "rows" or native.dw_rows_applies(
        w.shape[2:], attrs["strides"] or (1, 1), attrs["dilations"] or (1, 1))]
    # the candidates are in the signature: a file written before a path existed times again
    signature = (f"depthwise c{w.shape[0]} k{w.shape[2]}x{w.shape[3]} "
                 f"in{'x'.join(map(str, shape))} " +
                 " ".join(f"{k}{v}" for k, v in attrs.items() if v not in (None, "", [])) +
                 f" of {','.join(candidates)}")

    def runs():
        return session_runs({p: _one_node_model(node, w, b, shape, p) for p in candidates},
                            {"x": shape})

    return cache.choose(signature, runs)


@register
@dataclass(frozen=True)
class TuneDepthwise(Pass):
    """Depthwise convs: the fastest C path (planes, channel blocks, direct rows) timed on this
    CPU."""

    name: ClassVar[str] = "tune-depthwise"
    lossless: ClassVar[bool] = True  # both paths compute the same convolution

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        from optc.runtime.tune import TuningCache

        g = model.graph
        shapes = input_shapes(model)
        stats: dict[str, int] = {}
        cache = None
        for node in list(g.nodes):
            fused = node.domain == OPTC_DOMAIN and node.op_type == "FusedConv"
            if not (fused or node.op_type == "Conv" and node.domain in ("", "ai.onnx")):
                continue
            if fused and node.attr("depthwise_path") in PATHS:
                count(stats, "kept: path already chosen")  # a second run changes nothing
                continue
            w = const_input(g, node, 1)
            reason = _reason(node, w, shapes.get(node.inputs[0].name))
            if reason is not None:
                if reason != "not depthwise":
                    count(stats, f"kept: {reason}")
                continue
            if w.dtype != np.float32:
                count(stats, "kept: not float32")
                continue
            b = node.inputs[2].const_value if len(node.inputs) > 2 and \
                node.inputs[2] is not None else None
            if cache is None:
                cache = TuningCache()
            path = tuned_path(cache, node, w, b, shapes[node.inputs[0].name])
            if not fused:  # a standard Conv carries no optc attribute: the same op as FusedConv
                node.op_type, node.domain = "FusedConv", OPTC_DOMAIN
            node.set_attr("depthwise_path", path)
            count(stats, path)
        modified = any(k in PATHS for k in stats)
        if modified:
            model.use_domain(OPTC_DOMAIN)
        return PassResult(model, modified, stats)

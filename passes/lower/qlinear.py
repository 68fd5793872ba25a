"""qlinear: QDQ convolutions as QLinearConv, and QDQ residual Adds as QLinearAdd, executed
in integers.

Fires on the pattern the quantize pass writes around a Conv:

    DequantizeLinear(x_q) ─┐
    DequantizeLinear(W_q) ─┼─ Conv ─ [Relu | Clip] ─ QuantizeLinear(y_scale, y_zp) ─> y_q
    DequantizeLinear(B_q) ─┘

with constant int8 weights (per-tensor or per-output-channel scale, axis 0), scalar activation
scales and zero points, an int32 bias whose scale is x_scale * w_scale (the quantize pass
writes it as a Mul of the two), and the Conv's output read by the QuantizeLinear alone. A Relu,
or a Clip(0, hi) with hi at or above the top of the quantized range, in between is dropped
when y_zp is the bottom of its type's range: the saturating cast then computes it. The
pattern becomes one standard QLinearConv(x_q, x_scale, x_zp, W_q, w_scale, w_zp, y_scale,
y_zp, B_q): onnxruntime runs it, and optc.runtime runs it in integers only
(optc.runtime.kernels.qlinear: int32 accumulation, fixed-point requantization).

An Add (or two-input Sum) of two DequantizeLinear outputs read by one QuantizeLinear (a
Relu/Clip between dropped under the same rule) becomes onnxruntime's contrib op
com.microsoft.QLinearAdd(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp) -- the op
onnxruntime's own QDQ fusion makes of it -- with per-tensor scales and one 8-bit type for a,
b and y; optc.runtime computes it as onnxruntime does (float32 ratios of the scales, rounding
half to even) in one C loop, in place of two dequantized float tensors, their sum and its
quantization.

Not rewritten (the QDQ form stays): Gemm/MatMul (QLinearMatMul has no bias), a Conv whose
output other nodes also read, a Relu above a zero point that is not the range's bottom, other
activations, non-constant weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from onnx import helper

from optc.errors import OptcError
from optc.ir import Model, Node, Value
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes._common import drop_unused_constants, is_standard
from optc.passes.channels import sole_reader
from optc.runtime.registry import ORT_DOMAIN


def _dq(v: Value | None) -> Node | None:
    p = v.producer() if v is not None else None
    return p if p is not None and is_standard(p) and p.op_type == "DequantizeLinear" else None


def _const(v: Value | None) -> np.ndarray | None:
    return None if v is None else v.const_value


def _scalar(v: Value | None) -> bool:
    a = _const(v)
    return a is not None and a.size == 1


@register
@dataclass(frozen=True)
class QLinear(Pass):
    """QDQ Conv (+Relu) patterns as QLinearConv (integer-only in optc.runtime), QDQ Adds as
    com.microsoft.QLinearAdd."""

    name: ClassVar[str] = "qlinear"
    lossless: ClassVar[bool] = False  # integer requantization rounds within 1 LSB

    def requires(self, model: Model, ctx: PassContext) -> None:
        if model.opset < 10:
            raise OptcError(f"qlinear: QLinearConv needs opset >= 10, the model is opset "
                            f"{model.opset}")

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        stats: dict[str, int] = {}
        for op, rewrite, new in (("Conv", self._rewrite, "QLinearConv"),
                                 ("Add", self._rewrite_add, "QLinearAdd"),
                                 ("Sum", self._rewrite_add, "QLinearAdd")):
            for node in list(g.nodes):
                if node.graph is not g or not (is_standard(node) and node.op_type == op):
                    continue
                reason = rewrite(model, node)
                # "kept: <why>" for a Conv (as the other lowering passes), "kept: Add: <why>"
                key = new if reason is None else \
                    f"kept: {reason}" if op == "Conv" else f"kept: {op}: {reason}"
                stats[key] = stats.get(key, 0) + 1
        return PassResult(model, "QLinearConv" in stats or "QLinearAdd" in stats, stats)

    def _quantized_output(self, model: Model, node: Node) -> tuple[Node, Node | None] | str:
        """(the QuantizeLinear reading ``node``'s output, the Relu/Clip in between that its
        saturation computes, or None), or why there is none."""
        g = model.graph
        reader = sole_reader(g, node.outputs[0])
        relu = None
        if reader is not None and is_standard(reader) and reader.op_type in ("Relu", "Clip"):
            relu, reader = reader, sole_reader(g, reader.outputs[0])
        if reader is None or not is_standard(reader) or reader.op_type != "QuantizeLinear":
            return "output not quantized"
        y_s, y_zp = reader.inputs[1], reader.inputs[2] if len(reader.inputs) > 2 else None
        if not _scalar(y_s) or y_zp is None or not _scalar(y_zp):
            return "output scale/zero point not scalar constants"
        if relu is not None and not self._saturation_does(model, relu, y_s, y_zp):
            return f"{relu.op_type} that the saturating cast does not reproduce"
        return reader, relu

    def _rewrite_add(self, model: Model, add: Node) -> str | None:
        """Q(Add(DQ(a), DQ(b))) [Relu/Clip between] -> com.microsoft.QLinearAdd: per-tensor
        scales and zero points, a, b and the output of one 8-bit type."""
        g = model.graph
        if len(add.inputs) != 2:
            return "not two inputs"
        dqs = [_dq(v) for v in add.inputs]
        if any(d is None for d in dqs):
            return "inputs not dequantized"
        found = self._quantized_output(model, add)
        if isinstance(found, str):
            return found
        reader, relu = found
        params = []
        for d in dqs:
            s, zp = d.inputs[1], d.inputs[2] if len(d.inputs) > 2 else None
            if not _scalar(s) or (zp is not None and not _scalar(zp)):
                return "per-channel input quantization"
            params.append((d.inputs[0], s, zp))
        y_s, y_zp = reader.inputs[1], reader.inputs[2]
        # each tensor's type is its zero point's (DequantizeLinear's and QuantizeLinear's rule)
        types = {_const(zp).dtype if zp is not None else
                 (helper.tensor_dtype_to_np_dtype(x.dtype) if x.dtype else None)
                 for x, _, zp in params + [(None, y_s, y_zp)]}
        if len(types) != 1 or types.pop() not in (np.uint8, np.int8):
            return "inputs and output not one 8-bit type"
        inputs = [params[0][0], params[0][1], params[0][2], params[1][0], params[1][1],
                  params[1][2], y_s, y_zp]
        out = g.new_value(reader.outputs[0].name + "_qlinear", reader.outputs[0].type)
        new = Node("QLinearAdd", inputs, [out], domain=ORT_DOMAIN,
                   name=g.unique_name((add.name or "add") + "_qlinear"))
        g.insert_before(add, new)
        if not g.substitute(reader.outputs[0], out):
            g.remove(new)
            return "output cannot be replaced"
        model.use_domain(ORT_DOMAIN)
        g.remove_nodes([reader] + ([relu] if relu is not None else []) + [add])
        self._drop_dead(model, dqs)
        return None

    def _rewrite(self, model: Model, conv: Node) -> str | None:
        g = model.graph
        dqx, dqw = _dq(conv.inputs[0]), _dq(conv.inputs[1])
        b = conv.inputs[2] if len(conv.inputs) > 2 else None
        dqb = _dq(b)
        if dqx is None or dqw is None or (b is not None and dqb is None):
            return "not a QDQ conv"
        x_s, x_zp = dqx.inputs[1], dqx.inputs[2] if len(dqx.inputs) > 2 else None
        if not _scalar(x_s) or (x_zp is not None and not _scalar(x_zp)):
            return "per-channel activation quantization"
        w_q, w_s = dqw.inputs[0], dqw.inputs[1]
        w_zp = dqw.inputs[2] if len(dqw.inputs) > 2 else None
        wq = _const(w_q)
        if wq is None or wq.dtype != np.int8 or _const(w_s) is None:
            return "weights not constant int8"
        if _const(w_s).size > 1 and dqw.attr("axis", 1) not in (0, -wq.ndim):
            return "weight scale not per output channel"
        found = self._quantized_output(model, conv)
        if isinstance(found, str):
            return found
        reader, relu = found
        y_s, y_zp = reader.inputs[1], reader.inputs[2]
        if dqb is not None:
            bq, b_s = _const(dqb.inputs[0]), dqb.inputs[1]
            expected = float(_const(x_s).reshape(())) * _const(w_s).astype(np.float64)
            scale = _const(b_s)
            if scale is None:  # written as Mul(x_scale, w_scale) by the quantize pass
                p = b_s.producer()
                if p is None or p.op_type != "Mul" or {i.name for i in p.inputs} != \
                        {x_s.name, w_s.name}:
                    return "bias scale is not x_scale * w_scale"
            elif not np.allclose(scale.astype(np.float64).reshape(-1),
                                 expected.reshape(-1), rtol=1e-6):
                return "bias scale is not x_scale * w_scale"
            if bq is None or bq.dtype != np.int32:
                return "bias not constant int32"
        if x_zp is None:
            x_zp = g.add_initializer(g.unique_name("qlinear_x_zero_point"),
                                     np.zeros((), _const(dqx.inputs[0]).dtype
                                              if _const(dqx.inputs[0]) is not None
                                              else np.uint8))
        if w_zp is None:
            w_zp = g.add_initializer(g.unique_name(f"{w_q.name}_zero_point"),
                                     np.zeros(_const(w_s).shape, np.int8))
        inputs = [dqx.inputs[0], x_s, x_zp, w_q, w_s, w_zp, y_s, y_zp]
        if dqb is not None:
            inputs.append(dqb.inputs[0])
        attrs = {k: conv.attr(k) for k in conv.attributes}
        out = g.new_value(reader.outputs[0].name + "_qlinear", reader.outputs[0].type)
        new = Node("QLinearConv", inputs, [out],
                   name=g.unique_name((conv.name or "conv") + "_qlinear"), attributes=attrs)
        g.insert_before(conv, new)
        if not g.substitute(reader.outputs[0], out):
            g.remove(new)
            return "output cannot be replaced"
        doomed = [reader] + ([relu] if relu is not None else []) + [conv]
        g.remove_nodes(doomed)
        self._drop_dead(model, [dqw, dqb, dqx])
        return None

    @staticmethod
    def _saturation_does(model: Model, act: Node, y_s: Value, y_zp: Value) -> bool:
        """Does QuantizeLinear's saturation alone compute ``act`` (Relu, or Clip(0, hi))?
        Its range is [(qmin - zp) s, (qmax - zp) s]: the bottom must be 0, and a Clip's top
        must not cut inside it."""
        zp = _const(y_zp)
        info = np.iinfo(zp.dtype)
        if int(zp.reshape(())) != info.min:
            return False
        if act.op_type == "Relu":
            return True
        if model.opset < 11:
            lo, hi = act.attr("min", -np.inf), act.attr("max", np.inf)
        else:
            given = (list(act.inputs[1:]) + [None, None])[:2]
            bounds = [_const(v) for v in given]
            if any(b is None and v is not None for b, v in zip(bounds, given)):
                return False  # non-constant bounds
            lo = -np.inf if bounds[0] is None else float(bounds[0].reshape(()))
            hi = np.inf if bounds[1] is None else float(bounds[1].reshape(()))
        top = (info.max - info.min) * float(_const(y_s).reshape(()))
        return lo == 0.0 and hi >= top * (1 - 1e-6)

    @staticmethod
    def _drop_dead(model: Model, nodes: list[Node | None]) -> None:
        g = model.graph
        consts = []
        for n in nodes:
            if n is None or n.graph is not g or any(o.uses() or g.is_output(o)
                                                    for o in n.outputs):
                continue
            inputs = [v for v in n.inputs if v is not None]  # removing n detaches them
            consts += inputs
            g.remove(n)
            for v in inputs:  # a bias scale's Mul
                p = v.producer()
                if p is not None and p.op_type == "Mul" and not any(
                        o.uses() or g.is_output(o) for o in p.outputs):
                    consts += [i for i in p.inputs if i is not None]
                    g.remove(p)
        drop_unused_constants(g, consts)

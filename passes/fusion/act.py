"""fuse-act: recognise activations (including the decomposed HardSwish and SiLU patterns) and
fuse them into the Conv / Gemm before them, in the form the target runtime executes.

Recognised activations of a value x:
  Relu(x), Clip(x, lo, hi) with constant bounds (ReLU6 is Clip 0..6), LeakyRelu, Sigmoid,
  HardSigmoid, HardSwish, Tanh;
  x * HardSigmoid(x) with alpha 1/6, beta 0.5            -> HardSwish
  x * Clip(x + 3, 0, 6) / 6  (Div by 6 or Mul by 1/6)     -> HardSwish
  x * Sigmoid(x)                                          -> SiLU

``target`` picks what is written:
* ``onnx`` (default): standard ops only. Decomposed HardSwish becomes the HardSwish op (opset
  >= 14) and x * Sigmoid(x) the Swish op (opset >= 24); a Conv followed by its activation stays
  two standard nodes (ONNX has no fused conv).
* ``ort``: Conv + Relu/Clip/LeakyRelu/Sigmoid/HardSigmoid/Tanh become com.microsoft.FusedConv
  (what onnxruntime's CPU provider executes); other pairs are written as for ``onnx``.
* ``optc``: Conv, ConvTranspose or Gemm + any recognised activation becomes ai.optc.FusedConv /
  FusedConvTranspose / FusedGemm, which optc.runtime runs as one kernel (onnxruntime cannot
  load them). A Conv whose output is added to another value (Add or two-input Sum: a
  residual connection), with or without an activation after the Add, becomes FusedConv with
  that value as its fourth input Z, act(conv + B + Z) -- com.microsoft.FusedConv's "sum" --
  placed where the Add was (Z may be computed after the Conv). A per-channel Mul and/or Add by
  constants on a 4-D value (an unfolded BatchNormalization, as before DenseNet's convs), with
  or without an activation after it, becomes FusedConv as a 1x1 depthwise conv (weight: the
  scale, bias: the shift), which optc.runtime runs in one vectorised pass; where a per-tensor
  8-bit QuantizeLinear (constant float32 scale and zero point) alone reads the result, the
  Mul/Add, the activation and the QuantizeLinear become one ai.optc QuantizeAffine (a quantized
  model's unfolded BatchNormalization: one pass over the float tensor instead of four).
Fires only when the layer's output is read by the activation alone (for the decomposed
patterns: by the pattern's own nodes alone) and is not a graph output.
The fused form is written by this pass itself (the IR holds the target's form, so what is
printed with --print-ir-after is what is saved).
Not handled: ConvTranspose/Gemm + activation for ``ort`` (left as two nodes: onnxruntime's CPU
provider has no such fused op); non-constant Clip bounds; the decomposed patterns applied
directly to a graph input (there is no node to anchor them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from onnx import TensorProto

from optc.ir import Graph, Model, Node, Value, infer_shapes
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes._common import const_input, drop_unused_constants, is_standard, sweep
from optc.passes.channels import per_channel, sole_reader
from optc.runtime.activations import ORT_ACTIVATIONS
from optc.runtime.registry import OPTC_DOMAIN, ORT_DOMAIN

_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
_CONV_T_ATTRS = _CONV_ATTRS + ("output_padding", "output_shape")
_GEMM_ATTRS = ("alpha", "beta", "transA", "transB")


@dataclass
class Activation:
    kind: str  # Relu, Clip, LeakyRelu, Sigmoid, HardSigmoid, HardSwish, Tanh, SiLU
    params: list[float]
    nodes: list[Node]  # the nodes that compute it (to be removed when fused)
    output: Value  # its result


def _scalar(g: Graph, node: Node, index: int) -> float | None:
    v = const_input(g, node, index)
    if v is None or v.size != 1:
        return None
    return float(v.reshape(-1)[0])


def _variable_operand(g: Graph, node: Node) -> Value | None:
    """The non-constant operand of a binary node whose other operand is a constant."""
    if len(node.inputs) != 2 or any(v is None for v in node.inputs):
        return None
    a, b = node.inputs
    if g.is_constant(b) and not g.is_constant(a):
        return a
    if g.is_constant(a) and not g.is_constant(b):
        return b
    return None


def _other(node: Node, x: Value) -> Value | None:
    a, b = node.inputs[:2]
    return b if a is x else a if b is x else None


def match_activation(model: Model, x: Value) -> Activation | None:
    """The activation applied to ``x`` by the nodes reading it, if they form one."""
    g = model.graph
    readers = [u for u, _ in x.uses()]
    if not readers or g.is_output(x):
        return None
    if len(set(readers)) == 1:
        n = readers[0]
        if not is_standard(n) or len(n.outputs) != 1:
            return None
        if n.op_type in ("Relu", "Sigmoid", "Tanh", "HardSwish"):
            return Activation(n.op_type, [], [n], n.outputs[0])
        if n.op_type == "LeakyRelu":
            return Activation("LeakyRelu", [float(n.attr("alpha", 0.01))], [n], n.outputs[0])
        if n.op_type == "HardSigmoid":
            return Activation("HardSigmoid", [float(n.attr("alpha", 0.2)),
                                              float(n.attr("beta", 0.5))], [n], n.outputs[0])
        if n.op_type == "Clip":
            bounds = _clip_bounds(model, n)
            if bounds is not None:
                return Activation("Clip", list(bounds), [n], n.outputs[0])
        return None
    return _match_pattern(model, x, readers)


def _clip_bounds(model: Model, n: Node) -> tuple[float, float] | None:
    g = model.graph
    if model.opset < 11:
        return float(n.attr("min", -3.4028234663852886e38)), \
            float(n.attr("max", 3.4028234663852886e38))
    lo = hi = None
    if len(n.inputs) > 1 and n.inputs[1] is not None:
        lo = _scalar(g, n, 1)
        if lo is None:
            return None
    if len(n.inputs) > 2 and n.inputs[2] is not None:
        hi = _scalar(g, n, 2)
        if hi is None:
            return None
    return (-3.4028234663852886e38 if lo is None else lo,
            3.4028234663852886e38 if hi is None else hi)


def _match_pattern(model: Model, x: Value, readers: list[Node]) -> Activation | None:
    """x * HardSigmoid(x), x * Sigmoid(x), x * Clip(x + 3, 0, 6) / 6."""
    g = model.graph
    muls = [n for n in readers if n.op_type == "Mul" and is_standard(n)]
    others = [n for n in readers if n not in muls]
    if len(readers) != 2 or len(muls) != 1 or len(others) != 1:
        return None
    mul, gate = muls[0], others[0]
    if not is_standard(gate):
        return None
    if gate.op_type in ("Sigmoid", "HardSigmoid"):
        if _other(mul, x) is not gate.outputs[0] or sole_reader(g, gate.outputs[0]) is not mul:
            return None
        if gate.op_type == "Sigmoid":
            return Activation("SiLU", [], [gate, mul], mul.outputs[0])
        if np.isclose(gate.attr("alpha", 0.2), 1 / 6) and np.isclose(gate.attr("beta", 0.5), 0.5):
            return Activation("HardSwish", [], [gate, mul], mul.outputs[0])
        return None
    if gate.op_type == "Add" and _other(gate, x) is not None and \
            np.isclose(_scalar(g, gate, 1 if gate.inputs[0] is x else 0) or 0.0, 3.0):
        clip = sole_reader(g, gate.outputs[0])
        if clip is None or clip.op_type != "Clip" or _clip_bounds(model, clip) is None:
            return None
        if not np.allclose(_clip_bounds(model, clip), (0.0, 6.0)):
            return None
        # x * Clip(...): the Mul reads the Clip's output, then / 6 or * (1/6)
        if _other(mul, x) is not clip.outputs[0]:
            return None
        post = sole_reader(g, mul.outputs[0])
        if post is None or not is_standard(post):
            return None
        k = _scalar(g, post, 1) if post.inputs[0] is mul.outputs[0] else None
        if k is None or not ((post.op_type == "Div" and np.isclose(k, 6.0)) or
                             (post.op_type == "Mul" and np.isclose(k, 1 / 6))):
            return None
        return Activation("HardSwish", [], [gate, clip, mul, post], post.outputs[0])
    return None


@register
@dataclass(frozen=True)
class FuseActivation(Pass):
    """Fuse Conv/Gemm + activation for a target runtime; rewrite decomposed HardSwish/SiLU."""

    name: ClassVar[str] = "fuse-act"
    target: Literal["onnx", "ort", "optc"] = field(default="onnx", metadata={
        "help": "onnx: standard ops only; ort: com.microsoft.FusedConv; optc: ai.optc fused ops"})

    def __post_init__(self) -> None:
        if self.target not in ("onnx", "ort", "optc"):
            raise ValueError(f"target must be onnx, ort or optc, not '{self.target}'")

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        stats: dict[str, int] = {}
        if self.target == "optc":
            infer_shapes(model)  # the channel-affine fusion needs x's shape

        def visit(node: Node) -> str | None:
            if not is_standard(node) or not node.outputs or node.outputs[0] is None:
                return None
            if self.target == "optc" and node.op_type == "Conv":
                fused = self._fuse_residual(model, node)
                if fused is not None:
                    return fused
            if self.target == "optc" and node.op_type in ("Mul", "Add"):
                return self._fuse_affine(model, node)
            act = match_activation(model, node.outputs[0])
            if act is not None and self._fuse(model, node, act):
                return f"{node.op_type}+{act.kind}"  # a rewritten pattern can feed another one
            return None

        sweep(g, visit, stats)
        return PassResult(model, bool(stats), stats)

    def _fuse(self, model: Model, layer: Node, act: Activation) -> bool:
        g = model.graph
        layer_type = layer.op_type
        fusable = layer_type == "Conv" and (self.target == "optc" or
                                            (self.target == "ort" and
                                             act.kind in ORT_ACTIVATIONS))
        fusable |= layer_type in ("Gemm", "ConvTranspose") and self.target == "optc"
        if fusable and g.can_substitute(act.output, layer.outputs[0]):
            domain = OPTC_DOMAIN if self.target == "optc" else ORT_DOMAIN
            op, keep = {"Conv": ("FusedConv", _CONV_ATTRS),
                        "ConvTranspose": ("FusedConvTranspose", _CONV_T_ATTRS),
                        "Gemm": ("FusedGemm", _GEMM_ATTRS)}[layer_type]
            attrs = {k: layer.attr(k) for k in keep if k in layer.attributes}
            attrs.update(_activation_attrs(act))
            out = g.new_value(layer.outputs[0].name + "_fused", act.output.type)
            fused = Node(op, list(layer.inputs), [out], domain=domain,
                         name=g.unique_name((layer.name or op) + "_" + act.kind.lower()),
                         attributes=attrs)
            g.insert_before(layer, fused)
            self._replace(model, act, out, [layer])
            model.use_domain(domain)
            return True
        # standard form: only decomposed patterns need rewriting
        if len(act.nodes) == 1:
            return False
        x = layer.outputs[0]
        if act.kind == "HardSwish" and model.opset >= 14:
            new = Node("HardSwish", [x], [g.new_value(x.name + "_hswish", act.output.type)],
                       name=g.unique_name("HardSwish"))
        elif act.kind == "SiLU" and model.opset >= 24:
            new = Node("Swish", [x], [g.new_value(x.name + "_swish", act.output.type)],
                       name=g.unique_name("Swish"))
        else:
            return False
        g.insert_after(layer, new)
        if not g.can_substitute(act.output, new.outputs[0]):
            g.remove(new)
            return False
        self._replace(model, act, new.outputs[0], [])
        return True

    def _fuse_residual(self, model: Model, conv: Node) -> str | None:
        """Conv -> Add(., Z) [-> activation] as FusedConv(X, W, B, Z); None if no match."""
        g = model.graph
        y = conv.outputs[0]
        add = sole_reader(g, y)
        if add is None or not is_standard(add) or add.op_type not in ("Add", "Sum") or \
                len(add.inputs) != 2 or len(add.outputs) != 1:
            return None
        z = _other(add, y)
        if z is None or z is y:
            return None
        act = match_activation(model, add.outputs[0])
        attrs = {k: conv.attr(k) for k in _CONV_ATTRS if k in conv.attributes}
        inputs = list(conv.inputs) + [None] * (3 - len(conv.inputs))
        name = (conv.name or "FusedConv") + "_add" + (f"_{act.kind.lower()}" if act else "")
        if not _put_fused_conv(model, inputs[:3] + [z], attrs, act, add.outputs[0], name,
                               [conv, add], before=add):
            return None
        return "Conv+Add" + (f"+{act.kind}" if act is not None else "")

    def _fuse_affine(self, model: Model, first: Node) -> str | None:
        """Mul(x, s) [-> Add(., b)] or Add(x, b), s and b constants per channel of a 4-D x,
        [-> activation] as a 1x1 depthwise FusedConv; None if no match (a lone Mul or Add
        without an activation is left alone: nothing to save)."""
        g = model.graph
        x = _variable_operand(g, first)
        shape = x.shape if x is not None else None
        if shape is None or len(shape) != 4 or not isinstance(shape[1], int) or \
                x.dtype != first.outputs[0].dtype:
            return None
        c = shape[1]
        nodes, scale, shift, y = [first], None, None, first.outputs[0]
        const = _other(first, x)
        if first.op_type == "Mul":
            scale = per_channel(g, const, c, 4)
            nxt = sole_reader(g, y)
            if nxt is not None and is_standard(nxt) and nxt.op_type == "Add" and \
                    len(nxt.inputs) == 2 and _variable_operand(g, nxt) is y:
                shift = per_channel(g, _other(nxt, y), c, 4)
                if shift is not None:
                    nodes.append(nxt)
                    y = nxt.outputs[0]
        else:
            shift = per_channel(g, const, c, 4)
        if (scale is None and shift is None) or y.shape is None or \
                tuple(y.shape) != tuple(shape):
            return None  # not per channel, or it broadcasts x to a larger shape
        act = match_activation(model, y)
        dtype = np.result_type(*(v.const_value.dtype for n in nodes for v in n.inputs
                                 if v is not None and g.is_constant(v)))
        quantize = _quantized_by(model, act.output if act is not None else y)
        if quantize is not None and x.dtype == TensorProto.FLOAT and dtype == np.float32:
            return self._fuse_affine_quantize(model, first, x, nodes, scale, shift, act,
                                              quantize)
        if act is None and len(nodes) == 1:
            return None
        w = np.ones(c, dtype) if scale is None else scale.astype(dtype)
        inputs = [x, g.add_initializer(g.unique_name(f"{first.name or 'affine'}_scale"),
                                       w.reshape(c, 1, 1, 1))]
        if shift is not None:
            inputs.append(g.add_initializer(g.unique_name(f"{first.name or 'affine'}_shift"),
                                            shift.astype(dtype)))
        if not _put_fused_conv(model, inputs, {"group": c, "kernel_shape": [1, 1]}, act, y,
                               (first.name or "affine") + "_affine", nodes, before=first):
            drop_unused_constants(g, inputs[1:])
            return None
        return "+".join(n.op_type for n in nodes) + (f"+{act.kind}" if act else "")

    def _fuse_affine_quantize(self, model: Model, first: Node, x: Value, nodes: list[Node],
                              scale, shift, act: Activation | None, quantize: Node) -> str | None:
        """The per-channel Mul/Add ``nodes`` of x [-> act] -> ``quantize`` as one
        ai.optc QuantizeAffine; None (nothing changed) where its output cannot stand in."""
        g = model.graph
        c = x.shape[1]
        name = first.name or "affine"
        scale = np.ones(c, np.float32) if scale is None else scale
        shift = np.zeros(c, np.float32) if shift is None else shift
        inputs = [x, g.add_initializer(g.unique_name(f"{name}_scale"), scale),
                  g.add_initializer(g.unique_name(f"{name}_shift"), shift),
                  quantize.inputs[1], quantize.inputs[2]]
        doomed = nodes + (act.nodes if act is not None else []) + [quantize]
        if not _put_fused(model, "QuantizeAffine", inputs, _activation_attrs(act),
                          quantize.outputs[0], name + "_quantize", doomed, before=first):
            drop_unused_constants(g, inputs[1:3])
            return None
        return "+".join(n.op_type for n in nodes) + (f"+{act.kind}" if act else "") + \
            "+QuantizeLinear"

    def _replace(self, model: Model, act: Activation, out: Value, extra: list[Node]) -> None:
        g = model.graph
        g.substitute(act.output, out)
        doomed = act.nodes + extra
        inputs = [v for n in doomed for v in n.inputs if v is not None]
        g.remove_nodes(doomed)
        drop_unused_constants(g, inputs)


def _quantized_by(model: Model, y: Value) -> Node | None:
    """The QuantizeLinear that alone reads ``y``, if it quantizes per tensor to 8 bits with a
    constant float32 scale and zero point (what ai.optc QuantizeAffine computes); else None."""
    g = model.graph
    q = sole_reader(g, y)
    if q is None or not is_standard(q) or q.op_type != "QuantizeLinear" or \
            len(q.inputs) != 3 or q.inputs[0] is not y or len(q.outputs) != 1:
        return None
    if any(k in q.attributes for k in ("block_size", "output_dtype", "precision")) or \
            q.attr("saturate", 1) != 1:
        return None
    scale, zp = (q.inputs[1].const_value if g.is_constant(q.inputs[1]) else None,
                 q.inputs[2].const_value if g.is_constant(q.inputs[2]) else None)
    if scale is None or zp is None or scale.size != 1 or zp.size != 1 or \
            scale.dtype != np.float32 or zp.dtype not in (np.uint8, np.int8):
        return None
    return q


def _activation_attrs(act: Activation | None) -> dict:
    """The fused ops' ``activation`` / ``activation_params`` attributes for ``act``."""
    if act is None:
        return {}
    attrs = {"activation": act.kind}
    if act.params:
        attrs["activation_params"] = [float(p) for p in act.params]
    return attrs


def _put_fused_conv(model: Model, inputs: list, attrs: dict, act: Activation | None,
                    y: Value, name: str, replaced: list[Node], before: Node) -> bool:
    """An ai.optc FusedConv of ``inputs`` standing, with ``act`` fused, for ``y`` (or act's
    output) in place of the ``replaced`` nodes and act's own, inserted before ``before``;
    False (nothing changed) when that value cannot be substituted."""
    return _put_fused(model, "FusedConv", inputs, {**attrs, **_activation_attrs(act)},
                      act.output if act is not None else y, name,
                      replaced + (act.nodes if act is not None else []), before)


def _put_fused(model: Model, op: str, inputs: list, attrs: dict, result: Value, name: str,
               doomed: list[Node], before: Node) -> bool:
    """An ai.optc ``op`` of ``inputs`` standing for ``result`` in place of the ``doomed``
    nodes, inserted before ``before``; False (nothing changed) when ``result`` cannot be
    substituted."""
    g = model.graph
    out = g.new_value(result.name + "_fused", result.type)
    fused = Node(op, inputs, [out], domain=OPTC_DOMAIN, name=g.unique_name(name),
                 attributes=attrs)
    g.insert_before(before, fused)
    if not g.can_substitute(result, out):
        g.remove(fused)
        return False
    g.substitute(result, out)
    old = [v for n in doomed for v in n.inputs if v is not None]
    g.remove_nodes(doomed)
    drop_unused_constants(g, old)
    model.use_domain(OPTC_DOMAIN)
    return True



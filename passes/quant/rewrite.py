"""The QDQ rewrite of quantize, and the weight-only and dynamic rewrites: deterministic graph
edits from decided parameters (a plan, plan.py), no measuring.

``QDQRewrite(model, layers, params, ...)`` writes, for each chosen layer: its int8 weight
behind a DequantizeLinear, its int32 bias (scale computed in the graph as s_x * s_w), and one
Q -> DQ pair per activation tensor, shared by every reader; a tensor that a pass-through op
makes from a quantized one inherits that one's scale, Concat inputs take the Concat output's
scale, and a Relu / Clip that the saturating cast reproduces exactly is removed. The
activation scales and zero points and the bias corrections come from ``params`` (a
``Params``): during a decision, computed from the calibration observers as they are asked
for; on replay, read from the plan.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from onnx import TensorProto

from optc.errors import OptcError
from optc.ir import Model, Node, Value
from optc.passes._common import drop_unused_constants, is_standard
from optc.passes.channels import out_axis
from optc.passes.quant import dynamic
from optc.passes.quant.plan import ActivationParams, QuantPlan
from optc.passes.quant.selection import PASS_THROUGH, Layers, activation_after


#: below this a threshold counts as zero: its scale (t / 255) and the bias scales made from it
#: (s_x * s_w) would be subnormal in float32
_TINY = 1e-20


def activation_params(t: float, lo: float, hi: float, *, symmetric: bool = True,
                      signed: bool = False) -> tuple[float, int]:
    """(scale, zero point) of an activation with clipping threshold ``t`` and observed range
    [lo, hi], for uint8 (or int8 when ``signed``); zero is exactly representable in every case.
    Symmetric: a non-negative tensor maps [0, t] onto the 256 levels, a signed one [-t, t]
    onto 255 of them (zero point 128, or 0 for int8). Asymmetric: [max(lo, -t), min(hi, t)]
    (widened to contain 0) onto the 256 levels, zero point rounded."""
    offset = -128 if signed else 0  # int8 levels are the uint8 ones shifted down by 128
    if not (np.isfinite(t) and np.isfinite(lo) and np.isfinite(hi)):
        raise OptcError(f"activation range is not finite (threshold {t}, range [{lo}, {hi}])")
    if t <= _TINY:  # an all-zero tensor (or one so close that its scale would underflow)
        return 1.0, offset if lo >= 0 else 128 + offset
    if symmetric:
        if lo >= 0:
            return t / 255.0, offset
        return t / 127.0, 128 + offset
    low, high = min(max(lo, -t), 0.0), max(min(hi, t), 0.0)
    scale = (high - low) / 255.0
    if scale <= 0:
        return 1.0, offset
    return scale, int(np.clip(np.round(-low / scale), 0, 255)) + offset


def quantized_weight(layer: Node, *, per_channel: bool = True, reduce_range: bool = False
                     ) -> tuple[int, np.ndarray, np.ndarray]:
    """(output-channel axis, int8 weight, its symmetric scales) of a layer: s_w[c] =
    max |W[c]| / 127 (63 with ``reduce_range``), one scale per tensor without
    ``per_channel``."""
    weight = layer.inputs[1].const_value
    axis = out_axis(layer)
    top = 63 if reduce_range else 127
    if per_channel:
        other = tuple(i for i in range(weight.ndim) if i != axis)
        peak = np.abs(weight).max(axis=other)
    else:
        peak = np.array([np.abs(weight).max()])
    if not np.all(np.isfinite(peak)):
        raise OptcError(f"node '{layer.name}' ({layer.op_type}): its weight "
                        f"'{layer.inputs[1].name}' holds NaN or Inf")
    # an all-zero (or subnormal) channel gets scale 1/top: its levels are all 0 either way
    s_w = (np.where(peak > _TINY, peak, 1.0) / float(top)).astype(np.float32)
    shape = [1] * weight.ndim
    shape[axis] = -1
    wq = np.clip(np.round(weight / s_w.reshape(shape)), -top, top).astype(np.int8)
    return axis, wq, s_w


def dequantized_constant(model: Model, layer: Node, base: str, q: np.ndarray,
                         scale: np.ndarray, axis: int, scale_value: Value | None = None
                         ) -> Value:
    """A DequantizeLinear of the constant ``q`` with ``scale`` (per ``axis`` when it has
    several), inserted before ``layer``; its output."""
    g = model.graph
    qv = g.add_initializer(base, q)
    sv = scale_value or g.add_initializer("scale", scale.reshape(-1)
                                          if scale.size > 1 else scale.reshape(()))
    out = g.new_value("dq")  # untyped: see QDQRewrite.activation
    attrs = {"axis": axis} if scale.size > 1 else {}
    # symmetric: the zero point is 0, which is DequantizeLinear's default (no initializer)
    dq = Node("DequantizeLinear", [qv, sv], [out], name=g.unique_name("DQ"),
              attributes=attrs)
    g.insert_before(layer, dq)
    return out


def weight_rewrite(model: Model, layers: list[Node], mode: str, *, per_channel: bool,
                   reduce_range: bool) -> None:
    """mode=weight-only: each layer reads its weight as int8 through a DequantizeLinear;
    mode=dynamic: MatMul/Gemm become the run-time quantized chain (dynamic.py)."""
    g = model.graph
    replaced = [n.inputs[1] for n in layers]
    for n in layers:
        axis, wq, s_w = quantized_weight(n, per_channel=per_channel, reduce_range=reduce_range)
        if mode == "weight-only":
            n.replace_input(1, dequantized_constant(model, n, n.inputs[1].name + "_q", wq, s_w,
                                                    axis))
        else:
            dynamic.rewrite(g, n, wq, s_w)
    drop_unused_constants(g, replaced)


class Params(Protocol):
    """Where the rewrite gets its decided numbers from."""

    def has(self, name: str) -> bool:
        """Can ``activation`` give parameters for tensor ``name``?"""

    def activation(self, name: str) -> ActivationParams:
        """Scale and zero point of tensor ``name`` (OptcError when there are none)."""

    def bias_shift(self, layer: Node, w_name: str, x_name: str, weight: np.ndarray,
                   wq: np.ndarray, s_w: np.ndarray, axis: int) -> np.ndarray | None:
        """The bias correction of ``layer``, whose float weight is ``w_name`` (which keys
        it), or None."""


class Planned:
    """Params read from a plan (a replay)."""

    def __init__(self, plan: QuantPlan, source: str = "the quantization plan"):
        self.plan, self.source = plan, source

    def has(self, name: str) -> bool:
        return name in self.plan.activations

    def activation(self, name: str) -> ActivationParams:
        a = self.plan.activations.get(name)
        if a is None:
            raise OptcError(f"{self.source} has no scale for tensor '{name}' (a plan made "
                            f"for another model?)")
        return a

    def bias_shift(self, layer, w_name, x_name, weight, wq, s_w, axis):
        return self.plan.bias_shifts.get(w_name)


class QDQRewrite:
    """One QDQ rewrite of ``layers`` (graph order) in ``model``. ``activations`` records
    every quantized tensor: name -> (threshold or None when inherited, scale, zero point)."""

    def __init__(self, model: Model, layers: list[Node], params: Params, *,
                 activation_type: str = "uint8", per_channel: bool = True,
                 reduce_range: bool = False):
        self.model, self.layers, self.params = model, layers, params
        self.signed = activation_type == "int8"
        self.per_channel, self.reduce_range = per_channel, reduce_range
        self.chosen = Layers(model.graph, layers)
        # tensor -> (its DQ output, scale); the DQ output maps to itself, for the next layer
        self._qdq: dict[Value, tuple[Value, float]] = {}
        self._zero: dict[Value, int] = {}  # DQ output -> zero point
        self._zero_values: dict[int, Value] = {}  # zero point -> its shared initializer
        self._float_names: dict[Value, str] = {}  # DQ output -> name of the float tensor
        self.activations: dict[str, tuple[float | None, float, int]] = {}

    def run(self) -> None:
        for layer in self.layers:
            self._quantize_layer(layer)

    def _quantize_layer(self, layer: Node) -> None:
        model, g = self.model, self.model.graph
        x, w = layer.inputs[0], layer.inputs[1]
        x_name = self._float_names.get(x, x.name)  # the observed name of the input
        dq_x, s_x = self.activation(x)
        layer.replace_input(0, dq_x)
        axis, wq, s_w = quantized_weight(layer, per_channel=self.per_channel,
                                         reduce_range=self.reduce_range)
        weight = w.const_value
        b = layer.inputs[2] if len(layer.inputs) > 2 else None
        shift = self.params.bias_shift(layer, w.name, x_name, weight, wq, s_w, axis)
        if b is not None and g.is_constant(b) and b.const_value.ndim == 1 and \
                b.const_value.shape[0] == wq.shape[axis]:
            # an int32 bias of scale s_x * s_w must hold the bias: where it cannot (a tiny
            # input scale, a huge bias) that channel's weight scale grows until it does, as
            # onnxruntime's quantizer does, rather than writing an overflowed or NaN bias
            total = b.const_value.astype(np.float64) + (shift if shift is not None else 0.0)
            need = np.abs(total) / (float(s_x) * (2**31 - 1) * 0.999)
            if np.any(need > s_w):
                top = 63 if self.reduce_range else 127
                s_w = np.maximum(s_w, need).astype(np.float32)
                shape = [1] * weight.ndim
                shape[axis] = -1
                wq = np.clip(np.round(weight / s_w.reshape(shape)), -top, top).astype(np.int8)
                shift = self.params.bias_shift(layer, w.name, x_name, weight, wq, s_w, axis)
        layer.replace_input(1, dequantized_constant(model, layer, w.name + "_q", wq, s_w, axis))
        drop_unused_constants(g, [w])
        if shift is not None and b is None and layer.op_type in ("Conv", "Gemm"):
            b = g.add_initializer(w.name + "_bias", np.zeros(wq.shape[axis], np.float32))
            layer.set_inputs([*layer.inputs[:2], b])
        if b is not None and g.is_constant(b) and b.const_value.ndim == 1 and \
                b.const_value.shape[0] == wq.shape[axis]:
            bias = b.const_value
            if shift is not None:
                bias = (bias.astype(np.float64) + shift).astype(np.float32)
            s_b = (np.float32(s_x) * s_w).astype(np.float32)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(s_b > 0, bias / s_b, 0.0)
            bq = np.clip(np.round(ratio), -2**31, 2**31 - 1).astype(np.int32)
            # the bias scale is s_x * s_w by definition: computed in the graph from the two
            # scales rather than stored a third time (onnxruntime folds the Mul and still
            # runs the layer as QLinearConv / QGemm)
            x_scale, w_scale = dq_x.producer().inputs[1], layer.inputs[1].producer().inputs[1]
            s_bv = g.new_value("bias_scale", None)
            g.insert_before(layer, Node("Mul", [x_scale, w_scale], [s_bv],
                                        name=g.unique_name("bias_scale")))
            layer.replace_input(2, dequantized_constant(model, layer, "bias", bq, s_b, 0, s_bv))
            drop_unused_constants(g, [b])
        # the output, after the Relu/Clip that follows it if any
        y = (activation_after(g, layer) or layer).outputs[0]
        if y.uses() and self.chosen.int8_output(layer):
            self.activation(y)

    def activation(self, x: Value) -> tuple[Value, float]:
        """The DequantizeLinear output standing for ``x`` (made once per tensor) and its
        scale; every reader of ``x`` is moved onto it (onnxruntime then runs a residual Add
        whose inputs are all DequantizeLinear outputs in int8 too)."""
        cached = self._qdq.get(x)
        if cached is not None:
            return cached
        g = self.model.graph
        inherited = self._pass_through_params(x)
        t = None
        if inherited is not None:
            scale, zero = inherited
        else:
            # a Concat input takes the Concat output's range: every input then shares one
            # scale and the Concat needs no requantization (its output inherits it)
            a = self.params.activation(self._concat_output_name(x) or x.name)
            t, scale, zero = a.threshold, a.scale, a.zero_point
        self.activations[x.name] = (t, float(scale), zero)
        readers = x.uses()
        sv = g.add_initializer("scale", np.array(scale, np.float32))
        dtype, elem = ((np.int8, TensorProto.INT8) if self.signed
                       else (np.uint8, TensorProto.UINT8))
        zv = self._zero_values.get(zero)
        if zv is None:  # one initializer per zero point, shared by every activation
            zv = self._zero_values[zero] = g.add_initializer(
                f"zp_{np.dtype(dtype).name}_{zero}".replace("-", "m"), np.array(zero, dtype))
        # the Q/DQ outputs are left untyped: their type follows from their input, so they need
        # no value_info in the file (on a small model those were a hundredth of its size);
        # shape inference types them again whenever a later pass asks
        q = g.new_value("q")
        dq = g.new_value("dq")
        qn = Node("QuantizeLinear", [x, sv, zv], [q], name=g.unique_name("Q"))
        dqn = Node("DequantizeLinear", [q, sv, zv], [dq], name=g.unique_name("DQ"))
        producer = x.producer()
        if producer is not None:
            g.insert_after(producer, qn)
        else:
            g.insert_before(g.nodes[0], qn)
        g.insert_after(qn, dqn)
        for node, index in readers:
            node.replace_input(index, dq)
        self._drop_saturated_activation(qn, scale, zero, elem)
        self._qdq[x] = self._qdq[dq] = (dq, float(scale))
        self._float_names[dq] = x.name
        self._zero[dq] = zero
        return dq, float(scale)

    def _drop_saturated_activation(self, qn: Node, scale: float, zero: int, elem: int) -> None:
        """Remove the Relu / Clip that makes the input of ``qn`` when the QuantizeLinear
        reproduces it: every level of the quantized range lies inside the activation's range,
        so Q(act(x)) == Q(x) for every x (Q is monotonic and saturates). The activation is then
        the saturating cast itself (onnxruntime would fuse it away; this also keeps it out of
        the file and out of optc.runtime's float path)."""
        g = self.model.graph
        x = qn.inputs[0]
        act = x.producer()
        if act is None or not is_standard(act) or act.op_type not in ("Relu", "Clip") or \
                g.is_output(x) or len(x.uses()) != 1:
            return
        lo, hi = 0.0, np.inf
        if act.op_type == "Clip":
            bounds = []
            for i, default in ((1, -np.inf), (2, np.inf)):
                v = act.inputs[i] if len(act.inputs) > i else None
                if v is None:
                    bounds.append(default)
                elif g.is_constant(v) and v.const_value.size == 1:
                    bounds.append(float(v.const_value.reshape(())))
                else:
                    return
            lo, hi = bounds
        qmin, qmax = (-128, 127) if elem == TensorProto.INT8 else (0, 255)
        s = np.float32(scale)
        # the levels Q gives the bounds themselves, computed as QuantizeLinear computes them
        below = -np.inf if lo == -np.inf else np.round(np.float32(lo) / s) + zero
        above = np.inf if hi == np.inf else np.round(np.float32(hi) / s) + zero
        if below > qmin or above < qmax:
            return
        qn.replace_input(0, act.inputs[0])
        g.remove(act)
        drop_unused_constants(g, [v for v in act.inputs[1:] if v is not None])

    def _pass_through_params(self, x: Value) -> tuple[float, int] | None:
        """(scale, zero point) of x's source when x only moves or selects already quantized
        values (MaxPool, Flatten, Reshape, Transpose, Squeeze, Unsqueeze of a DQ output): the
        same parameters avoid a requantization, and onnxruntime runs such ops in int8."""
        p = x.producer()
        if p is not None and p.op_type == "Concat" and is_standard(p):
            params = {(self._qdq[v][1], self._zero[v]) if v in self._zero else None
                      for v in p.inputs}
            if len(params) == 1 and None not in params:
                return params.pop()
            return None
        while p is not None and p.op_type in PASS_THROUGH and is_standard(p):
            src = p.inputs[0]
            if src in self._zero:
                return self._qdq[src][1], self._zero[src]
            p = src.producer()
        return None

    def _concat_output_name(self, x: Value) -> str | None:
        """The output of a Concat that reads ``x`` whose parameters are known, if any."""
        for node, _ in x.uses():
            if node.op_type == "Concat" and is_standard(node) and \
                    self.params.has(node.outputs[0].name):
                return node.outputs[0].name
        return None

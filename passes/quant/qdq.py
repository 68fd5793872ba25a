"""quantize: calibrated static int8 quantization in QDQ form (QuantizeLinear/DequantizeLinear
pairs that onnxruntime turns into integer kernels).

What it writes, for every Conv / Gemm / MatMul whose weight is a float constant:
* the weight as int8 data with per-output-channel (or per-tensor) symmetric scales,
  s_w[c] = max |W[c]| / 127 (63 with ``reduce-range``), read through a DequantizeLinear (axis =
  the output-channel axis);
* the bias (Conv B, a 1-D Gemm C) as int32 with scale s_x * s_w[c] and zero point 0;
* a Q -> DQ pair on the layer's float input and on its output -- after the Relu / Clip that
  follows it, when one does, so that the activation is the saturating cast of the quantized
  range (the Relu / Clip itself is then removed when every quantized level lies inside its
  range, which makes the removal exact); a Gemm/MatMul output only when another quantized
  layer reads it -- with scales from
  the calibration observers (``method``). Non-negative tensors are uint8 with zero point 0 and
  s = T / 255; signed ones uint8 with zero point 128 and s = T / 127, so that zero is exact in
  both (``activation-type=int8``: the same levels shifted by -128; ``symmetric=false``: the
  range [min, max] clipped to T, with its own zero point; see ``activation_params``). One Q/DQ
  pair per tensor, shared by its readers.
Which layers become int8 is measured, not listed: with ``probe=true`` (the default) each
candidate layer is timed in onnxruntime in float and in int8, Quantize/Dequantize conversions
at float neighbours included, the best set is chosen exactly (a minimum cut, probe.py) and
checked against all-int8 on the whole model; layers that int8 would slow down stay float
(the first conv of an RGB net, some depthwise convs, tiny Gemms). ``probe=false`` quantizes
every candidate. A layer left float carries the reason in its metadata_props
(``optc.quantize.float``), so a second run leaves it alone.
``min-sqnr=DB``: an accuracy budget -- layers go back to float, most sensitive first, until
the output SQNR vs float holds (sensitivity.py).
``mode=dynamic`` (MatMul/Gemm, run-time activation scales, dynamic.py) and
``mode=weight-only`` need no calibration data.
Static mode needs calibration data (``optc optimize --calib DATA``); every mode needs opset >=
13 (per-channel DequantizeLinear). Not lossless: ``--validate`` reports the error instead of
failing. ``--report DIR`` adds a section to DIR/report.md (report.py).
A tensor that a pass-through op (MaxPool, Flatten, Reshape, Transpose, Squeeze, Unsqueeze)
makes from an already quantized one keeps that one's scale and zero point (no requantization).
``bias-correction`` (default on): each layer's bias absorbs the output-mean shift of its
rounded weights (bias_correction.py). Cross-layer equalization is its own lossless pass,
``equalize``, to run before quantize.
Concat inputs share one scale (the Concat output's range), so the Concat output inherits it
and onnxruntime concatenates int8 data without requantizing.
``config=FILE``: per-tensor method / percentile / threshold rules (config.py).
Names: the int8 weight keeps the float weight's name (+ ``_q``); everything else the pass adds
(scales, Q/DQ tensors and nodes, int32 biases) is named compactly (``scale_7``, ``dq_12``):
on a small model, names derived from long exported tensor names were a tenth of the file.
Not handled: shared residual-Add scales (onnxruntime's QLinearAdd rescales anyway, and it
already runs an Add whose inputs are DequantizeLinear outputs in int8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from onnx import TensorProto

from optc.errors import OptcError
from optc.ir import Model, Node, Value, clone, serialize
from optc.pass_base import Pass, PassResult, register
from optc.passes._common import drop_unused_constants, is_standard
from optc.passes.fusion._channels import sole_reader
from optc.passes.quant import dynamic
from optc.passes.quant.calibrate import calibrate
from optc.passes.quant.observers import Observer

_LAYERS = ("Conv", "Gemm", "MatMul")
#: how much faster (fraction of the whole model's time) leaving some layers float must be
WHOLE_MODEL_MARGIN = 0.03
#: metadata_props key on a layer that quantize left float, with the reason
FLOAT_MARK = "optc.quantize.float"
_PASS_THROUGH = ("MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze")


def activation_params(t: float, lo: float, hi: float, *, symmetric: bool = True,
                      signed: bool = False) -> tuple[float, int]:
    """(scale, zero point) of an activation with clipping threshold ``t`` and observed range
    [lo, hi], for uint8 (or int8 when ``signed``); zero is exactly representable in every case.
    Symmetric: a non-negative tensor maps [0, t] onto the 256 levels, a signed one [-t, t]
    onto 255 of them (zero point 128, or 0 for int8). Asymmetric: [max(lo, -t), min(hi, t)]
    (widened to contain 0) onto the 256 levels, zero point rounded."""
    offset = -128 if signed else 0  # int8 levels are the uint8 ones shifted down by 128
    if t <= 0:  # an all-zero tensor
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


@register
@dataclass
class Quantize(Pass):
    """Static int8 quantization (QDQ) of Conv/Gemm/MatMul from calibration data."""

    name: ClassVar[str] = "quantize"
    lossless: ClassVar[bool] = False
    mode: Literal["static", "dynamic", "weight-only"] = field(default="static", metadata={
        "help": "static: calibrated int8 activations; dynamic: MatMul/Gemm activations "
                "quantized at run time (DynamicQuantizeLinear + MatMulInteger), no "
                "calibration; weight-only: int8 weights read through DequantizeLinear"})
    method: Literal["max", "percentile", "mse", "kl", "global"] = field(
        default="percentile", metadata={"help": "how activation thresholds are chosen"})
    percentile: float = field(default=99.99, metadata={"help": "for method=percentile"})
    threshold: float = field(default=0.0, metadata={"help": "for method=global"})
    max_float_weights: float = field(default=0.02, metadata={
        "help": "the probe may leave float only layers holding at most this fraction of the "
                "weight bytes (1 = latency alone decides)"})
    config: str = field(default="", metadata={
        "help": "JSON file of per-tensor method/percentile/threshold rules (config.py)"})
    activation_type: Literal["uint8", "int8"] = field(default="uint8", metadata={
        "help": "activation type (uint8 runs fastest in onnxruntime on x86)"})
    symmetric: bool = field(default=True, metadata={
        "help": "activation ranges symmetric about 0 (or [0, T] for non-negative tensors); "
                "false: asymmetric [min, max] clipped to the threshold, any zero point"})
    per_channel: bool = field(default=True, metadata={"help": "per-channel weight scales"})
    reduce_range: bool = field(default=False, metadata={
        "help": "7-bit weights (|q| <= 63), as onnxruntime's reduce_range: its u8 x s8 kernels "
                "on CPUs without VNNI (AVX2) saturate 16-bit pair sums of full-range weights"})
    probe: bool = field(default=True, metadata={
        "help": "time each layer in onnxruntime; keep float the layers int8 would slow down"})
    batch_size: int = field(default=16, metadata={"help": "calibration batch size"})
    bias_correction: bool = field(default=True, metadata={
        "help": "add (W - W_int8) E[x] to each layer's bias: the output mean stays the float "
                "one (static mode)"})
    min_sqnr: float = field(default=0.0, metadata={
        "help": "error budget in dB: return the most sensitive layers to float until the "
                "output SQNR vs float on the first calibration batch reaches it (0: off)"})

    def __post_init__(self) -> None:
        #: calibration DATA (input name -> samples), set by the pipeline runner from --calib
        self.calibration_data: Any = None
        #: set by the CLI's --report: also measure every layer's sensitivity
        self.collect_report = False
        #: after run(): layer name -> (int8?, why); layer name -> output SQNR (dB) with only
        #: that layer quantized (when measured); the observers; the whole-model SQNR
        self.decisions: dict[str, tuple[bool, str]] = {}
        self.layer_sqnr: dict[str, float] = {}
        self.observers: dict[str, Observer] = {}
        self.model_sqnr: float | None = None
        self.methods_used: dict[str, str] = {}  # activation -> calibration method applied

    def requires(self, model: Model) -> None:
        if self.mode == "static" and self.calibration_data is None:
            raise OptcError("quantize needs calibration data: give it with --calib DATA (a "
                            ".npz keyed by input name, samples along axis 0, or a folder of "
                            ".npy/.npz) or optc.optimize(..., calib=...)")
        if self.config:
            from optc.passes.quant.config import load_rules

            load_rules(self.config)  # a bad file fails before any work
        if model.opset < 13:
            raise OptcError(f"quantize needs opset >= 13 (per-channel DequantizeLinear); the "
                            f"model is opset {model.opset}: convert it first "
                            f"(onnx.version_converter)")

    def run(self, model: Model) -> PassResult:
        g = model.graph
        candidates = [n for n in g.nodes if self._quantizable(model, n)]
        if self.mode == "dynamic":
            candidates = [n for n in candidates if dynamic.supported(n)]
        if not candidates:
            return PassResult(model, False, {"layers": 0})
        if self.mode != "static":
            replaced = [n.inputs[1] for n in candidates]
            for n in candidates:
                axis, wq, s_w = self._quantized_weight(n)
                if self.mode == "weight-only":
                    n.replace_input(1, self._dequantized_constant(
                        model, n, n.inputs[1].name + "_q", wq, s_w, axis))
                else:
                    dynamic.rewrite(g, n, wq, s_w)
            drop_unused_constants(g, replaced)
            return PassResult(model, True, {"layers": len(candidates), "mode": self.mode})
        self._observers = calibrate(model, self.calibration_data, batch_size=self.batch_size)
        self.observers = self._observers
        self._thresholds: dict[str, float] = {}
        self._rules = []
        if self.config:
            from optc.passes.quant.config import load_rules

            self._rules = load_rules(self.config)
        self._shifts: dict[str, np.ndarray | None] = {}  # weight name -> bias correction
        self._layer_ids = {id(n) for n in candidates}
        self.decisions = {n.name: (True, "quantized") for n in candidates}
        layers = candidates
        if self.probe:
            layers = self._probe(model, candidates)
            if len(layers) < len(candidates):
                layers = self._check_whole_model(model, candidates, layers)
        if self.min_sqnr > 0 or self.collect_report:
            layers = self._sensitivity(model, layers)
        self._rewrite(model, layers)
        if self._rules:
            from optc.passes.quant.config import check_all_used

            check_all_used(self._rules, self.config)
        kept = {id(n) for n in layers}
        for n in candidates:  # the reason travels with the model; a second run leaves it float
            if id(n) not in kept:
                n.metadata_props[FLOAT_MARK] = self.decisions[n.name][1]
        stats = {"layers": len(layers), "method": self.method,
                 "float": len(candidates) - len(layers)}
        if self.model_sqnr is not None:
            stats["sqnr_db"] = round(self.model_sqnr, 2)
        return PassResult(model, True, stats)

    def _variant(self, model: Model, layers: list[Node]) -> bytes:
        """A copy of ``model`` with ``layers`` quantized, serialized; ``model`` is untouched."""
        position = {id(n): i for i, n in enumerate(model.graph.nodes)}
        copy = clone(model)  # shares the weights' arrays: no 4x-size copy per variant
        nodes = copy.graph.nodes
        self._rewrite(copy, [nodes[position[id(n)]] for n in layers])
        data = serialize(copy)
        self._rewrite_state()  # drop the copy's values now, not at the next rewrite
        return data

    def _sensitivity(self, model: Model, layers: list[Node]) -> list[Node]:
        """Per-layer SQNR; with ``min_sqnr``, the most sensitive layers back to float."""
        from optc.passes.quant.calibrate import first_batch
        from optc.passes.quant.sensitivity import Evaluator, fall_back, layer_sqnr

        evaluate = Evaluator(serialize(model), first_batch(model, self.calibration_data,
                                                           self.batch_size))
        build = lambda subset: self._variant(model, subset)  # noqa: E731
        sqnr = layer_sqnr(layers, build, evaluate)
        self.layer_sqnr = {n.name: sqnr[id(n)] for n in layers}
        if self.min_sqnr <= 0:
            self.model_sqnr = evaluate(build(layers))
            return layers
        kept, dropped, self.model_sqnr = fall_back(layers, sqnr, self.min_sqnr, build, evaluate)
        for n, after in dropped:
            self.decisions[n.name] = (False, f"back to float for accuracy: {sqnr[id(n)]:.1f} dB "
                                             f"with only this layer int8; the model reached "
                                             f"{after:.1f} dB (budget {self.min_sqnr:g} dB)")
        return kept

    def report_markdown(self, directory) -> str:
        """The quantization section of ``optc optimize --report DIR``'s report.md (plots go
        under DIR/quantize/)."""
        from optc.passes.quant.report import markdown

        return markdown(self, directory)

    def _rewrite(self, model: Model, layers: list[Node]) -> None:
        self._layer_ids = {id(n) for n in layers}
        self._rewrite_state()
        for layer in layers:
            self._quantize_layer(model, layer)

    def _rewrite_state(self) -> None:
        # id(tensor) -> (its DQ output, scale); the DQ output maps to itself, for the next layer
        self._qdq: dict[int, tuple[Value, float]] = {}
        self._zero: dict[int, int] = {}  # id(DQ output) -> zero point
        self._zero_values: dict[int, Value] = {}
        self._float_names: dict[int, str] = {}  # id(DQ output) -> name of the float tensor
        #: activation name -> (threshold or None when inherited, scale, zero point)
        self.activations: dict[str, tuple[float | None, float, int]] = {}

    def _check_whole_model(self, model: Model, candidates: list[Node], chosen: list[Node]
                           ) -> list[Node]:
        """The per-layer probe models onnxruntime's fusions only roughly (e.g. it runs a
        residual Add between int8 layers in int8), so its choice is checked against
        quantizing every candidate on the whole model, both timed in onnxruntime the same
        way, interleaved; the choice is kept only if it is faster by more than
        WHOLE_MODEL_MARGIN (else all-int8: a smaller file for a gain lost in the noise)."""
        from optc.passes.quant.probe import faster
        from optc.validate import ort_session

        variants = [ort_session(self._variant(model, subset), optimize=True, threads=1)
                    for subset in (candidates, chosen)]
        times = faster(variants)
        if times[1] > times[0] * (1 - WHOLE_MODEL_MARGIN):
            for n in candidates:
                ok, why = self.decisions[n.name]
                if not ok:
                    self.decisions[n.name] = (True, why + f"; but the whole model ran faster "
                                                    f"all-int8 ({times[0]:.3f} vs "
                                                    f"{times[1]:.3f} ms)")
            return candidates
        return chosen

    # --- which layers ----------------------------------------------------------------------
    def _quantizable(self, model: Model, n: Node) -> bool:
        g = model.graph
        if not is_standard(n) or n.op_type not in _LAYERS or len(n.inputs) < 2:
            return False
        if FLOAT_MARK in n.metadata_props:
            return False
        x, w = n.inputs[0], n.inputs[1]
        if x is None or w is None or not g.is_constant(w) or g.is_constant(x):
            return False
        if w.const_value.dtype != np.float32:
            return False
        if n.op_type == "Gemm" and (n.attr("transA", 0) or w.const_value.ndim != 2):
            return False
        if n.op_type == "MatMul" and w.const_value.ndim != 2:
            return False
        return True

    def _probe(self, model: Model, candidates: list[Node]) -> list[Node]:
        """The candidates that onnxruntime runs faster in int8 (probe.py)."""
        from optc.passes.quant.probe import Prober, Tensor, choose

        g = model.graph
        prober = Prober(model.opset)
        costs, unmeasured = {}, set()
        # root value id -> (producer layer id or None, root value)
        roots: dict[int, tuple[int | None, Value]] = {}
        for n in candidates:
            act = self._activation_after(g, n)
            y = (act or n).outputs[0]
            roots[id(y)] = (id(n), y)
            source, root = self._source(g, n.inputs[0])
            roots.setdefault(id(root), (source, root))
            xs, ys = self._observers.get(n.inputs[0].name), self._observers.get(y.name)
            if xs is None or ys is None or xs.sample_shape is None or ys.sample_shape is None:
                unmeasured.add(id(n))
                continue
            int8_out = n.op_type == "Conv" or self._feeds_quantized_layer(y)
            costs[id(n)] = prober.cost(n, act, xs.sample_shape, ys.sample_shape, int8_out)
        tensors = []
        for producer, root in roots.values():
            readers = tuple(self._reader_layers(g, root))
            q = max((costs[r].quantize_in_ms for r in readers if r in costs), default=0.0)
            dq = costs[producer].dequantize_out_ms if producer in costs else 0.0
            tensors.append(Tensor(producer, readers, q, dq))
        keep = choose(costs, tensors, unmeasured)
        # the size budget: float weights cost 4x the bytes; while the layers left float hold
        # more than max-float-weights of the weight bytes, the one that buys the least time per
        # byte goes int8 (forced) and the choice is made again around it
        weight_bytes = {id(n): n.inputs[1].const_value.nbytes for n in candidates}
        budget = self.max_float_weights * sum(weight_bytes.values())
        forced: set[int] = set()
        while sum(weight_bytes[k] for k in costs if k not in keep) > budget:
            floats = [k for k in costs if k not in keep]
            cheapest = min(floats, key=lambda k: (costs[k].int8_ms - costs[k].float_ms)
                           / weight_bytes[k])
            forced.add(cheapest)
            keep = choose(costs, tensors, unmeasured | forced)
        for n in candidates:
            c = costs.get(id(n))
            if c is None:
                self.decisions[n.name] = (True, "quantized (shapes unknown: not probed)")
                continue
            why = (f"onnxruntime {c.float_ms:.3f} ms float, {c.int8_ms:.3f} ms int8 "
                   f"(+{c.quantize_in_ms:.3f} quantize in, +{c.dequantize_out_ms:.3f} "
                   f"dequantize out at float neighbours)")
            if id(n) in forced:
                why += (f"; int8 anyway: float would keep more than max-float-weights="
                        f"{self.max_float_weights:g} of the weight bytes")
            self.decisions[n.name] = (id(n) in keep, why)
        return [n for n in candidates if id(n) in keep]

    def _activation_after(self, g, layer: Node) -> Node | None:
        reader = sole_reader(g, layer.outputs[0])
        if reader is not None and is_standard(reader) and reader.op_type in ("Relu", "Clip"):
            return reader
        return None

    def _source(self, g, x: Value) -> tuple[int | None, Value]:
        """(id of the candidate layer that makes ``x`` through its activation and pass-through
        ops, or None; the value those pass-through ops start from)."""
        root = x
        p = x.producer()
        while p is not None and p.op_type in _PASS_THROUGH and is_standard(p):
            root = p.inputs[0]
            p = root.producer()
        if p is not None and p.op_type in ("Relu", "Clip") and is_standard(p):
            inner = p.inputs[0].producer()
            if inner is not None and self._activation_after(g, inner) is p:
                p = inner
        return (id(p) if p is not None and id(p) in self._layer_ids else None), root

    def _reader_layers(self, g, y: Value) -> list[int | None]:
        """ids of the candidate layers reading ``y`` (through pass-through ops); None for each
        other reader and for a graph output."""
        out: list[int | None] = [None] if g.is_output(y) else []
        for node, _ in y.uses():
            if id(node) in self._layer_ids:
                out.append(id(node))
            elif node.op_type in _PASS_THROUGH and is_standard(node):
                out += self._reader_layers(g, node.outputs[0])
            else:
                out.append(None)
        return out

    # --- rewriting -------------------------------------------------------------------------
    def _quantize_layer(self, model: Model, layer: Node) -> None:
        g = model.graph
        x, w = layer.inputs[0], layer.inputs[1]
        x_name = self._float_names.get(id(x), x.name)  # the observed name of the input
        dq_x, s_x = self._activation(model, x)
        layer.replace_input(0, dq_x)
        axis, wq, s_w = self._quantized_weight(layer)
        weight = w.const_value
        layer.replace_input(1, self._dequantized_constant(model, layer, w.name + "_q", wq, s_w,
                                                          axis))
        drop_unused_constants(g, [w])
        b = layer.inputs[2] if len(layer.inputs) > 2 else None
        if w.name not in self._shifts:  # the same in every variant the pass builds
            self._shifts[w.name] = self._bias_shift(layer, x_name, weight, wq, s_w, axis)
        shift = self._shifts[w.name]
        if shift is not None and b is None and (layer.op_type == "Conv" or
                                                layer.op_type == "Gemm"):
            b = g.add_initializer(w.name + "_bias", np.zeros(wq.shape[axis], np.float32))
            layer.set_inputs([*layer.inputs[:2], b])
        if b is not None and g.is_constant(b) and b.const_value.ndim == 1 and \
                b.const_value.shape[0] == wq.shape[axis]:
            bias = b.const_value
            if shift is not None:
                bias = (bias.astype(np.float64) + shift).astype(np.float32)
            s_b = (np.float32(s_x) * s_w).astype(np.float32)
            bq = np.clip(np.round(bias / s_b), -2**31, 2**31 - 1).astype(np.int32)
            # the bias scale is s_x * s_w by definition: computed in the graph from the two
            # scales rather than stored a third time (onnxruntime folds the Mul and still
            # runs the layer as QLinearConv / QGemm)
            x_scale, w_scale = dq_x.producer().inputs[1], layer.inputs[1].producer().inputs[1]
            s_bv = g.new_value("bias_scale", None)
            g.insert_before(layer, Node("Mul", [x_scale, w_scale], [s_bv],
                                        name=g.unique_name("bias_scale")))
            layer.replace_input(2, self._dequantized_constant(model, layer, "bias",
                                                              bq, s_b, 0, s_bv))
            drop_unused_constants(g, [b])
        # the output, after the Relu/Clip that follows it if any
        act = self._activation_after(g, layer)
        y = (act or layer).outputs[0]
        if not y.uses():
            return
        # onnxruntime needs the Q after a Conv to run it in int8; a Gemm/MatMul runs in int8
        # with a float output, so its output stays float unless an int8 layer reads it (a
        # clipped logit before a Softmax is pure loss)
        if layer.op_type == "Conv" or self._feeds_quantized_layer(y):
            self._activation(model, y)

    def _bias_shift(self, layer: Node, x_name: str, weight: np.ndarray, wq: np.ndarray,
                    s_w: np.ndarray, axis: int) -> np.ndarray | None:
        if not self.bias_correction:
            return None
        from optc.passes.quant.bias_correction import weight_shift

        obs = self._observers.get(x_name)
        if obs is None or (layer.op_type == "MatMul" and len(obs.sample_shape or ()) != 2):
            return None
        shape = [1] * wq.ndim
        shape[axis] = -1
        return weight_shift(layer, weight, wq * s_w.reshape(shape), obs.channel_mean)

    def _feeds_quantized_layer(self, v: Value) -> bool:
        for node, _ in v.uses():
            if id(node) in self._layer_ids:
                return True
            if node.op_type in _PASS_THROUGH and is_standard(node) and \
                    self._feeds_quantized_layer(node.outputs[0]):
                return True
        return False

    def _quantized_weight(self, layer: Node) -> tuple[int, np.ndarray, np.ndarray]:
        """(output-channel axis, int8 weight, its symmetric scales) of a layer."""
        weight = layer.inputs[1].const_value
        axis = 0 if layer.op_type == "Conv" or (layer.op_type == "Gemm" and
                                                 layer.attr("transB", 0)) else 1
        s_w = self._weight_scales(weight, axis)
        shape = [1] * weight.ndim
        shape[axis] = -1
        top = self._weight_levels()
        wq = np.clip(np.round(weight / s_w.reshape(shape)), -top, top).astype(np.int8)
        return axis, wq, s_w

    def _weight_levels(self) -> int:
        return 63 if self.reduce_range else 127

    def _weight_scales(self, weight: np.ndarray, axis: int) -> np.ndarray:
        if self.per_channel:
            other = tuple(i for i in range(weight.ndim) if i != axis)
            peak = np.abs(weight).max(axis=other)
        else:
            peak = np.array([np.abs(weight).max()])
        return (np.where(peak > 0, peak, 1.0) / float(self._weight_levels())).astype(np.float32)

    def _dequantized_constant(self, model: Model, layer: Node, base: str, q: np.ndarray,
                              scale: np.ndarray, axis: int, scale_value: Value | None = None
                              ) -> Value:
        g = model.graph
        qv = g.add_initializer(base, q)
        sv = scale_value or g.add_initializer("scale", scale.reshape(-1)
                                              if scale.size > 1 else scale.reshape(()))
        out = g.new_value("dq")  # untyped: see _activation
        attrs = {"axis": axis} if scale.size > 1 else {}
        # symmetric: the zero point is 0, which is DequantizeLinear's default (no initializer)
        dq = Node("DequantizeLinear", [qv, sv], [out], name=g.unique_name("DQ"),
                  attributes=attrs)
        g.insert_before(layer, dq)
        return out

    def _activation(self, model: Model, x: Value) -> tuple[Value, float]:
        """The DequantizeLinear output standing for ``x`` (made once per tensor) and its
        scale; every reader of ``x`` is moved onto it (onnxruntime then runs a residual Add
        whose inputs are all DequantizeLinear outputs in int8 too)."""
        cached = self._qdq.get(id(x))
        if cached is not None:
            return cached
        g = model.graph
        inherited = self._pass_through_params(x)
        t = None
        if inherited is not None:
            scale, zero = inherited
        else:
            # a Concat input takes the Concat output's range: every input then shares one
            # scale and the Concat needs no requantization (its output inherits it)
            name = self._concat_output_name(x) or x.name
            obs: Observer | None = self._observers.get(name)
            if obs is None:
                raise OptcError(f"calibration did not observe tensor '{name}'")
            t = self._thresholds.get(name)
            if t is None:  # a KL search is not free: once per tensor, whatever the variants
                t = self._thresholds[name] = self._threshold_of(name, obs)
            scale, zero = activation_params(t, obs.min, obs.max, symmetric=self.symmetric,
                                            signed=self.activation_type == "int8")
        self.activations[x.name] = (t, float(scale), zero)
        readers = x.uses()
        sv = g.add_initializer("scale", np.array(scale, np.float32))
        dtype, elem = ((np.int8, TensorProto.INT8) if self.activation_type == "int8"
                       else (np.uint8, TensorProto.UINT8))
        zv = self._zero_values.get(zero)
        if zv is None:  # one initializer per zero point, shared by every activation
            zv = self._zero_values[zero] = g.add_initializer(
                f"zp_{np.dtype(dtype).name}_{zero}".replace("-", "m"),
                np.array(zero, dtype))
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
        self._drop_saturated_activation(g, qn, scale, zero, elem)
        self._qdq[id(x)] = self._qdq[id(dq)] = (dq, float(scale))
        self._float_names[id(dq)] = x.name
        self._zero[id(dq)] = zero
        return dq, float(scale)

    def _drop_saturated_activation(self, g, qn: Node, scale: float, zero: int, elem: int
                                   ) -> None:
        """Remove the Relu / Clip that makes the input of ``qn`` when the QuantizeLinear
        reproduces it: every level of the quantized range lies inside the activation's range,
        so Q(act(x)) == Q(x) for every x (Q is monotonic and saturates). The activation is then
        the saturating cast itself (onnxruntime would fuse it away; this also keeps it out of
        the file and out of optc.runtime's float path)."""
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
            params = {(self._qdq[id(v)][1], self._zero[id(v)]) if id(v) in self._zero else None
                      for v in p.inputs}
            if len(params) == 1 and None not in params:
                return params.pop()
            return None
        while p is not None and p.op_type in _PASS_THROUGH and is_standard(p):
            src = p.inputs[0]
            if id(src) in self._zero:
                return self._qdq[id(src)][1], self._zero[id(src)]
            p = src.producer()
        return None

    def _threshold_of(self, name: str, obs: Observer) -> float:
        method, percentile, value = self.method, self.percentile, self.threshold
        if self._rules:
            from optc.passes.quant.config import rule_for

            rule = rule_for(self._rules, name)
            if rule is not None:
                method = rule.method or method
                percentile = rule.percentile if rule.percentile is not None else percentile
                value = rule.threshold if rule.threshold is not None else value
        self.methods_used[name] = method
        return obs.threshold(method, percentile=percentile, value=value or None)

    def _concat_output_name(self, x: Value) -> str | None:
        """The observed output of a Concat that reads ``x``, if any."""
        for node, _ in x.uses():
            if node.op_type == "Concat" and is_standard(node) and \
                    node.outputs[0].name in self._observers:
                return node.outputs[0].name
        return None

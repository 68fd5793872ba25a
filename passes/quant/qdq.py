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
Decide, then apply: ``decide`` calibrates, probes and measures and returns a QuantPlan
(plan.py), ``apply`` rewrites the model from the plan alone (rewrite.py). ``--report DIR``
writes the plan as DIR/quantize_plan.json and ``quantize{plan=FILE}`` replays it bit for bit,
without calibration data or timings; the reproducer of a failed pipeline does the same.
Module map: selection.py (candidates and their graph relations), calibrate.py + observers.py
(ranges), probe.py (latency), sensitivity.py (accuracy), plan.py, rewrite.py (QDQ,
weight-only), dynamic.py.
Names: the int8 weight keeps the float weight's name (+ ``_q``); everything else the pass adds
(scales, Q/DQ tensors and nodes, int32 biases) is named compactly (``scale_7``, ``dq_12``):
on a small model, names derived from long exported tensor names were a tenth of the file.
Not handled: shared residual-Add scales (onnxruntime's QLinearAdd rescales anyway, and it
already runs an Add whose inputs are DequantizeLinear outputs in int8).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from optc.errors import OptcError, OptcWarning
from optc.ir import Model, Node, clone, serialize
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes.quant import selection
from optc.passes.quant.calibrate import calibrate
from optc.passes.quant.observers import Observer
from optc.passes.quant.plan import REWRITE_OPTIONS, ActivationParams, QuantPlan
from optc.passes.quant.rewrite import (Planned, QDQRewrite, activation_params,
                                       weight_rewrite)
from optc.passes.quant.selection import FLOAT_MARK

__all__ = ["FLOAT_MARK", "Quantize", "activation_params"]


def _layers_in_bodies(g) -> int:
    """Conv/Gemm/MatMul nodes inside the If/Loop/Scan bodies of ``g`` (any depth)."""
    def count(graph, inside: bool) -> int:
        total = 0
        for n in graph.nodes:
            total += inside and n.op_type in ("Conv", "Gemm", "MatMul")
            total += sum(count(b, True) for b in n.all_subgraphs())
        return total
    return count(g, False)


@register
@dataclass(frozen=True)
class Quantize(Pass):
    """Static int8 quantization (QDQ) of Conv/Gemm/MatMul from calibration data."""

    name: ClassVar[str] = "quantize"
    lossless: ClassVar[bool] = False
    uses_calibration: ClassVar[bool] = True
    min_opset: ClassVar[int] = 13
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
    warn_sqnr: float = field(default=20.0, metadata={
        "help": "warn, naming the most sensitive layers, when the output SQNR vs float on the "
                "first calibration batch is below this many dB (0: no check)"})
    plan: str = field(default="", metadata={
        "help": "replay a quantization plan (the quantize_plan.json that --report writes): "
                "no calibration, probe or budget; the plan's options win"})

    def requires(self, model: Model, ctx: PassContext) -> None:
        if self.plan:
            QuantPlan.read(self.plan)  # a bad file fails before any work
        elif self.mode == "static" and ctx.calibration_data is None:
            raise OptcError("quantize needs calibration data: give it with --calib DATA (a "
                            ".npz keyed by input name, samples along axis 0, or a folder of "
                            ".npy/.npz) or optc.optimize(..., calib=...)")
        if self.config:
            from optc.passes.quant.config import load_rules

            load_rules(self.config)  # a bad file fails before any work
        if model.opset < self.min_opset:  # run_pipeline converts first; a direct call does not
            raise OptcError(f"quantize needs opset >= {self.min_opset} (per-channel "
                            f"DequantizeLinear); the model is opset {model.opset}: run "
                            f"convert-opset{{to={self.min_opset}}} first")

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        if self.plan:
            plan, observers = QuantPlan.read(self.plan), {}
        else:
            notes: dict[str, Any] = {}
            decided = self.decide(model, ctx, notes)
            if decided is None:
                stats = {"layers": 0}
                if notes.get("in_subgraphs"):
                    stats["in_subgraphs"] = notes["in_subgraphs"]
                return PassResult(model, False, stats)
            plan, observers = decided
        rewrite = self.apply(model, plan)
        stats: dict[str, Any] = {"layers": sum(ok for ok, _ in plan.layers.values())}
        if plan.mode != "static":
            stats["mode"] = plan.mode
        else:
            stats.update(method=plan.options["method"],
                         float=len(plan.layers) - stats["layers"])
            if plan.model_sqnr is not None:
                stats["sqnr_db"] = round(plan.model_sqnr, 2)
            if not self.plan and notes.get("in_subgraphs"):
                stats["in_subgraphs"] = notes["in_subgraphs"]
            if not self.plan and notes.get("engine") == "ort":
                stats["engine"] = "ort"  # calibrated in onnxruntime (notes["why"])
        artifacts = {"plan": plan, "observers": observers,
                     "activations": rewrite.activations if rewrite is not None else {}}
        return PassResult(model, bool(plan.layers), stats, artifacts)

    # --- decide ----------------------------------------------------------------------------
    def decide(self, model: Model, ctx: PassContext, notes: dict[str, Any] | None = None
               ) -> tuple[QuantPlan, dict[str, Observer]] | None:
        """(the plan of this run, the calibration observers); None when no layer qualifies.
        Calibrates, probes and measures on clones: ``model`` is left as it is. ``notes``, if
        given, receives the engine calibration ran on (``engine``, ``why``)."""
        candidates = selection.candidates(model, self.mode)
        inside = _layers_in_bodies(model.graph)
        if notes is not None:
            notes["in_subgraphs"] = inside
        if inside:
            warnings.warn(OptcWarning(
                f"quantize: {inside} Conv/Gemm/MatMul node(s) inside If/Loop/Scan bodies are "
                f"left float (quantize works on the main graph only)"), stacklevel=2)
        if not candidates:
            return None
        for n in candidates:  # before calibration, which would only see the NaN downstream
            w = n.inputs[1]
            if w.const_value.dtype.kind == "f" and not np.all(np.isfinite(w.const_value)):
                raise OptcError(f"node '{n.name}' ({n.op_type}): its weight '{w.name}' holds "
                                f"NaN or Inf")
        options = {o: getattr(self, o) for o in REWRITE_OPTIONS}
        if self.mode != "static":
            return QuantPlan(self.mode, options, {selection.key(n): (True, "quantized")
                                                  for n in candidates}), {}
        observers = calibrate(model, ctx.calibration_data, batch_size=self.batch_size,
                              engine=ctx.engine, runner_info=notes)
        rules = []
        if self.config:
            from optc.passes.quant.config import load_rules

            rules = load_rules(self.config)
        params = Calibrated(self, observers, rules)
        decisions = {n: (True, "quantized") for n in candidates}

        def variant(subset: list[Node]) -> bytes:
            """A copy of ``model`` with ``subset`` quantized, serialized."""
            return serialize(self._rewritten_copy(model, subset, params))

        layers = candidates
        if self.probe:
            from optc.passes.quant.probe import select

            from optc.passes.quant.calibrate import first_batch

            layers, decisions = select(model, candidates, observers, self.max_float_weights,
                                       variant, first_batch(model, ctx.calibration_data,
                                                            self.batch_size))
        model_sqnr, layer_sqnr = None, {}
        if self.min_sqnr > 0 or ctx.collect_report or self.warn_sqnr > 0:
            layers, model_sqnr, layer_sqnr = self._sensitivity(model, ctx, layers, decisions,
                                                               variant)
        # the rewrite of the chosen layers, on a copy, asks for exactly the parameters the
        # plan must hold
        self._rewritten_copy(model, layers, params)
        if rules:
            from optc.passes.quant.config import check_all_used

            check_all_used(rules, self.config)
        chosen = set(layers)
        plan = QuantPlan(
            "static", options,
            {selection.key(n): (n in chosen, decisions[n][1]) for n in candidates},
            params.activations, params.shifts, model_sqnr,
            {selection.key(n): v for n, v in layer_sqnr.items()})
        return plan, observers

    def _rewritten_copy(self, model: Model, layers: list[Node], params) -> Model:
        position = {n: i for i, n in enumerate(model.graph.nodes)}
        copy = clone(model)  # shares the weights' arrays: no 4x-size copy per variant
        nodes = copy.graph.nodes
        QDQRewrite(copy, [nodes[position[n]] for n in layers], params,
                   activation_type=self.activation_type, per_channel=self.per_channel,
                   reduce_range=self.reduce_range).run()
        return copy

    def _sensitivity(self, model: Model, ctx: PassContext, layers: list[Node],
                     decisions: dict[Node, tuple[bool, str]], variant):
        """(layers kept, whole-model SQNR, per-layer SQNR); with ``min_sqnr``, the most
        sensitive layers back to float (their decisions say so)."""
        from optc.passes.quant.calibrate import evaluation_feeds
        from optc.passes.quant.sensitivity import Evaluator, fall_back, layer_sqnr

        evaluate = Evaluator(serialize(model), evaluation_feeds(model, ctx.calibration_data,
                                                                self.batch_size))
        per_layer = self.min_sqnr > 0 or ctx.collect_report
        sqnr = layer_sqnr(layers, variant, evaluate) if per_layer else {}
        if self.min_sqnr <= 0:
            kept, model_sqnr = layers, evaluate(variant(layers))
        else:
            kept, dropped, model_sqnr = fall_back(layers, sqnr, self.min_sqnr, variant,
                                                  evaluate)
            for n, after in dropped:
                decisions[n] = (False, f"back to float for accuracy: {sqnr[n]:.1f} dB with "
                                       f"only this layer int8; the model reached "
                                       f"{after:.1f} dB (budget {self.min_sqnr:g} dB)")
        if self.warn_sqnr > 0 and model_sqnr < self.warn_sqnr and kept:
            if not sqnr:
                sqnr = layer_sqnr(kept, variant, evaluate)
            worst = sorted((n for n in kept if n in sqnr), key=lambda n: sqnr[n])[:3]
            names = ", ".join(f"'{n.name or n.op_type}' ({sqnr[n]:.1f} dB alone)"
                              for n in worst)
            warnings.warn(OptcWarning(
                f"quantize: output SQNR {model_sqnr:.1f} dB vs float on the first calibration "
                f"batch, below {self.warn_sqnr:g} dB; most sensitive layers: {names}. "
                f"quantize{{min-sqnr={self.warn_sqnr:g}}} returns such layers to float "
                f"until the budget holds"), stacklevel=2)
        return kept, model_sqnr, sqnr

    # --- apply -----------------------------------------------------------------------------
    def apply(self, model: Model, plan: QuantPlan) -> QDQRewrite | None:
        """Rewrite ``model`` as ``plan`` says (deterministic: no calibration, no timing).
        Returns the QDQ rewrite (static mode; its ``activations`` list what it wrote)."""
        source = f"{self.plan}" if self.plan else "the quantization plan"
        by_key = {selection.key(n): n for n in selection.candidates(model, plan.mode)}
        missing = [k for k in plan.layers if k not in by_key]
        if missing:
            raise OptcError(f"{source}: layer(s) {', '.join(missing[:5])} are not quantizable "
                            f"layers of this model (a plan made for another model?)")
        chosen = {by_key[k] for k, (ok, _) in plan.layers.items() if ok}
        layers = [n for n in model.graph.nodes if n in chosen]  # graph order
        o = plan.options
        if plan.mode != "static":
            weight_rewrite(model, layers, plan.mode, per_channel=o["per_channel"],
                           reduce_range=o["reduce_range"])
            return None
        rewrite = QDQRewrite(model, layers, Planned(plan, source),
                             activation_type=o["activation_type"], per_channel=o["per_channel"],
                             reduce_range=o["reduce_range"])
        rewrite.run()
        for k, (ok, why) in plan.layers.items():  # the reason travels with the model; a
            if not ok:                              # second run leaves the layer float
                by_key[k].metadata_props[FLOAT_MARK] = why
        return rewrite

    # --- report and replay -----------------------------------------------------------------
    def report_markdown(self, artifacts: dict[str, Any], directory) -> str:
        """The quantization section of ``optc optimize --report DIR``'s report.md; writes
        DIR/quantize_plan.json (replayable with ``quantize{plan=...}``) and the plots under
        DIR/quantize/."""
        from optc.passes.quant.report import markdown

        if "plan" not in artifacts:
            return "## quantize\n\nNo layer to quantize.\n"
        path = Path(directory) / "quantize_plan.json"
        artifacts["plan"].write(path)
        return markdown(self, artifacts["plan"], artifacts["observers"],
                        artifacts["activations"], directory, path)

    def replay(self, artifacts: dict[str, Any], directory) -> Pass:
        if "plan" not in artifacts:
            return self
        fd, path = tempfile.mkstemp(prefix="quantize_plan_", suffix=".json", dir=directory)
        os.close(fd)
        artifacts["plan"].write(path)
        return Quantize(plan=path)


class Calibrated:
    """Params (rewrite.py) computed from calibration observers as the rewrite asks for them,
    each once (a KL search is not free), and kept for the plan: ``activations`` and
    ``shifts``."""

    def __init__(self, q: Quantize, observers: dict[str, Observer], rules: list):
        self.q, self.observers, self.rules = q, observers, rules
        self.activations: dict[str, ActivationParams] = {}
        self.shifts: dict[str, np.ndarray | None] = {}

    def has(self, name: str) -> bool:
        return name in self.observers

    def activation(self, name: str) -> ActivationParams:
        a = self.activations.get(name)
        if a is not None:
            return a
        obs = self.observers.get(name)
        if obs is None:
            raise OptcError(f"calibration did not observe tensor '{name}'")
        q = self.q
        method, percentile, value = q.method, q.percentile, q.threshold
        if self.rules:
            from optc.passes.quant.config import rule_for

            rule = rule_for(self.rules, name)
            if rule is not None:
                method = rule.method or method
                percentile = rule.percentile if rule.percentile is not None else percentile
                value = rule.threshold if rule.threshold is not None else value
        t = obs.threshold(method, percentile=percentile, value=value or None)
        scale, zero = activation_params(t, obs.min, obs.max, symmetric=q.symmetric,
                                        signed=q.activation_type == "int8")
        a = self.activations[name] = ActivationParams(scale, zero, t, method)
        return a

    def bias_shift(self, layer: Node, name: str, x_name: str, weight: np.ndarray,
                   wq: np.ndarray, s_w: np.ndarray, axis: int) -> np.ndarray | None:
        if name not in self.shifts:  # the same in every variant the pass builds
            self.shifts[name] = self._shift(layer, x_name, weight, wq, s_w, axis)
        return self.shifts[name]

    def _shift(self, layer, x_name, weight, wq, s_w, axis) -> np.ndarray | None:
        if not self.q.bias_correction:
            return None
        from optc.passes.quant.bias_correction import weight_shift

        obs = self.observers.get(x_name)
        if obs is None or (layer.op_type == "MatMul" and len(obs.sample_shape or ()) != 2):
            return None
        shape = [1] * wq.ndim
        shape[axis] = -1
        return weight_shift(layer, weight, wq * s_w.reshape(shape), obs.channel_mean)

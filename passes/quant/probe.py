"""Per-layer latency probe: does onnxruntime run a layer faster in int8 (QDQ) or in float?

Whether int8 pays off depends on the layer's shape and on the CPU: dense convs usually run
several times faster in int8, while on some mobile nets the int8 depthwise convs and the
Quantize/Dequantize pairs around them cost more than they save (measured figures:
../shared/NOTES.md). So the quantizer asks onnxruntime, per layer, on the CPU it runs on,
instead of trusting a list of quantizable op types.

For each candidate layer (Conv/Gemm/MatMul with its following Relu/Clip) ``probe`` builds
three one-layer models and times them in onnxruntime (graph optimizations on, one thread,
the best of several runs, at the shapes calibration observed with batch 1):
* ``float_ms``: the float layer;
* ``int8_ms``: the QDQ layer as the quantizer writes it, with a uint8 input and (for a Conv)
  a uint8 output -- its cost when its neighbours are int8 too;
* ``quantize_in_ms`` / ``dequantize_out_ms``: a QuantizeLinear of its input / a
  DequantizeLinear of its output, paid when the neighbour on that side stays float.
Layers of the same signature (op, attributes, weight shape, input shape) are timed once.

``choose`` then picks the int8 set minimising the sum of layer costs plus one conversion per
tensor whose producer and some reader differ -- exactly, as a minimum cut (its docstring). Each
timing has the fixed cost of a call into onnxruntime taken off. Layers whose shapes
calibration did not see are kept int8 (no measurement, no decision).

Timings are noisy, so a layer whose two costs are within ``margin`` of each other counts as a
tie, and ties stay int8 (smaller file).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from optc.ir import Model, Node
from optc.passes.channels import out_axis
from optc.passes.quant.selection import Layers, activation_after
from optc.validate import ort_session


@dataclass(frozen=True)
class LayerCost:
    float_ms: float
    int8_ms: float
    quantize_in_ms: float
    dequantize_out_ms: float


def _best_ms(sess, feeds: dict[str, np.ndarray], budget_s: float = 0.03,
             min_runs: int = 5, max_runs: int = 200) -> float:
    sess.run(None, feeds)  # warm up (first-run allocations)
    best, runs, start = float("inf"), 0, time.perf_counter()
    while runs < min_runs or (runs < max_runs and time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return best * 1e3


def faster(sessions, feeds: dict[str, np.ndarray], budget_s: float = 1.0,
           min_rounds: int = 20) -> list[float]:
    """Median ms per run of each onnxruntime session on the same ``feeds``, the sessions
    interleaved round by round so that machine noise hits them alike."""
    import statistics

    names = {i.name for i in sessions[0].get_inputs()}
    feeds = {k: v for k, v in feeds.items() if k in names}
    times: list[list[float]] = [[] for _ in sessions]
    for sess in sessions:
        sess.run(None, feeds)
    start = time.perf_counter()
    while len(times[0]) < min_rounds or (time.perf_counter() - start < budget_s and
                                         len(times[0]) < 1000):
        for t, sess in zip(times, sessions):
            t0 = time.perf_counter()
            sess.run(None, feeds)
            t.append(time.perf_counter() - t0)
    return [statistics.median(t) * 1e3 for t in times]


def _model(nodes, inputs, outputs, initializers, opset: int) -> bytes:
    g = helper.make_graph(nodes, "probe", inputs, outputs, initializer=initializers)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", max(opset, 13))])
    m.ir_version = 8
    return m.SerializeToString()


def _feed(dtype: int, shape: tuple[int, ...], rng) -> np.ndarray:
    if dtype == TensorProto.UINT8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return rng.standard_normal(shape).astype(np.float32)


def _attrs(n: Node) -> list[onnx.AttributeProto]:
    return list(n.attributes.values())


class Prober:
    """Times layers in onnxruntime; caches by layer signature."""

    def __init__(self, opset: int):
        self.opset = opset
        self._cache: dict[tuple, LayerCost] = {}
        self._rng = np.random.default_rng(0)
        self._call_ms: float | None = None

    def cost(self, layer: Node, act: Node | None, in_shape: tuple[int, ...],
             out_shape: tuple[int, ...], int8_output: bool) -> LayerCost:
        w = layer.inputs[1].const_value
        has_bias = len(layer.inputs) > 2 and layer.inputs[2] is not None
        key = (layer.op_type, tuple(sorted((k, str(a)) for k, a in layer.attributes.items())),
               w.shape, has_bias, in_shape, act.op_type if act is not None else None,
               int8_output)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._measure(layer, act, in_shape, out_shape,
                                                      int8_output, has_bias)
        return cached

    def _layer_nodes(self, layer: Node, act: Node | None, x: str, wname: str, bname: str | None,
                     y: str) -> list[onnx.NodeProto]:
        inputs = [x, wname] + ([bname] if bname else [])
        mid = y if act is None else "pre_act"
        nodes = [helper.make_node(layer.op_type, inputs, [mid])]
        nodes[0].attribute.extend(_attrs(layer))
        if act is not None:
            extra = []
            if act.op_type == "Clip":
                extra = ["clip_lo", "clip_hi"]
            nodes.append(helper.make_node(act.op_type, [mid, *extra], [y]))
        return nodes

    def _measure(self, layer: Node, act: Node | None, in_shape, out_shape, int8_output: bool,
                 has_bias: bool) -> LayerCost:
        w = layer.inputs[1].const_value
        axis = out_axis(layer)
        out_channels = w.shape[axis]
        inits = [onnx.numpy_helper.from_array(w.astype(np.float32), "w")]
        if has_bias:
            inits.append(onnx.numpy_helper.from_array(
                self._rng.standard_normal(out_channels).astype(np.float32), "b"))
        if act is not None and act.op_type == "Clip":
            inits += [onnx.numpy_helper.from_array(np.array(0, np.float32), "clip_lo"),
                      onnx.numpy_helper.from_array(np.array(6, np.float32), "clip_hi")]
        fin = helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)
        fout = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)
        float_model = _model(self._layer_nodes(layer, act, "x", "w", "b" if has_bias else None,
                                               "y"), [fin], [fout], inits, self.opset)

        # int8: uint8 in -> DQ -> layer(DQ(w int8), DQ(b int32)) -> act -> [Q -> uint8 out]
        wq = np.clip(np.round(w / (np.abs(w).max() / 127 + 1e-12)), -127, 127).astype(np.int8)
        qinits = [onnx.numpy_helper.from_array(wq, "wq"),
                  onnx.numpy_helper.from_array(np.full(out_channels, 0.01, np.float32),
                                               "w_scale"),
                  onnx.numpy_helper.from_array(np.array(0.02, np.float32), "s"),
                  onnx.numpy_helper.from_array(np.array(0, np.uint8), "zp")]
        nodes = [helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["x"]),
                 helper.make_node("DequantizeLinear", ["wq", "w_scale"], ["w"], axis=axis)]
        if has_bias:
            qinits += [onnx.numpy_helper.from_array(
                           self._rng.integers(-1000, 1000, out_channels).astype(np.int32), "bq"),
                       onnx.numpy_helper.from_array(np.full(out_channels, 2e-4, np.float32),
                                                    "b_scale")]
            nodes.append(helper.make_node("DequantizeLinear", ["bq", "b_scale"], ["b"], axis=0))
        qinits += [i for i in inits if i.name.startswith("clip")]
        nodes += self._layer_nodes(layer, act, "x", "w", "b" if has_bias else None,
                                   "yf" if int8_output else "y")
        if int8_output:
            nodes.append(helper.make_node("QuantizeLinear", ["yf", "s", "zp"], ["y"]))
        qin = helper.make_tensor_value_info("xq", TensorProto.UINT8, in_shape)
        qout = helper.make_tensor_value_info("y", TensorProto.UINT8 if int8_output
                                             else TensorProto.FLOAT, out_shape)
        int8_model = _model(nodes, [qin], [qout], qinits, self.opset)

        float_ms = self._time(float_model, {"x": _feed(TensorProto.FLOAT, in_shape, self._rng)})
        int8_ms = self._time(int8_model, {"xq": _feed(TensorProto.UINT8, in_shape, self._rng)})
        return LayerCost(float_ms, int8_ms, self._convert_ms("QuantizeLinear", in_shape),
                         self._convert_ms("DequantizeLinear", out_shape) if int8_output else 0.0)

    def _convert_ms(self, op: str, shape: tuple[int, ...]) -> float:
        key = (op, shape)
        cached = self._cache.get(key)
        if cached is None:
            src, dst = ((TensorProto.FLOAT, TensorProto.UINT8) if op == "QuantizeLinear"
                        else (TensorProto.UINT8, TensorProto.FLOAT))
            inits = [onnx.numpy_helper.from_array(np.array(0.02, np.float32), "s"),
                     onnx.numpy_helper.from_array(np.array(0, np.uint8), "zp")]
            m = _model([helper.make_node(op, ["a", "s", "zp"], ["b"])],
                       [helper.make_tensor_value_info("a", src, shape)],
                       [helper.make_tensor_value_info("b", dst, shape)], inits, self.opset)
            cached = self._cache[key] = self._time(m, {"a": _feed(src, shape, self._rng)})
        return cached

    def _time(self, model: bytes, feeds: dict[str, np.ndarray]) -> float:
        """Best time of a run, less the fixed cost of a call into onnxruntime (a one-op model
        of one element), which the layer would not pay inside a whole model."""
        if self._call_ms is None:
            m = _model([helper.make_node("Identity", ["a"], ["b"])],
                       [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
                       [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])], [],
                       self.opset)
            self._call_ms = _best_ms(ort_session(m, optimize=True, threads=1),
                                     {"a": np.zeros(1, np.float32)})
        t = _best_ms(ort_session(model, optimize=True, threads=1), feeds)
        return max(t - self._call_ms, 0.0)


@dataclass(frozen=True)
class Tensor:
    """A tensor between layers, as the choice sees it: made by ``producer`` (a layer key, or
    None for a float op / graph input) and read by ``readers`` (layer keys, None for a float
    op / graph output); ``quantize_ms`` / ``dequantize_ms`` are its conversion costs."""

    producer: Hashable | None
    readers: tuple[Hashable | None, ...]
    quantize_ms: float
    dequantize_ms: float


def choose(costs: dict[Hashable, LayerCost], tensors: list[Tensor],
           unmeasured: set[Hashable] = frozenset(), margin: float = 0.05) -> set[Hashable]:
    """The layers (by key) to run in int8, minimising the modelled latency exactly.

    A layer costs ``int8_ms`` or ``float_ms`` (times 1 + ``margin``: ties go to int8, the
    smaller file). A tensor costs one QuantizeLinear when its producer is float and some reader
    int8, one DequantizeLinear when its producer is int8 and some reader float. That total is a
    submodular function of the choice, so one minimum s-t cut finds the optimum (int8 = source
    side; each "some reader" is an auxiliary node that any such reader drags along).
    ``unmeasured`` layers are forced int8.
    """
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(["int8", "float"])

    def add(u, v, capacity: float | None = None) -> None:
        """Edge u -> v, cut (paid) when u is int8 and v float; no capacity: never cut.
        Capacities are whole femtoseconds: networkx's preflow-push is exact on integers but
        can fail on tiny floats (it did, on a 1e-55 ms capacity)."""
        if capacity is None:  # an edge without capacity is infinite for networkx
            g.add_edge(u, v)
            g[u][v].pop("capacity", None)
            return
        capacity = round(capacity * 1e12)
        if g.has_edge(u, v):
            g[u][v]["capacity"] += capacity
        else:
            g.add_edge(u, v, capacity=capacity)

    for k, c in costs.items():
        add("int8", k, c.float_ms * (1 + margin))  # paid when k is float
        add(k, "float", c.int8_ms)  # paid when k is int8
    for k in unmeasured:
        add("int8", k)
    for i, t in enumerate(tensors):
        src = "float" if t.producer is None else t.producer
        layers = [r for r in t.readers if r is not None]
        if layers:  # Q: paid when some reader is int8 and the producer float
            q = ("q", i)
            for r in layers:
                add(r, q)
            add(q, src, t.quantize_ms)
        if t.producer is not None:  # DQ: paid when the producer is int8 and some reader float
            dq = ("dq", i)
            add(t.producer, dq, t.dequantize_ms)
            for r in t.readers:
                add(dq, "float" if r is None else r)
    _, (int8_side, _) = nx.minimum_cut(g, "int8", "float")
    return {k for k in int8_side if k in costs or k in unmeasured}


#: how much faster (fraction of the whole model's time) leaving some layers float must be
WHOLE_MODEL_MARGIN = 0.03


def select(model: Model, candidates: list[Node], observers: dict, max_float_weights: float,
           variant: Callable[[list[Node]], bytes], feeds: dict[str, np.ndarray]
           ) -> tuple[list[Node], dict[Node, tuple[bool, str]]]:
    """The candidates to quantize and, for each candidate, (int8?, why): each layer timed
    (Prober), the set chosen exactly (choose) within the ``max_float_weights`` size budget,
    then checked on the whole model (``variant(layers)``: the model with those layers
    quantized, serialized) against all-int8, on ``feeds`` (the first calibration batch: the
    model's real input sizes)."""
    chosen, decisions = _per_layer(model, candidates, observers, max_float_weights)
    if len(chosen) < len(candidates):
        chosen = _check_whole_model(candidates, chosen, decisions, variant, feeds)
    return chosen, decisions


def _per_layer(model: Model, candidates: list[Node], observers: dict,
               max_float_weights: float) -> tuple[list[Node], dict[Node, tuple[bool, str]]]:
    g = model.graph
    layers = Layers(g, candidates)
    prober = Prober(model.opset)
    costs: dict[Node, LayerCost] = {}
    unmeasured: set[Node] = set()
    # root value -> (the candidate that makes it, or None; the root value)
    roots: dict = {}
    for n in candidates:
        act = activation_after(g, n)
        y = (act or n).outputs[0]
        roots[y] = (n, y)
        source, root = layers.source(n.inputs[0])
        roots.setdefault(root, (source, root))
        xs, ys = observers.get(n.inputs[0].name), observers.get(y.name)
        if xs is None or ys is None or xs.sample_shape is None or ys.sample_shape is None:
            unmeasured.add(n)
            continue
        int8_out = n.op_type == "Conv" or layers.feeds_quantized(y)
        costs[n] = prober.cost(n, act, xs.sample_shape, ys.sample_shape, int8_out)
    tensors = []
    for producer, root in roots.values():
        readers = tuple(layers.readers(root))
        q = max((costs[r].quantize_in_ms for r in readers if r in costs), default=0.0)
        dq = costs[producer].dequantize_out_ms if producer in costs else 0.0
        tensors.append(Tensor(producer, readers, q, dq))
    keep = choose(costs, tensors, unmeasured)
    # the size budget: float weights cost 4x the bytes; while the layers left float hold
    # more than max-float-weights of the weight bytes, the one that buys the least time per
    # byte goes int8 (forced) and the choice is made again around it
    weight_bytes = {n: n.inputs[1].const_value.nbytes for n in candidates}
    budget = max_float_weights * sum(weight_bytes.values())
    forced: set[Node] = set()
    while sum(weight_bytes[k] for k in costs if k not in keep) > budget:
        floats = [k for k in costs if k not in keep]
        cheapest = min(floats, key=lambda k: (costs[k].int8_ms - costs[k].float_ms)
                       / weight_bytes[k])
        forced.add(cheapest)
        keep = choose(costs, tensors, unmeasured | forced)
    decisions: dict[Node, tuple[bool, str]] = {}
    for n in candidates:
        c = costs.get(n)
        if c is None:
            decisions[n] = (True, "quantized (shapes unknown: not probed)")
            continue
        why = (f"onnxruntime {c.float_ms:.3f} ms float, {c.int8_ms:.3f} ms int8 "
               f"(+{c.quantize_in_ms:.3f} quantize in, +{c.dequantize_out_ms:.3f} "
               f"dequantize out at float neighbours)")
        if n in forced:
            why += (f"; int8 anyway: float would keep more than max-float-weights="
                    f"{max_float_weights:g} of the weight bytes")
        decisions[n] = (n in keep, why)
    return [n for n in candidates if n in keep], decisions


def _check_whole_model(candidates: list[Node], chosen: list[Node],
                       decisions: dict[Node, tuple[bool, str]],
                       variant: Callable[[list[Node]], bytes],
                       feeds: dict[str, np.ndarray]) -> list[Node]:
    """The per-layer probe models onnxruntime's fusions only roughly (e.g. it runs a
    residual Add between int8 layers in int8), so its choice is checked against quantizing
    every candidate on the whole model, both timed in onnxruntime the same way, interleaved;
    the choice is kept only if it is faster by more than WHOLE_MODEL_MARGIN (else all-int8:
    a smaller file for a gain lost in the noise)."""
    sessions = [ort_session(variant(subset), optimize=True, threads=1)
                for subset in (candidates, chosen)]
    times = faster(sessions, feeds)
    if times[1] > times[0] * (1 - WHOLE_MODEL_MARGIN):
        for n in candidates:
            ok, why = decisions[n]
            if not ok:
                decisions[n] = (True, why + f"; but the whole model ran faster all-int8 "
                                            f"({times[0]:.3f} vs {times[1]:.3f} ms)")
        return candidates
    return chosen

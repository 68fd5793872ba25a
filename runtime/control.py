"""Steps the kernel table does not hold: control flow (If, Loop) and the onnx.reference
fallback.

* ``If`` / ``Loop`` run their bodies as sessions of their own (``InferenceSession`` over the
  body graph, made once when the parent session is planned), so the ops inside use optc's
  kernels too. A body reads outer-scope values by name (ONNX scoping): the parent step passes
  every value the body captures (``Node.captured_values``) as extra inputs, and the body
  session takes them as feeds.
* Any other standard op that has no kernel runs through onnx.reference's NumPy
  implementation of that op at the model's opset (``reference_kernel``): LSTM, GRU,
  LayerNormalization, GatherElements, Scan, ... The result is what the ONNX reference says;
  the speed is NumPy's. Ops of other domains, and reference ops that need a subgraph, are
  refused with the node named.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from optc.errors import OptcError
from optc.ir import Graph, Model, Node, Value
from optc.runtime.registry import Kernel


#: the domains whose ops onnx.reference implements (the standard ops and the classic-ML ops)
REFERENCE_DOMAINS = ("", "ai.onnx.ml")


def captured(node: Node) -> list[Value]:
    """The outer-scope values ``node``'s bodies read, in a fixed (name) order."""
    return sorted(node.captured_values(), key=lambda v: v.name)


def control_kernel(node: Node, model: Model, threads: int | None, native: bool,
                   precision: str = "fp32") -> Kernel | None:
    """The step of an If or Loop node (None for other ops). Its arguments are the node's
    inputs followed by the captured values (``captured``). The bodies run with the outer
    session's ``threads``, ``native`` and ``precision``."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in (
            "If", "Loop", "Scan", "SequenceMap"):
        return None
    outer = captured(node)
    names = [v.name for v in outer]

    def body_session(g: Graph):
        from optc.runtime.session import InferenceSession

        body = Model(g, opset_imports=dict(model.opset_imports))
        return InferenceSession(body, threads=threads, native=native, optimization="off",
                                precision=precision, _captured=outer)

    if node.op_type == "If":
        then_s = body_session(node.subgraphs["then_branch"])
        else_s = body_session(node.subgraphs["else_branch"])

        def run_if(cond, *values):
            chosen = then_s if bool(np.asarray(cond).reshape(-1)[0]) else else_s
            return tuple(chosen.run(None, dict(zip(names, values))))

        return _kernel(run_if, "If")

    body = node.subgraphs["body"]
    body_s = body_session(body)
    if node.op_type == "Scan":
        return _scan_kernel(node, body, body_s, names, model.opset_imports.get(
            "", model.opset_imports.get("ai.onnx", 1)))
    if node.op_type == "SequenceMap":
        return _sequence_map_kernel(node, body, body_s, names)
    n_in = len(node.inputs)
    n_carried = len(body.inputs) - 2
    n_scan = len(body.outputs) - 1 - n_carried
    inputs = [v.name for v in body.inputs]

    def run_loop(*args):
        trip, cond = args[0], args[1] if n_in > 1 else None
        carried = list(args[2:n_in])
        values = dict(zip(names, args[n_in:]))
        limit = int(np.asarray(trip).reshape(-1)[0]) if trip is not None else None
        keep_going = True if cond is None else bool(np.asarray(cond).reshape(-1)[0])
        scans: list[list[np.ndarray]] = [[] for _ in range(n_scan)]
        i = 0
        while keep_going and (limit is None or i < limit):
            feeds = dict(values)
            feeds[inputs[0]] = np.array(i, np.int64)
            feeds[inputs[1]] = np.array(keep_going, np.bool_)
            feeds.update(zip(inputs[2:], carried))
            outs = body_s.run(None, feeds)
            keep_going = bool(np.asarray(outs[0]).reshape(-1)[0])
            carried = list(outs[1:1 + n_carried])
            for s, v in zip(scans, outs[1 + n_carried:]):
                s.append(v)
            i += 1
        stacked = []
        for k, s in enumerate(scans):
            if s:
                stacked.append(np.stack(s))
            else:  # no iteration: an empty scan output of the body's declared element type
                v = body.outputs[1 + n_carried + k]
                dtype = onnx.helper.tensor_dtype_to_np_dtype(v.dtype) if v.dtype else np.float32
                stacked.append(np.zeros((0,), dtype))
        return tuple(carried + stacked)

    return _kernel(run_loop, "Loop")


def _scan_kernel(node: Node, body: Graph, body_s, names: list[str], opset: int) -> Kernel:
    """Scan (schema 9+: scan axes and directions per input/output; schema 8: a leading batch
    axis and optional sequence_lens, run as one schema-9 scan per batch entry)."""
    n_scan_in = int(node.attr("num_scan_inputs"))
    n_in = len(node.inputs) - (1 if opset < 9 else 0)
    n_state = n_in - n_scan_in
    n_scan_out = len(body.outputs) - n_state
    in_names = [v.name for v in body.inputs]

    def attr(name, n):
        v = node.attr(name) if name in node.attributes else None
        return [int(a) for a in v] if v is not None else [0] * n

    in_axes, in_dirs = attr("scan_input_axes", n_scan_in), attr("scan_input_directions",
                                                                n_scan_in)
    out_axes, out_dirs = attr("scan_output_axes", n_scan_out), attr("scan_output_directions",
                                                                    n_scan_out)
    if opset < 9:
        in_dirs = attr("directions", n_scan_in)

    def scan9(states, scans, values, axes_in, axes_out):
        axes_in = [a + s.ndim if a < 0 else a for a, s in zip(axes_in, scans)]
        steps = scans[0].shape[axes_in[0]] if scans else 0
        if any(s.shape[a] != steps for s, a in zip(scans, axes_in)):
            raise OptcError("Scan: the scan inputs differ in length along their scan axes")
        outs: list[list[np.ndarray]] = [[] for _ in range(n_scan_out)]
        states = list(states)
        for i in range(steps):
            feeds = dict(values)
            feeds.update(zip(in_names[:n_state], states))
            for name, s, a, rev in zip(in_names[n_state:], scans, axes_in, in_dirs):
                feeds[name] = np.take(s, steps - 1 - i if rev else i, axis=a)
            result = body_s.run(None, feeds)
            states = result[:n_state]
            for o, v in zip(outs, result[n_state:]):
                o.append(v)
        stacked = []
        for o, a, rev in zip(outs, axes_out, out_dirs):
            if rev:
                o = o[::-1]
            if not o:
                raise OptcError("Scan: zero iterations (empty scan inputs) are not supported")
            a = a + o[0].ndim + 1 if a < 0 else a
            stacked.append(np.stack(o, axis=a))
        return list(states) + stacked

    def run_scan(*args):
        values = dict(zip(names, args[len(node.inputs):]))
        if opset >= 9:
            ins = args[:n_in]
            return tuple(scan9(ins[:n_state], ins[n_state:], values, in_axes, out_axes))
        lens, ins = args[0], args[1:1 + n_in]
        batch = ins[0].shape[0] if ins else 0
        per = []
        for b in range(batch):
            scans = [s[b] for s in ins[n_state:]]
            if lens is not None and int(np.asarray(lens).reshape(-1)[b]) != scans[0].shape[0]:
                raise OptcError("Scan (opset 8): sequence_lens shorter than the sequence are "
                                "not supported")
            per.append(scan9([s[b] for s in ins[:n_state]], scans, values, [0] * n_scan_in,
                             [0] * n_scan_out))
        return tuple(np.stack([p[k] for p in per]) for k in range(n_state + n_scan_out))

    return _kernel(run_scan, "Scan")


def _sequence_map_kernel(node: Node, body: Graph, body_s, names: list[str]) -> Kernel:
    """SequenceMap: the body once per element of the input sequence(s); a tensor among the
    additional inputs goes to every iteration whole."""
    in_names = [v.name for v in body.inputs]
    n_in = len(node.inputs)

    def run_map(*args):
        values = dict(zip(names, args[n_in:]))
        ins = args[:n_in]
        n = len(ins[0])
        outs: list[list[np.ndarray]] = [[] for _ in body.outputs]
        for i in range(n):
            feeds = dict(values)
            for name, v in zip(in_names, ins):
                feeds[name] = v[i] if isinstance(v, list) else v
            for o, r in zip(outs, body_s.run(None, feeds)):
                o.append(r)
        return tuple(outs)

    return _kernel(run_map, "SequenceMap")


def reference_kernel(node: Node, opset: int, label: str) -> Kernel:
    """A step that runs onnx.reference's implementation of ``node`` (a standard op without a
    kernel of optc's own); OptcError naming the node where onnx.reference has none either."""
    from onnx.reference.ops import load_op

    from optc.ir.serde import node_to_proto

    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    if domain not in REFERENCE_DOMAINS:
        raise OptcError(f"{label}: optc.runtime has no kernel for op {node.domain}."
                        f"{node.op_type}")
    if node.subgraphs:
        raise OptcError(f"{label}: optc.runtime does not run {node.op_type} (an op with a "
                        f"subgraph other than If and Loop)")
    proto = node_to_proto(node)
    try:
        if domain == "ai.onnx.ml":
            from onnx.reference.ops.aionnxml import load_op as load_ml_op

            cls = load_ml_op(domain, node.op_type, opset)
        else:
            cls = load_op(domain, node.op_type, opset, node=proto)
        op = cls(proto, {"opsets": {domain: opset}, "new_ops": None, "verbose": 0,
                         "log": lambda *a, **k: None})
    except Exception as e:  # noqa: BLE001 -- onnx.reference raises many types
        raise OptcError(f"{label}: optc.runtime has no kernel for op {domain or 'ai.onnx'}."
                        f"{node.op_type} "
                        f"(opset {opset}), and onnx.reference cannot run it either: "
                        f"{str(e).splitlines()[0][:160]}") from None
    n_out = len(node.outputs)

    def run(*args):
        with np.errstate(over="ignore"):  # a logistic's exp(-x) at large |x|: a 0 or 1 anyway
            result = op.run(*args)
        if not isinstance(result, tuple):
            result = (result,)
        return tuple(_value(r) for r in result[:n_out])

    return _kernel(run, node.op_type)


def _value(r: Any) -> Any:
    """A reference op's result as a session value: an array, a list (a sequence), or None
    (an omitted output or an empty optional)."""
    if r is None:
        return None
    if isinstance(r, list):
        return [np.asarray(x) for x in r]
    return np.asarray(r)


def _kernel(fn: Callable[..., Any], op_type: str) -> Kernel:
    return Kernel(fn=fn, op_type=op_type, domain="", since=1, attributes=frozenset(),
                  wants_outputs=False)

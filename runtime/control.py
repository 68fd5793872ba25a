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


def captured(node: Node) -> list[Value]:
    """The outer-scope values ``node``'s bodies read, in a fixed (name) order."""
    return sorted(node.captured_values(), key=lambda v: v.name)


def control_kernel(node: Node, model: Model, threads: int | None, native: bool
                   ) -> Kernel | None:
    """The step of an If or Loop node (None for other ops). Its arguments are the node's
    inputs followed by the captured values (``captured``)."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in ("If", "Loop"):
        return None
    outer = captured(node)
    names = [v.name for v in outer]

    def body_session(g: Graph):
        from optc.runtime.session import InferenceSession

        body = Model(g, opset_imports=dict(model.opset_imports))
        return InferenceSession(body, threads=threads, native=native, _captured=outer)

    if node.op_type == "If":
        then_s = body_session(node.subgraphs["then_branch"])
        else_s = body_session(node.subgraphs["else_branch"])

        def run_if(cond, *values):
            chosen = then_s if bool(np.asarray(cond).reshape(-1)[0]) else else_s
            return tuple(chosen.run(None, dict(zip(names, values))))

        return _kernel(run_if, "If")

    body = node.subgraphs["body"]
    body_s = body_session(body)
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


def reference_kernel(node: Node, opset: int, label: str) -> Kernel:
    """A step that runs onnx.reference's implementation of ``node`` (a standard op without a
    kernel of optc's own); OptcError naming the node where onnx.reference has none either."""
    from onnx.reference.ops import load_op

    from optc.ir.serde import node_to_proto

    if node.domain not in ("", "ai.onnx"):
        raise OptcError(f"{label}: optc.runtime has no kernel for op {node.domain}."
                        f"{node.op_type}")
    if node.subgraphs:
        raise OptcError(f"{label}: optc.runtime does not run {node.op_type} (an op with a "
                        f"subgraph other than If and Loop)")
    proto = node_to_proto(node)
    try:
        cls = load_op("", node.op_type, opset, node=proto)
        op = cls(proto, {"opsets": {"": opset}, "new_ops": None, "verbose": 0,
                         "log": lambda *a, **k: None})
    except Exception as e:  # noqa: BLE001 -- onnx.reference raises many types
        raise OptcError(f"{label}: optc.runtime has no kernel for op ai.onnx.{node.op_type} "
                        f"(opset {opset}), and onnx.reference cannot run it either: "
                        f"{str(e).splitlines()[0][:160]}") from None
    n_out = len(node.outputs)

    def run(*args):
        with np.errstate(over="ignore"):  # a logistic's exp(-x) at large |x|: a 0 or 1 anyway
            result = op.run(*args)
        if not isinstance(result, tuple):
            result = (result,)
        return tuple(np.asarray(r) if r is not None else None for r in result[:n_out])

    return _kernel(run, node.op_type)


def _kernel(fn: Callable[..., Any], op_type: str) -> Kernel:
    return Kernel(fn=fn, op_type=op_type, domain="", since=1, attributes=frozenset(),
                  wants_outputs=False)

"""Shape and dtype inference: onnx's shape inference (with data propagation, so shapes computed
by Shape/Gather/Concat chains resolve) written back onto the IR's values.

Symbolic dims (dim_param) flow through as strings. Values that onnx cannot infer (ops of
unknown domains) keep whatever type they had.
"""

from __future__ import annotations

import onnx

from optc.ir.core import Graph, Model


def infer_shapes(model: Model) -> None:
    """Fill in ``Value.type`` for every value of the main graph that onnx can infer."""
    from optc.ir.serde import to_proto

    # large initializers' data is not needed (only their types, and data propagation reads
    # small shape tensors), so a skeleton proto keeps this cheap for big models
    proto = to_proto(model, skeleton=True)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False,
                                                     data_prop=True)
    except (onnx.shape_inference.InferenceError, ValueError, RuntimeError):
        return
    _apply(model.graph, inferred.graph)


def _apply(graph: Graph, gp: onnx.GraphProto) -> None:
    by_name = graph.values()
    for vi in list(gp.value_info) + list(gp.output):
        v = by_name.get(vi.name)
        if v is None or not vi.HasField("type") or v.is_const:
            continue
        if _more_specific(vi.type, v.type):
            t = onnx.TypeProto()
            t.CopyFrom(vi.type)
            v.type = t


def _more_specific(new: onnx.TypeProto, old: onnx.TypeProto | None) -> bool:
    if old is None:
        return True
    if not (new.HasField("tensor_type") and old.HasField("tensor_type")):
        return False
    nt, ot = new.tensor_type, old.tensor_type
    if not ot.elem_type and nt.elem_type:
        return True
    if not ot.HasField("shape"):
        return nt.HasField("shape")
    if not nt.HasField("shape") or len(nt.shape.dim) != len(ot.shape.dim):
        return False
    known = lambda t: sum(d.HasField("dim_value") for d in t.shape.dim)  # noqa: E731
    return known(nt) > known(ot)

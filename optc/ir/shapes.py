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


def set_input_shapes(model: Model, shapes: dict[str, tuple[int, ...]]) -> None:
    """Fix the dims of model inputs (onnxsim's ``--overwrite-input-shape``): ``shapes`` maps an
    input's name to its new static shape; a dim the model fixed already must agree. The
    shapes that follow are inferred again, so an output of a fixed-size model is fixed too.
    """
    from onnx import helper

    from optc.errors import OptcError

    g = model.graph
    inputs = {v.name: v for v in g.inputs if not g.is_initializer(v)}
    for name, dims in shapes.items():
        v = inputs.get(name)
        if v is None:
            raise OptcError(f"--input-shape: the model has no input '{name}' (inputs: "
                            f"{', '.join(inputs) or 'none'})")
        dims = tuple(int(d) for d in dims)
        if any(d <= 0 for d in dims):
            raise OptcError(f"--input-shape {name}: dims must be positive, got {list(dims)}")
        old = v.shape
        if old is not None:
            if len(old) != len(dims):
                raise OptcError(f"--input-shape {name}: the input has rank {len(old)} "
                                f"({_fmt(old)}), got {len(dims)} dims {list(dims)}")
            for i, (o, d) in enumerate(zip(old, dims)):
                if isinstance(o, int) and o > 0 and o != d:
                    raise OptcError(f"--input-shape {name}: dim {i} is fixed to {o} by the "
                                    f"model ({_fmt(old)}), got {d}")
        if v.dtype is None:
            raise OptcError(f"--input-shape {name}: the input's element type is unknown")
        v.type = helper.make_tensor_type_proto(v.dtype, list(dims))
    infer_shapes(model)


def parse_input_shapes(texts, input_names: list[str]) -> dict[str, tuple[int, ...]]:
    """``NAME=1,3,224,224`` items (``1,3,224,224`` alone when the model has one input) ->
    {name: dims}."""
    from optc.errors import OptcError

    out: dict[str, tuple[int, ...]] = {}
    for text in texts:
        name, sep, dims = text.rpartition("=")
        if not sep:
            if len(input_names) != 1:
                raise OptcError(f"--input-shape '{text}': the model has inputs "
                                f"{', '.join(input_names)}: write NAME=DIMS")
            name = input_names[0]
        try:
            out[name] = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            raise OptcError(f"--input-shape '{text}': expected NAME=D0,D1,... with integer "
                            f"dims") from None
        if not out[name]:
            raise OptcError(f"--input-shape '{text}': no dims")
    return out


def _fmt(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"

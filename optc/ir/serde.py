"""ONNX <-> IR conversion, loading and (atomic) saving.

The round trip ONNX -> IR -> ONNX is lossless: opset imports and every model-level field
(including ones optc does not model, carried in a copy of the ModelProto without its graph),
metadata_props, doc strings, value_info, subgraphs of If/Loop/Scan (converted to IR graphs
whose nodes read outer values directly), sparse initializers and quantization annotations
(carried as they are), initializer TensorProtos (kept as loaded until a pass changes them).

Models whose tensors add up to more than ``EXTERNAL_DATA_THRESHOLD`` bytes are saved with
their tensors in one external data file beside the model (protobuf cannot hold 2 GB).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from optc.errors import OptcError
from optc.ir.core import Graph, Model, Node, Value

# protobuf refuses messages over 2 GiB; leave headroom for the graph structure itself.
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**26

_NODE_FIELDS = ("name", "domain", "overload", "doc_string")
_MODELED_NODE_FIELDS = _NODE_FIELDS + ("input", "output", "op_type", "attribute", "metadata_props")
_GRAPH_ATTR_TYPES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


# --------------------------------------------------------------------------------------------
# ONNX -> IR
# --------------------------------------------------------------------------------------------
def from_proto(proto: onnx.ModelProto) -> Model:
    """Convert a ModelProto into an IR Model."""
    if not proto.HasField("graph"):
        raise OptcError("not an ONNX model: it has no graph")
    graph = _graph_from_proto(proto.graph, scope={}, parent=None)
    model = Model(graph, {op.domain: op.version for op in proto.opset_import})
    model.ir_version = proto.ir_version
    model.producer_name = proto.producer_name
    model.producer_version = proto.producer_version
    model.domain = proto.domain
    model.model_version = proto.model_version
    model.doc_string = proto.doc_string
    model.metadata_props = {p.key: p.value for p in proto.metadata_props}
    rest = onnx.ModelProto()
    rest.CopyFrom(proto)
    rest.ClearField("graph")
    model._rest = rest  # type: ignore[attr-defined]
    return model


def _graph_from_proto(gp: onnx.GraphProto, scope: dict[str, Value], parent: Graph | None) -> Graph:
    g = Graph(gp.name, parent=parent)
    g.doc_string = gp.doc_string
    g.sparse_initializers = list(gp.sparse_initializer)
    g.quantization_annotation = list(gp.quantization_annotation)
    if hasattr(gp, "metadata_props"):
        g.metadata_props = {p.key: p.value for p in gp.metadata_props}
    local: dict[str, Value] = {}

    def define(v: Value, what: str) -> Value:
        if v.name in local:
            raise OptcError(f"graph '{gp.name}': {what} '{v.name}' is defined twice")
        local[v.name] = v
        return v

    for vi in gp.input:
        v = define(Value(vi.name, _type_of(vi), doc_string=vi.doc_string), "input")
        v.metadata_props = _props(vi)
        g.inputs.append(v)
    for t in gp.initializer:
        v = local.get(t.name)
        if v is None or not g.is_input(v):
            v = define(Value(t.name), "initializer")
        v._tensor = t
        if v.type is None:
            from optc.ir.core import tensor_type
            v.type = tensor_type(t.data_type, tuple(t.dims))
        g.initializers[t.name] = v
    # sparse initializers are carried as protos; their values may still be read by nodes
    for st in gp.sparse_initializer:
        if st.values.name not in local:
            define(Value(st.values.name), "sparse initializer")

    value_info = {vi.name: vi for vi in gp.value_info}
    # Create every node output first so that a graph whose nodes are out of order still loads
    # (the loader sorts it) and subgraphs can see all outer values.
    outs_per_node: list[list[Value | None]] = []
    for np_ in gp.node:
        outs: list[Value | None] = []
        for name in np_.output:
            if not name:
                outs.append(None)
                continue
            vi = value_info.get(name)
            v = Value(name, _type_of(vi) if vi is not None else None,
                      doc_string=vi.doc_string if vi is not None else "")
            if vi is not None:
                v.metadata_props = _props(vi)
            outs.append(define(v, "value"))
        outs_per_node.append(outs)

    def lookup(name: str, who: str) -> Value:
        v = local.get(name)
        if v is None:
            v = scope.get(name)
        if v is None:
            raise OptcError(f"{who} reads '{name}', which no node, input or initializer defines")
        return v

    inner_scope = {**scope, **local}
    for np_, outs in zip(gp.node, outs_per_node):
        label = f"node '{np_.name}' ({np_.op_type})" if np_.name else f"a {np_.op_type} node"
        inputs = [lookup(n, label) if n else None for n in np_.input]
        node = Node(np_.op_type, inputs, outs, domain=np_.domain, name=np_.name,
                    doc_string=np_.doc_string)
        node.present_fields = frozenset(f for f in _NODE_FIELDS if np_.HasField(f))
        extra = onnx.NodeProto()
        extra.CopyFrom(np_)
        for f in _MODELED_NODE_FIELDS:
            extra.ClearField(f)
        if extra.ByteSize():
            node.extra_proto = extra
        if np_.overload:
            node.overload = np_.overload
        if hasattr(np_, "metadata_props"):
            node.metadata_props = {p.key: p.value for p in np_.metadata_props}
        for a in np_.attribute:
            if a.type in _GRAPH_ATTR_TYPES and not a.ref_attr_name:
                placeholder = onnx.AttributeProto(name=a.name, type=a.type)
                node.attributes[a.name] = placeholder
                if a.type == onnx.AttributeProto.GRAPH:
                    sub = _graph_from_proto(a.g, inner_scope, g)
                    sub.owner = node
                    node.subgraphs[a.name] = sub
                else:
                    subs = [_graph_from_proto(x, inner_scope, g) for x in a.graphs]
                    for s in subs:
                        s.owner = node
                    node.subgraphs[a.name] = subs
            else:
                node.attributes[a.name] = a
        g.append(node)

    for vi in gp.output:
        v = lookup(vi.name, f"graph '{gp.name}' output")
        t = _type_of(vi)
        if t is not None:
            v.type = t
        if vi.doc_string:
            v.doc_string = vi.doc_string
        g.outputs.append(v)

    from optc.ir.analysis import topological_sort
    topological_sort(g)
    return g


def _type_of(vi: onnx.ValueInfoProto) -> onnx.TypeProto | None:
    if vi.HasField("type"):
        t = onnx.TypeProto()
        t.CopyFrom(vi.type)
        return t
    return None


def _props(msg) -> dict[str, str]:
    return {p.key: p.value for p in getattr(msg, "metadata_props", [])}


# --------------------------------------------------------------------------------------------
# IR -> ONNX
# --------------------------------------------------------------------------------------------
def to_proto(model: Model, *, skeleton: bool = False) -> onnx.ModelProto:
    """Convert an IR Model into a ModelProto.

    ``skeleton=True`` leaves out the data of initializers over 1 KiB (they become typed graph
    inputs instead): enough for shape inference, and cheap for big models.
    """
    proto = onnx.ModelProto()
    rest = getattr(model, "_rest", None)
    if rest is not None:
        proto.CopyFrom(rest)
    # proto2 fields have presence: set only what differs, so a round trip is byte-identical
    for name in ("ir_version", "producer_name", "producer_version", "domain", "model_version",
                 "doc_string"):
        value = getattr(model, name)
        if value != getattr(proto, name) or (value and not proto.HasField(name)):
            setattr(proto, name, value)
    if [(o.domain, o.version) for o in proto.opset_import] != list(model.opset_imports.items()):
        del proto.opset_import[:]
        for domain, version in model.opset_imports.items():
            op = proto.opset_import.add(version=version)
            if domain:
                op.domain = domain
    del proto.metadata_props[:]
    for k, v in model.metadata_props.items():
        proto.metadata_props.add(key=k, value=v)
    proto.graph.CopyFrom(graph_to_proto(model.graph, skeleton=skeleton))
    if skeleton and proto.ir_version < 4:
        proto.ir_version = 4  # initializers need not be inputs
    return proto


_SKELETON_BYTES = 1024


def clone(model: Model) -> Model:
    """A structural copy of ``model`` whose large initializers share the original's arrays
    (no copy of the weights: a 100 MB model clones in a few MB). Passes replace initializer
    data with ``set_const`` rather than writing into arrays, so the two stay independent.
    Models with subgraphs are copied in full."""
    if any(n.subgraphs for n in model.graph.nodes):
        return from_proto(to_proto(model))
    copy = from_proto(to_proto(model, skeleton=True))
    g, src = copy.graph, model.graph
    by_name = g.values()
    for name, v in src.initializers.items():
        if name in g.initializers:
            continue
        c = by_name[name]  # the skeleton listed it as a graph input
        if not src.is_input(v):
            g.inputs = [i for i in g.inputs if i is not c]
        g.initializers[name] = c
        c._tensor, c._array = v._tensor, v.const_value  # decoded once, shared
    g.initializers = {name: g.initializers[name] for name in src.initializers}  # same order
    return copy


def graph_to_proto(g: Graph, *, skeleton: bool = False) -> onnx.GraphProto:
    gp = onnx.GraphProto(name=g.name)
    if g.doc_string:
        gp.doc_string = g.doc_string
    for v in g.inputs:
        gp.input.append(_value_info(v))
    for v in g.initializers.values():
        if skeleton and v.nbytes > _SKELETON_BYTES:
            if not g.is_input(v):
                gp.input.append(_value_info(v))
            continue
        gp.initializer.append(v.tensor_proto())
    gp.sparse_initializer.extend(g.sparse_initializers)
    outputs = set(g.outputs)
    for n in g.nodes:
        gp.node.append(node_to_proto(n, skeleton=skeleton))
        for v in n.outputs:
            if v is not None and v not in outputs and v.type is not None:
                gp.value_info.append(_value_info(v))
    for v in g.outputs:
        gp.output.append(_value_info(v))
    gp.quantization_annotation.extend(g.quantization_annotation)
    for k, val in g.metadata_props.items():
        gp.metadata_props.add(key=k, value=val)
    return gp


def node_to_proto(n: Node, *, skeleton: bool = False) -> onnx.NodeProto:
    np_ = onnx.NodeProto(op_type=n.op_type)
    for name in _NODE_FIELDS:
        if getattr(n, name) or name in n.present_fields:
            setattr(np_, name, getattr(n, name))
    np_.input.extend(v.name if v is not None else "" for v in n.inputs)
    np_.output.extend(v.name if v is not None else "" for v in n.outputs)
    for name, a in n.attributes.items():
        sub = n.subgraphs.get(name)
        if sub is None:
            np_.attribute.append(a)
        elif isinstance(sub, list):
            np_.attribute.append(onnx.AttributeProto(
                name=name, type=onnx.AttributeProto.GRAPHS,
                graphs=[graph_to_proto(s, skeleton=skeleton) for s in sub]))
        else:
            np_.attribute.append(onnx.AttributeProto(
                name=name, type=onnx.AttributeProto.GRAPH, g=graph_to_proto(sub)))
    for k, val in n.metadata_props.items():
        np_.metadata_props.add(key=k, value=val)
    if n.extra_proto is not None:
        np_.MergeFrom(n.extra_proto)
    return np_


def _value_info(v: Value) -> onnx.ValueInfoProto:
    vi = onnx.ValueInfoProto(name=v.name)
    if v.doc_string:
        vi.doc_string = v.doc_string
    if v.type is not None:
        vi.type.CopyFrom(v.type)
    for k, val in v.metadata_props.items():
        vi.metadata_props.add(key=k, value=val)
    return vi


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------
def load(source: str | os.PathLike | bytes | onnx.ModelProto | Model) -> Model:
    """Load a model from a path, serialized bytes, a ModelProto or (unchanged) a Model.

    Raises OptcError with one line naming the file and what is wrong with it.
    """
    if isinstance(source, Model):
        return source
    if isinstance(source, onnx.ModelProto):
        return from_proto(source)
    if isinstance(source, (bytes, bytearray)):
        return from_proto(_parse(bytes(source), "<bytes>"))
    path = Path(source)
    if not path.exists():
        raise OptcError(f"{path}: no such file")
    if path.is_dir():
        raise OptcError(f"{path}: is a directory, not an ONNX model")
    data = path.read_bytes()
    if not data:
        raise OptcError(f"{path}: empty file, not an ONNX model")
    proto = _parse(data, str(path))
    if _uses_external_data(proto.graph):
        try:
            from onnx.external_data_helper import load_external_data_for_model
            load_external_data_for_model(proto, str(path.parent))
        except (OSError, ValueError, onnx.checker.ValidationError) as e:
            raise OptcError(f"{path}: cannot read its external data: {_one_line(e)}") from e
    try:
        return from_proto(proto)
    except OptcError as e:
        raise OptcError(f"{path}: {e}") from e


def _parse(data: bytes, label: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise OptcError(f"{label}: not an ONNX model (protobuf parse failed: the file is "
                        f"truncated or not ONNX)") from e
    if proto.ir_version <= 0 or not proto.HasField("graph") or not proto.opset_import:
        raise OptcError(f"{label}: not an ONNX model (no ir_version, opset_import or graph)")
    return proto


def _uses_external_data(gp: onnx.GraphProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in gp.initializer)


def _tensor_bytes(model: Model) -> int:
    total = 0
    stack = [model.graph]
    while stack:
        g = stack.pop()
        total += sum(v.nbytes for v in g.initializers.values())
        for n in g.nodes:
            stack.extend(n.all_subgraphs())
    return total


def save(model: Model | Graph, path: str | os.PathLike, *,
         external_threshold: int = EXTERNAL_DATA_THRESHOLD) -> None:
    """Save atomically: the file at ``path`` is either the complete new model or untouched.

    If the tensors add up to more than ``external_threshold`` bytes they go to one external
    data file ``<name>.data`` beside the model.
    """
    if isinstance(model, Graph):
        model = Model(model)
    path = Path(path)
    if path.is_dir():
        raise OptcError(f"{path}: is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise OptcError(f"{path}: directory '{parent}' does not exist")
    proto = to_proto(model)
    external = _tensor_bytes(model) > external_threshold
    tmpdir = tempfile.mkdtemp(prefix=f".{path.name}.", dir=parent)
    try:
        tmp_model = Path(tmpdir) / path.name
        data_name = path.name + ".data"
        if external:
            onnx.save_model(proto, str(tmp_model), save_as_external_data=True,
                            all_tensors_to_one_file=True, location=data_name, size_threshold=1024)
            os.replace(Path(tmpdir) / data_name, parent / data_name)
        else:
            with open(tmp_model, "wb") as f:
                f.write(proto.SerializeToString())
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp_model, path)
    finally:
        for leftover in Path(tmpdir).glob("*"):
            leftover.unlink()
        os.rmdir(tmpdir)


def serialize(model: Model) -> bytes:
    """The model as ONNX bytes (for models under 2 GB)."""
    return to_proto(model).SerializeToString()


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())

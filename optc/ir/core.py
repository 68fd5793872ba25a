"""optc's in-memory IR: Model, Graph, Node, Value.

Invariants (checked by :func:`optc.ir.verify`):

* every Value is produced by exactly one Node output, or is a graph input or an initializer
  (or, inside a subgraph, a value captured from an enclosing graph);
* ``value.uses()`` lists exactly the (node, input index) pairs that read it — including nodes
  inside subgraphs that capture it from an outer scope;
* ``graph.nodes`` is in topological order.

Only Node methods edit use lists (``Node.__init__``, ``Node.replace_input``,
``Node.set_inputs``, ``Graph.remove`` via ``Node._detach``) and ``Value.replace_all_uses_with``
goes through them, so the lists cannot drift from the node inputs.

Tensor types are kept as ``onnx.TypeProto`` so that sequence/optional/map types and symbolic
dimensions survive a round trip; ``Value.dtype`` and ``Value.shape`` are convenience views.
Initializer data is kept as the original ``onnx.TensorProto`` until somebody asks for the NumPy
array, so that a round trip is byte-for-byte lossless (raw_data layout, external data, dtypes
NumPy has no native type for).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from optc.errors import IRError

Dim = int | str | None


def tensor_type(dtype: int, shape: Sequence[Dim] | None) -> onnx.TypeProto:
    """A TypeProto for a tensor of ``dtype`` (onnx.TensorProto enum) and ``shape``.

    ``shape=None`` means unknown rank; a ``str`` dim is symbolic, ``None`` is unknown.
    """
    tp = onnx.TypeProto()
    tp.tensor_type.elem_type = dtype
    if shape is not None:
        tp.tensor_type.shape.SetInParent()
        for d in shape:
            dim = tp.tensor_type.shape.dim.add()
            if isinstance(d, (int, np.integer)):
                dim.dim_value = int(d)
            elif isinstance(d, str):
                dim.dim_param = d
    return tp


class Value:
    """A named SSA value: a graph input, an initializer, or a node output."""

    __slots__ = ("name", "type", "doc_string", "_producer", "_uses", "_tensor", "_array",
                 "metadata_props")

    def __init__(self, name: str, type: onnx.TypeProto | None = None, *, doc_string: str = ""):
        self.name = name
        self.type = type
        self.doc_string = doc_string
        self.metadata_props: dict[str, str] = {}
        self._producer: tuple[Node, int] | None = None
        self._uses: list[tuple[Node, int]] = []
        self._tensor: onnx.TensorProto | None = None  # initializer data as loaded
        self._array: np.ndarray | None = None  # initializer data as NumPy (cached / set by a pass)

    # --- structure -------------------------------------------------------------------------
    def producer(self) -> Node | None:
        return self._producer[0] if self._producer else None

    def uses(self) -> list[tuple[Node, int]]:
        """(node, input index) pairs reading this value; a copy, safe to iterate while editing."""
        return list(self._uses)

    def replace_all_uses_with(self, new: Value) -> None:
        """Make every node that reads ``self`` read ``new`` instead (graph outputs untouched:
        see ``Graph.substitute`` for the case where ``self`` is a graph output)."""
        if new is self:
            return
        for node, index in self.uses():
            node.replace_input(index, new)

    # --- constant data ----------------------------------------------------------------------
    @property
    def is_const(self) -> bool:
        return self._tensor is not None or self._array is not None

    @property
    def const_value(self) -> np.ndarray | None:
        """Initializer data as a NumPy array (None for non-initializers)."""
        if self._array is None and self._tensor is not None:
            self._array = numpy_helper.to_array(self._tensor)
        return self._array

    def set_const(self, array: np.ndarray) -> None:
        """Replace this initializer's data (its type follows the array)."""
        array = np.asarray(array)
        self._array = array
        self._tensor = None
        self.type = tensor_type(helper.np_dtype_to_tensor_dtype(array.dtype), array.shape)

    def tensor_proto(self) -> onnx.TensorProto:
        """Initializer data as a TensorProto named like this value."""
        if self._tensor is not None:
            if self._tensor.name != self.name:
                t = onnx.TensorProto()
                t.CopyFrom(self._tensor)
                t.name = self.name
                self._tensor = t
            return self._tensor
        if self._array is None:
            raise IRError(f"value '{self.name}' is not an initializer")
        self._tensor = numpy_helper.from_array(self._array, self.name)
        return self._tensor

    @property
    def nbytes(self) -> int:
        """Size of the initializer data in bytes (0 for non-initializers)."""
        if self._array is not None:
            return int(self._array.nbytes)
        if self._tensor is not None:
            t = self._tensor
            if t.HasField("raw_data"):
                return len(t.raw_data)
            n = int(np.prod(t.dims)) if len(t.dims) else 1
            try:
                return n * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
            except Exception:
                return n
        return 0

    # --- type views -------------------------------------------------------------------------
    @property
    def dtype(self) -> int | None:
        """onnx.TensorProto element type, or None when unknown / not a tensor."""
        if self.type is not None and self.type.HasField("tensor_type"):
            et = self.type.tensor_type.elem_type
            return et or None
        if self._tensor is not None:
            return self._tensor.data_type
        return None

    @property
    def shape(self) -> tuple[Dim, ...] | None:
        """Shape with ints for static dims, str for symbolic ones, None for unknown (an unnamed
        or negative dim); None if the rank is unknown."""
        if self._array is not None:
            return tuple(self._array.shape)
        if self._tensor is not None:
            return tuple(self._tensor.dims)
        if self.type is None or not self.type.HasField("tensor_type"):
            return None
        tt = self.type.tensor_type
        if not tt.HasField("shape"):
            return None
        out: list[Dim] = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                # -1 is what paddle2onnx (and some tf2onnx exports) write for a dynamic dim:
                # read as unknown (the TypeProto itself is kept as written)
                out.append(d.dim_value if d.dim_value >= 0 else None)
            elif d.HasField("dim_param"):
                out.append(d.dim_param)
            else:
                out.append(None)
        return tuple(out)

    def static_shape(self) -> tuple[int, ...] | None:
        s = self.shape
        if s is None or not all(isinstance(d, int) for d in s):
            return None
        return tuple(s)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"Value({self.name!r})"


class Node:
    """One operator application. Attributes are kept as ``onnx.AttributeProto`` except graph
    attributes, whose bodies are IR Graphs (``node.subgraphs``)."""

    __slots__ = ("op_type", "domain", "name", "attributes", "subgraphs", "doc_string",
                 "overload", "metadata_props", "_inputs", "_outputs", "graph", "present_fields",
                 "extra_proto")

    def __init__(
        self,
        op_type: str,
        inputs: Sequence[Value | None] = (),
        outputs: Sequence[Value | None] = (),
        *,
        domain: str = "",
        name: str = "",
        attributes: Iterable[onnx.AttributeProto] | dict[str, Any] = (),
        doc_string: str = "",
    ):
        self.op_type = op_type
        self.domain = domain
        self.name = name
        self.doc_string = doc_string
        self.overload = ""
        self.metadata_props: dict[str, str] = {}
        self.attributes: dict[str, onnx.AttributeProto] = {}
        # subgraph attributes: name -> Graph (GRAPH) or list[Graph] (GRAPHS)
        self.subgraphs: dict[str, Graph | list[Graph]] = {}
        self.graph: Graph | None = None
        # optional NodeProto fields that were explicitly present when loaded (even if empty),
        # so that serialization reproduces the original bytes
        self.present_fields: frozenset[str] = frozenset()
        # NodeProto fields optc does not model (e.g. device_configurations), carried as loaded
        self.extra_proto: onnx.NodeProto | None = None
        if isinstance(attributes, dict):
            for k, v in attributes.items():
                self.set_attr(k, v)
        else:
            for a in attributes:
                self.attributes[a.name] = a
        self._inputs: list[Value | None] = []
        self._outputs: list[Value | None] = []
        for v in inputs:
            self._append_input(v)
        for i, v in enumerate(outputs):
            if v is not None:
                if v._producer is not None:
                    raise IRError(f"value '{v.name}' already has a producer")
                v._producer = (self, i)
            self._outputs.append(v)

    # --- inputs / outputs -------------------------------------------------------------------
    @property
    def inputs(self) -> tuple[Value | None, ...]:
        return tuple(self._inputs)

    @property
    def outputs(self) -> tuple[Value | None, ...]:
        return tuple(self._outputs)

    def _append_input(self, v: Value | None) -> None:
        index = len(self._inputs)
        self._inputs.append(v)
        if v is not None:
            v._uses.append((self, index))

    def replace_input(self, index: int, new: Value | None) -> None:
        old = self._inputs[index]
        if old is new:
            return
        if old is not None:
            old._uses.remove((self, index))
        self._inputs[index] = new
        if new is not None:
            new._uses.append((self, index))

    def set_inputs(self, inputs: Sequence[Value | None]) -> None:
        self._detach_inputs()
        for v in inputs:
            self._append_input(v)

    def _detach_inputs(self) -> None:
        for index, v in enumerate(self._inputs):
            if v is not None:
                v._uses.remove((self, index))
        self._inputs = []

    def set_output(self, index: int, value: Value) -> None:
        """Replace output ``index`` by a fresh value (which must have no producer)."""
        old = self._outputs[index]
        if old is not None:
            if old._uses:
                raise IRError(f"cannot replace output '{old.name}' of {self}: it is still used")
            old._producer = None
        if value._producer is not None:
            raise IRError(f"value '{value.name}' already has a producer")
        value._producer = (self, index)
        self._outputs[index] = value

    # --- attributes -------------------------------------------------------------------------
    def attr(self, name: str, default: Any = None) -> Any:
        """Python value of attribute ``name`` (graph attributes give IR Graphs)."""
        if name in self.subgraphs:
            return self.subgraphs[name]
        a = self.attributes.get(name)
        if a is None:
            return default
        if a.ref_attr_name:
            return default
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode() for x in v]
        return v

    def set_attr(self, name: str, value: Any) -> None:
        if isinstance(value, onnx.AttributeProto):
            self.attributes[name] = value
            return
        if isinstance(value, np.ndarray):
            value = numpy_helper.from_array(value)
        self.attributes[name] = helper.make_attribute(name, value)

    def all_subgraphs(self) -> Iterator[Graph]:
        for g in self.subgraphs.values():
            if isinstance(g, list):
                yield from g
            else:
                yield g

    def captured_values(self) -> set[Value]:
        """Outer-scope values read by nodes inside this node's subgraphs (recursively)."""
        out: set[Value] = set()
        for g in self.all_subgraphs():
            local = g.local_values()
            for n in g.nodes:
                for v in n._inputs:
                    if v is not None and v not in local:
                        out.add(v)
                for v in n.captured_values():
                    if v not in local:
                        out.add(v)
            for v in g.outputs:
                if v not in local:
                    out.add(v)
        return out

    def __repr__(self) -> str:
        label = f" '{self.name}'" if self.name else ""
        dom = f"{self.domain}." if self.domain else ""
        return f"{dom}{self.op_type}{label}"


class Graph:
    """An ordered list of nodes with inputs, outputs and initializers."""

    def __init__(self, name: str = "graph", *, parent: Graph | None = None):
        self.name = name
        self.doc_string = ""
        self.parent = parent  # enclosing graph for subgraphs
        self.owner: Node | None = None  # the node whose attribute this subgraph is
        self._nodes: list[Node] = []
        self.inputs: list[Value] = []
        self.outputs: list[Value] = []
        self.initializers: dict[str, Value] = {}
        # carried through unchanged
        self.sparse_initializers: list[onnx.SparseTensorProto] = []
        self.quantization_annotation: list[onnx.TensorAnnotation] = []
        self.metadata_props: dict[str, str] = {}
        self._counter = itertools.count()
        # every name ever used or handed out in this graph tree (kept on the root graph):
        # seeded by one full scan on first use, then kept up to date by the methods that add
        # values (append/insert, add_initializer, unique_name, transfer_name, rename_value).
        # Code that appends to ``inputs`` directly must use names it got from unique_name.
        self._names: set[str] = set()
        self._names_seeded = False

    # --- nodes ------------------------------------------------------------------------------
    @property
    def nodes(self) -> tuple[Node, ...]:
        """Snapshot of the nodes in order: safe to iterate while the graph is edited."""
        return tuple(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def _adopt(self, node: Node) -> None:
        if node.graph is not None:
            raise IRError(f"{node} is already in a graph")
        node.graph = self
        names = self._root()._names
        for v in node._outputs:
            if v is not None:
                names.add(v.name)
        if node.name:
            names.add(node.name)

    def append(self, node: Node) -> Node:
        self._adopt(node)
        self._nodes.append(node)
        return node

    def insert_before(self, anchor: Node, node: Node) -> Node:
        self._adopt(node)
        self._nodes.insert(self._nodes.index(anchor), node)
        return node

    def insert_after(self, anchor: Node, node: Node) -> Node:
        self._adopt(node)
        self._nodes.insert(self._nodes.index(anchor) + 1, node)
        return node

    def remove(self, node: Node) -> None:
        """Remove ``node``. Refuses while any of its outputs is used or is a graph output."""
        self.remove_nodes([node])

    def remove_nodes(self, nodes: Iterable[Node]) -> None:
        """Remove several nodes at once; uses among the removed nodes themselves are allowed."""
        doomed = list(dict.fromkeys(nodes))
        doomed_set = set(doomed)
        outputs = set(self.outputs)
        for node in doomed:
            if node.graph is not self:
                raise IRError(f"{node} is not in graph '{self.name}'")
            for v in node._outputs:
                if v is None:
                    continue
                if v in outputs:
                    raise IRError(f"cannot remove {node}: its output '{v.name}' is a graph "
                                    f"output")
                for user, _ in v._uses:
                    if user not in doomed_set and not _inside(user, doomed_set):
                        raise IRError(
                            f"cannot remove {node}: its output '{v.name}' is used by {user}")
        for node in doomed:
            node._detach_inputs()
            for sub in node.all_subgraphs():
                sub._detach_all()
            for v in node._outputs:
                if v is not None:
                    v._producer = None
            node.graph = None
        self._nodes = [n for n in self._nodes if n not in doomed_set]

    def _detach_all(self) -> None:
        for n in self._nodes:
            n._detach_inputs()
            for sub in n.all_subgraphs():
                sub._detach_all()

    def set_nodes_order(self, nodes: Sequence[Node]) -> None:
        """Reorder (same set of nodes); used by the topological sort."""
        if len(nodes) != len(self._nodes) or set(nodes) != set(self._nodes):
            raise IRError("set_nodes_order needs exactly the graph's nodes")
        self._nodes = list(nodes)

    # --- values -----------------------------------------------------------------------------
    def _root(self) -> Graph:
        root = self
        while root.parent is not None:
            root = root.parent
        return root

    def unique_name(self, base: str) -> str:
        """A value/node name never used in this graph tree; it is reserved from then on."""
        root = self._root()
        if not root._names_seeded:
            root._names |= root._all_names()
            root._names_seeded = True
        cand = base
        while cand in root._names:
            cand = f"{base}_{next(root._counter)}"
        root._names.add(cand)
        return cand

    def _all_names(self, reserved: bool = True) -> set[str]:
        """Names in use here and in subgraphs; with ``reserved``, also every name ever handed
        out by ``unique_name`` (so that two fresh names never collide before they are used)."""
        names = set(self._names) if reserved and self.parent is None else set()
        names.update(v.name for v in self.inputs)
        names.update(self.initializers)
        for n in self._nodes:
            names.update(v.name for v in n._outputs if v is not None)
            for sub in n.all_subgraphs():
                names |= sub._all_names(reserved)
        return names

    def rename_value(self, value: Value, name: str) -> None:
        """Give ``value`` (defined in this graph) a new name that no live value has.
        Scans the graph: for a rename inside a loop, see ``transfer_name``."""
        if value.name == name:
            return
        root = self._root()
        if name in root._all_names(reserved=False):
            raise IRError(f"cannot rename '{value.name}' to '{name}': the name is taken")
        self._set_name(value, name)
        root._names.add(name)

    def transfer_name(self, source: Value, target: Value) -> None:
        """``target`` takes ``source``'s name and ``source`` gets a fresh one (O(1)): how a
        replacement keeps the name of the value it replaces (a graph output's, a folded
        constant's)."""
        name = source.name
        self._set_name(source, self.unique_name(name + "_replaced"))
        self._set_name(target, name)

    def _set_name(self, value: Value, name: str) -> None:
        if self.is_initializer(value):
            self.initializers = {(name if k == value.name else k): v
                                 for k, v in self.initializers.items()}
        value.name = name

    def new_value(self, base: str, type: onnx.TypeProto | None = None) -> Value:
        return Value(self.unique_name(base), type)

    def add_initializer(self, name: str, array: np.ndarray | onnx.TensorProto) -> Value:
        """Add an initializer; ``name`` is made unique."""
        v = Value(self.unique_name(name))
        if isinstance(array, onnx.TensorProto):
            v._tensor = array
            v.type = tensor_type(array.data_type, tuple(array.dims))
        else:
            v.set_const(np.asarray(array))
        self.initializers[v.name] = v
        return v

    def remove_initializer(self, value: Value) -> None:
        if value._uses:
            raise IRError(f"cannot remove initializer '{value.name}': it is still used")
        if any(v is value for v in self.outputs):
            raise IRError(f"cannot remove initializer '{value.name}': it is a graph output")
        del self.initializers[value.name]
        self.inputs = [v for v in self.inputs if v is not value]

    def is_input(self, value: Value) -> bool:
        return any(v is value for v in self.inputs)

    def is_output(self, value: Value) -> bool:
        return any(v is value for v in self.outputs)

    def is_initializer(self, value: Value) -> bool:
        return self.initializers.get(value.name) is value

    def is_constant(self, value: Value) -> bool:
        """An initializer that is not also a graph input (so it cannot be overridden)."""
        return self.is_initializer(value) and not self.is_input(value)

    def local_values(self) -> set[Value]:
        """Values defined in this graph: inputs, initializers, node outputs."""
        out = set(self.inputs)
        out.update(self.initializers.values())
        for n in self._nodes:
            out.update(v for v in n._outputs if v is not None)
        return out

    def values(self) -> dict[str, Value]:
        """All values defined in this graph, by name."""
        return {v.name: v for v in self.local_values()}

    def substitute(self, old: Value, new: Value) -> bool:
        """Make the graph read ``new`` wherever it read ``old``, graph outputs included.

        When ``old`` is a graph output its name is part of the model's interface, so ``new``
        takes over that name; that is only possible when ``new`` is produced by a node of this
        graph and is not itself an input, initializer or output. Returns False (and changes
        nothing) when the substitution is not possible.
        """
        if not self.can_substitute(old, new):
            return False
        if old is new:
            return True
        if self.is_output(old):
            old.replace_all_uses_with(new)
            self.transfer_name(old, new)
            if new.type is None or not new.type.HasField("tensor_type") or new.shape is None:
                new.type = old.type
            self.outputs = [new if v is old else v for v in self.outputs]
            return True
        old.replace_all_uses_with(new)
        return True

    def can_substitute(self, old: Value, new: Value) -> bool:
        """Would ``substitute(old, new)`` succeed?"""
        if old is new or not self.is_output(old):
            return True
        p = new.producer()
        return (p is not None and p.graph is self and not self.is_input(new)
                and not self.is_output(new) and not self.is_initializer(new))

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self._nodes)} nodes)"


def _inside(node: Node, doomed: set[Node]) -> bool:
    """Is ``node`` inside a subgraph of one of the ``doomed`` nodes?"""
    g = node.graph
    while g is not None and g.owner is not None:
        if g.owner in doomed:
            return True
        g = g.owner.graph
    return False


class Model:
    """A Graph plus the model-level fields of ModelProto."""

    def __init__(self, graph: Graph, opset_imports: dict[str, int] | None = None):
        self.graph = graph
        self.opset_imports: dict[str, int] = dict(
            opset_imports or {"": onnx.defs.onnx_opset_version()})
        self.ir_version: int = onnx.IR_VERSION
        self.producer_name = ""
        self.producer_version = ""
        self.domain = ""
        self.model_version = 0
        self.doc_string = ""
        self.metadata_props: dict[str, str] = {}
        # model-level fields optc does not model (functions, training_info, ...) are carried
        # by serde in a copy of the loaded ModelProto without its graph

    def use_domain(self, domain: str, version: int = 1) -> None:
        """Declare operator set ``domain`` (at ``version``) if the model does not yet import
        it, as a pass must before it writes an op of that domain; the IR version is raised to
        7 (what onnxruntime needs for ops of several domains) if it is older."""
        if domain not in self.opset_imports:
            self.opset_imports[domain] = version
        if self.ir_version < 7:
            self.ir_version = 7

    @property
    def opset(self) -> int:
        """The default-domain (ai.onnx) opset version."""
        return self.opset_imports.get("", self.opset_imports.get("ai.onnx", 1))

    def __repr__(self) -> str:
        return f"Model(opset={self.opset}, {self.graph!r})"

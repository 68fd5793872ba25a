"""optc's IR: Model, Graph, Node, Value, serialization, verification and analyses."""

from optc.ir.analysis import format_graph, node_dependencies, to_networkx, topological_sort
from optc.ir.core import Graph, Model, Node, Value, tensor_type
from optc.ir.serde import clone, from_proto, load, save, serialize, to_proto
from optc.ir.shapes import infer_shapes, set_input_shapes
from optc.ir.verify import VerificationError, verify

__all__ = [
    "clone",
    "Graph", "Model", "Node", "Value", "VerificationError", "format_graph", "from_proto",
    "infer_shapes", "load", "node_dependencies", "save", "serialize", "set_input_shapes", "tensor_type", "to_networkx",
    "to_proto", "topological_sort", "verify",
]

"""networkx view, text printer, shape inference with symbolic dims."""

import networkx as nx

from optc.ir import format_graph, infer_shapes, to_networkx
from tests.util import load

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,3,8,8] x, float[4,3,3,3] w) => (float[N,4,8,8] y) {
  c = Conv <pads = [1, 1, 1, 1]> (x, w)
  r = Relu(c)
  s = Shape(r)
  y = Reshape(r, s)
}
"""


def test_shape_inference_keeps_symbolic_dims():
    m = load(MODEL)
    infer_shapes(m)
    by_op = {n.op_type: n for n in m.graph.nodes}
    assert by_op["Conv"].outputs[0].shape == ("N", 4, 8, 8)
    assert by_op["Shape"].outputs[0].shape == (4,)


def test_networkx_view_has_value_edges():
    m = load(MODEL)
    g = to_networkx(m.graph)
    assert g.number_of_nodes() == 4
    conv = next(n for n in g if n.op_type == "Conv")
    relu = next(n for n in g if n.op_type == "Relu")
    edge = g.get_edge_data(conv, relu)[0]
    assert edge["value"].name == "c" and edge["index"] == 0
    assert nx.is_directed_acyclic_graph(g)
    # the Relu output feeds both Shape and Reshape: it dominates the Reshape
    dom = nx.immediate_dominators(g, conv)
    reshape = next(n for n in g if n.op_type == "Reshape")
    assert dom[reshape] is relu


def test_format_graph_is_readable():
    m = load(MODEL)
    infer_shapes(m)
    text = format_graph(m.graph)
    assert "%c[Nx4x8x8] = Conv[pads=[1, 1, 1, 1]](%x[Nx3x8x8], %w[4x3x3x3])" in text
    assert "return %y" in text

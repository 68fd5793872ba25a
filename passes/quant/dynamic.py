"""quantize{mode=dynamic}: MatMul / Gemm with int8 weights and activations quantized at run time.

For y = x @ W (+ b), with W int8 per output column (scales s_w[n]):
    x_q, s_x, z_x = DynamicQuantizeLinear(x)        # uint8, from x's own range each run
    acc = MatMulInteger(x_q, W_q, z_x)               # int32
    y = Cast<float>(acc) * (s_x * s_w) (+ b)
in standard ONNX ops; onnxruntime fuses the chain into one integer kernel
(MatMulIntegerToFloat / DynamicQuantizeMatMul). No calibration data is needed, which suits
MatMul/Gemm-heavy models whose activation ranges vary from input to input. Conv layers are not
rewritten in this mode (onnxruntime's ConvInteger is slower than its float Conv): use static
mode for them. Gemm is handled when transA = 0 and alpha = beta = 1.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from optc.ir import Graph, Node, tensor_type


def supported(n: Node) -> bool:
    w = n.inputs[1].const_value
    if w is None or w.ndim != 2:
        return False
    if n.op_type == "MatMul":
        return True
    if n.op_type != "Gemm" or n.attr("transA", 0) or n.attr("alpha", 1.0) != 1.0 or \
            n.attr("beta", 1.0) != 1.0:
        return False
    c = n.inputs[2] if len(n.inputs) > 2 else None
    return c is None or (c.const_value is not None and c.const_value.ndim == 1)


def rewrite(g: Graph, n: Node, wq: np.ndarray, s_w: np.ndarray) -> None:
    """Replace ``n`` by the dynamic int8 chain (``wq``/``s_w`` from the quantizer, laid out
    as ``n``'s weight)."""
    x, w = n.inputs[0], n.inputs[1]
    if n.op_type == "Gemm" and n.attr("transB", 0):
        wq = np.ascontiguousarray(wq.T)  # MatMulInteger takes [K, N]
    out = n.outputs[0]
    base = w.name
    xq = g.new_value(x.name + "_dynq", tensor_type(TensorProto.UINT8, x.shape)
                     if x.shape is not None else None)
    xs = g.new_value(x.name + "_dynq_scale", tensor_type(TensorProto.FLOAT, ()))
    xz = g.new_value(x.name + "_dynq_zero", tensor_type(TensorProto.UINT8, ()))
    acc = g.new_value(out.name + "_int32", None)
    acc_f = g.new_value(out.name + "_int32_float", None)
    scale = g.new_value(base + "_dyn_scale", None)
    bias = n.inputs[2] if n.op_type == "Gemm" and len(n.inputs) > 2 else None
    y = g.new_value(out.name + "_dyn", out.type)
    nodes = [
        Node("DynamicQuantizeLinear", [x], [xq, xs, xz], name=g.unique_name(base + "_DynQ")),
        Node("MatMulInteger", [xq, g.add_initializer(base + "_q", wq), xz], [acc],
             name=g.unique_name(base + "_MatMulInteger")),
        Node("Cast", [acc], [acc_f], name=g.unique_name(base + "_Cast"),
             attributes={"to": TensorProto.FLOAT}),
        Node("Mul", [xs, g.add_initializer(base + "_scale", s_w.reshape(-1))], [scale],
             name=g.unique_name(base + "_Scale")),
    ]
    if bias is None:
        nodes.append(Node("Mul", [acc_f, scale], [y], name=g.unique_name(base + "_Rescale")))
    else:
        scaled = g.new_value(out.name + "_scaled", None)
        nodes += [Node("Mul", [acc_f, scale], [scaled], name=g.unique_name(base + "_Rescale")),
                  Node("Add", [scaled, bias], [y], name=g.unique_name(base + "_Bias"))]
    for node in nodes:
        g.insert_before(n, node)
    g.substitute(out, y)
    g.remove(n)

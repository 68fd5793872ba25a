"""fold-bn: BatchNormalization (inference) folded into the layer before it, or after it, or
turned into one per-channel Mul + Add.

The math: BN(y) = s * y + t per channel, s = gamma / sqrt(var + eps), t = beta - mean * s
(computed in float64, stored in the weights' dtype).
* Conv before BN:          W'[m] = s[m] W[m],            b'[m] = s[m] b[m] + t[m]
* ConvTranspose before BN: weight (Cin, M/g, k..): output channel g*M/g + j scales W[c, j] for
                           the input channels c of group g; bias as for Conv.
* Gemm before BN (N, C):   B' scales output column n by s[n]; C' = s C + t / beta.
* MatMul(A, B) before BN, A and the output 2-D, B constant: becomes Gemm(A, s B, t).
* Conv after BN (the BN output read only by that Conv, which has no padding -- with padding the
  zeros at the borders would not be shifted by t, so folding would not be exact):
                           W'[m, c] = W[m, c] s[c],      b'[m] = b[m] + sum_{c,k} W[m, c, k] t[c]
* otherwise:               x * s + t as one Mul and one Add of (C, 1, .., 1) constants.

Fires only when the BN is in inference mode (training_mode 0, one output), its parameters are
constants, and the folded layer's weight (and bias) are constants no other node reads (a
shared weight cannot absorb one reader's BN) and its output feeds only the BN.
Not handled: BN before opset 9 with spatial=0 (per-activation statistics); BN of unknown rank
that has nothing to fold into (kept as it is).
Bad input: a BN whose variance is negative or whose s / t are not finite is an error naming
the node (folding would silently write NaN into the weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from optc.errors import OptcError
from optc.ir import Model, Node, infer_shapes, tensor_type
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes._common import drop_unused_constants, is_standard
from optc.passes.channels import (affine_into_conv_input, affine_into_conv_output,
                                          channel_shape, owned_constant, sole_reader)


def bn_affine(model: Model, bn: Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(s, t) of an inference-mode BN with constant parameters, None if it is not one."""
    g = model.graph
    if not is_standard(bn) or bn.op_type != "BatchNormalization":
        return None
    if bn.attr("training_mode", 0) or any(v is not None for v in bn.outputs[1:]):
        return None
    if bn.attr("spatial", 1) != 1:
        return None
    params = [bn.inputs[i] if i < len(bn.inputs) else None for i in range(1, 5)]
    if any(p is None or not g.is_constant(p) for p in params):
        return None
    scale, beta, mean, var = (p.const_value.astype(np.float64) for p in params)
    label = f"node '{bn.name}' (BatchNormalization)" if bn.name else "a BatchNormalization node"
    if np.any(var < 0):
        raise OptcError(f"{label}: running variance '{params[3].name}' has negative values")
    eps = float(bn.attr("epsilon", 1e-5))
    with np.errstate(all="ignore"):
        s = scale / np.sqrt(var + eps)
        t = beta - mean * s
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(t))):
        raise OptcError(f"{label}: its scale/shift is not finite (check scale, mean, var and "
                        f"epsilon)")
    return s, t


@register
@dataclass(frozen=True)
class FoldBatchNorm(Pass):
    """Fold inference BatchNormalization into Conv/ConvTranspose/Gemm/MatMul (or a following
    pad-free Conv), else turn it into Mul+Add."""

    name: ClassVar[str] = "fold-bn"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        stats = {"into_conv": 0, "into_gemm": 0, "into_next_conv": 0, "to_mul_add": 0}
        shapes_known = False
        for bn in g.nodes:
            if bn.graph is not g or bn.op_type != "BatchNormalization" or not is_standard(bn):
                continue
            affine = bn_affine(model, bn)
            if affine is None:
                continue
            s, t = affine
            x = bn.inputs[0]
            producer = x.producer() if sole_reader(g, x) is bn else None
            if producer is not None and producer.graph is g and is_standard(producer):
                if producer.op_type in ("Conv", "ConvTranspose") and \
                        self._into_conv(model, producer, bn, s, t):
                    stats["into_conv"] += 1
                    continue
                if producer.op_type == "Gemm" and self._into_gemm(model, producer, bn, s, t):
                    stats["into_gemm"] += 1
                    continue
                if producer.op_type == "MatMul":
                    if not shapes_known:
                        infer_shapes(model)
                        shapes_known = True
                    if self._matmul_to_gemm(model, producer, bn, s, t):
                        stats["into_gemm"] += 1
                        continue
            if self._into_next_conv(model, bn, s, t):
                stats["into_next_conv"] += 1
                continue
            if not shapes_known:
                infer_shapes(model)
                shapes_known = True
            if self._to_mul_add(model, bn, s, t):
                stats["to_mul_add"] += 1
        return PassResult(model, any(stats.values()), {k: v for k, v in stats.items() if v})

    # --- rewrites ---------------------------------------------------------------------------
    def _finish(self, model: Model, bn: Node, new_out) -> None:
        """Readers of the BN output read ``new_out``; the BN and its dead constants go."""
        g = model.graph
        params = [v for v in bn.inputs[1:] if v is not None]
        g.substitute(bn.outputs[0], new_out)
        g.remove(bn)
        drop_unused_constants(g, params)

    def _into_conv(self, model: Model, conv: Node, bn: Node, s, t) -> bool:
        if not model.graph.can_substitute(bn.outputs[0], conv.outputs[0]):
            return False
        if not affine_into_conv_output(model.graph, conv, s, t):
            return False
        self._finish(model, bn, conv.outputs[0])
        return True

    def _into_gemm(self, model: Model, gemm: Node, bn: Node, s, t) -> bool:
        g = model.graph
        w = owned_constant(g, gemm, 1)
        if w is None or w.const_value.ndim != 2 or w.const_value.dtype.kind != "f":
            return False
        c = gemm.inputs[2] if len(gemm.inputs) > 2 else None
        if c is not None and owned_constant(g, gemm, 2) is None:
            return False
        if not g.can_substitute(bn.outputs[0], gemm.outputs[0]):
            return False
        weight = w.const_value.astype(np.float64)
        trans_b = gemm.attr("transB", 0)
        n = weight.shape[0] if trans_b else weight.shape[1]
        if n != len(s):
            return False
        weight = weight * (s.reshape(-1, 1) if trans_b else s.reshape(1, -1))
        beta = float(gemm.attr("beta", 1.0))
        dtype = w.const_value.dtype
        cval = c.const_value.astype(np.float64) if c is not None else np.zeros(1)
        if beta == 0.0:  # C was ignored: it becomes t with beta 1
            cval, beta = np.zeros(1), 1.0
            gemm.set_attr("beta", 1.0)
        new_c = cval * s + t / beta
        w.set_const(weight.astype(dtype))
        if c is not None:
            c.set_const(new_c.astype(dtype))
        else:
            gemm.set_inputs(list(gemm.inputs[:2]) + [g.add_initializer(
                (gemm.name or w.name) + "_bias", new_c.astype(dtype))])
        self._finish(model, bn, gemm.outputs[0])
        return True

    def _matmul_to_gemm(self, model: Model, matmul: Node, bn: Node, s, t) -> bool:
        g = model.graph
        a = matmul.inputs[0]
        w = owned_constant(g, matmul, 1)
        if w is None or w.const_value.ndim != 2 or w.const_value.dtype.kind != "f":
            return False
        if a.shape is None or len(a.shape) != 2 or w.const_value.shape[1] != len(s):
            return False
        if not g.can_substitute(bn.outputs[0], matmul.outputs[0]):
            return False
        dtype = w.const_value.dtype
        w.set_const((w.const_value.astype(np.float64) * s.reshape(1, -1)).astype(dtype))
        bias = g.add_initializer((matmul.name or w.name) + "_bias", t.astype(dtype))
        gemm = Node("Gemm", [a, w, bias], [g.new_value((matmul.name or "gemm") + "_out")],
                    name=g.unique_name(matmul.name or "Gemm"))
        g.insert_after(matmul, gemm)
        out = matmul.outputs[0]
        out.replace_all_uses_with(gemm.outputs[0])
        g.remove(matmul)
        gemm.outputs[0].type = out.type
        self._finish(model, bn, gemm.outputs[0])
        return True

    def _into_next_conv(self, model: Model, bn: Node, s, t) -> bool:
        g = model.graph
        y = bn.outputs[0]
        conv = sole_reader(g, y)
        if conv is None or conv.inputs[0] is not y:
            return False
        if not affine_into_conv_input(g, conv, s, t):
            return False
        self._finish(model, bn, bn.inputs[0])
        return True

    def _to_mul_add(self, model: Model, bn: Node, s, t) -> bool:
        g = model.graph
        x, y = bn.inputs[0], bn.outputs[0]
        rank = len(x.shape) if x.shape is not None else None
        if rank is None or rank < 2:
            return False
        dtype = bn.inputs[1].const_value.dtype
        shape = channel_shape(len(s), rank)
        label = bn.name or "bn"
        scale = g.add_initializer(label + "_scale", s.astype(dtype).reshape(shape))
        shift = g.add_initializer(label + "_shift", t.astype(dtype).reshape(shape))
        scaled = g.new_value(label + "_scaled", x.type)
        mul = Node("Mul", [x, scale], [scaled], name=g.unique_name(label + "_mul"))
        out = g.new_value(label + "_out", y.type if y.type is not None else
                          (tensor_type(x.dtype, x.shape) if x.dtype else None))
        add = Node("Add", [scaled, shift], [out], name=g.unique_name(label + "_add"))
        g.insert_before(bn, mul)
        g.insert_before(bn, add)
        if not g.can_substitute(y, out):
            g.remove_nodes([add, mul])
            drop_unused_constants(g, [scale, shift])
            return False
        self._finish(model, bn, out)
        return True

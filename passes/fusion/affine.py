"""fuse-scale and fuse-bias: per-channel Mul and Add by constants absorbed into the layer before
them, and chains of constant Mul/Add collapsed to one Mul and one Add.

fuse-scale, for Mul(x, c) with c constant (either operand order):
* x from Conv/ConvTranspose read only by this Mul, c one number per output channel:
      W'[m] = c[m] W[m], b'[m] = c[m] b[m]           (ConvTranspose: per group, as fold-bn)
* x from Mul(y, a), a constant, read only by this Mul:   Mul(y, a * c)
* x from Add(y, a), a constant, read only by this Mul:   Add(Mul(y, c), a * c)
  (moves the scale up, towards a layer or another Mul that can absorb it)
fuse-bias, for Add(x, c) with c constant:
* x from Conv/ConvTranspose read only by this Add, c one number per output channel: b' = b + c
* x from Gemm read only by this Add, c broadcasting along the last axis (shape (N,) or (1, N)):
      C' = C + c / beta
* x from Add(y, a), a constant, read only by this Add:   Add(y, a + c)
* x from MatMul(A, B) with A and B 2-D, read only by this Add, c broadcastable to the output:
      Gemm(A, B, c)
Each pass repeats its sweep until nothing changes, so one run reaches its fixed point.
The layer's weight and bias must be constants no other node reads.
Not handled: non-float constants; a constant whose broadcasting would change the output shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from optc.ir import Graph, Model, Node, Value, infer_shapes
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes._common import drop_unused_constants, is_standard, sweep
from optc.passes.channels import (affine_into_conv_output, owned_constant, per_channel,
                                          sole_reader)

def _split_const(g: Graph, node: Node) -> tuple[Value, Value] | None:
    """(variable input, constant input) of a binary Mul/Add with exactly one constant float
    operand."""
    if len(node.inputs) != 2 or any(v is None for v in node.inputs):
        return None
    a, b = node.inputs
    if g.is_constant(b) and not g.is_constant(a):
        x, c = a, b
    elif g.is_constant(a) and not g.is_constant(b):
        x, c = b, a
    else:
        return None
    if c.const_value.dtype.kind != "f":
        return None
    return x, c


def _operands(g: Graph, node: Node) -> tuple[Value, Value, Node] | None:
    """(x, constant, producer of x) of a binary ``node`` that can absorb into x's producer:
    x is read by ``node`` alone and ``node``'s output can be replaced by x."""
    split = _split_const(g, node)
    if split is None:
        return None
    x, c = split
    p = x.producer()
    if p is None or p.graph is not g or not is_standard(p) or sole_reader(g, x) is not node:
        return None
    if not g.can_substitute(node.outputs[0], x):
        return None
    return x, c, p


def _same_shape_after(x: Value, c: np.ndarray) -> bool:
    """Would broadcasting c against x leave x's (static) shape unchanged?"""
    shape = x.static_shape()
    if shape is None:
        return c.size == 1 and c.ndim <= 1
    try:
        return np.broadcast_shapes(shape, c.shape) == tuple(shape)
    except ValueError:
        return False


def _conv_channels(g: Graph, conv: Node) -> int | None:
    w = conv.inputs[1]
    if w is None or not g.is_constant(w):
        return None
    shape = w.const_value.shape
    if conv.op_type == "Conv":
        return shape[0]
    return shape[1] * conv.attr("group", 1)


def _rank(v: Value) -> int | None:
    return len(v.shape) if v.shape is not None else None


def _replace_binary(g: Graph, node: Node, op_type: str, x: Value, const: np.ndarray,
                    base: str) -> Node:
    """A new ``op_type``(x, const) node replacing ``node`` (same output value)."""
    c = g.add_initializer(base, const)
    out_type = node.outputs[0].type
    new = Node(op_type, [x, c], [g.new_value(node.outputs[0].name + "_tmp", out_type)],
               name=g.unique_name(node.name or op_type))
    g.insert_before(node, new)
    out = node.outputs[0]
    g.substitute(out, new.outputs[0])
    inputs = list(node.inputs)
    g.remove(node)
    drop_unused_constants(g, inputs)
    return new


def _sweep(model: Model, op_type: str, fuse, stats: dict[str, int]) -> PassResult:
    """Apply ``fuse`` to every standard ``op_type`` node until a sweep changes nothing."""
    g = model.graph
    infer_shapes(model)
    sweep(g, lambda n: fuse(g, n) if n.op_type == op_type and is_standard(n) else None, stats)
    return PassResult(model, any(stats.values()), {k: v for k, v in stats.items() if v})


def _absorb(g: Graph, node: Node, producer_out: Value) -> None:
    """``node`` (Mul/Add) has been absorbed by the producer of ``producer_out``: its readers
    read ``producer_out`` instead, and it goes with its constant."""
    inputs = list(node.inputs)
    g.substitute(node.outputs[0], producer_out)
    g.remove(node)
    drop_unused_constants(g, inputs)


@register
@dataclass(frozen=True)
class FuseScale(Pass):
    """Fold per-channel Mul by a constant into the Conv/ConvTranspose before it; merge
    constant Mul chains."""

    name: ClassVar[str] = "fuse-scale"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        return _sweep(model, "Mul", self._fuse, {"into_conv": 0, "merged": 0,
                                                 "moved_above_add": 0})

    def _fuse(self, g: Graph, mul: Node) -> str | None:
        operands = _operands(g, mul)
        if operands is None:
            return None
        x, c, p = operands
        cval = c.const_value
        if p.op_type in ("Conv", "ConvTranspose"):
            channels = _conv_channels(g, p)
            vec = per_channel(g, c, channels, _rank(x)) if channels else None
            if vec is not None and affine_into_conv_output(g, p, vec.astype(np.float64),
                                                           np.zeros(len(vec))):
                _absorb(g, mul, x)
                return "into_conv"
            return None
        if p.op_type in ("Mul", "Add"):
            inner = _split_const(g, p)
            if inner is None:
                return None
            y, a = inner
            if not _same_shape_after(y, a.const_value * cval) or \
                    not _same_shape_after(x, cval):
                return None
            if p.op_type == "Mul":
                merged = _replace_binary(g, p, "Mul", y, (a.const_value * cval).astype(cval.dtype),
                                         (p.name or "scale") + "_merged")
                _absorb(g, mul, merged.outputs[0])
                return "merged"
            # (y + a) * c  ->  y * c + a * c
            scaled = _replace_binary(g, p, "Mul", y, cval.copy(), (p.name or "scale") + "_moved")
            _replace_binary(g, mul, "Add", scaled.outputs[0],
                            (a.const_value * cval).astype(cval.dtype),
                            (mul.name or "shift") + "_moved")
            return "moved_above_add"
        return None


@register
@dataclass(frozen=True)
class FuseBias(Pass):
    """Fold per-channel Add of a constant into the Conv/ConvTranspose/Gemm bias before it;
    merge constant Add chains; MatMul + Add -> Gemm."""

    name: ClassVar[str] = "fuse-bias"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        return _sweep(model, "Add", self._fuse, {"into_conv": 0, "into_gemm": 0, "merged": 0,
                                                 "matmul_to_gemm": 0})

    def _fuse(self, g: Graph, add: Node) -> str | None:
        operands = _operands(g, add)
        if operands is None:
            return None
        x, c, p = operands
        cval = c.const_value
        if p.op_type in ("Conv", "ConvTranspose"):
            channels = _conv_channels(g, p)
            vec = per_channel(g, c, channels, _rank(x)) if channels else None
            if vec is not None and affine_into_conv_output(g, p, np.ones(len(vec)),
                                                           vec.astype(np.float64)):
                _absorb(g, add, x)
                return "into_conv"
            return None
        if p.op_type == "Gemm":
            return "into_gemm" if self._into_gemm(g, p, add, x, cval) else None
        if p.op_type == "Add":
            inner = _split_const(g, p)
            if inner is None:
                return None
            y, a = inner
            merged = (a.const_value + cval).astype(cval.dtype)
            if not _same_shape_after(y, merged) or not _same_shape_after(x, cval):
                return None
            new = _replace_binary(g, p, "Add", y, merged, (p.name or "shift") + "_merged")
            _absorb(g, add, new.outputs[0])
            return "merged"
        if p.op_type == "MatMul":
            a, b = p.inputs
            if _rank(a) != 2 or _rank(b) != 2 or not _same_shape_after(x, cval):
                return None
            gemm = Node("Gemm", [a, b, c], [g.new_value(x.name + "_gemm", add.outputs[0].type)],
                        name=g.unique_name(p.name or "Gemm"))
            g.insert_before(add, gemm)
            g.substitute(add.outputs[0], gemm.outputs[0])
            g.remove(add)
            g.remove(p)
            return "matmul_to_gemm"
        return None

    def _into_gemm(self, g: Graph, gemm: Node, add: Node, x: Value, cval: np.ndarray) -> bool:
        if cval.ndim > 2 or (cval.ndim == 2 and cval.shape[0] != 1) or \
                not _same_shape_after(x, cval):
            return False
        c = gemm.inputs[2] if len(gemm.inputs) > 2 else None
        if c is not None and owned_constant(g, gemm, 2) is None:
            return False
        beta = float(gemm.attr("beta", 1.0))
        vec = cval.reshape(-1).astype(np.float64)
        if c is not None and beta != 0.0:
            new = c.const_value.astype(np.float64) + vec / beta
            dtype = c.const_value.dtype
            c.set_const(new.astype(dtype))
        else:  # no C, or beta 0 (C ignored): C becomes c with beta 1
            if beta != 1.0:
                gemm.set_attr("beta", 1.0)
            new_c = g.add_initializer((gemm.name or "gemm") + "_bias", cval.reshape(-1).copy())
            gemm.set_inputs(list(gemm.inputs[:2]) + [new_c])
            drop_unused_constants(g, [c] if c is not None else [])
        _absorb(g, add, x)
        return True

"""Model statistics for ``optc inspect``: op counts, parameters, and MACs per layer.

MACs (multiply-accumulates) are counted for the ops that dominate CNN cost, from static shapes
(onnx shape inference):
  Conv           N * Cout * prod(out spatial) * (Cin / group) * prod(kernel)
  ConvTranspose  N * Cin * prod(in spatial) * (Cout / group) * prod(kernel)
  Gemm           M * N * K
  MatMul         prod(batch) * M * N * K
Other ops are counted as 0 MACs. Symbolic dims (a batch dim N) count as 1, so the figures are
per sample. A layer whose shapes are unknown shows no MACs and is listed in ``unknown``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from optc.ir import Model, Node, infer_shapes

_MAC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass
class LayerStats:
    name: str
    op_type: str
    output_shape: tuple | None
    params: int
    macs: int | None


@dataclass
class ModelStats:
    op_counts: Counter
    layers: list[LayerStats]
    params: int
    macs: int
    unknown: list[str] = field(default_factory=list)


def _prod(xs) -> int:
    return int(np.prod([int(x) for x in xs])) if len(xs) else 1


def _dims(v) -> tuple[int, ...] | None:
    """Static dims of ``v`` with symbolic dims (a batch N) counted as 1; None if unknown."""
    if v is None or v.shape is None:
        return None
    dims = tuple(1 if isinstance(d, str) else d for d in v.shape)
    return None if any(d is None for d in dims) else dims  # type: ignore[return-value]


def node_macs(node: Node) -> int | None:
    """MACs of one node (symbolic dims = 1, i.e. per sample for a batch dim), 0 for ops that
    are not counted, None if shapes are unknown."""
    if node.op_type not in _MAC_OPS:
        return 0
    x = _dims(node.inputs[0])
    w = _dims(node.inputs[1]) if len(node.inputs) > 1 else None
    y = _dims(node.outputs[0])
    if node.op_type == "Conv":
        if w is None or y is None:
            return None
        return _prod(y) * w[1] * _prod(w[2:])
    if node.op_type == "ConvTranspose":
        if w is None or x is None:
            return None
        return _prod(x) * w[1] * _prod(w[2:])  # weight is (Cin, Cout / group, k...)
    if node.op_type == "Gemm":
        if x is None or w is None:
            return None
        k = x[0] if node.attr("transA", 0) else x[1]
        n = w[0] if node.attr("transB", 0) else w[1]
        m = x[1] if node.attr("transA", 0) else x[0]
        return m * n * k
    # MatMul
    if x is None or w is None or y is None:
        return None
    k = x[-1] if len(x) >= 1 else 1
    return _prod(y) * k


def model_stats(model: Model) -> ModelStats:
    infer_shapes(model)
    g = model.graph
    layers = []
    unknown = []
    counted: set[int] = set()
    for n in g.nodes:
        params = 0
        for v in n.inputs:
            if v is not None and g.is_initializer(v) and id(v) not in counted:
                counted.add(id(v))
                params += int(np.prod(v.shape)) if v.shape else 1
        macs = node_macs(n)
        if macs is None:
            unknown.append(n.name or n.op_type)
        out = n.outputs[0].shape if n.outputs and n.outputs[0] is not None else None
        layers.append(LayerStats(n.name, n.op_type, out, params, macs))
    total_params = sum(int(np.prod(v.shape)) if v.shape else 1 for v in g.initializers.values())
    return ModelStats(Counter(n.op_type for n in g.nodes), layers, total_params,
                      sum(layer.macs or 0 for layer in layers), unknown)

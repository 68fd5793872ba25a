"""Channel facts shared by the fusion, quantization, pruning and lowering passes: which axis
of a layer's weight holds its output / input channels, per-channel constants, exclusive
ownership of a layer's weight and bias."""

from __future__ import annotations

import numpy as np

from optc.ir import Graph, Node, Value
from optc.passes._common import is_standard


def layer_weight(graph: Graph, n: Node, ops: tuple[str, ...]) -> np.ndarray | None:
    """The weight (input 1) of ``n`` when ``n`` is a standard op of ``ops`` (Conv,
    ConvTranspose, Gemm, MatMul) whose float weight is a constant a pass may rewrite per
    channel -- a Gemm without transA and a MatMul with a 2-D one; None otherwise (the
    layers both prune and quantize work on)."""
    if not is_standard(n) or n.op_type not in ops or len(n.inputs) < 2:
        return None
    w = n.inputs[1]
    if w is None or not graph.is_constant(w) or w.const_value.dtype.kind != "f":
        return None
    arr = w.const_value
    if n.op_type == "Gemm" and (n.attr("transA", 0) or arr.ndim != 2):
        return None
    if n.op_type == "MatMul" and arr.ndim != 2:
        return None
    return arr


def out_axis(layer: Node) -> int:
    """Axis of the output channels in a layer's weight."""
    if layer.op_type == "Conv":
        return 0
    if layer.op_type == "ConvTranspose":
        return 1
    if layer.op_type == "Gemm":
        return 0 if layer.attr("transB", 0) else 1
    return 1  # MatMul


def in_axis(layer: Node) -> int:
    """Axis of the input channels in a layer's weight (the other of the two leading axes)."""
    return 1 - out_axis(layer)


def per_channel(graph: Graph, value: Value | None, channels: int, rank: int | None,
                axis: int = 1) -> np.ndarray | None:
    """If ``value`` is a constant that broadcasts against an (N, C, ...) tensor of ``rank`` as one
    number per channel along ``axis`` -- shape (), (1,), (C, 1, 1), (1, C, 1, 1), ... -- return
    it as a 1-D array of length ``channels``; otherwise None."""
    if value is None or not graph.is_constant(value):
        return None
    arr = value.const_value
    if arr.dtype.kind != "f":
        return None
    if arr.ndim == 0 or arr.size == 1 and arr.ndim <= 1:
        return np.full(channels, arr.reshape(-1)[0], dtype=arr.dtype)
    if rank is None or arr.ndim > rank:
        return None
    full = (1,) * (rank - arr.ndim) + arr.shape
    if any(d != 1 for i, d in enumerate(full) if i != axis) or full[axis] not in (1, channels):
        return None
    return np.broadcast_to(arr.reshape(-1), (channels,)).copy()


def owned_constant(graph: Graph, node: Node, index: int) -> Value | None:
    """Input ``index`` of ``node`` if it is a constant that only this node reads (so its data
    can be rewritten in place), else None."""
    if index >= len(node.inputs):
        return None
    v = node.inputs[index]
    if v is None or not graph.is_constant(v) or graph.is_output(v):
        return None
    if any(user is not node for user, _ in v.uses()):
        return None
    return v


def owned_weight_and_bias(graph: Graph, layer: Node) -> tuple[Value, Value | None] | None:
    """(weight, bias or None) of a Conv/ConvTranspose/Gemm-like ``layer`` if both are float
    constants that only ``layer`` reads (so they can be rewritten in place), else None."""
    w = owned_constant(graph, layer, 1)
    if w is None or w.const_value.dtype.kind != "f":
        return None
    b = layer.inputs[2] if len(layer.inputs) > 2 else None
    if b is not None and owned_constant(graph, layer, 2) is None:
        return None
    return w, b


def sole_reader(graph: Graph, value: Value | None) -> Node | None:
    """The one node reading ``value`` (once), if ``value`` is not a graph output."""
    if value is None or graph.is_output(value):
        return None
    uses = value.uses()
    if len(uses) != 1:
        return None
    return uses[0][0]


def channel_shape(channels: int, rank: int, axis: int = 1) -> tuple[int, ...]:
    """(C, 1, ..., 1)-style shape that broadcasts a per-channel vector over a rank-``rank``
    tensor whose channel axis is ``axis``."""
    return (channels,) + (1,) * (rank - axis - 1)


def conv_has_padding(conv: Node) -> bool:
    auto_pad = conv.attr("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return True
    return auto_pad != "VALID" and any(p != 0 for p in (conv.attr("pads") or []))


def _owned_layer(graph: Graph, conv: Node, ops: tuple[str, ...]
                 ) -> tuple[Value, Value | None, np.ndarray] | None:
    """Weight, bias and the weight's data in float64 of a standard ``ops`` layer whose weight
    and bias only it reads; None otherwise."""
    if conv.op_type not in ops or not is_standard(conv):
        return None
    owned = owned_weight_and_bias(graph, conv)
    if owned is None:
        return None
    w, b = owned
    return w, b, w.const_value.astype(np.float64)


def affine_into_conv_input(graph: Graph, conv: Node, s: np.ndarray, t: np.ndarray) -> bool:
    """Make ``conv`` compute Conv(s * x + t) from x (s, t per input channel):
        W'[m, c] = W[m, c] s[c],   b'[m] = b[m] + sum_{c, k} W[m, c, k] t[c]
    Exact only when the conv does not pad or t is zero (padding zeros are not shifted by t), so
    it refuses otherwise. Returns whether it rewrote the conv; the caller reconnects its input.
    """
    if np.any(t != 0) and conv_has_padding(conv):
        return False
    owned = _owned_layer(graph, conv, ("Conv",))
    if owned is None:
        return False
    w, b, weight = owned
    group = conv.attr("group", 1)
    m, cg = weight.shape[:2]
    if cg * group != len(s):
        return False
    k = weight.shape[2:]
    wg = weight.reshape(group, m // group, cg, *k)
    sg = s.reshape(group, 1, cg, *([1] * len(k)))
    tg = t.reshape(group, 1, cg, *([1] * len(k)))
    shift = (wg * tg).reshape(m, -1).sum(axis=1)
    w.set_const((wg * sg).reshape(weight.shape).astype(w.const_value.dtype))
    base = b.const_value.astype(np.float64) if b is not None else np.zeros(m)
    _write_bias(graph, conv, w, b, base + shift)
    return True


def affine_into_conv_output(graph: Graph, conv: Node, s: np.ndarray, t: np.ndarray) -> bool:
    """Make Conv/ConvTranspose ``conv`` compute s * conv(x) + t (s, t per output channel):
        W'[m] = s[m] W[m],   b'[m] = s[m] b[m] + t[m]
    (a ConvTranspose weight is (Cin, M/g, k...): output channel g*M/g + j scales W[c, j] for the
    input channels c of group g). The weight and bias must be constants only ``conv`` reads.
    A bias is added only when one is needed. Returns whether it rewrote the conv."""
    owned = _owned_layer(graph, conv, ("Conv", "ConvTranspose"))
    if owned is None:
        return False
    w, b, weight = owned
    m = len(s)
    if conv.op_type == "Conv":
        if weight.shape[0] != m:
            return False
        weight = weight * s.reshape((m,) + (1,) * (weight.ndim - 1))
    else:
        group = conv.attr("group", 1)
        cin, mg = weight.shape[:2]
        if mg * group != m:
            return False
        k = weight.shape[2:]
        weight = (weight.reshape(group, cin // group, mg, *k)
                  * s.reshape(group, 1, mg, *([1] * len(k)))).reshape(cin, mg, *k)
    w.set_const(weight.astype(w.const_value.dtype))
    base = b.const_value.astype(np.float64) if b is not None else np.zeros(m)
    _write_bias(graph, conv, w, b, base * s + t)
    return True


def _write_bias(graph: Graph, conv: Node, w: Value, b: Value | None, bias: np.ndarray) -> None:
    """Store ``bias`` in ``conv``'s own bias ``b``, or add one if it has none and it is needed."""
    dtype = w.const_value.dtype
    if b is not None:
        b.set_const(bias.astype(dtype))
    elif np.any(bias != 0):
        conv.set_inputs(list(conv.inputs[:2]) + [graph.add_initializer(
            (conv.name or w.name) + "_bias", bias.astype(dtype))])

"""Helpers shared by the fusion passes: per-channel constants and exclusive ownership."""

from __future__ import annotations

import numpy as np

from optc.ir import Graph, Node, Value


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

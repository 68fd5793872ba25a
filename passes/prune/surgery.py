"""Pruning surgery: slice every tensor the coupling analysis tied to a pruned group.

Given the kept channel indices of each pruned group (coupling.py), this
* slices each source layer's weight along its output axis, and its bias;
* slices each depthwise conv's filters and bias and sets its group to the new channel count;
* slices each per-channel parameter (BatchNormalization vectors, PRelu slopes, per-channel
  constants of element-wise ops), cloning a constant other nodes also read;
* slices each consumer layer's weight along its input axis (a Concat's offsets and a
  Flatten's H*W blocks mapped by ``positions``);
* folds into each consumer what the removed channels still contributed: a removed channel is
  "masked" (its source's filter and bias zero), but what follows can turn that zero into a
  constant (a bias or BatchNormalization shift through Relu, a depthwise conv's bias);
  ``removed_constants`` runs the masked model once to read those values at every consumer --
  cut off from the input, a removed channel is a fixed map, the same for every sample. A
  Gemm/MatMul consumer's bias takes W[:, removed] @ c; a conv's contribution is the conv of
  the removed maps: a bias when it is uniform over space, else (zero padding at the borders,
  a depthwise chain before) a constant map added after the conv (an extra Add) -- where the
  model fixes that conv's output size; where it leaves it open (dynamic spatial dims) the
  map's interior value goes into the bias and the borders stay approximate. A ConvTranspose
  consumer or a removed channel that still depends on the input is left approximate too;
  each approximate fold is counted (``approximate_folds``). The masked run takes its input
  sizes from the calibration data or the model (``sample_feeds``), on the pipeline's engine.
The value types of the sliced tensors are recomputed by shape inference afterwards.
"""

from __future__ import annotations

import numpy as np

from optc.ir import Graph, Model, Node, infer_shapes
from optc.passes.channels import in_axis, out_axis
from optc.passes.prune.coupling import Coupling, Layout


def positions(c: Coupling, layout: Layout, keep: dict[int, np.ndarray]) -> np.ndarray:
    """Kept positions along a tensor's channel axis (features, after a Flatten)."""
    out, offset = [], 0
    for s in layout.segments:
        k = keep.get(c.find(s.source)) if s.source is not None else None
        if k is None:
            idx = np.arange(s.length)
        else:
            idx = k[(k >= s.start) & (k < s.start + s.length)] - s.start
        out.append(offset + idx)
        offset += s.length
    ch = np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)
    if layout.inner > 1:
        ch = (ch[:, None] * layout.inner + np.arange(layout.inner)).reshape(-1)
    return ch


def _set_const(g: Graph, node: Node, index: int, value: np.ndarray) -> None:
    """Replace ``node``'s constant input ``index`` (a private copy if shared)."""
    v = node.inputs[index]
    value = np.asarray(value, dtype=v.const_value.dtype)
    if np.array_equal(value, v.const_value):
        return
    if len(v.uses()) > 1 or g.is_output(v) or g.is_input(v):
        node.replace_input(index, g.add_initializer(v.name + "_pruned", value))
    else:
        v.set_const(value)


def _slice_axis_index(node: Node) -> int:
    """Position of the channel axis (1) in a Slice's starts/ends."""
    axes = node.inputs[3] if len(node.inputs) > 3 and node.inputs[3] is not None else None
    if axes is None:
        return 1
    rank = len(node.inputs[0].shape) if node.inputs[0].shape is not None else 0
    return [a + rank if a < 0 else a for a in axes.const_value.reshape(-1).tolist()].index(1)


def _take(g: Graph, node: Node, index: int, idx: np.ndarray, axis: int) -> None:
    """Slice ``node``'s constant input ``index`` along ``axis`` (a private copy if shared)."""
    _set_const(g, node, index, np.take(node.inputs[index].const_value, idx, axis=axis))


def apply(model: Model, c: Coupling, keep: dict[int, np.ndarray],
          constants: dict[int, np.ndarray]) -> int:
    """Slice the graph for ``keep`` (group root -> kept indices); ``constants``: id(consumer)
    -> value of each input channel in the masked model (NaN where not constant), from
    ``removed_constants``. Returns the number of approximate bias folds."""
    g = model.graph
    approximate = 0
    maps = []  # (correction map, the conv it follows): sliced with the conv's own channels
    # consumers first: their bias fold needs the full input-channel weights
    for node, layout in c.consumers:
        idx = positions(c, layout, keep)
        w = node.inputs[1].const_value
        axis = in_axis(node)
        group = node.attr("group", 1) if node.op_type == "Conv" else 1
        if len(idx) == w.shape[axis] * group:
            continue
        folded = _fold_removed(g, node, layout, idx, constants.get(id(node)))
        if folded is None:
            approximate += 1
        elif folded is not True:
            maps.append((folded, node))
        if group > 1:  # per group: the kept channels of that group, at their slots
            per = w.shape[1]
            local = idx.reshape(group, -1) - (np.arange(group) * per)[:, None]
            wg = w.reshape(group, w.shape[0] // group, per, *w.shape[2:])
            take = local.reshape(group, 1, -1, *([1] * (w.ndim - 2)))
            new = np.take_along_axis(wg, take, axis=2).reshape(w.shape[0], -1, *w.shape[2:])
            _set_const(g, node, 1, new)
        else:
            _take(g, node, 1, idx, axis)
    for i, src in enumerate(c.sources):
        k = keep.get(c.find(i))
        if k is None:
            continue
        n = src.node
        _take(g, n, 1, k, out_axis(n))
        b = n.inputs[2] if len(n.inputs) > 2 else None
        if b is not None:
            arr = b.const_value
            if arr.ndim >= 1 and arr.shape[-1] == src.size:
                _take(g, n, 2, k, arr.ndim - 1)
    for node, layout in c.depthwise:
        idx = positions(c, layout, keep)
        if len(idx) == node.inputs[1].const_value.shape[0]:
            continue
        _take(g, node, 1, idx, 0)
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            _take(g, node, 2, idx, 0)
        node.set_attr("group", int(len(idx)))
    source_of = {id(src.node): i for i, src in enumerate(c.sources)}
    for mapv, node in maps:
        k = keep.get(c.find(source_of[id(node)]))
        if k is not None:
            mapv.set_const(np.take(mapv.const_value, k, axis=1))
    for node, parts in c.splits:  # new part sizes
        sizes = np.array([len(positions(c, part, keep)) for part in parts], np.int64)
        if len(node.inputs) > 1 and node.inputs[1] is not None:
            _set_const(g, node, 1, sizes)
        elif node.attr("split") is not None or len(set(sizes.tolist())) > 1:
            if node.attr("num_outputs") is not None:
                del node.attributes["num_outputs"]
            if node.attr("split") is not None or model.opset < 13:
                node.set_attr("split", sizes.tolist())
            else:
                node.set_inputs([node.inputs[0], g.add_initializer(
                    (node.name or "split") + "_sizes", sizes)])
    for node, layout, a, b in c.slices:  # the bounds in the kept channels' positions
        kept = positions(c, layout, keep)
        i = _slice_axis_index(node)
        for index, bound in ((1, a), (2, b)):
            arr = node.inputs[index].const_value.copy()
            arr.reshape(-1)[i] = int(np.count_nonzero(kept < bound))
            _set_const(g, node, index, arr)
    for first, last, t, layout in c.shuffles:  # a channel shuffle of the kept channels
        kept = len(positions(c, layout, keep))
        if kept == layout.channels:
            continue
        first.outputs[0].type = None  # the (N, t, C/t, H, W) values: retyped below
        first.outputs[0].uses()[0][0].outputs[0].type = None
        for node, axis, value in ((first, 2, kept // t), (last, 1, kept)):
            target = node.inputs[1].const_value.copy()
            if target[axis] != -1:
                target[axis] = value
                _set_const(g, node, 1, target)
    for node, layout in c.reshapes:  # (N, features) targets spelled out: the new count
        target = node.inputs[1].const_value.copy()
        target[1] = len(positions(c, layout, keep))
        _set_const(g, node, 1, target)
    for node, index, layout, axis in c.params:
        idx = positions(c, layout, keep)
        arr = node.inputs[index].const_value
        if arr.shape[axis] != len(idx):
            _take(g, node, index, idx, axis)
    # channel counts changed: let shape inference recompute every inner value's type
    io = {id(v) for v in g.inputs} | {id(v) for v in g.outputs}
    for n in g.nodes:
        for o in n.outputs:
            if o is not None and id(o) not in io and id(o) in c.layouts:
                o.type = None
    infer_shapes(model)
    return approximate


def _fold_removed(g: Graph, node: Node, layout: Layout, kept: np.ndarray,
                  values: np.ndarray | None):
    """Fold what the removed input channels still feed ``node`` (``values``: each input
    channel's value in the masked model, the same for every sample; NaN where it is not) into
    its bias, or into a map added after it. Returns True (done exactly), the map's Value
    (exact, to be sliced with the node's output channels), or None (approximate: not folded,
    or, where the model leaves the conv's output size open, only the map's interior value
    folded into the bias -- a map of the sample's size would fix the model to it).
    """
    if values is None:
        return True
    w = node.inputs[1].const_value.astype(np.float64)
    axis = in_axis(node)
    removed = np.setdiff1d(np.arange(len(values)), kept)  # every input channel (all groups)
    vals = values[removed]
    if np.any(np.isnan(vals)):
        return None  # a removed channel that depends on the input: cannot be folded
    if not np.any(vals):
        return True
    if node.op_type == "ConvTranspose":
        return None  # not handled: it would need a transposed-conv map
    approximate = False
    if node.op_type == "Conv":
        # the removed channels are fixed maps (cut off from the input); through the conv's
        # window and zero padding they give a fixed (out, H', W') contribution: a bias when
        # it is uniform over space, else a constant map added after the conv
        from optc.runtime.kernels.conv import conv

        attrs = {k: node.attr(k) for k in ("auto_pad", "dilations", "group", "kernel_shape",
                                           "pads", "strides") if node.attr(k) is not None}
        full = np.zeros((len(values), *vals.shape[1:]))  # kept channels 0: only the removed
        full[removed] = vals
        contribution = conv(full[None], w, **attrs)[0]
        flat = contribution.reshape(contribution.shape[0], -1)
        # uniform up to float64 rounding (far below the float32 bias it folds into) is
        # uniform: a 1x1 conv of uniform maps differs in the last bits across positions
        if np.any(np.abs(flat - flat[:, :1]) > 1e-9 * max(1.0, float(np.abs(flat).max()))):
            out_shape = node.outputs[0].shape
            if out_shape is not None and all(isinstance(d, int) and d > 0
                                             for d in out_shape[2:]):
                return _add_map(g, node, contribution)
            # the model takes any size here: a map of one size would fix it, so the interior
            # value goes into the bias and the borders are left approximate (counted)
            approximate = True
            centre = tuple(d // 2 for d in contribution.shape[1:])
            contrib = contribution[(slice(None), *centre)].astype(np.float32)
        else:
            contrib = flat[:, 0].astype(np.float32)
    else:  # Gemm / MatMul: features
        wr = np.moveaxis(np.take(w, removed, axis=axis), axis, -1)  # (out, removed)
        contrib = (wr @ vals.reshape(-1)).astype(np.float32)
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is None:
        if node.op_type == "MatMul":
            return None  # no bias to fold into
        node.set_inputs([*node.inputs[:2], g.add_initializer(
            node.inputs[1].name + "_bias", contrib)])
    else:
        arr = bias.const_value
        new = (arr + contrib.reshape((1,) * (arr.ndim - 1) + (-1,)) if arr.ndim else
               arr + contrib).astype(arr.dtype)
        if len(bias.uses()) > 1:
            node.replace_input(2, g.add_initializer(bias.name + "_pruned", new))
        else:
            bias.set_const(new)
    return None if approximate else True


def _add_map(g: Graph, node: Node, contribution: np.ndarray):
    """y = conv(x) + map, the map a constant (1, C, H', W') initializer."""
    from optc.ir import Node as IRNode

    y = node.outputs[0]
    mapv = g.add_initializer(node.inputs[1].name + "_pruned_map",
                             contribution[None].astype(np.float32))
    out = g.new_value(y.name + "_pruned_map", None)  # typed by shape inference
    add = IRNode("Add", [y, mapv], [out], name=g.unique_name((node.name or "Conv") +
                                                             "_pruned_map"))
    g.insert_after(node, add)
    g.substitute(y, out)  # every reader (and a graph output's name) moves to the sum ...
    add.replace_input(0, y)  # ... except the sum itself
    return mapv


def removed_constants(model: Model, c: Coupling, keep: dict[int, np.ndarray],
                      samples: list[dict[str, np.ndarray]], engine: str = "auto"
                      ) -> dict[int, np.ndarray]:
    """id(consumer) -> the value of each of its input channels in the masked model (removed
    channels' source filters and biases zeroed), one sample's worth, NaN where a channel
    differs between samples (it depends on the input). The masked model runs once per feed of
    ``samples`` (two different inputs at the model's real sizes, ``sample_feeds``) on
    ``engine`` (optc.engine)."""
    from optc.engine import Runner
    from optc.ir import clone

    if not keep or not c.consumers:
        return {}
    masked = clone(model)
    mg = masked.graph
    nodes = {id(n): m for n, m in zip(model.graph.nodes, mg.nodes)}
    for i, src in enumerate(c.sources):
        k = keep.get(c.find(i))
        if k is None:
            continue
        n = nodes[id(src.node)]
        drop = np.setdiff1d(np.arange(src.size), k)
        for index, axis in ((1, out_axis(n)), (2, None)):
            v = n.inputs[index] if index < len(n.inputs) else None
            if v is None:
                continue
            arr = v.const_value.copy()
            ax = arr.ndim - 1 if axis is None else axis
            if arr.ndim == 0 or arr.shape[ax] != src.size:
                continue
            sl = [slice(None)] * arr.ndim
            sl[ax] = drop
            arr[tuple(sl)] = 0
            n.replace_input(index, mg.add_initializer(v.name + "_masked", arr))
    wanted = {nodes[id(n)].inputs[0].name: n for n, _ in c.consumers}
    runs: list[dict[int, np.ndarray]] = []

    def look(name: str, value: np.ndarray) -> None:
        n = wanted.get(name)
        if n is not None and value.ndim >= 2:
            runs[-1][id(n)] = value.astype(np.float64)

    runner = Runner(masked, engine, observe=set(wanted))
    for feeds in samples:
        runs.append({})
        runner.run(feeds, on_value=look)
    seen: dict[int, np.ndarray] = {}
    for key, first in runs[0].items():
        values = [first] + [r[key] for r in runs[1:] if key in r]
        if any(v.shape != first.shape for v in values):
            seen[key] = np.full(first.shape[1:], np.nan)  # the size follows the input
            continue
        stacked = np.concatenate(values)  # every sample of every run along axis 0
        fixed = np.all(stacked == stacked[:1], axis=tuple(i for i in range(stacked.ndim)
                                                          if i != 1),
                       keepdims=True)[0]  # (C, 1, ...): the same in every sample
        seen[key] = np.where(fixed, stacked[0], np.nan)
    return seen


def sample_feeds(model: Model, calibration=None) -> list[dict[str, np.ndarray]]:
    """Two different seeded inputs for the masked-model run, at the model's real sizes: those
    of the calibration data's samples where given (DATA: one sample each; per-run feeds:
    the first run's shapes), else the model's input shapes, a symbolic leading (batch) dim
    as 1. A symbolic dim the model leaves open beyond the batch has no size to take: one
    clear error naming the input and the options that give it (never a made-up size)."""
    from onnx import helper

    from optc.errors import OptcError

    g = model.graph
    inputs = [v for v in g.inputs if not g.is_initializer(v)]
    shapes: dict[str, tuple[int, ...]] = {}
    if isinstance(calibration, dict):
        shapes = {k: (1, *np.shape(calibration[k])[1:]) for k in (v.name for v in inputs)
                  if k in calibration}
    elif isinstance(calibration, (list, tuple)) and calibration:
        shapes = {k: np.shape(a) for k, a in calibration[0].items()}
    feeds: list[dict[str, np.ndarray]] = [{}, {}]
    for v in inputs:
        shape = shapes.get(v.name)
        if shape is None:
            dims = v.shape if v.shape is not None else ()
            if v.shape is None:
                raise OptcError(f"prune: input '{v.name}' has no known shape; give "
                                f"--input-shape {v.name}=D0,D1,... or --calib DATA")
            shape = tuple(d if isinstance(d, int) and d > 0 else 1 if i == 0 else None
                          for i, d in enumerate(dims))
            if None in shape:
                shown = ", ".join(str(d) if isinstance(d, int) and d > 0 else
                                  (d if isinstance(d, str) else "?") for d in dims)
                raise OptcError(
                    f"prune: input '{v.name}' has dims [{shown}] that the model leaves open, "
                    f"and the run that folds the removed channels' constants needs sizes: "
                    f"give --calib DATA (its sizes; the output keeps its dynamic dims) or "
                    f"--input-shape {v.name}=... (the output is fixed to that size)")
        dtype = helper.tensor_dtype_to_np_dtype(v.dtype) if v.dtype else np.float32
        for seed, f in enumerate(feeds):
            rng = np.random.default_rng(seed)
            if np.issubdtype(dtype, np.floating):
                f[v.name] = rng.standard_normal(shape).astype(dtype)
            elif dtype == np.bool_:
                f[v.name] = rng.integers(0, 2, shape).astype(np.bool_)
            elif isinstance(calibration, (list, tuple)) and calibration:
                f[v.name] = np.asarray(calibration[0][v.name])  # a sample rate, a length
            elif isinstance(calibration, dict) and v.name in calibration:
                f[v.name] = np.asarray(calibration[v.name][:1])
            else:
                f[v.name] = rng.integers(0, 8, shape).astype(dtype)
    return feeds

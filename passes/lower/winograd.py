"""winograd: 3x3 stride-1 convolutions lowered to Winograd F(m x m, 3 x 3).

Fires on a 2-D Conv (or ai.optc FusedConv) with a constant 3x3 weight, strides 1, dilations 1,
group 1, explicit pads (or auto_pad NOTSET/VALID) and a constant bias or none. The weight is
transformed once, U = G g G^T (see optc.runtime.kernels.winograd for the algorithm and its
error), and stored as a new initializer of shape (a*a, M, C), a = m + 2.

* ``portable=false`` (default): the Conv becomes ai.optc WinogradConv (X, U, B) with ``tile``
  and ``pads``, executed by optc.runtime (and the fused activation, if any, kept).
* ``portable=true``: the same algorithm in standard ONNX ops, so onnxruntime can check the
  numerics of the transforms: Pad (the input padded up to whole tiles); the input transform
  B^T d B of every tile as a depthwise Conv (kernel a x a, stride m, C*a*a outputs whose
  weights are the outer products of B^T's rows); Reshape/Transpose to (a*a, N, tiles, C); one
  MatMul with U^T (a*a batched GEMMs); the output transform A^T M A as one MatMul with the
  (a*a, m*m) Kronecker matrix of A^T; Reshape/Transpose putting the tiles back in place; Slice
  to the output size; Add of the bias. Needs static spatial sizes; FusedConv is not lowered.

``tile``: 2 (F(2x2,3x3), 2.25x fewer multiplications, exact transforms), 4 (F(4x4,3x3), 4x
fewer, float32 error near 1e-5 relative), ``tune``: per layer, the fastest of the direct conv,
F(2x2) and F(4x4) *timed* on this CPU (each built as a one-node model and run in an
InferenceSession on seeded data of the layer's shape, batch 1 for a symbolic batch), the
choice kept in the per-CPU tuning file (optc.runtime.tune: a layer shape is timed once per
machine; layers of unknown spatial size fall back to ``auto``), or ``auto``: per layer, the tile with the lowest
modelled cost, counting the GEMM multiplications and the transforms' arithmetic (input:
2*a^3 per tile and channel, output: (a*a*m + a*m*m) per tile and filter, at TRANSFORM_COST
each), against the direct convolution's 9 multiplications per output and input channel (plus
its im2col), plus the weights each reads
(a*a or 9 per filter and channel, at WEIGHT_COST multiplications each: on small images the
transformed weights cost more to read than the multiplications they save), with F(4x4) taken
only when the layer has at least ``min-channels-f4`` input channels (below that its transforms
dominate).

Not lowered, and counted by reason in the stats: grouped/depthwise convs (the per-tile GEMMs
degenerate to dot products of C/group), strides or dilations other than 1, kernels other than
3x3, 1-D/3-D convs, SAME auto_pad, non-constant weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
from onnx import helper

from optc.errors import OptcError
from optc.ir import Model, Node
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes.lower._emit import (Emitter, candidates, count, finish, refusal,
                                     replace_conv)
from optc.runtime.kernels.winograd import TILES, matrices, output_size, transform_weights
from optc.runtime.registry import OPTC_DOMAIN

_ACT_ATTRS = ("activation", "activation_params")


def _reason(node: Node, w: np.ndarray | None) -> str | None:
    """Why ``node`` cannot be lowered (None if it can)."""
    return refusal(node, w, lambda k: k == (3, 3), "kernel not 3x3")


#: the cost of reading one weight from memory, in multiplications: a layer's weights are cold
#: when it runs (a network's do not fit in cache), and F(4x4) stores 4x as many (36 per 3x3
#: filter). Fitted to per-layer timings of optc's kernels inside ResNet-50 and alone
#: (python benchmarks/winograd_tiles.py): 512 channels at 7x7 run fastest with F(2x2) (F(4x4):
#: 1.4-1.6x slower; needs more than 6), 256 at 14x14 with F(4x4) (F(2x2): 1.1x slower; needs
#: less than 8).
WEIGHT_COST = 7.0
#: the cost of one operation of the transforms (or one value the direct conv copies), in GEMM
#: multiplications: they stream through memory and vectorise less than the GEMM's FMAs.
#: With 6, the model keeps the direct conv for VGG-19's first layer (3 input channels: F(2x2)
#: is 2x slower there) and for DenseNet-121's 128->32 layers at 14x14 (F(2x2): 1.3-1.5x
#: slower, its input transform costs as much as its GEMMs with 32 filters), and takes F(4x4)
#: for them at 28x28 and 56x56 (python benchmarks/winograd_tiles.py, this session's runs).
TRANSFORM_COST = 6.0


def tile_costs(c: int, m: int, ho: int, wo: int, min_channels_f4: int = 16) -> dict[int, float]:
    """Modelled cost (multiplication equivalents) per choice: 0 (the direct convolution), 2
    and 4 (F(4x4) only with at least ``min_channels_f4`` input channels)."""
    # sgemm.c's tap mode where it runs (use_taps): 2 dropped columns per row, one padded copy
    if 5 * 2 <= wo + 2 or (m <= 64 and 3 * 2 <= wo + 2):
        direct = 9.0 * ho * (wo + 2) * c * m + TRANSFORM_COST * c * (ho + 2) * (wo + 2)
    else:  # im2col: every tap's value copied
        direct = 9.0 * ho * wo * c * m + TRANSFORM_COST * 9 * ho * wo * c
    costs = {0: direct + WEIGHT_COST * 9 * c * m}
    for t in TILES:
        if t == 4 and c < min_channels_f4:
            continue
        a = t + 2
        tiles = -(-ho // t) * -(-wo // t)
        transforms = 2 * a ** 3 * c + (a * a * t + a * t * t) * m
        costs[t] = (tiles * (a * a * c * m + TRANSFORM_COST * transforms) +
                    WEIGHT_COST * a * a * c * m)
    return costs


def choose_tile(c: int, m: int, ho: int, wo: int, min_channels_f4: int = 16) -> int:
    """0 (keep the direct convolution), 2 or 4: the lowest modelled cost."""
    costs = tile_costs(c, m, ho, wo, min_channels_f4)
    return min(costs, key=costs.get)


def _one_node_model(node: Node, w: np.ndarray, shape, tile: int, pads):
    """``node`` alone (tile 0), or lowered to WinogradConv F(tile x tile): its weight (or U),
    bias and activation as they are, x (and FusedConv's residual z) graph inputs."""
    from optc.runtime.tune import one_node_model

    shapes, consts = {"x": list(shape)}, {}
    if tile:
        consts["w"] = transform_weights(w, tile)
        attrs = [helper.make_attribute("tile", tile),
                 helper.make_attribute("pads", [int(p) for p in pads])]
        attrs += [node.attributes[k] for k in _ACT_ATTRS if k in node.attributes]
        op, domain = "WinogradConv", OPTC_DOMAIN
    else:
        consts["w"] = w
        attrs, op, domain = list(node.attributes.values()), node.op_type, node.domain
    inputs = ["x", "w"]
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        consts["b"] = node.inputs[2].const_value
        inputs.append("b")
    if len(node.inputs) > 3 and node.inputs[3] is not None:
        inputs += [""] * (3 - len(inputs)) + ["z"]
        shapes["z"] = [shape[0], w.shape[0], *output_size(shape[2], shape[3], pads)]
    return one_node_model(op, domain, attrs, inputs, shapes, consts)


def tuned_tile(cache, node: Node, w: np.ndarray, shape, pads) -> int:
    """The fastest of the direct conv (0), F(2x2) and F(4x4) for this layer on this CPU, from
    ``cache`` (optc.runtime.tune.TuningCache) or timed now."""
    from optc.runtime.tune import session_runs

    shape = [d if isinstance(d, int) else 1 for d in shape]  # a symbolic batch: 1
    act = node.attr("activation", "") or ""
    residual = len(node.inputs) > 3 and node.inputs[3] is not None
    signature = (f"winograd3x3 c{w.shape[1]} m{w.shape[0]} in{'x'.join(map(str, shape))} "
                 f"pads{'-'.join(map(str, pads))} act{act or '-'} res{int(residual)}")

    def runs():
        models = {str(t): _one_node_model(node, w, shape, t, pads) for t in (0, *TILES)}
        shapes = {"x": shape}
        if residual:
            shapes["z"] = [shape[0], w.shape[0], *output_size(shape[2], shape[3], pads)]
        return session_runs(models, shapes)

    return int(cache.choose(signature, runs))


@register
@dataclass(frozen=True)
class Winograd(Pass):
    """3x3 stride-1 convs as Winograd F(2x2,3x3) / F(4x4,3x3) (optc runtime or portable)."""

    name: ClassVar[str] = "winograd"
    lossless: ClassVar[bool] = False  # F(4x4) changes float rounding measurably
    tile: Literal["2", "4", "auto", "tune"] = field(default="auto", metadata={
        "help": "output tile m of F(m x m, 3 x 3): 2, 4, auto (cost model per layer) or tune "
                "(timed per layer on this CPU, cached per CPU)"})
    portable: bool = field(default=False, metadata={
        "help": "standard ONNX ops (runs in onnxruntime) instead of ai.optc WinogradConv"})
    min_channels_f4: int = field(default=16, metadata={
        "help": "auto: F(4x4) only for layers with at least this many input channels"})

    def requires(self, model: Model, ctx: PassContext) -> None:
        if self.portable and model.opset < 13:
            raise OptcError(f"winograd: portable=true writes opset-13 ops (Pad, Slice with "
                            f"inputs); the model is opset {model.opset}: convert it first")
        if str(self.tile) not in ("2", "4", "auto", "tune"):
            raise OptcError(f"winograd: tile must be 2, 4, auto or tune, got {self.tile}")
        if str(self.tile) == "tune" and self.portable:
            raise OptcError("winograd: tile=tune times optc.runtime's kernels; portable=true "
                            "runs in onnxruntime: give the tile (2 or 4)")

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        stats: dict[str, int] = {}
        cache = None
        for c in candidates(model, _reason, self.portable, stats):
            if str(self.tile) == "tune" and c.static:
                if cache is None:
                    from optc.runtime.tune import TuningCache
                    cache = TuningCache()
                tile = tuned_tile(cache, c.node, c.weight, c.shape, c.pads)
            else:
                tile = self._tile(c.weight, c.shape, c.pads, c.static)
            if tile == 0:
                count(stats, "kept: direct is cheaper")
                continue
            if self.portable:
                self._portable(model, c.node, c.weight, tile, c.pads, c.shape)
            else:
                self._optc(model, c.node, c.weight, tile, c.pads)
            count(stats, f"F({tile}x{tile},3x3)")
        return finish(model, stats, "F(", self.portable)

    def _tile(self, w: np.ndarray, shape, pads, static: bool) -> int:
        if str(self.tile) not in ("auto", "tune"):
            return int(self.tile)
        m, c = w.shape[:2]
        if static:
            ho, wo = output_size(shape[2], shape[3], pads)
        else:
            ho = wo = 16  # unknown: a mid-sized feature map
        return choose_tile(c, m, ho, wo, self.min_channels_f4)

    def _optc(self, model: Model, node: Node, w: np.ndarray, tile: int, pads) -> None:
        g = model.graph
        u = g.add_initializer(g.unique_name(f"{node.inputs[1].name}_winograd{tile}"),
                              transform_weights(w, tile))
        inputs = [node.inputs[0], u] + list(node.inputs[2:4])  # bias, FusedConv's Z
        attrs = {"tile": tile, "pads": [int(p) for p in pads]}
        for k in _ACT_ATTRS:
            if k in node.attributes:
                attrs[k] = node.attr(k)
        out = g.new_value(node.outputs[0].name + "_winograd", node.outputs[0].type)
        new = Node("WinogradConv", inputs, [out], domain=OPTC_DOMAIN,
                   name=g.unique_name((node.name or "conv") + f"_winograd{tile}"),
                   attributes=attrs)
        replace_conv(model.graph, node, [new], out)

    def _portable(self, model: Model, node: Node, w: np.ndarray, m: int, pads, shape) -> None:
        g = model.graph
        x = node.inputs[0]
        _, c, h, wd = shape
        mo = w.shape[0]
        a = m + 2
        bt, _, at = matrices(m)
        dt = w.dtype
        ho, wo = output_size(h, wd, pads)
        th, tw = -(-ho // m), -(-wo // m)
        e = Emitter(g, node.name or "conv", "wg")
        const, emit = e.const, e.op

        # pad to whole tiles: top/left as the conv, bottom/right up to th*m + 2
        full = [0, 0, pads[0], pads[1], 0, 0, th * m + 2 - h - pads[0], tw * m + 2 - wd - pads[1]]
        xp = emit("Pad", [x, const("pads", np.array(full, np.int64))])
        # input transform: depthwise conv, output channel c*a*a + i*a + l has kernel
        # B^T[i, :] outer B^T[l, :]
        kb = np.einsum("ij,lk->iljk", bt, bt).reshape(a * a, 1, a, a)
        kb = np.tile(kb, (c, 1, 1, 1)).astype(dt)
        v = emit("Conv", [xp, const("bt", kb)], group=c, kernel_shape=[a, a], strides=[m, m])
        # (N, C*a*a, th, tw) -> (N, C, a*a, T) -> (a*a, N, T, C)
        v = emit("Reshape", [v, const("shape_v", np.array([0, c, a * a, th * tw], np.int64))])
        v = emit("Transpose", [v], perm=[2, 0, 3, 1])
        # U (a*a, M, C) -> (a*a, 1, C, M): V @ U^T = (a*a, N, T, M)
        u = transform_weights(w, m).transpose(0, 2, 1).reshape(a * a, 1, c, mo)
        p = emit("MatMul", [v, const("u", np.ascontiguousarray(u))])
        # output transform: (a*a, N, T, M) -> (N, T, M, a*a) @ K (a*a, m*m)
        p = emit("Transpose", [p], perm=[1, 2, 3, 0])
        k = np.einsum("oi,qj->ijoq", at, at).reshape(a * a, m * m).astype(dt)
        y = emit("MatMul", [p, const("at", k)])
        # (N, T, M, m*m) -> (N, th, tw, M, m, m) -> (N, M, th, m, tw, m) -> (N, M, th*m, tw*m)
        y = emit("Reshape", [y, const("shape_t", np.array([0, th, tw, mo, m, m], np.int64))])
        y = emit("Transpose", [y], perm=[0, 3, 1, 4, 2, 5])
        y = emit("Reshape", [y, const("shape_y", np.array([0, mo, th * m, tw * m], np.int64))])
        if th * m != ho or tw * m != wo:
            y = emit("Slice", [y, const("starts", np.array([0, 0], np.int64)),
                               const("ends", np.array([ho, wo], np.int64)),
                               const("axes", np.array([2, 3], np.int64))])
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            b = node.inputs[2].const_value.reshape(1, mo, 1, 1)
            y = emit("Add", [y, const("bias", b)])
        replace_conv(g, node, e.nodes, y)

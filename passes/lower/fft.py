"""fft: large-kernel stride-1 convolutions lowered to FFT convolution (ai.optc FFTConv).

Fires on a 2-D Conv (or ai.optc FusedConv) whose constant kernel is at least ``min-kernel`` in
both dimensions, with strides 1, dilations 1, group 1, explicit pads (or VALID) and a constant
bias or none. The filters' FFTs are computed once and stored (see
optc.runtime.kernels.fft for the algorithm: overlap-save tiles of F x F, one complex GEMM per
frequency bin).

``fft-size``: F, a power of two larger than the kernel, or ``auto``: 16 for kernels up to 6,
32 up to 14, else 64 (an output tile of F - k + 1 keeps the overlap waste under a half), but
never more than the padded input needs.

``portable=true``: the same algorithm in standard ONNX ops (Pad; the forward DFT of every
tile as a depthwise Conv with the DFT basis images as kernels, stride F - k + 1; the complex
per-bin GEMM as four MatMuls; the inverse DFT of each tile's valid part as one MatMul;
Reshape/Transpose/Slice to place the tiles; Add for the bias), so onnxruntime can check the
numerics. It is for checking, not speed (the transforms as dense maps cost F^2 per bin).
Needs static spatial sizes; FusedConv is not lowered portably.

Not lowered, counted by reason in the stats: kernels under min-kernel, strides or dilations
other than 1, grouped convs, 1-D/3-D convs, SAME auto_pad, non-constant weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from optc.errors import OptcError
from optc.ir import Model, Node
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes.lower._emit import (Emitter, candidates, count, finish, refusal,
                                     replace_conv)
from optc.runtime.kernels.fft import transform_filters
from optc.runtime.registry import OPTC_DOMAIN

_ACT_ATTRS = ("activation", "activation_params")


def _reason(node: Node, w: np.ndarray | None, min_kernel: int) -> str | None:
    """Why ``node`` cannot be lowered (None if it can)."""
    return refusal(node, w, lambda k: min(k) >= min_kernel, f"kernel under {min_kernel}")


def choose_fft_size(k: int, padded: int | None) -> int:
    f = 16 if k <= 6 else 32 if k <= 14 else 64
    if padded is not None:
        need = 1 << max(int(padded - 1).bit_length(), 1)  # a power of two >= the input
        f = max(min(f, need), 1 << int(k).bit_length())  # and > k
    return f


@register
@dataclass(frozen=True)
class FFTLower(Pass):
    """Large-kernel (5x5 and up) stride-1 convs as FFT convolution (optc runtime)."""

    name: ClassVar[str] = "fft"
    lossless: ClassVar[bool] = False  # float rounding differs (about 1e-6 relative)
    min_kernel: int = field(default=5, metadata={"help": "lower kernels at least this big"})
    fft_size: str = field(default="auto", metadata={
        "help": "FFT tile size F (a power of two > kernel) or auto"})
    portable: bool = field(default=False, metadata={
        "help": "standard ONNX ops (runs in onnxruntime) instead of ai.optc FFTConv"})

    def requires(self, model: Model, ctx: PassContext) -> None:
        if self.portable and model.opset < 13:
            raise OptcError(f"fft: portable=true writes opset-13 ops (Pad, Slice with inputs); "
                            f"the model is opset {model.opset}: convert it first")
        if self.min_kernel < 2:
            raise OptcError(f"fft: min-kernel must be >= 2, got {self.min_kernel}")
        if self.fft_size != "auto":
            try:
                f = int(self.fft_size)
            except ValueError:
                f = 0
            if f < 4 or f & (f - 1):
                raise OptcError(f"fft: fft-size must be auto or a power of two >= 4, got "
                                f"{self.fft_size}")

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        stats: dict[str, int] = {}
        for c in candidates(model, lambda n, w: _reason(n, w, self.min_kernel), self.portable,
                            stats):
            kmax = max(c.weight.shape[2:])
            if self.fft_size != "auto" and int(self.fft_size) <= kmax:
                count(stats, f"kept: kernel {kmax} not under fft-size {self.fft_size}")
                continue
            padded = None
            if c.static:
                padded = max(c.shape[2] + c.pads[0] + c.pads[2], c.shape[3] + c.pads[1] +
                             c.pads[3])
            f = choose_fft_size(kmax, padded) if self.fft_size == "auto" else \
                int(self.fft_size)
            if self.portable:
                self._portable(model, c.node, c.weight, f, c.pads, c.shape)
            else:
                self._lower(model, c.node, c.weight, f, c.pads)
            count(stats, f"F={f}")
        return finish(model, stats, "F=", self.portable)

    def _lower(self, model: Model, node: Node, w: np.ndarray, f: int, pads) -> None:
        g = model.graph
        wf = g.add_initializer(g.unique_name(f"{node.inputs[1].name}_fft{f}"),
                               transform_filters(w, f))
        inputs = [node.inputs[0], wf] + list(node.inputs[2:4])  # bias, FusedConv's Z
        attrs = {"fft_size": f, "kernel_shape": [int(k) for k in w.shape[2:]],
                 "pads": [int(p) for p in pads]}
        for k in _ACT_ATTRS:
            if k in node.attributes:
                attrs[k] = node.attr(k)
        out = g.new_value(node.outputs[0].name + "_fft", node.outputs[0].type)
        new = Node("FFTConv", inputs, [out], domain=OPTC_DOMAIN,
                   name=g.unique_name((node.name or "conv") + f"_fft{f}"), attributes=attrs)
        replace_conv(g, node, [new], out)

    def _portable(self, model: Model, node: Node, w: np.ndarray, f: int, pads, shape) -> None:
        """The same algorithm in standard ops. Both transforms are linear maps, built from
        numpy's rfft2/irfft2 of unit impulses (so they equal what FFTConv computes): the
        forward one as a depthwise Conv whose 2*bins kernels per channel are the real and
        imaginary DFT basis images, applied with stride To (tile extraction and transform in
        one op); the inverse, restricted to each tile's valid To x To pixels, as one MatMul."""
        g = model.graph
        x = node.inputs[0]
        _, c, h, wd = shape
        mo, _, kh, kw = w.shape
        dt = w.dtype
        ho, wo = h + pads[0] + pads[2] - kh + 1, wd + pads[1] + pads[3] - kw + 1
        to_h, to_w = f - kh + 1, f - kw + 1
        th, tw = -(-ho // to_h), -(-wo // to_w)
        bins = f * (f // 2 + 1)
        e = Emitter(g, node.name or "conv", "fft")
        full = [0, 0, pads[0], pads[1], 0, 0, (th - 1) * to_h + f - h - pads[0],
                (tw - 1) * to_w + f - wd - pads[1]]
        xp = e.op("Pad", [x, e.const("pads", np.array(full, np.int64))])
        spec = np.fft.rfft2(np.eye(f * f).reshape(f * f, f, f)).reshape(f * f, bins)
        basis = np.concatenate([spec.real.T, spec.imag.T]).reshape(2 * bins, 1, f, f)
        xs = e.op("Conv", [xp, e.const("dft", np.tile(basis, (c, 1, 1, 1)).astype(dt))],
                  group=c, kernel_shape=[f, f], strides=[to_h, to_w])
        # (N, C*2*bins, th, tw) -> (2, bins, N, T, C): real and imaginary parts
        xs = e.op("Reshape", [xs, e.const("shape_x", np.array([0, c, 2, bins, th * tw],
                                                                np.int64))])
        xs = e.op("Transpose", [xs], perm=[2, 3, 0, 4, 1])
        xr = e.op("Gather", [xs, e.const("re", np.array(0, np.int64))], axis=0)
        xi = e.op("Gather", [xs, e.const("im", np.array(1, np.int64))], axis=0)
        wf = transform_filters(w, f)  # (2, bins, M, C) -> W^T per bin: (bins, 1, C, M)
        wr = e.const("wr", np.ascontiguousarray(wf[0].transpose(0, 2, 1)[:, None]))
        wi = e.const("wi", np.ascontiguousarray(wf[1].transpose(0, 2, 1)[:, None]))
        # (Xr + i Xi)(Wr + i Wi), per bin: (bins, N, T, M)
        yr = e.op("Sub", [e.op("MatMul", [xr, wr]), e.op("MatMul", [xi, wi])])
        yi = e.op("Add", [e.op("MatMul", [xr, wi]), e.op("MatMul", [xi, wr])])
        ys = e.op("Concat", [yr, yi], axis=0)  # (2*bins, N, T, M)
        ys = e.op("Transpose", [ys], perm=[1, 2, 3, 0])  # (N, T, M, 2*bins)
        impulses = np.concatenate([np.eye(bins), 1j * np.eye(bins)]).reshape(
            2 * bins, f, f // 2 + 1)
        inverse = np.fft.irfft2(impulses, s=(f, f))[:, kh - 1:, kw - 1:]
        y = e.op("MatMul", [ys, e.const("idft", inverse.reshape(2 * bins, -1).astype(dt))])
        y = e.op("Reshape", [y, e.const("shape_t", np.array([0, th, tw, mo, to_h, to_w],
                                                             np.int64))])
        y = e.op("Transpose", [y], perm=[0, 3, 1, 4, 2, 5])
        y = e.op("Reshape", [y, e.const("shape_y", np.array([0, mo, th * to_h, tw * to_w],
                                                             np.int64))])
        if th * to_h != ho or tw * to_w != wo:
            y = e.op("Slice", [y, e.const("starts", np.array([0, 0], np.int64)),
                               e.const("ends", np.array([ho, wo], np.int64)),
                               e.const("axes", np.array([2, 3], np.int64))])
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            y = e.op("Add", [y, e.const("bias", node.inputs[2].const_value.reshape(1, mo, 1, 1))])
        replace_conv(g, node, e.nodes, y)

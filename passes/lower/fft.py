"""fft: large-kernel stride-1 convolutions lowered to FFT convolution (ai.optc FFTConv).

Fires on a 2-D Conv (or ai.optc FusedConv) whose constant kernel is at least ``min-kernel`` in
both dimensions, with strides 1, dilations 1, group 1, explicit pads (or VALID) and a constant
bias or none. The filters' FFTs are computed once and stored (see
optc.runtime.kernels.fft for the algorithm: overlap-save tiles of F x F, one complex GEMM per
frequency bin).

``fft-size``: F, a power of two larger than the kernel, or ``auto``: 16 for kernels up to 6,
32 up to 14, else 64 (an output tile of F - k + 1 keeps the overlap waste under a half), but
never more than the padded input needs.

Not lowered, counted by reason in the stats: kernels under min-kernel, strides or dilations
other than 1, grouped convs, 1-D/3-D convs, SAME auto_pad, non-constant weights. A portable
(standard-ONNX, DFT-op) form is not built yet: unlike ``winograd{portable=true}`` the lowered
model runs in optc.runtime only, and the tests check it against onnxruntime on the original.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from optc.errors import OptcError
from optc.ir import Model, Node
from optc.pass_base import Pass, PassResult, register
from optc.passes._common import const_input
from optc.passes.lower.winograd import _input_shapes
from optc.runtime.kernels.fft import transform_filters
from optc.runtime.registry import OPTC_DOMAIN

_ACT_ATTRS = ("activation", "activation_params")


def _reason(node: Node, w: np.ndarray | None, min_kernel: int) -> str | None:
    if w is None:
        return "non-constant weight"
    if w.ndim != 4:
        return "not a 2-D conv"
    if min(w.shape[2:]) < min_kernel:
        return f"kernel under {min_kernel}"
    if node.attr("group", 1) != 1:
        return "grouped"
    if any(s != 1 for s in (node.attr("strides") or [1, 1])):
        return "stride != 1"
    if any(d != 1 for d in (node.attr("dilations") or [1, 1])):
        return "dilation != 1"
    if node.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID", ""):
        return "SAME auto_pad"
    if len(node.inputs) > 2 and node.inputs[2] is not None and \
            node.inputs[2].const_value is None:
        return "non-constant bias"
    return None


def choose_fft_size(k: int, padded: int | None) -> int:
    f = 16 if k <= 6 else 32 if k <= 14 else 64
    if padded is not None:
        need = 1 << max(int(padded - 1).bit_length(), 1)  # a power of two >= the input
        f = max(min(f, need), 1 << int(k).bit_length())  # and > k
    return f


@register
@dataclass
class FFTLower(Pass):
    """Large-kernel (5x5 and up) stride-1 convs as FFT convolution (optc runtime)."""

    name: ClassVar[str] = "fft"
    lossless: ClassVar[bool] = False  # float rounding differs (about 1e-6 relative)
    min_kernel: int = field(default=5, metadata={"help": "lower kernels at least this big"})
    fft_size: str = field(default="auto", metadata={
        "help": "FFT tile size F (a power of two > kernel) or auto"})

    def requires(self, model: Model) -> None:
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

    def run(self, model: Model) -> PassResult:
        g = model.graph
        shapes = _input_shapes(model)
        stats: dict[str, int] = {}
        for node in list(g.nodes):
            fused = node.domain == OPTC_DOMAIN and node.op_type == "FusedConv"
            if not (node.op_type == "Conv" and node.domain in ("", "ai.onnx") or fused):
                continue
            w = const_input(g, node, 1)
            reason = _reason(node, w, self.min_kernel)
            pads = list(node.attr("pads") or [0, 0, 0, 0])
            if node.attr("auto_pad", "NOTSET") == "VALID":
                pads = [0, 0, 0, 0]
            kmax = max(w.shape[2:]) if reason is None else 0
            if reason is None and self.fft_size != "auto" and int(self.fft_size) <= kmax:
                reason = f"kernel {kmax} not under fft-size {self.fft_size}"
            if reason is not None:
                stats[f"kept: {reason}"] = stats.get(f"kept: {reason}", 0) + 1
                continue
            shape = shapes.get(node.inputs[0].name)
            padded = None
            if shape is not None and len(shape) == 4 and all(isinstance(d, int)
                                                              for d in shape[2:]):
                padded = max(shape[2] + pads[0] + pads[2], shape[3] + pads[1] + pads[3])
            f = choose_fft_size(kmax, padded) if self.fft_size == "auto" else \
                int(self.fft_size)
            self._lower(model, node, w, f, pads)
            stats[f"F={f}"] = stats.get(f"F={f}", 0) + 1
        modified = any(k.startswith("F=") for k in stats)
        if modified:
            model.opset_imports.setdefault(OPTC_DOMAIN, 1)
        return PassResult(model, modified, stats)

    def _lower(self, model: Model, node: Node, w: np.ndarray, f: int, pads) -> None:
        g = model.graph
        wf = g.add_initializer(g.unique_name(f"{node.inputs[1].name}_fft{f}"),
                               transform_filters(w, f))
        inputs = [node.inputs[0], wf]
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            inputs.append(node.inputs[2])
        attrs = {"fft_size": f, "kernel_shape": [int(k) for k in w.shape[2:]],
                 "pads": [int(p) for p in pads]}
        for k in _ACT_ATTRS:
            if k in node.attributes:
                attrs[k] = node.attr(k)
        out = g.new_value(node.outputs[0].name + "_fft", node.outputs[0].type)
        new = Node("FFTConv", inputs, [out], domain=OPTC_DOMAIN,
                   name=g.unique_name((node.name or "conv") + f"_fft{f}"), attributes=attrs)
        g.insert_before(node, new)
        old_inputs = [v for v in node.inputs if v is not None]
        g.substitute(node.outputs[0], out)
        g.remove(node)
        for v in old_inputs:
            if g.is_initializer(v) and not v.uses() and not g.is_output(v):
                g.remove_initializer(v)

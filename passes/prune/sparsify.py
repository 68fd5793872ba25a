"""sparsify: unstructured magnitude pruning -- the smallest weights of each layer set to zero.

For every Conv / ConvTranspose / Gemm / MatMul with a float constant weight, the fraction
``sparsity`` of its weights with the smallest |w| become 0 (``scope=local``: per layer;
``scope=global``: one threshold over all layers' weights). The graph keeps its shapes: this is
for compression (zeros compress well; a sparse kernel could skip them), not for speed in
onnxruntime. Weights shared with other nodes are left alone. The stats report the sparsity
achieved over all layer weights (zeros already there included).
Lossy: ``--validate`` reports the difference rather than failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

from optc.errors import OptcError
from optc.ir import Model
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes._common import is_standard
from optc.passes.channels import owned_constant

_LAYERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@register
@dataclass(frozen=True)
class Sparsify(Pass):
    """Unstructured magnitude pruning: the smallest weights set to zero."""

    name: ClassVar[str] = "sparsify"
    lossless: ClassVar[bool] = False
    sparsity: float = field(default=0.5, metadata={"help": "fraction of weights set to zero"})
    scope: Literal["local", "global"] = field(default="local", metadata={
        "help": "local: per layer; global: one magnitude threshold over all layers"})

    def requires(self, model: Model, ctx: PassContext) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise OptcError(f"sparsify: sparsity must be in [0, 1), got {self.sparsity}")

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        weights = []
        for n in g.nodes:
            if is_standard(n) and n.op_type in _LAYERS and len(n.inputs) > 1:
                w = owned_constant(g, n, 1)
                if w is not None and w.const_value.dtype.kind == "f":
                    weights.append(w)
        if not weights:
            return PassResult(model, False, {"layers": 0})
        threshold = None
        if self.scope == "global":
            mags = np.concatenate([np.abs(w.const_value).ravel() for w in weights])
            k = int(np.floor(self.sparsity * mags.size))
            threshold = np.partition(mags, k - 1)[k - 1] if k > 0 else None
        modified, zeros, total = False, 0, 0
        for w in weights:
            arr = w.const_value
            mag = np.abs(arr)
            if self.scope == "local":
                k = int(np.floor(self.sparsity * arr.size))
                cut = np.zeros(arr.shape, bool)
                if k > 0:
                    cut.ravel()[np.argsort(mag, axis=None, kind="stable")[:k]] = True
            else:
                cut = mag <= threshold if threshold is not None else np.zeros(arr.shape, bool)
            if np.any(cut & (arr != 0)):
                w.set_const(np.where(cut, np.zeros((), arr.dtype), arr))
                modified = True
            zeros += int(np.count_nonzero(w.const_value == 0))
            total += arr.size
        return PassResult(model, modified, {"layers": len(weights),
                                            "sparsity": round(zeros / total, 4)})

"""freeze-initializers: initializers that are also graph inputs become plain constants.

When it fires: models written for IR version < 4 list every initializer as a graph input as
well (the onnx ``light`` models do), which makes each weight an *overridable* default: a runtime
must assume a caller may feed a different value, so nothing that depends on it can be
constant-folded or fused. This pass removes such initializers from the graph inputs and raises
the IR version to 4 (the first that allows initializers which are not inputs).

The math: none; outputs are unchanged for every call that does not override a weight.
Not handled: nothing else; the model simply stops accepting weight overrides, as onnxsim's
output does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from optc.ir import Model
from optc.pass_base import Pass, PassContext, PassResult, register


@register
@dataclass(frozen=True)
class FreezeInitializers(Pass):
    """Drop initializers from the graph inputs so they are constants (IR version >= 4)."""

    name: ClassVar[str] = "freeze-initializers"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        before = len(g.inputs)
        g.inputs = [v for v in g.inputs if not g.is_initializer(v)]
        frozen = before - len(g.inputs)
        if frozen and model.ir_version < 4:
            model.ir_version = 4
        return PassResult(model, frozen > 0, {"frozen": frozen})

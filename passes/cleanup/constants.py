"""constant-to-initializer: Constant nodes become initializers.

When it fires: a Constant node of the main graph whose output is not a graph output. Every form
of the op is handled (value, value_float(s), value_int(s), value_string(s)); sparse_value is
left alone (a sparse initializer would need its own handling by every consumer).
The initializer takes the Constant's output name, so readers see the same value under the same
name. Not handled: Constants inside subgraphs (subgraphs are carried, not edited).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import onnx

from optc.ir import Model, Node
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes._common import is_standard, replace_with_constants

_NP_OF = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
          "value_ints": np.int64, "value_string": object, "value_strings": object}


def constant_value(node: Node) -> np.ndarray | onnx.TensorProto | None:
    """The tensor a Constant node produces, or None for forms not handled (sparse_value).
    The ``value`` form is returned as its TensorProto, exactly as stored."""
    if "value" in node.attributes:
        return node.attributes["value"].t
    for key, dtype in _NP_OF.items():
        if key in node.attributes:
            return np.array(node.attr(key), dtype=dtype)
    return None


@register
@dataclass(frozen=True)
class ConstantToInitializer(Pass):
    """Turn Constant nodes into initializers of the same name."""

    name: ClassVar[str] = "constant-to-initializer"

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        count = 0
        for node in g.nodes:
            if node.op_type != "Constant" or not is_standard(node):
                continue
            out = node.outputs[0]
            if out is None or g.is_output(out):
                continue
            value = constant_value(node)
            if value is None:
                continue
            replace_with_constants(g, node, [value])
            count += 1
        return PassResult(model, count > 0, {"converted": count})

"""Helpers for tests and benchmarks: the onnx `light` models with seeded random weights.

The light models ship with every weight built by a ConstantOfShape fill (one value per
tensor), which makes their outputs degenerate; numeric checks need real-looking weights.
"""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = sorted(glob.glob(str(LIGHT_DIR / "light_*.onnx")))


def light_model(name: str) -> str:
    """Path of the light model whose file name contains ``name`` (e.g. 'resnet50')."""
    matches = [p for p in LIGHT_MODELS if name in Path(p).name]
    if len(matches) != 1:
        raise ValueError(f"no single light model matches '{name}'")
    return matches[0]


def light_at_opset(name: str, opset: int, seed: int = 0) -> onnx.ModelProto:
    """``randomize_light`` of the light model ``name``, converted to ``opset`` if it is older
    (per-channel quantization needs 13)."""
    from onnx import version_converter

    proto = randomize_light(light_model(name), seed=seed)
    if proto.opset_import[0].version < opset:
        proto = version_converter.convert_version(proto, opset)
    return proto


def randomize_light(path: str, seed: int = 0) -> onnx.ModelProto:
    """The light model with every ConstantOfShape-filled weight replaced by a seeded random
    initializer (He-scaled for weights; 1-D tensors in [0.5, 1.5] so BN variances stay
    positive). Built with onnx protos only, independently of optc."""
    m = onnx.load(path)
    rng = np.random.default_rng(seed)
    g = m.graph
    shapes = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    keep_nodes = []
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in shapes:
            shape = [int(d) for d in shapes[n.input[0]]]
            if len(shape) >= 2:
                fan_in = int(np.prod(shape[1:]))
                data = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
            else:
                data = rng.uniform(0.5, 1.5, shape)
            g.initializer.append(numpy_helper.from_array(data.astype(np.float32), n.output[0]))
            g.input.append(helper.make_tensor_value_info(n.output[0], onnx.TensorProto.FLOAT,
                                                         shape))
        else:
            keep_nodes.append(n)
    del g.node[:]
    g.node.extend(keep_nodes)
    # random weights saturate the final Softmax to one-hot: expose the logits before it as an
    # extra output so that numeric comparisons see real values
    last = g.node[-1]
    outputs = {o.name: o for o in g.output}
    if last.op_type == "Softmax" and last.output[0] in outputs:
        logits = onnx.ValueInfoProto()
        logits.CopyFrom(outputs[last.output[0]])  # Softmax keeps the shape
        logits.name = last.input[0]
        g.output.append(logits)
    onnx.checker.check_model(m)
    return m



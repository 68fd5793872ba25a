"""Single QLinearConv layers (ResNet-50's shapes) in optc.runtime's C kernel next to
onnxruntime's, 1 thread, interleaved: the int8 GEMM alone, without a model's other nodes.

    python benchmarks/qconv_layers.py [--rounds 15] [--weights 63]

--weights W draws the int8 weights from [-W, W]: 63 is what quantize{reduce-range=true}
writes (7 bits: optc's AVX2 GEMM multiplies them with vpmaddubsw), 127 full range (vpmaddwd
on the taps widened to int16, half as many products per instruction; onnxruntime's u8 x s8
kernel saturates its 16-bit pair sums on such weights on CPUs without VNNI, so its results
then differ from the exact ones -- the max |difference| column shows by how much).
Printed per layer: median ms of each, GMAC/s, optc/onnxruntime, and the geometric mean.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from optc.runtime.kernels.qlinear import _plan
from optc.validate import ort_session

# (input channels, size, output channels, kernel): ResNet-50's 3x3 and 1x1 convs
SHAPES = [(64, 56, 64, 3), (128, 28, 128, 3), (256, 14, 256, 3), (512, 7, 512, 3),
          (256, 56, 64, 1), (1024, 14, 256, 1), (512, 7, 2048, 1)]


def _ort_layer(w, w_scale, k):
    consts = [(np.float32(0.05), "xs"), (np.uint8(3), "xz"), (w, "w"), (w_scale, "ws"),
              (np.zeros(len(w), np.int8), "wz"), (np.float32(0.2), "ys"), (np.uint8(5), "yz")]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"],
                            ["y"], pads=[k // 2] * 4)
    graph = helper.make_graph([node], "layer",
                              [helper.make_tensor_value_info("x", TensorProto.UINT8, None)],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
                              [numpy_helper.from_array(np.asarray(a), n) for a, n in consts])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort_session(model.SerializeToString(), threads=1, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--weights", type=int, default=63, help="|int8 weights| at most")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    ratios = []
    for c, h, m, k in SHAPES:
        x = rng.integers(0, 256, (1, c, h, h), dtype=np.uint8)
        w = rng.integers(-args.weights, args.weights + 1, (m, c, k, k)).astype(np.int8)
        w_scale = np.full(m, 0.003, np.float32)
        attrs = dict(auto_pad="NOTSET", kernel_shape=None, pads=[k // 2] * 4, strides=None,
                     dilations=None, group=1)
        plan = _plan(x, 3, np.float32(0.05), w, w_scale, np.zeros(m, np.int8),
                     np.float32(0.2), 5, np.dtype(np.uint8), None, attrs)
        reference = _ort_layer(w, w_scale, k)
        diff = np.abs(plan(x).astype(int) - reference.run(None, {"x": x})[0].astype(int)).max()
        ours, theirs = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            plan(x)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            reference.run(None, {"x": x})
            theirs.append(time.perf_counter() - start)
        a, b = statistics.median(ours), statistics.median(theirs)
        macs = m * c * k * k * h * h
        ratios.append(a / b)
        print(f"{c}x{h}x{h} -> {m}, {k}x{k}: optc {a * 1e3:.2f} ms ({macs / a / 1e9:.0f} GMAC/s)"
              f"  onnxruntime {b * 1e3:.2f} ms ({macs / b / 1e9:.0f})  optc/ort {a / b:.2f}"
              f"  max |difference| {diff}")
    print(f"geomean optc/ort: {math.exp(sum(map(math.log, ratios)) / len(ratios)):.2f}")


if __name__ == "__main__":
    main()

"""Per-layer times of optc's 3x3 convolution kernels -- direct (im2col + GEMM), Winograd
F(2x2,3x3) and F(4x4,3x3) -- on the 3x3 layer shapes of ResNet-50, VGG-19, DenseNet-121 and
Inception v1 (batch 1, one thread, seeded random data), next to onnxruntime's Conv and the
choice of the winograd pass's cost model (tile=auto), with how much slower that choice is
than the fastest of the three.

    python benchmarks/winograd_tiles.py [--repeat 9]
"""

from __future__ import annotations

import argparse
import ctypes

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console
from rich.table import Table

from optc.bench import interleaved
from optc.passes.lower.winograd import choose_tile
from optc.runtime.kernels.fused import fused_conv
from optc.runtime.kernels.winograd import transform_weights, winograd_conv

#: (input channels, filters, image size) of the 3x3 stride-1 layers
SHAPES = [(64, 64, 56), (128, 128, 28), (256, 256, 14), (512, 512, 7),  # ResNet-50
          (3, 64, 224), (64, 64, 224), (128, 128, 112), (256, 256, 56), (512, 512, 28),  # VGG-19
          (512, 512, 14),
          (128, 32, 56), (128, 32, 28), (128, 32, 14), (128, 32, 7),  # DenseNet-121
          (96, 128, 28), (128, 192, 28), (96, 208, 14), (160, 320, 14),  # Inception v1
          (160, 320, 7), (192, 384, 7)]


def _keep_heap() -> None:
    """glibc: serve large buffers from a heap it keeps (mallopt M_MMAP_THRESHOLD 32 MiB,
    M_TRIM_THRESHOLD 1 GiB). A kernel called alone in a loop otherwise maps its temporaries
    (Winograd's V and products: MBs) fresh on each call and faults every page in, which a
    session's steady state does not (0-1 page faults per ResNet-50 run): F(2x2) on 64->64 at
    56x56 measured 7 ms that way against 3 ms."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD


class _Call:
    """A zero-argument kernel call in the shape optc.bench.interleaved times (run(None, feeds))."""

    def __init__(self, fn):
        self.fn = fn

    def run(self, _names, _feeds):
        return self.fn()


def _ort_conv(x, w, b, pads=(1, 1, 1, 1), strides=(1, 1)):
    conv = helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=list(pads),
                            strides=list(strides))
    relu = helper.make_node("Relu", ["c"], ["y"])
    graph = helper.make_graph(
        [conv, relu], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString(),
        options)
    return _Call(lambda: session.run(None, {"x": x}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    _keep_heap()
    import threadpoolctl
    threadpoolctl.threadpool_limits(1)
    rng = np.random.default_rng(0)
    table = Table(title="3x3 conv + ReLU, batch 1, 1 thread: median ms (interleaved)")
    for col in ("C->M @ HxW", "onnxruntime", "optc direct", "F(2x2)", "F(4x4)", "auto picks",
                "auto / fastest"):
        table.add_column(col, justify="right")
    for c, m, hw in SHAPES:
        x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
        w = (rng.standard_normal((m, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
        b = rng.standard_normal(m).astype(np.float32)
        calls = {"ort": _ort_conv(x, w, b),
                 0: _Call(lambda: fused_conv(x, w, b, activation="Relu", pads=[1] * 4))}
        for tile in (2, 4):
            u = transform_weights(w, tile)
            calls[tile] = _Call(lambda u=u, tile=tile: winograd_conv(
                x, u, b, tile=tile, pads=[1] * 4, activation="Relu"))
        ms = interleaved(calls, {}, warmup=1, repeat=args.repeat)
        pick = choose_tile(c, m, hw, hw)
        fastest = min(ms[k] for k in (0, 2, 4))
        table.add_row(f"{c}->{m} @ {hw}", f"{ms['ort']:.3f}", f"{ms[0]:.3f}", f"{ms[2]:.3f}",
                      f"{ms[4]:.3f}", {0: "direct", 2: "F(2x2)", 4: "F(4x4)"}[pick],
                      f"{ms[pick] / fastest:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()

"""optc's two float32 conv paths on single layers, in one build, interleaved: im2col (the
input packed into the GEMM's strips, sconv_mode 1) against tap mode (the GEMM reads its rows
where they lie, sconv_mode 2), and what s_conv picks per shape (mode 0), next to
onnxruntime's Conv. One thread, batch 1, seeded random data; conv + bias + ReLU.

    python benchmarks/conv_paths.py [--rounds 21] [--shapes pointwise|direct|all]

Per shape: median ms of each, the per-round ratio tap / im2col (its median: the rounds share
the machine's slow spells), and the picked path's ratio to the faster of the two.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from optc.runtime.kernels import native

from winograd_tiles import _keep_heap, _ort_conv  # benchmarks/, run as a script

#: (input channels, filters, image size, kernel, stride): ResNet-50's and DenseNet-121's 1x1
#: convs
POINTWISE = [(256, 64, 56, 1, 1), (64, 256, 56, 1, 1), (128, 128, 56, 1, 1),
             (256, 128, 56, 1, 1), (512, 128, 28, 1, 1), (128, 512, 28, 1, 1),
             (512, 256, 28, 1, 1), (1024, 256, 14, 1, 1), (256, 1024, 14, 1, 1),
             (512, 128, 14, 1, 1), (1024, 512, 14, 1, 1), (1024, 128, 7, 1, 1),
             (2048, 512, 7, 1, 1), (512, 2048, 7, 1, 1)]
#: convs that stay direct after winograd: DenseNet-121's 128 -> 32 at 14 and 7, ResNet-50's
#: strided 3x3 convs and 7x7 stem; and stride-1 3x3 ones winograd takes
DIRECT = [(128, 32, 14, 3, 1), (128, 32, 7, 3, 1), (128, 128, 56, 3, 2), (256, 256, 28, 3, 2),
          (512, 512, 14, 3, 2), (3, 64, 224, 7, 2), (128, 32, 56, 3, 1), (64, 64, 56, 3, 1),
          (256, 256, 14, 3, 1), (512, 512, 7, 3, 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--shapes", choices=("pointwise", "direct", "all"), default="all")
    args = parser.parse_args()
    if native.ssimd() < 1:
        raise SystemExit("conv_paths: no SIMD float32 GEMM on this machine (both paths need it)")
    _keep_heap()
    shapes = {"pointwise": POINTWISE, "direct": DIRECT, "all": POINTWISE + DIRECT}[args.shapes]
    rng = np.random.default_rng(0)
    print(f"{'C->M @ HxW, k':22s} {'ort':>7s} {'im2col':>7s} {'taps':>7s} {'picked':>7s} "
          f"{'taps/im2col':>12s} {'picked/best':>12s}")
    try:
        for c, m, hw, k, stride in shapes:
            x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
            w = (rng.standard_normal((m, c, k, k)) / np.sqrt(k * k * c)).astype(np.float32)
            b = rng.standard_normal(m).astype(np.float32)
            pads, strides = [k // 2] * 4, [stride] * 2
            ort_call = _ort_conv(x, w, b, pads, strides)

            out = [(hw + 2 * (k // 2) - k) // stride + 1] * 2
            # the filters packed once, as a session's plan does (packing 2048 -> 512 filters
            # on every call doubled the time measured at 7x7)
            planned = native.Conv2dCall(x.shape, w, strides, pads[:2], [1, 1], 1, out,
                                     native.activation_args("Relu", None))

            def conv(mode):
                native.sconv_mode(mode)
                return planned(x, b, None)

            reference = conv(1)
            for mode in (0, 2):
                np.testing.assert_allclose(conv(mode), reference, rtol=1e-4, atol=1e-4)
            reps = max(2, int(3e7 / (m * c * k * k * hw * hw / stride ** 2)))
            times: dict[str, list[float]] = {"ort": [], "im2col": [], "taps": [], "picked": []}
            for _ in range(args.rounds):
                for name, call in (("ort", lambda: ort_call.run(None, {})),
                                   ("im2col", lambda: conv(1)), ("taps", lambda: conv(2)),
                                   ("picked", lambda: conv(0))):
                    start = time.perf_counter()
                    for _ in range(reps):
                        call()
                    times[name].append((time.perf_counter() - start) / reps * 1e3)
            med = {name: statistics.median(t) for name, t in times.items()}
            taps_ratio = statistics.median(a / b for a, b in zip(times["taps"], times["im2col"]))
            best = min(med["im2col"], med["taps"])
            label = f"{c}->{m} @ {hw}, {k}x{k}" + (f" /{stride}" if stride > 1 else "")
            print(f"{label:22s} {med['ort']:7.3f} {med['im2col']:7.3f} "
                  f"{med['taps']:7.3f} {med['picked']:7.3f} {taps_ratio:12.2f} "
                  f"{med['picked'] / best:12.2f}")
    finally:
        native.sconv_mode(0)


if __name__ == "__main__":
    main()

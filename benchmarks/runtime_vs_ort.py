"""optc.runtime latency next to onnxruntime (same run, same inputs, 1 thread each by default),
plus optc's peak activation memory, on the ResNet-50, VGG-19 and DenseNet-121 `light`
architectures (and Inception v1, for its 5x5 convs) with seeded random weights (constant-folded
by optc), on the models/ models and on any .onnx path given (the wild corpus's
paddle_orientation.onnx, a mobile SE/HardSwish net).

optc.runtime runs each model as ``optc bench`` does: its session's "all" optimization, with
the Winograd choice per layer from the cost model ("all") or timed on this CPU ("all + tune",
optc.runtime.tune; cached per CPU, so the second run of a model times nothing), and "all +
tune + fft" with the fft lowering first (5x5+ kernels: Inception v1); on CPUs with AMX-BF16
also "all + bf16" (the session precision bf16, with its error against onnxruntime's float32
outputs in the last column). onnxruntime runs the model as given (its own graph
optimizations on, float32), and the geometric mean of the ratios is printed per variant,
with the CPU it ran on.

    python benchmarks/runtime_vs_ort.py [--repeat 10] [--threads 1] [--models vgg19 ... PATH]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

import optc
from optc.bench import bench
from optc.runtime.kernels.native import bf16_available
from optc.runtime.tune import cpu_info

from _models import model_files  # benchmarks/, run as a script

#: what optc.runtime runs: (a pipeline run before the session's own "all", tune, precision);
#: onnxruntime always runs the model as given (its own optimizations on)
VARIANTS = {"all": (None, False, "fp32"), "all + tune": (None, True, "fp32"),
            "all + tune + fft": ("default,fft", True, "fp32")}
if bf16_available():
    VARIANTS["all + bf16"] = (None, False, "bf16")
LIGHT = ("resnet50", "vgg19", "densenet121", "inception_v1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=None,
                        help="light names (" + ", ".join(LIGHT) + "), models/ stems and .onnx paths")
    args = parser.parse_args()
    console = Console()
    table = Table(title=f"optc.runtime vs onnxruntime ({args.threads} thread, median of "
                        f"{args.repeat}; onnxruntime with its graph optimizations on)")
    for col in ("model", "variant", "ort ms", "optc ms", "optc/ort", "peak act. MiB",
                "bf16 error"):
        table.add_column(col, justify="left" if col in ("model", "variant") else "right")
    ratios: dict[str, list[float]] = {}
    wanted = args.models
    with tempfile.TemporaryDirectory() as d:
        paths = model_files(LIGHT, wanted, d) + [Path(p) for p in wanted or ()
                                                  if Path(p).is_file()]
        for path in paths:
            for variant, (passes, tune, precision) in VARIANTS.items():
                target = path
                if passes:
                    lowered, _ = optc.optimize(str(path), passes=passes)
                    target = Path(d) / f"{path.stem}_lowered.onnx"
                    optc.save(lowered, target)
                r = bench(target, runtime="optc", threads=args.threads, warmup=args.warmup,
                          repeat=args.repeat, reference=path, tune=tune, precision=precision)
                ratios.setdefault(variant, []).append(r.ratio)
                table.add_row(path.name, variant, f"{r.ort_median_ms:.2f}",
                              f"{r.median_ms:.2f}", f"{r.ratio:.2f}x",
                              f"{r.peak_bytes / 2**20:.2f}",
                              "" if r.error is None else f"{r.error:.1e}")
    console.print(table)
    info = cpu_info()
    console.print(f"CPU: {info.model} ({', '.join(info.flags[-6:])}; L1d {info.l1d >> 10} KiB, "
                  f"L2 {info.l2 >> 10} KiB, L3 {info.l3 >> 20} MiB)")
    for variant, rs in ratios.items():
        geomean = math.exp(sum(map(math.log, rs)) / len(rs))
        console.print(f"geomean optc/ort ({variant}): {geomean:.2f}x")


if __name__ == "__main__":
    main()

"""optc.runtime latency next to onnxruntime (same run, same inputs, 1 thread each by default),
plus optc's peak activation memory, on the ResNet-50, VGG-19 and DenseNet-121 `light`
architectures (and Inception v1, for its 5x5 convs) with seeded random weights (constant-folded
by optc) and on the models/ models.

Each model runs in optc.runtime after ``default,fuse-act{target=optc}``, after that plus
``winograd`` (tile=auto), and plus ``fft`` (5x5+ kernels: Inception v1); onnxruntime runs the
model as given (its own graph optimizations on), and the geometric mean of the ratios is
printed per variant.

    python benchmarks/runtime_vs_ort.py [--repeat 10] [--threads 1] [--models vgg19 ...]
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

from _models import model_files  # benchmarks/, run as a script

#: what optc.runtime runs; onnxruntime always runs the model as given (its own optimizations on)
VARIANTS = {"default": "default,fuse-act{target=optc}",
            "default + winograd": "default,fuse-act{target=optc},winograd",
            "default + winograd + fft": "default,fuse-act{target=optc},winograd,fft"}
LIGHT = ("resnet50", "vgg19", "densenet121", "inception_v1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=None,
                        help="light names (" + ", ".join(LIGHT) + ") and models/ stems")
    args = parser.parse_args()
    console = Console()
    table = Table(title=f"optc.runtime vs onnxruntime ({args.threads} thread, median of "
                        f"{args.repeat}; onnxruntime with its graph optimizations on)")
    for col in ("model", "variant", "ort ms", "optc ms", "optc/ort", "peak act. MiB"):
        table.add_column(col, justify="left" if col in ("model", "variant") else "right")
    ratios: dict[str, list[float]] = {}
    wanted = args.models
    with tempfile.TemporaryDirectory() as d:
        paths = model_files(LIGHT, wanted, d)
        for path in paths:
            for variant, passes in VARIANTS.items():
                lowered, _ = optc.optimize(str(path), passes=passes)
                target = Path(d) / f"{path.stem}_{len(passes)}.onnx"
                optc.save(lowered, target)
                r = bench(target, runtime="optc", threads=args.threads, warmup=args.warmup,
                          repeat=args.repeat, reference=path)
                ratios.setdefault(variant, []).append(r.ratio)
                table.add_row(path.name, variant, f"{r.ort_median_ms:.2f}",
                              f"{r.median_ms:.2f}", f"{r.ratio:.2f}x",
                              f"{r.peak_bytes / 2**20:.2f}")
    console.print(table)
    for variant, rs in ratios.items():
        geomean = math.exp(sum(map(math.log, rs)) / len(rs))
        console.print(f"geomean optc/ort ({variant}): {geomean:.2f}x")


if __name__ == "__main__":
    main()

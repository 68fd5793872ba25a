"""int8 in optc.runtime next to fp32 in optc.runtime and int8 / fp32 in onnxruntime: all four
timed in the same run, interleaved, on the same seeded input (1 thread each by default).

Per model (the models/ nets and the `light` ResNet-50, VGG-19, DenseNet-121 with seeded random
weights): the fp32 model runs in optc.runtime after ``default,fuse-act{target=optc}`` and
after that plus ``winograd``; the int8 model is ``default,quantize{probe=false}`` (every conv
and Gemm int8, calibrated on seeded random inputs) -- onnxruntime runs that QDQ model, and
optc.runtime runs it after ``qlinear,fuse-act{target=optc}`` (QLinearConv, integer-only; the
unfolded BatchNormalizations before quantized convs as QuantizeAffine). Printed: median ms of
each, optc int8 / optc fp32 (both fp32 variants), optc int8 / onnxruntime int8, and the
geometric means.

    python benchmarks/int8_runtime.py [--repeat 20] [--threads 1] [--models resnet_mini ...]
                                      [--reduce-range]

--reduce-range quantizes the weights to 7 bits (``quantize{reduce-range=true}``, as
onnxruntime's reduce_range): optc's AVX2 int8 GEMM then multiplies with vpmaddubsw, whose
16-bit pair sums cannot saturate on such weights (vpmaddwd, half as many products per
instruction, otherwise).
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

import optc
from optc.bench import interleaved
from optc.validate import random_feeds, session

from _models import model_files  # benchmarks/, run as a script

LIGHT = ("resnet50", "vgg19", "densenet121")


def _calibration(path: Path, samples: int) -> dict[str, np.ndarray]:
    s = session(str(path), "ort", threads=1)
    batches = [random_feeds(s, seed=i) for i in range(samples)]
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, default=8, help="calibration samples")
    parser.add_argument("--reduce-range", action="store_true", help="7-bit weights")
    parser.add_argument("--models", nargs="+", default=None,
                        help="light names (" + ", ".join(LIGHT) + ") and models/ stems")
    args = parser.parse_args()
    console = Console(width=170)
    table = Table(title=f"int8 vs fp32, optc.runtime and onnxruntime ({args.threads} thread, "
                        f"median of {args.repeat}, interleaved)")
    for col in ("model", "optc fp32", "optc fp32+wino", "optc int8", "ort fp32", "ort int8",
                "optc int8/fp32", "int8/fp32+wino", "optc/ort int8", "ort int8/fp32"):
        table.add_column(col, justify="left" if col == "model" else "right")
    ratios: dict[str, list[float]] = {}
    wanted = args.models
    with tempfile.TemporaryDirectory() as d:
        paths = model_files(LIGHT, wanted, d, opset=17)  # quantize needs opset 13
        for path in paths:
            fp32, _ = optc.optimize(str(path), passes="default,fuse-act{target=optc}")
            wino, _ = optc.optimize(str(path), passes="default,fuse-act{target=optc},winograd")
            options = "probe=false reduce-range=true" if args.reduce_range else "probe=false"
            qdq, _ = optc.optimize(str(path), passes=f"default,quantize{{{options}}}",
                                   calib=_calibration(path, args.samples))
            files = {}
            for tag, m in (("fp32", fp32), ("wino", wino), ("qdq", qdq)):
                files[tag] = Path(d) / f"{path.stem}_{tag}.onnx"
                optc.save(m, files[tag])
            # lowered from the saved QDQ model: optimize edits a Model in place, and
            # onnxruntime must run the QDQ model itself (it cannot load ai.optc ops)
            qlinear, _ = optc.optimize(str(files["qdq"]), passes="qlinear,fuse-act{target=optc}")
            files["qlinear"] = Path(d) / f"{path.stem}_qlinear.onnx"
            optc.save(qlinear, files["qlinear"])
            sessions = {"optc fp32": session(str(files["fp32"]), "optc", threads=args.threads),
                        "optc wino": session(str(files["wino"]), "optc", threads=args.threads),
                        "optc int8": session(str(files["qlinear"]), "optc",
                                             threads=args.threads),
                        "ort fp32": session(str(path), "ort", threads=args.threads,
                                            optimize=True),
                        "ort int8": session(str(files["qdq"]), "ort", threads=args.threads,
                                            optimize=True)}
            feeds = random_feeds(sessions["ort fp32"], seed=0)
            ms = interleaved(sessions, feeds, args.warmup, args.repeat)
            row = {"optc int8/fp32": ms["optc int8"] / ms["optc fp32"],
                   "int8/fp32+wino": ms["optc int8"] / ms["optc wino"],
                   "optc/ort int8": ms["optc int8"] / ms["ort int8"],
                   "ort int8/fp32": ms["ort int8"] / ms["ort fp32"]}
            for k, v in row.items():
                ratios.setdefault(k, []).append(v)
            table.add_row(path.stem, *(f"{ms[k]:.2f}" for k in ("optc fp32", "optc wino",
                                                                 "optc int8", "ort fp32",
                                                                 "ort int8")),
                          *(f"{v:.2f}x" for v in row.values()))
    console.print(table)
    for k, rs in ratios.items():
        console.print(f"geomean {k}: {math.exp(sum(map(math.log, rs)) / len(rs)):.2f}x")


if __name__ == "__main__":
    main()

"""Node counts after optc's `default` pipeline next to onnxsim's, on the 9 onnx `light` models
and the models/ models, plus the wall time of `optc optimize` on the ResNet-50 light model.

onnxsim is not a dependency of optc: install it beside optc to run this script
(`pip install onnxsim`). Every result is checked in onnxruntime (optimizations off) against
the original model on the same seeded input.

    python benchmarks/cleanup_vs_onnxsim.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnx
from rich.console import Console
from rich.table import Table

import optc
from optc.ir import serialize
from optc.validate import compare_models

REPO = Path(__file__).resolve().parent.parent
LIGHT = sorted(glob.glob(str(Path(onnx.__file__).parent / "backend/test/data/light/*.onnx")))
MODELS = sorted(str(p) for p in (REPO / "models").glob("*.onnx"))


def run_optc(path: str):
    start = time.perf_counter()
    model, report = optc.optimize(path)
    seconds = time.perf_counter() - start
    data = serialize(model)
    ok = all(r.within_tolerance for r in compare_models(path, data))
    return report.nodes_after, seconds, ok


def run_onnxsim(path: str):
    import onnxsim

    start = time.perf_counter()
    model, checked = onnxsim.simplify(onnx.load(path))
    seconds = time.perf_counter() - start
    ok = all(r.within_tolerance for r in compare_models(path, model.SerializeToString()))
    return len(model.graph.node), seconds, ok and checked


def cli_seconds(path: str, repeat: int) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(repeat):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "optc", "optimize", path, "-o",
                            os.path.join(d, "out.onnx")], check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    try:
        import onnxsim  # noqa: F401
        have_sim = True
    except ImportError:
        have_sim = False
    console = Console()
    table = Table(title="nodes after the lossless pipeline (outputs checked in onnxruntime)")
    for col in ("model", "nodes", "optc default", "optc s", "onnxsim", "onnxsim s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for path in LIGHT + MODELS:
        before = len(onnx.load(path, load_external_data=False).graph.node)
        n, s, ok = run_optc(path)
        row = [os.path.basename(path), str(before), f"{n}{'' if ok else ' (MISMATCH)'}",
               f"{s:.2f}"]
        if have_sim:
            try:
                n2, s2, ok2 = run_onnxsim(path)
                row += [f"{n2}{'' if ok2 else ' (MISMATCH)'}", f"{s2:.2f}"]
            except Exception as e:  # onnxsim fails on some models: report it, keep going
                row += [f"failed: {type(e).__name__}", "-"]
        else:
            row += ["not installed", "-"]
        table.add_row(*row)
    console.print(table)
    resnet = next(p for p in LIGHT if "resnet50" in p)
    times = cli_seconds(resnet, args.repeat)
    console.print(f"`optc optimize light_resnet50.onnx` wall time (process start to exit), "
                  f"median of {len(times)}: {statistics.median(times):.2f} s "
                  f"(min {min(times):.2f}, max {max(times):.2f})")


if __name__ == "__main__":
    main()

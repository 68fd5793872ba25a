"""optc's `default` pipeline next to onnxsim on the 9 onnx `light` models (seeded random
weights) and the models/ models: node count and file size, every result checked in
onnxruntime (optimizations off) against the original; then onnxruntime latency (1 thread) of
the original vs optc's output, with onnxruntime's graph optimizations DISABLED (what optc's
fusions save a runtime that does not fuse) and ENABLED (optc must not make it slower). Also the
wall time of `optc optimize` on the ResNet-50 light model.

onnxsim is not a dependency of optc: install it beside optc to run this (`pip install onnxsim`).

    python benchmarks/optimize_vs_onnxsim.py [--repeat 10]
"""

from __future__ import annotations

import argparse
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
from optc.testing import LIGHT_MODELS, light_model, randomize_light
from optc.validate import compare_models, random_feeds, session

REPO = Path(__file__).resolve().parent.parent
MODELS = sorted(str(p) for p in (REPO / "models").glob("*.onnx"))


def sources() -> list[tuple[str, bytes]]:
    out = [(Path(p).stem.replace("light_", "") + " (random w)",
            randomize_light(p).SerializeToString()) for p in LIGHT_MODELS]
    out += [(Path(p).stem, Path(p).read_bytes()) for p in MODELS]
    return out


def run_optc(data: bytes, target: str = "onnx") -> tuple[bytes, float]:
    start = time.perf_counter()
    model, _ = optc.optimize(data, passes=f"default,fuse-act{{target={target}}}")
    seconds = time.perf_counter() - start
    out = serialize(model)
    if not all(r.within_tolerance for r in compare_models(data, out)):
        raise SystemExit("optc changed the outputs")
    return out, seconds


def run_onnxsim(data: bytes) -> bytes | str:
    try:
        import onnxsim

        model, ok = onnxsim.simplify(onnx.load_from_string(data))
    except Exception as e:  # onnxsim fails on some models: report it, keep going
        return f"failed: {type(e).__name__}"
    out = model.SerializeToString()
    if not ok or not all(r.within_tolerance for r in compare_models(data, out)):
        return "mismatch"
    return out


def latency(models: dict[str, bytes], optimize: bool, warmup: int, repeat: int
            ) -> dict[str, float]:
    """Median ms per model, iterations interleaved across the models. Sub-millisecond models
    get more iterations (about a second's worth), or the median is mostly noise."""
    sessions = {k: session(v, "ort", threads=1, optimize=optimize) for k, v in models.items()}
    feeds = random_feeds(next(iter(sessions.values())), seed=0)
    start = time.perf_counter()
    for s in sessions.values():
        s.run(None, {x.name: feeds[x.name] for x in s.get_inputs()})
    once = time.perf_counter() - start
    repeat = max(repeat, min(1000, int(1.0 / max(once, 1e-6))))
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for i in range(warmup + repeat):
        for k, s in sessions.items():
            start = time.perf_counter()
            s.run(None, {x.name: feeds[x.name] for x in s.get_inputs()})
            if i >= warmup:
                times[k].append((time.perf_counter() - start) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def nodes(data: bytes) -> int:
    return len(onnx.load_from_string(data).graph.node)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    console = Console()
    size = Table(title="nodes and file size after the lossless pipeline")
    for col in ("model", "nodes", "optc", "optc --target ort", "onnxsim", "MB", "optc MB",
                "onnxsim MB", "optc s"):
        size.add_column(col, justify="left" if col == "model" else "right")
    speed = Table(title="onnxruntime latency, 1 thread, ms (median): original -> optc (default; "
                        "and --target ort, whose FusedConv nodes onnxruntime runs as they are)")
    for col in ("model", "opts off: orig", "optc", "ratio", "optc ort-target", "ratio",
                "opts on: orig", "optc", "ratio"):
        speed.add_column(col, justify="left" if col == "model" else "right")
    for name, data in sources():
        ours, seconds = run_optc(data)
        ours_ort, _ = run_optc(data, "ort")
        sim = run_onnxsim(data)
        size.add_row(name, str(nodes(data)), str(nodes(ours)), str(nodes(ours_ort)),
                     str(nodes(sim)) if isinstance(sim, bytes) else sim,
                     f"{len(data) / 1e6:.2f}", f"{len(ours) / 1e6:.2f}",
                     f"{len(sim) / 1e6:.2f}" if isinstance(sim, bytes) else "-",
                     f"{seconds:.2f}")
        off = latency({"orig": data, "optc": ours, "ort": ours_ort}, False, args.warmup,
                      args.repeat)
        on = latency({"orig": data, "optc": ours}, True, args.warmup, args.repeat)
        speed.add_row(name, f"{off['orig']:.2f}", f"{off['optc']:.2f}",
                      f"{off['optc'] / off['orig']:.2f}x", f"{off['ort']:.2f}",
                      f"{off['ort'] / off['orig']:.2f}x", f"{on['orig']:.2f}",
                      f"{on['optc']:.2f}", f"{on['optc'] / on['orig']:.2f}x")
    console.print(size)
    console.print(speed)
    with tempfile.TemporaryDirectory() as d:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "optc", "optimize", light_model("resnet50"),
                            "-o", os.path.join(d, "out.onnx")], check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    console.print(f"`optc optimize light_resnet50.onnx` wall time (process start to exit), "
                  f"median of 3: {statistics.median(times):.2f} s")


if __name__ == "__main__":
    main()

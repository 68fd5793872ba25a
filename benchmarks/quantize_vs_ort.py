"""optc's quantize next to onnxruntime.quantization.quantize_static (QDQ, per-channel int8
weights, uint8 activations; MinMax, Entropy, Percentile), same models, same calibration data.

Per model and method: accuracy (digits, on its held-out split) or cosine similarity to the
fp32 output (the others, seeded random inputs), onnxruntime latency int8 / fp32 (1 thread,
optimizations on, interleaved), file size int8 / fp32, calibration + quantization wall time,
and the peak resident memory of the process that quantized (each run in a fresh process).

    python benchmarks/quantize_vs_ort.py [--samples 64]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent


def _models(samples: int) -> dict[str, tuple[Path, dict[str, np.ndarray], dict | None]]:
    """name -> (fp32 model path, calibration data, evaluation data or None)."""
    import onnx

    from optc.testing import light_at_opset

    digits = dict(np.load(REPO / "models" / "digits_test.npz"))
    rng = np.random.default_rng(0)
    out = {"digits_cnn": (REPO / "models" / "digits_cnn.onnx",
                          {"input": digits["input"][:samples]}, digits)}
    for name, shape in (("resnet_mini", (3, 32, 32)), ("mobilenetv2_mini", (3, 64, 64))):
        out[name] = (REPO / "models" / f"{name}.onnx",
                     {"input": rng.standard_normal((samples, *shape)).astype(np.float32)}, None)
    tmp = Path(tempfile.mkdtemp(prefix="optc-qbench-"))
    r50 = light_at_opset("resnet50", 17)
    onnx.save(r50, tmp / "resnet50_opset17.onnx")
    out["resnet50 (light, random w)"] = (
        tmp / "resnet50_opset17.onnx",
        {"gpu_0/data_0": rng.standard_normal((max(samples // 8, 4), 3, 224, 224)).astype(
            np.float32)}, None)
    return out


def _run_optc(src: str, dst: str, calib: dict, method: str, queue) -> None:
    import optc

    start = time.perf_counter()
    model, _ = optc.optimize(src, passes=f"default,quantize{{method={method}}}", calib=calib)
    optc.save(model, dst)
    queue.put((time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def _run_ort(src: str, dst: str, calib: dict, method: str, queue) -> None:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            names = list(calib)
            n = len(calib[names[0]])
            self.feeds = iter([{k: calib[k][i:i + 1] for k in names} for i in range(n)])

        def get_next(self):
            return next(self.feeds, None)

    start = time.perf_counter()
    quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=getattr(CalibrationMethod, method))
    queue.put((time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


_CTX = mp.get_context("forkserver")


def _in_fresh_process(fn, *args):
    # children fork from a server started before this process grew: a child's ru_maxrss is
    # its own peak, not an inherited high-water mark (spawn would inherit it through exec)
    ctx = _CTX
    queue = ctx.Queue()
    p = ctx.Process(target=fn, args=(*args, queue))
    p.start()
    p.join()
    if p.exitcode != 0:
        return None
    return queue.get()


def _quality(fp32: str, int8: str, evaluation: dict | None) -> str:
    from optc.validate import random_feeds, session

    a, b = session(fp32, "ort"), session(int8, "ort")
    if evaluation is not None:
        logits = b.run(None, {"input": evaluation["input"]})[0]
        return f"acc {float((logits.argmax(1) == evaluation['labels']).mean()):.4f}"
    feeds = random_feeds(a, seed=3, batch=4)
    ra, rb = a.run(None, feeds)[0].reshape(-1), b.run(None, feeds)[0].reshape(-1)
    return f"cos {float(ra @ rb / (np.linalg.norm(ra) * np.linalg.norm(rb))):.4f}"


def _latency_ratio(fp32: str, int8: str) -> float:
    from optc.validate import random_feeds, session

    a, b = session(fp32, "ort", optimize=True), session(int8, "ort", optimize=True)
    feeds = random_feeds(a, seed=0)
    ta, tb = [], []
    for i in range(30):
        start = time.perf_counter()
        a.run(None, feeds)
        t1 = time.perf_counter()
        b.run(None, feeds)
        t2 = time.perf_counter()
        if i >= 5:
            ta.append(t1 - start)
            tb.append(t2 - t1)
    return statistics.median(tb) / statistics.median(ta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--models", default="", help="comma-separated model names (default: "
                                                      "all), e.g. mobilenetv2_mini")
    args = parser.parse_args()
    wanted = [m for m in args.models.split(",") if m]
    _CTX.set_forkserver_preload(["numpy", "onnx", "onnxruntime"])
    warm = _CTX.Process(target=time.sleep, args=(0,))  # start the server while we are small
    warm.start()
    warm.join()
    console = Console(width=160)
    table = Table(title=f"int8 QDQ: optc vs onnxruntime.quantization ({args.samples} "
                        f"calibration samples)")
    for col in ("model", "tool", "method", "quality", "lat int8/fp32", "size int8/fp32",
                "quantize s", "peak RSS MB"):
        table.add_column(col)
    out_dir = Path(tempfile.mkdtemp(prefix="optc-qbench-out-"))
    for name, (src, calib, evaluation) in _models(args.samples).items():
        if wanted and name.split()[0] not in wanted:
            continue
        if evaluation is not None:
            table.add_row(name, "fp32", "-", _quality(str(src), str(src), evaluation), "1.00",
                          "1.00", "-", "-")
        runs = [("optc", _run_optc, m) for m in ("max", "percentile", "mse", "kl")]
        if name == "digits_cnn":  # too small for int8 to pay off: the probe keeps it float;
            # these rows show what all-int8 costs and keeps
            runs += [("optc", _run_optc, f"{m} probe=false") for m in ("max", "kl")]
        runs += [("onnxruntime", _run_ort, m) for m in ("MinMax", "Entropy", "Percentile")]
        for tool, fn, method in runs:
            dst = out_dir / f"{name.split()[0]}_{tool}_{method.replace(' ', '_')}.onnx"
            result = _in_fresh_process(fn, str(src), str(dst), calib, method)
            if result is None:
                table.add_row(name, tool, method, "failed", "-", "-", "-", "-")
                continue
            seconds, rss_kb = result
            table.add_row(name, tool, method, _quality(str(src), str(dst), evaluation),
                          f"{_latency_ratio(str(src), str(dst)):.2f}",
                          f"{dst.stat().st_size / src.stat().st_size:.3f}", f"{seconds:.1f}",
                          f"{rss_kb / 1024:.0f}")
    console.print(table)


if __name__ == "__main__":
    main()

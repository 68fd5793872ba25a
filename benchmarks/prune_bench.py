"""optc's prune on the models/ nets and the onnx `light` architectures (random weights).

Per model and ratio: MACs, parameters and file size after / before, onnxruntime latency after /
before (1 thread, optimizations on, interleaved, same run), groups pruned / blocked and the
blocking reasons, and (digits) accuracy on its held-out split without fine-tuning. Every
output passes onnx.checker (full check) and runs in onnxruntime.

    python benchmarks/prune_bench.py [--ratios 0.3 0.5] [--models resnet_mini digits_cnn ...]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
LIGHT = ("resnet50", "densenet121", "shufflenet", "inception_v1", "inception_v2")


def _load(name: str):
    import optc
    from optc.testing import light_at_opset

    source = light_at_opset(name, 13) if name in LIGHT else REPO / "models" / f"{name}.onnx"
    model, _ = optc.optimize(source)
    return model


def _latency(a: bytes, b: bytes) -> float:
    from optc.validate import random_feeds, session

    sa, sb = session(a, "ort", optimize=True), session(b, "ort", optimize=True)
    feeds = random_feeds(sa, seed=0)
    for _ in range(10):  # warm-up
        sa.run(None, feeds)
        sb.run(None, feeds)
    ratios = []
    for _ in range(5):  # five rounds of interleaved runs: the median of their ratios
        ta, tb = [], []
        start = time.perf_counter()
        while len(ta) < 20 or (time.perf_counter() - start < 0.5 and len(ta) < 200):
            t0 = time.perf_counter()
            sa.run(None, feeds)
            t1 = time.perf_counter()
            sb.run(None, feeds)
            ta.append(t1 - t0)
            tb.append(time.perf_counter() - t1)
        ratios.append(statistics.median(tb) / statistics.median(ta))
    return statistics.median(ratios)


def _accuracy(data: bytes) -> float:
    from optc.validate import ort_session

    digits = np.load(REPO / "models" / "digits_test.npz")
    logits = ort_session(data).run(None, {"input": digits["input"]})[0]
    return float((logits.argmax(1) == digits["labels"]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5])
    parser.add_argument("--round-to", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--models", nargs="+", default=["digits_cnn", "resnet_mini",
                                                         "mobilenetv2_mini", *LIGHT])
    args = parser.parse_args()
    from optc.ir import clone, serialize
    from optc.passes import Prune
    from optc.report import model_stats

    table = Table(title="prune: after / before (onnxruntime latency: 1 thread, same run)")
    for col in ("model", "ratio", "round-to", "MACs", "params", "size", "latency", "groups pruned",
                "blocked (reasons)", "quality"):
        table.add_column(col)
    for name in args.models:
        base = _load(name)
        before = serialize(base)
        s0 = model_stats(clone(base))
        for ratio, round_to in ((r, k) for r in args.ratios for k in args.round_to):
            model = clone(base)
            p = Prune(ratio=ratio, round_to=round_to)
            stats = p(model).stats
            after = serialize(model)
            onnx.checker.check_model(onnx.load_from_string(after), full_check=True)
            s1 = model_stats(model)
            reasons = collections.Counter(r.split("'")[0].strip() for b in p.blocked
                                          for r in b["reasons"])
            quality = "-"
            if name == "digits_cnn":
                quality = f"acc {_accuracy(before):.4f} -> {_accuracy(after):.4f}"
            table.add_row(name, f"{ratio:g}", str(round_to), f"{s1.macs / s0.macs:.2f}",
                          f"{s1.params / s0.params:.2f}", f"{len(after) / len(before):.2f}",
                          f"{_latency(before, after):.2f}",
                          f"{stats['pruned']}/{stats['groups']}",
                          f"{stats['blocked']} ("
                          + "; ".join(f"{k} x{v}" for k, v in reasons.most_common(3)) + ")",
                          quality)
    Console(width=220).print(table)


if __name__ == "__main__":
    main()

"""Accuracy recovered by optc distill on the digits model (held-out split, onnxruntime on the
written-back ONNX).

Rows: the teacher (fp32); prune{ratio} (criterion l2, and taylor scores from optc distill
--taylor) before fine-tuning, after fine-tuning with hard labels only (alpha=0), and after
knowledge distillation from the teacher (alpha=0.9, T=8); int8 post-training quantization of
the teacher and of the distilled 0.5 model, and each after quantization-aware fine-tuning
(fake quantization, learned scales, teacher's soft targets). Every run keeps its best epoch by
the accuracy on a validation split carved from the training data (never the test split), and
the seconds per epoch on this CPU are printed.

    python benchmarks/distill_bench.py [--epochs 100] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--qat-epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5])
    args = ap.parse_args()

    import optc
    from optc.distill.taylor import scores_json, taylor_scores
    from optc.distill.train import DistillConfig, distill
    from optc.ir import serialize
    from optc.validate import ort_session

    train = dict(np.load(MODELS / "digits_train.npz"))
    test = dict(np.load(MODELS / "digits_test.npz"))
    perm = np.random.default_rng(0).permutation(len(train["input"]))
    n_val = len(perm) // 8
    val = {k: v[perm[:n_val]] for k, v in train.items()}
    fit = {k: v[perm[n_val:]] for k, v in train.items()}

    def accuracy(model) -> float:
        s = ort_session(serialize(model))
        out = s.run(None, {"input": test["input"]})[0]
        return float((out.argmax(1) == test["labels"]).mean())

    teacher = optc.load(str(MODELS / "digits_cnn.onnx"))

    def fused():  # a fresh BN-folded copy (prune edits the model it is given)
        return optc.optimize(str(MODELS / "digits_cnn.onnx"))[0]

    rows: list[tuple[str, str, float]] = []
    seconds: list[float] = []

    def tune(student, alpha, epochs, lr, **kw) -> list[float]:
        accs, chosen = [], []
        tune.chosen = chosen
        for seed in args.seeds:
            r = distill([teacher], student, fit, DistillConfig(
                alpha=alpha, temperature=8.0, epochs=epochs, lr=lr, seed=seed, **kw), val=val)
            seconds.extend(h.seconds for h in r.history)
            accs.append(accuracy(r.model))
            chosen.append(r.best_epoch)
            tune.last = r.model
        return accs

    def row(name: str, accs: list[float], epochs: list[int] | None = None) -> None:
        rows.append((name, " ".join(f"{a:.4f}" for a in accs), float(np.mean(accs)),
                     " ".join(map(str, epochs)) if epochs else ""))

    row("teacher (fp32)", [accuracy(teacher)])
    with tempfile.TemporaryDirectory() as tmp:
        scores = Path(tmp) / "taylor.json"
        scores.write_text(scores_json(taylor_scores(fused(), fit)))
        for criterion in ("l2", "taylor"):
            for ratio in args.ratios:
                extra = f" scores={scores}" if criterion == "taylor" else ""
                pruned, _ = optc.optimize(fused(), passes=f"prune{{ratio={ratio} "
                                                        f"criterion={criterion}{extra}}}")
                label = f"prune {ratio:g} ({criterion})"
                row(f"{label}, no fine-tuning", [accuracy(pruned)])
                row(f"{label}, hard labels", tune(pruned, 0.0, args.epochs, 3e-3), tune.chosen)
                row(f"{label}, KD", tune(pruned, 0.9, args.epochs, 3e-3), tune.chosen)
                if criterion == "l2" and ratio == max(args.ratios):
                    distilled = tune.last

    calib = {"input": fit["input"][:256]}
    for name, source in (("teacher", teacher), (f"prune {max(args.ratios):g} + KD", distilled)):
        ptq, _ = optc.optimize(source, passes="default,quantize{probe=false}", calib=calib)
        row(f"{name}, int8 PTQ", [accuracy(ptq)])
        row(f"{name}, int8 QAT", tune(ptq, 0.9, args.qat_epochs, 1e-4, learn_scales=True),
            tune.chosen)

    table = Table(title=f"digits held-out accuracy (seeds {args.seeds}, {args.epochs} epochs, "
                        f"QAT {args.qat_epochs} epochs)")
    for col in ("model", "accuracy per seed", "mean", "epoch kept (0 = as given)"):
        table.add_column(col)
    for name, per_seed, mean, epochs in rows:
        table.add_row(name, per_seed, f"{mean:.4f}", epochs)
    console = Console()
    console.print(table)
    console.print(f"time per epoch on this CPU (1437 samples less the validation split, "
                  f"batch 64): median {np.median(seconds):.3f} s over {len(seconds)} epochs")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - start:.0f} s")

"""The real-model matrix: every corpus model (models/wild.py) x every job, checked.

    python benchmarks/wild.py [--models a,b] [--jobs default,prune] [--timing]

Prints, per model and job: the status (ok / fail: a check did not hold / error: optc refused
or crashed, with its message), the error against onnxruntime for lossless jobs (max |d| /
output scale over both input sizes), the SQNR for static int8 (in-distribution inputs), and
with --timing the output/input ratios of file size and onnxruntime latency (1 thread, all
onnxruntime optimizations on). The checks are run_job's in models/wild.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "models"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from wild import JOBS, corpus, run_job  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=None)
    parser.add_argument("--jobs", default=",".join(JOBS))
    parser.add_argument("--timing", action="store_true")
    args = parser.parse_args()
    models = corpus(args.models.split(",") if args.models else None)
    table = Table(title="optc on the real-model corpus")
    for col in ("model", "job", "status", "error", "SQNR dB", "size", "ort latency", "detail"):
        table.add_column(col)
    counts: dict[str, int] = {}
    for m in models:
        for job in args.jobs.split(","):
            r = run_job(m, job, timing=args.timing)
            counts[r.status] = counts.get(r.status, 0) + 1
            table.add_row(m.name, job, r.status,
                          "" if r.error is None else f"{r.error:.1e}",
                          "" if r.sqnr_db is None else f"{r.sqnr_db:.1f}",
                          "" if r.size_ratio is None else f"{r.size_ratio:.2f}",
                          "" if r.latency_ratio is None else f"{r.latency_ratio:.2f}",
                          r.detail[:90])
            print(m.name, job, r.status, r.detail[:160], flush=True, file=sys.stderr)
    Console(width=200).print(table)
    print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()

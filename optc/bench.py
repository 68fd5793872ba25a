"""Latency of a model in optc.runtime next to onnxruntime, measured in the same run.

Both runtimes get the same inputs and the same thread count (onnxruntime: intra_op threads;
optc: BLAS threads through threadpoolctl). Iterations alternate between the two runtimes, so
that a slow spell of this noisy machine hits both; the median of each is reported and the ratio
optc / onnxruntime is the figure to read (absolute times mean little here).
onnxruntime runs with its graph optimizations on (ORT_ENABLE_ALL), as users run it.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass

from optc.validate import random_feeds, session


@dataclass
class BenchResult:
    runtime: str
    median_ms: float
    ort_median_ms: float
    peak_bytes: int | None = None

    @property
    def ratio(self) -> float:
        return self.median_ms / self.ort_median_ms


def bench(model: str | os.PathLike | bytes, *, runtime: str = "optc", threads: int = 1,
          warmup: int = 3, repeat: int = 20, batch: int = 1, seed: int = 0,
          progress: bool | None = None, reference: str | os.PathLike | bytes | None = None,
          tune: bool = True) -> BenchResult:
    """``reference``: the model onnxruntime runs (default: ``model`` itself); a lowered model
    with ai.optc ops is compared with onnxruntime on the model it was lowered from. ``tune``:
    optc's session times its per-layer choices on this CPU (cached per CPU: optc.runtime.tune)
    before the timed runs."""
    from rich.progress import Progress

    ort_sess = session(reference if reference is not None else model, "ort", threads=threads,
                       optimize=True)
    feeds = random_feeds(ort_sess, seed, batch)
    sessions = {"ort": ort_sess}
    if runtime != "ort":
        sessions[runtime] = session(model, runtime, threads=threads, optimize=True, tune=tune)
    if progress is None:
        progress = sys.stderr.isatty()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("benchmarking", total=warmup + repeat)
        medians = interleaved(sessions, feeds, warmup, repeat,
                              on_round=lambda: bar.advance(task))
    ours = sessions[runtime]
    return BenchResult(runtime, medians[runtime], medians["ort"],
                       getattr(ours, "peak_bytes", None))


def interleaved(sessions: dict, feeds: dict, warmup: int, repeat: int,
                on_round=None) -> dict[str, float]:
    """Median ms per session, the sessions run in turn each round (a slow spell of the
    machine hits them all); the first ``warmup`` rounds are not counted."""
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for i in range(warmup + repeat):
        for name, s in sessions.items():
            start = time.perf_counter()
            s.run(None, feeds)
            if i >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
        if on_round is not None:
            on_round()
    return {name: statistics.median(t) for name, t in times.items()}

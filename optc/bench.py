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
    #: at a reduced precision: max over the outputs of max |optc - onnxruntime| / max
    #: |onnxruntime| on the benchmark's inputs (None at fp32)
    error: float | None = None

    @property
    def ratio(self) -> float:
        return self.median_ms / self.ort_median_ms


def bench(model: str | os.PathLike | bytes, *, runtime: str = "optc", threads: int = 1,
          warmup: int = 3, repeat: int = 20, batch: int = 1, seed: int = 0,
          progress: bool | None = None, reference: str | os.PathLike | bytes | None = None,
          tune: bool = True, precision: str = "fp32") -> BenchResult:
    """``reference``: the model onnxruntime runs (default: ``model`` itself); a lowered model
    with ai.optc ops is compared with onnxruntime on the model it was lowered from. ``tune``:
    optc's session times its per-layer choices on this CPU (cached per CPU: optc.runtime.tune)
    before the timed runs. ``precision``: optc's session precision ("bf16": the result's
    ``error`` says how far its outputs are from onnxruntime's float32 ones)."""
    from rich.progress import Progress

    ort_sess = session(reference if reference is not None else model, "ort", threads=threads,
                       optimize=True)
    feeds = random_feeds(ort_sess, seed, batch)
    sessions = {"ort": ort_sess}
    if runtime != "ort":
        sessions[runtime] = session(model, runtime, threads=threads, optimize=True, tune=tune,
                                    precision=precision)
    if progress is None:
        progress = sys.stderr.isatty()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("benchmarking", total=warmup + repeat)
        medians = interleaved(sessions, feeds, warmup, repeat,
                              on_round=lambda: bar.advance(task))
    ours = sessions[runtime]
    error = None
    if runtime != "ort" and precision != "fp32":
        error = relative_error(ours.run(None, feeds), ort_sess.run(None, feeds))
    return BenchResult(runtime, medians[runtime], medians["ort"],
                       getattr(ours, "peak_bytes", None), error)


def relative_error(got, want) -> float:
    """Max over the outputs of max |got - want| / max |want| (float outputs only)."""
    import numpy as np

    worst = 0.0
    for g, w in zip(got, want):
        w = np.asarray(w)
        if not np.issubdtype(w.dtype, np.floating) or w.size == 0:
            continue
        scale = float(np.abs(w).max()) or 1.0
        worst = max(worst, float(np.abs(np.asarray(g, np.float64) - w).max()) / scale)
    return worst


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

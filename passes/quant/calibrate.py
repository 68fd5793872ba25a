"""Feed calibration DATA through a model and observe every float activation.

The model runs batch by batch on the engine the pipeline asks for (optc.engine: optc.runtime
where it runs the model, else onnxruntime); each float value the graph produces (and each
float graph input) is handed to its Observer, so memory does not grow with the number of
samples: it is the observers' fixed-size histograms plus one batch's activations (optc.runtime
releases each as soon as it is observed; onnxruntime returns one batch's all at once).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import numpy as np

from optc.data import LABELS
from optc.errors import OptcError
from optc.ir import Model
from optc.passes.quant.observers import Observer


def calibrate(model: Model, data: dict[str, np.ndarray] | Iterable[dict[str, np.ndarray]], *,
              batch_size: int = 16, bins: int = 2048, progress: bool | None = None,
              engine: str = "auto", runner_info: dict | None = None) -> dict[str, Observer]:
    """Observers of every float activation of ``model`` over ``data``.

    ``data``: DATA as read by ``optc.data.read_data`` (input name -> samples along axis 0,
    optional ``labels``), fed ``batch_size`` samples a run (or the model's static batch size),
    or an iterable of feeds (one run each: data that does not fit in memory, or a model whose
    inputs are not all batched -- a state tensor, a scalar). ``engine``: optc.engine's
    auto / optc / ort; ``runner_info``, if given, receives which engine ran and why.
    """
    from rich.progress import Progress

    from optc.engine import Runner

    runner = Runner(model, engine)
    batches, total = _batches(data, model, batch_size)
    observers: dict[str, Observer] = {}
    rows = 0  # samples in the running batch

    def observe(name: str, value: np.ndarray) -> None:
        if value.dtype.kind != "f" or not name:
            return
        obs = observers.get(name)
        if obs is None:
            obs = observers[name] = Observer(bins=bins)
            if value.ndim and value.shape[0] == rows:
                obs.sample_shape = (1, *value.shape[1:])
            else:
                obs.sample_shape = tuple(value.shape)
        obs.update(value, name=f"tensor '{name}'")

    if progress is None:
        progress = sys.stderr.isatty()
    seen = 0
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("calibrating", total=total)
        for feeds in batches:
            rows = len(next(iter(feeds.values()))) if feeds else 0
            runner.run(feeds, on_value=observe)
            seen += 1
            bar.advance(task)
    if seen == 0:
        raise OptcError("calibration data is empty: no sample to run")
    if runner_info is not None:
        runner_info.update(engine=runner.engine, why=runner.why)
    return observers


def first_batch(model: Model, data, batch_size: int = 16) -> dict[str, np.ndarray]:
    """The first batch ``calibrate`` would run (for evaluating a quantized model)."""
    feeds = next(_batches(data, model, batch_size)[0], None)
    if feeds is None:
        raise OptcError("calibration data is empty: no sample to run")
    return feeds


def evaluation_feeds(model: Model, data, batch_size: int = 16, runs: int = 16
                     ) -> list[dict[str, np.ndarray]]:
    """The feeds quantize measures its output SQNR on: the first batch of DATA, or the first
    ``runs`` runs of per-run feeds (one run of a stateful model is one chunk: too few values
    for a stable figure)."""
    if isinstance(data, (list, tuple)):
        if not data:
            raise OptcError("calibration data is empty: no sample to run")
        return list(data[:runs])
    return [first_batch(model, data, batch_size)]


def _batches(data, model: Model, batch_size: int):
    g = model.graph
    graph_inputs = [v for v in g.inputs if not g.is_initializer(v)]
    inputs = [v.name for v in graph_inputs]
    static = [v.shape[0] for v in graph_inputs
              if v.shape and isinstance(v.shape[0], int) and v.shape[0] > 0]
    if static:  # a model with a fixed batch dimension takes exactly that many samples a run
        batch_size = static[0]
    if isinstance(data, dict):
        missing = [n for n in inputs if n not in data]
        if missing:
            raise OptcError(f"calibration data has no values for model input(s) "
                            f"{', '.join(missing)}")
        names = [k for k in data if k != LABELS and k in inputs]
        n = len(data[names[0]]) if names else 0
        if n == 0:
            raise OptcError("calibration data is empty: no sample to run")
        for k in names:
            if len(data[k]) != n:
                raise OptcError(f"calibration data: input '{k}' has {len(data[k])} samples, "
                                f"'{names[0]}' has {n}")

        def gen():
            for start in range(0, n, batch_size):
                yield {k: data[k][start:start + batch_size] for k in names}

        return gen(), -(-n // batch_size)
    if isinstance(data, (list, tuple)):
        for i, feeds in enumerate(data):
            if not isinstance(feeds, dict):
                raise OptcError(f"calibration data: run {i} is {type(feeds).__name__}, not a "
                                f"dict of input name -> array")
            missing = [n for n in inputs if n not in feeds]
            if missing:
                raise OptcError(f"calibration data: run {i} has no values for model input(s) "
                                f"{', '.join(missing)}")
        return iter(data), len(data)
    return iter(data), None

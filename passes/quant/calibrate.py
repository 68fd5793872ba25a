"""Feed calibration DATA through a model and observe every float activation.

The model runs in optc.runtime batch by batch; each float value the graph produces (and each
float graph input) is handed to its Observer as soon as it exists and is then released by the
runtime's liveness planning, so memory does not grow with the number of samples: it is the
observers' fixed-size histograms plus one batch's live activations.
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
              ) -> dict[str, Observer]:
    """Observers of every float activation of ``model`` over ``data``.

    ``data``: DATA as read by ``optc.data.read_data`` (input name -> samples along axis 0,
    optional ``labels``), fed ``batch_size`` samples a run (or the model's static batch size),
    or an iterable of feeds (one batch each) for data that does not fit in memory.
    """
    from rich.progress import Progress

    from optc.runtime import InferenceSession

    session = InferenceSession(model)
    batches, total = _batches(data, session, batch_size)
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
            session.run(None, feeds, on_value=observe)
            seen += 1
            bar.advance(task)
    if seen == 0:
        raise OptcError("calibration data is empty: no sample to run")
    return observers


def first_batch(model: Model, data, batch_size: int = 16) -> dict[str, np.ndarray]:
    """The first batch ``calibrate`` would run (for evaluating a quantized model)."""
    from optc.runtime import InferenceSession

    feeds = next(_batches(data, InferenceSession(model), batch_size)[0], None)
    if feeds is None:
        raise OptcError("calibration data is empty: no sample to run")
    return feeds


def _batches(data, session, batch_size: int):
    inputs = [i.name for i in session.get_inputs()]
    static = [i.shape[0] for i in session.get_inputs()
              if i.shape and isinstance(i.shape[0], int)]
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
    return iter(data), None

"""How much each quantized layer costs in accuracy, and returning the worst ones to float.

The measure is the signal-to-quantization-noise ratio of the model's outputs against the float
model on the same inputs (the first calibration batch), in dB:
    SQNR = 10 log10( sum(y_float^2) / sum((y_float - y_int8)^2) )
over all outputs together; higher is better (about 6 dB per bit of agreement).
A layer's sensitivity is the SQNR of the model with only that layer quantized (the approach of
per-layer "quantize one at a time" analysis, as in onnxruntime's qdq_loss_debug and NVIDIA's
pytorch-quantization sensitivity sweeps). ``fall_back`` returns layers to float, lowest SQNR
first, re-measuring the whole model after each, until the budget holds.
All runs are onnxruntime sessions with its graph optimizations on: its int8 kernels are what
the numbers must describe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from optc.validate import ort_session

L = TypeVar("L")


def sqnr_db(reference: Sequence[np.ndarray], other: Sequence[np.ndarray]) -> float:
    signal = sum(float(np.sum(np.square(r.astype(np.float64)))) for r in reference)
    noise = sum(float(np.sum(np.square(r.astype(np.float64) - o.astype(np.float64))))
                for r, o in zip(reference, other))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


class Evaluator:
    """SQNR of model variants (serialized ONNX) against the float model's outputs, over one
    feed or several (the runs of a stateful model: signal and noise summed over all)."""

    def __init__(self, float_model: bytes, feeds: dict[str, np.ndarray] | list[dict]):
        self.feeds = [feeds] if isinstance(feeds, dict) else list(feeds)
        self.reference = self._outputs(float_model)

    def _outputs(self, model: bytes) -> list[np.ndarray]:
        sess = ort_session(model, optimize=True)
        names = {i.name for i in sess.get_inputs()}
        return [out for f in self.feeds
                for out in sess.run(None, {k: v for k, v in f.items() if k in names})]

    def __call__(self, model: bytes) -> float:
        return sqnr_db(self.reference, self._outputs(model))


def layer_sqnr(layers: Sequence[L], build: Callable[[list[L]], bytes], evaluate: Evaluator
               ) -> dict[L, float]:
    """layer -> output SQNR with only that layer quantized."""
    return {layer: evaluate(build([layer])) for layer in layers}


def fall_back(layers: Sequence[L], sensitivity: dict[L, float], budget_db: float,
              build: Callable[[list[L]], bytes], evaluate: Evaluator,
              ) -> tuple[list[L], list[tuple[L, float]], float]:
    """(layers kept int8, [(layer returned to float, whole-model SQNR after)], final SQNR)."""
    kept = list(layers)
    current = evaluate(build(kept))
    dropped: list[tuple[L, float]] = []
    for layer in sorted(layers, key=lambda n: sensitivity[n]):
        if current >= budget_db:
            break
        kept = [n for n in kept if n is not layer]
        current = evaluate(build(kept)) if kept else float("inf")
        dropped.append((layer, current))
    return kept, dropped, current

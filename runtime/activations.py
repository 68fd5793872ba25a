"""The activations optc fuses into a layer: the one table every part reads.

fuse-act (passes/fusion/act.py) writes them as the ``activation`` / ``activation_params``
attributes of ai.optc FusedConv / FusedGemm / WinogradConv / QuantizeAffine (and, for the
subset onnxruntime knows, of com.microsoft.FusedConv); optc.runtime runs them in NumPy
(kernels/fused.py apply_activation) and in C (runtime/csrc/qgemm.h ``activate``, by the codes
below); optc distill runs them in torch (distill/ops.py). Each entry: the C code, the default
parameters, and the function every implementation computes, in float32:

    Relu         max(v, 0)
    Clip         min(max(v, lo), hi)               params (lo, hi), required
    LeakyRelu    v >= 0 ? v : alpha * v            params (alpha,), default 0.01
    Sigmoid      1 / (1 + exp(-v))
    HardSigmoid  clip(alpha * v + beta, 0, 1)      params (alpha, beta), default (0.2, 0.5)
    HardSwish    v * clip(v / 6 + 1/2, 0, 1)
    Tanh         tanh(v)
    SiLU         v / (1 + exp(-v))                 (= v * Sigmoid(v))
"""

from __future__ import annotations

#: name -> (code understood by runtime/csrc/qgemm.h, default parameters)
ACTIVATIONS: dict[str, tuple[int, tuple[float, ...]]] = {
    "Relu": (1, ()), "Clip": (2, ()), "LeakyRelu": (3, (0.01,)), "Sigmoid": (4, ()),
    "HardSigmoid": (5, (0.2, 0.5)), "HardSwish": (6, ()), "Tanh": (7, ()), "SiLU": (8, ()),
}

#: the activations onnxruntime's com.microsoft.FusedConv takes
ORT_ACTIVATIONS = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "Tanh"})


def activation_params(kind: str, params) -> list[float]:
    """``params`` as floats, or the activation's defaults when none are given."""
    if params:
        return [float(v) for v in params]
    return list(ACTIVATIONS[kind][1]) if kind in ACTIVATIONS else []

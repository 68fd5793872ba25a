"""optc's PyTorch stage: run an optimized ONNX graph in torch, fine-tune its weights by
knowledge distillation (or quantization-aware training), and write them back into the graph.

torch is an optional dependency (``pip install 'optc[distill]'``); nothing else in optc imports
this package, and importing it without torch gives one clear error.
"""

from __future__ import annotations

from optc.errors import OptcError

try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only where torch is absent
    raise OptcError("optc distill needs PyTorch: pip install 'optc[distill]'") from e

from optc.distill.executor import TorchGraph  # noqa: E402
from optc.distill.taylor import taylor_scores  # noqa: E402
from optc.distill.train import (  # noqa: E402
    DistillConfig, DistillResult, distill, prune_and_distill)

__all__ = ["DistillConfig", "DistillResult", "TorchGraph", "distill", "prune_and_distill",
           "taylor_scores"]

"""First-order Taylor channel importance for ``prune{criterion=taylor scores=FILE}``.

Molchanov et al., "Importance Estimation for Neural Network Pruning" (CVPR 2019): removing
output channel c of a layer changes the loss by about (sum over the channel's weights of
g * w)^2, g the loss gradient. The squared sum is taken per mini-batch and averaged over one
pass of the data. The loss is cross-entropy when the data has labels, else the soft-target
loss against the teachers (a model distilled against itself has zero gradient: give labels or
a different teacher).

The scores are written as JSON ``{"criterion": "taylor", "scores": {weight initializer name:
[one score per output channel]}}``, for every Conv, ConvTranspose, Gemm and MatMul weight of
the model they were computed on; the prune pass looks a layer up by its weight's name, so the
pruned model must be that same model (run ``default`` first, then score, then prune).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import torch

from optc.data import LABELS
from optc.distill.executor import TorchGraph
from optc.distill.losses import kd_loss, soft_targets
from optc.errors import OptcError
from optc.ir import Model, load

_LAYERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _out_axis(node) -> int:
    from optc.passes.prune.coupling import out_axis

    return out_axis(node)


def taylor_scores(student, data: dict[str, np.ndarray], teachers: Sequence = (), *,
                  temperature: float = 4.0, batch_size: int = 64, output: str | None = None
                  ) -> dict[str, list[float]]:
    """{weight name: per-output-channel importance} of ``student`` on ``data``."""
    model: Model = load(student)
    tg = TorchGraph(model)
    t_graphs = [TorchGraph(load(t), trainable="none").eval() for t in teachers]
    if LABELS not in data and not t_graphs:
        raise OptcError(f"taylor scores need '{LABELS}' in the data or a teacher")
    logits = output or tg.output_names[0]
    index = dict(zip(tg.param_names, tg.params))
    layers = {}
    for node in model.graph.nodes:
        if node.op_type in _LAYERS and len(node.inputs) > 1 and node.inputs[1] is not None \
                and node.inputs[1].name in index and node.inputs[1].const_value.ndim >= 2:
            layers[node.inputs[1].name] = _out_axis(node)
    if not layers:
        raise OptcError("the model has no Conv/Gemm/MatMul weights to score")
    totals = {name: None for name in layers}
    inputs = tg.input_names
    n = len(data[inputs[0]])
    batches = 0
    for i in range(0, n, batch_size):
        feeds = {k: torch.as_tensor(data[k][i:i + batch_size]) for k in inputs}
        z = tg(feeds)[logits]
        if LABELS in data:
            y = torch.as_tensor(data[LABELS][i:i + batch_size])
            loss = torch.nn.functional.cross_entropy(z, y)
        else:
            with torch.no_grad():
                probs = soft_targets([t(feeds)[t.output_names[0] if output is None else output]
                                      for t in t_graphs], temperature)
            loss = kd_loss(z, probs, None, temperature=temperature, alpha=1.0)
        tg.zero_grad()
        loss.backward()
        with torch.no_grad():
            for name, axis in layers.items():
                w = index[name]
                prod = (w * w.grad).movedim(axis, 0).reshape(w.shape[axis], -1).sum(1)
                s = prod.double().square().numpy()
                totals[name] = s if totals[name] is None else totals[name] + s
        batches += 1
    return {name: (t / batches).tolist() for name, t in totals.items()}


def scores_json(scores: dict[str, list[float]]) -> str:
    """The scores file's text (read back by optc.passes.prune.importance.read_scores)."""
    return json.dumps({"criterion": "taylor", "scores": scores}, indent=1) + "\n"

"""Channel importance: one score per output channel of each source, then per group.

* ``l1`` / ``l2``: the norm of each output filter (Li et al., "Pruning Filters for Efficient
  ConvNets", 2017);
* ``bn-scale``: |gamma| of the BatchNormalization right after the layer (Liu et al., "Network
  Slimming", 2017); a source without one falls back to ``l2`` (counted in the stats);
* ``taylor``: first-order Taylor importance (Molchanov et al., 2019), (sum of g * w over the
  channel)^2, from gradients: computed by the distillation stage (``optc distill --taylor
  FILE``) and read from that file (``scores=FILE``), looked up by each layer's weight name;
* ``random``: a seeded baseline.

Scores of the sources of a group are normalised by their mean (so layers of different scales
compare) and summed, as Torch-Pruning's group importance does; a group's scores can then be
ranked against other groups' for ``scope=global``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from optc.errors import OptcError
from optc.ir import Graph
from optc.passes._common import is_standard
from optc.passes.channels import out_axis, sole_reader
from optc.passes.prune.coupling import Coupling, Source

CRITERIA = ("l1", "l2", "bn-scale", "taylor", "random")


def read_scores(path: str | Path) -> dict[str, np.ndarray]:
    """A taylor scores file (optc distill --taylor): {weight name: score per channel}."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        return {str(k): np.asarray(v, dtype=np.float64).reshape(-1)
                for k, v in doc["scores"].items()}
    except FileNotFoundError:
        raise OptcError(f"{path}: no such file") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise OptcError(f"{path}: not a scores file written by optc distill --taylor "
                        f"({type(e).__name__}: {e})") from None


def source_scores(g: Graph, src: Source, criterion: str, rng: np.random.Generator,
                  scores: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, bool]:
    """(score per output channel, whether bn-scale fell back to l2)."""
    n = src.node
    if criterion == "taylor":
        name = n.inputs[1].name
        if scores is None:
            raise OptcError("criterion=taylor needs scores=FILE (write it with optc distill "
                            "--taylor FILE on this model)")
        if name not in scores:
            raise OptcError(f"the taylor scores have no entry for weight '{name}' of "
                            f"{n.op_type} '{n.name}': were they computed on this model?")
        if scores[name].size != src.size:
            raise OptcError(f"the taylor scores of '{name}' have {scores[name].size} channels, "
                            f"the layer has {src.size}: were they computed on this model?")
        return scores[name], False
    w = n.inputs[1].const_value.astype(np.float64)
    axis = out_axis(n)
    rows = np.moveaxis(w, axis, 0).reshape(src.size, -1)
    if criterion == "random":
        return rng.random(src.size), False
    if criterion == "bn-scale":
        bn = sole_reader(g, n.outputs[0])
        if bn is not None and is_standard(bn) and bn.op_type == "BatchNormalization" and \
                g.is_constant(bn.inputs[1]):
            return np.abs(bn.inputs[1].const_value.astype(np.float64)).reshape(-1), False
        return np.sqrt(np.square(rows).sum(axis=1)), True
    if criterion == "l1":
        return np.abs(rows).sum(axis=1), False
    if criterion == "l2":
        return np.sqrt(np.square(rows).sum(axis=1)), False
    raise OptcError(f"unknown pruning criterion '{criterion}' (one of {', '.join(CRITERIA)})")


def group_scores(g: Graph, c: Coupling, members: list[int], criterion: str,
                 rng: np.random.Generator, scores: dict[str, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, int]:
    """(normalised score per channel of a group, sources that fell back to l2)."""
    total, fallbacks = None, 0
    for i in members:
        s, fell = source_scores(g, c.sources[i], criterion, rng, scores)
        fallbacks += fell
        s = s / (s.mean() + 1e-12)
        total = s if total is None else total + s
    return total / len(members), fallbacks

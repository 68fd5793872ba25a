"""prune: structured channel pruning with graph surgery, directly on the ONNX graph.

Whole output channels (filters) are removed from layers and every reader is rewritten to
match. Three steps, each in its own module:
1. coupling.py finds the channel groups (channels that must go together: a conv and its BN,
   both sides of a residual Add, Concat offsets, depthwise convs, Flatten -> Gemm blocks) and
   blocks those it cannot prune safely, with a reason;
2. importance.py scores each group's channels (``criterion``: l1, l2, bn-scale, random);
3. this module picks the channels to keep -- ``scope=local``: the same ``ratio`` in every
   group; ``scope=global``: one ranking of all groups' normalised scores, the lowest ``ratio``
   of all prunable channels removed -- never more than ``max-ratio`` of a group, never all of
   it, kept counts rounded to a multiple of ``round-to``; groups whose layers are named in
   ``protect`` (node or output-tensor names, comma-separated) are left whole;
   and surgery.py slices the tensors.
The pruned model computes what the original computes with the removed channels masked (their
filters and biases zeroed), exactly where the surgery can fold the masked channels' constant
contribution into the next layer's bias (see surgery.py). Lossy: ``--validate`` reports the
difference to the original rather than failing.
After a run, ``plan`` holds the groups (sources, kept indices, scores) and ``blocked`` the
groups left alone with their reasons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from optc.errors import OptcError
from optc.ir import Model, infer_shapes, topological_sort
from optc.pass_base import Pass, PassResult, register
from optc.passes.prune import surgery
from optc.passes.prune.coupling import Coupling, analyse
from optc.passes.prune.importance import CRITERIA, group_scores


@register
@dataclass
class Prune(Pass):
    """Structured channel pruning: whole filters removed, every consumer rewritten."""

    name: ClassVar[str] = "prune"
    lossless: ClassVar[bool] = False
    ratio: float = field(default=0.3, metadata={"help": "fraction of channels to remove"})
    criterion: Literal["l1", "l2", "bn-scale", "random", "taylor"] = field(
        default="l1", metadata={"help": "channel importance"})
    scope: Literal["local", "global"] = field(default="local", metadata={
        "help": "local: the same ratio per group; global: one ranking across groups"})
    round_to: int = field(default=1, metadata={"help": "keep channel counts a multiple of N"})
    max_ratio: float = field(default=0.9, metadata={
        "help": "remove at most this fraction of any one group"})
    protect: str = field(default="", metadata={
        "help": "comma-separated layer (node or output) names never pruned"})
    seed: int = field(default=0, metadata={"help": "for criterion=random"})

    def __post_init__(self) -> None:
        self.plan: list[dict[str, Any]] = []
        self.blocked: list[dict[str, Any]] = []

    def requires(self, model: Model) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise OptcError(f"prune: ratio must be in [0, 1), got {self.ratio}")
        if not 0.0 < self.max_ratio < 1.0:
            raise OptcError(f"prune: max-ratio must be in (0, 1), got {self.max_ratio}")
        if self.round_to < 1:
            raise OptcError(f"prune: round-to must be >= 1, got {self.round_to}")
        if self.criterion == "taylor":
            raise OptcError("prune: criterion 'taylor' needs gradients from the distillation "
                            "stage, which does not exist yet; use l1, l2, bn-scale or random")
        if self.criterion not in CRITERIA:
            raise OptcError(f"prune: unknown criterion '{self.criterion}' (one of "
                            f"{', '.join(CRITERIA)})")
        names = self._protected_names()
        g = model.graph
        known = {n.name for n in g.nodes} | {o.name for n in g.nodes for o in n.outputs
                                               if o is not None}
        missing = [p for p in names if p not in known]
        if missing:
            raise OptcError(f"prune: protected name(s) not in the graph: {', '.join(missing)}")

    def _protected_names(self) -> list[str]:
        return [p for p in re.split(r"[,;]", self.protect) if p]

    def run(self, model: Model) -> PassResult:
        g = model.graph
        topological_sort(g)
        infer_shapes(model)
        c = analyse(g)
        groups = c.groups()
        protected = set(self._protected_names())
        for root, members in groups.items():
            for i in members:
                n = c.sources[i].node
                if n.name in protected or n.outputs[0].name in protected:
                    c.blocked.setdefault(root, []).append(f"protected ('{n.name}')")
        rng = np.random.default_rng(self.seed)
        prunable = {r: m for r, m in groups.items() if not c.is_blocked(r)}
        scores, fallbacks = {}, 0
        for root, members in prunable.items():
            scores[root], fell = group_scores(g, c, members, self.criterion, rng)
            fallbacks += fell
        keep = self._select(c, prunable, scores)
        constants = surgery.removed_constants(model, c, keep)
        approximate = surgery.apply(model, c, keep, constants)
        self._record(c, groups, scores, keep)
        removed = sum(c.sources[m[0]].size - len(keep[r]) for r, m in prunable.items()
                      if r in keep)
        stats = {"groups": len(groups), "pruned": len(keep),
                 "blocked": sum(1 for r in groups if c.is_blocked(r)),
                 "channels_removed": removed}
        if fallbacks:
            stats["bn_scale_fallbacks"] = fallbacks
        if approximate:
            stats["approximate_folds"] = approximate
        return PassResult(model, bool(keep), stats)

    def _select(self, c: Coupling, prunable: dict[int, list[int]],
                scores: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        """root -> kept indices (sorted) for every group that loses channels."""
        sizes = {r: c.sources[m[0]].size for r, m in prunable.items()}
        if self.scope == "local":
            counts = {r: size - int(np.floor(size * self.ratio)) for r, size in sizes.items()}
        else:
            # one ranking: the lowest `ratio` of all prunable channels go, within max-ratio
            pool = [(s, r) for r in prunable for s in scores[r]]
            budget = int(np.floor(len(pool) * self.ratio))
            order = sorted(pool, key=lambda t: t[0])
            removed = {r: 0 for r in prunable}
            for s, r in order:
                if budget == 0:
                    break
                if removed[r] + 1 <= np.floor(sizes[r] * self.max_ratio):
                    removed[r] += 1
                    budget -= 1
            counts = {r: sizes[r] - removed[r] for r in prunable}
        keep = {}
        for r, size in sizes.items():
            floor = size - int(np.floor(size * self.max_ratio))
            n = max(counts[r], floor, 1)
            if self.round_to > 1 and size >= self.round_to:
                n = min(size, max(self.round_to, int(round(n / self.round_to)) * self.round_to))
            if n >= size:
                continue
            kept = np.sort(np.argsort(-scores[r], kind="stable")[:n])
            keep[r] = kept.astype(np.int64)
        return keep

    def _record(self, c: Coupling, groups: dict[int, list[int]], scores, keep) -> None:
        self.plan, self.blocked = [], []
        for root, members in groups.items():
            layers = [c.sources[i].node.name or c.sources[i].node.outputs[0].name
                      for i in members]
            if c.is_blocked(root):
                self.blocked.append({"layers": layers, "channels": c.sources[root].size,
                                     "reasons": c.blocked[c.find(root)]})
                continue
            self.plan.append({
                "layers": layers, "channels": c.sources[root].size,
                "kept": (keep[root].tolist() if root in keep
                         else list(range(c.sources[root].size))),
                "scores": [round(float(s), 6) for s in scores[root]]})

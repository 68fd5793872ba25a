"""prune: structured channel pruning with graph surgery, directly on the ONNX graph.

Whole output channels (filters) are removed from layers and every reader is rewritten to
match. Three steps, each in its own module:
1. coupling.py finds the channel groups (channels that must go together: a conv and its BN,
   both sides of a residual Add, Concat offsets, depthwise convs, Flatten -> Gemm blocks,
   channel shuffles, whose layer keeps the same offsets in each shuffle group) and
   blocks those it cannot prune safely, with a reason;
2. importance.py scores each group's channels (``criterion``: l1, l2, bn-scale, taylor,
   random);
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
Decide, then apply: ``decide`` makes the plan -- the pruned groups (layers, kept indices,
scores) and the groups left alone with their reasons -- and ``apply`` cuts the graph from the
plan alone; the plan is the run's ``artifacts["plan"]``. ``--report DIR`` writes it as
DIR/prune_plan.json, which ``prune{plan=FILE}`` replays on the same graph (groups matched by
their layers' names).
The fold of the removed channels' constants runs the masked model once on two inputs: at the
sizes of the calibration data (``--calib``) where given, else at the model's input sizes (a
symbolic batch as 1); a model that leaves other dims open needs one of --calib or
--input-shape, and says so. The run is on the pipeline's engine (``--engine``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from optc.errors import OptcError
from optc.ir import Model, infer_shapes, topological_sort
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes.prune import surgery
from optc.passes.prune.coupling import Coupling, analyse
from optc.passes.prune.importance import CRITERIA, group_scores, read_scores


def _top(scores: np.ndarray, n: int, chunks: int, tied: int) -> np.ndarray:
    """The ``n`` best channels (sorted indices), the same number from each of ``chunks``
    equal parts; with ``tied`` > 1, the same offsets in each of ``tied`` equal parts (whole
    columns of the tied x size/tied matrix, ranked by their summed scores)."""
    cols = len(scores) // tied
    col_scores = scores.reshape(tied, cols).sum(0)
    per_row = chunks // tied  # chunks is a multiple of tied (coupling.py requires it)
    part = cols // per_row
    kept = np.concatenate([
        j * part + np.argsort(-col_scores[j * part:(j + 1) * part], kind="stable")
        [:n // chunks] for j in range(per_row)])
    kept = (np.arange(tied)[:, None] * cols + np.sort(kept)[None, :]).reshape(-1)
    return np.sort(kept).astype(np.int64)


def _fits(kept: np.ndarray, size: int, chunks: int, tied: int) -> bool:
    """Do sorted ``kept`` indices meet the chunk and tie constraints of ``_top``?"""
    counts = np.bincount(kept // (size // chunks), minlength=chunks)
    if np.any(counts != counts[0]):
        return False
    if len(kept) % tied:
        return False
    cols = size // tied
    offsets = kept.reshape(tied, -1) - (np.arange(tied) * cols)[:, None]
    return bool(np.all(offsets == offsets[0]) and np.all((offsets >= 0) & (offsets < cols)))


@register
@dataclass(frozen=True)
class Prune(Pass):
    """Structured channel pruning: whole filters removed, every consumer rewritten."""

    name: ClassVar[str] = "prune"
    lossless: ClassVar[bool] = False
    #: calibration data, where given, sets the sizes of the masked-model run (surgery.py)
    uses_calibration: ClassVar[bool] = True
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
    target_macs: float = field(default=0.0, metadata={
        "help": "instead of ratio: prune until MACs are at most this fraction of the "
                "original (the ratio is searched)"})
    steps: int = field(default=1, metadata={
        "help": "prune in this many rounds, re-scoring in between"})
    plan: str = field(default="", metadata={
        "help": "replay a pruning plan (the prune_plan.json that --report writes)"})
    scores: str = field(default="", metadata={
        "help": "for criterion=taylor: the scores file of optc distill --taylor"})

    def requires(self, model: Model, ctx: PassContext) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise OptcError(f"prune: ratio must be in [0, 1), got {self.ratio}")
        if not 0.0 < self.max_ratio < 1.0:
            raise OptcError(f"prune: max-ratio must be in (0, 1), got {self.max_ratio}")
        if not 0.0 <= self.target_macs < 1.0:
            raise OptcError(f"prune: target-macs must be in (0, 1), got {self.target_macs}")
        if self.steps < 1:
            raise OptcError(f"prune: steps must be >= 1, got {self.steps}")
        if self.round_to < 1:
            raise OptcError(f"prune: round-to must be >= 1, got {self.round_to}")
        if self.criterion == "taylor":
            if not self.scores:
                raise OptcError("prune: criterion=taylor needs scores=FILE, written by "
                                "optc distill --taylor FILE on this model")
            if self.steps > 1:
                raise OptcError("prune: taylor scores are for the model as given; with "
                                "steps > 1 re-score between rounds (optc distill --taylor)")
            read_scores(self.scores)  # a bad file fails before any work
        elif self.scores:
            raise OptcError(f"prune: scores=FILE is for criterion=taylor, not "
                            f"{self.criterion}")
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

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        taylor = read_scores(self.scores) if self.criterion == "taylor" else None
        if self.steps > 1 and not self.plan and not self.target_macs:
            return self._iterate(model, taylor, ctx)
        if self.plan:
            plan, stats = self._read_plan(), {}
        else:
            plan, stats = self.decide(model, self.ratio, taylor)
        done, _ = self.apply(model, plan, self.plan or "the pruning plan", ctx)
        stats.update(done)
        return PassResult(model, stats["pruned"] > 0, stats,
                          {"plan": plan, "ratio": stats.get("ratio", self.ratio)})

    def _iterate(self, model: Model, taylor, ctx: PassContext) -> PassResult:
        """``steps`` rounds, the kept fraction of the original channels falling linearly to
        1 - ratio; channels are re-scored on the pruned weights each round (a filter's norm
        loses the input channels the round before removed). Each round decides, then
        applies its plan. The recorded plan maps each group's kept channels back to the
        original indices, so it replays in one shot."""
        original: dict[frozenset, np.ndarray] = {}  # group layers -> original indices kept
        sizes: dict[frozenset, int] = {}
        totals: dict[str, int] = {}
        for s in range(1, self.steps + 1):
            before, after = 1 - self.ratio * (s - 1) / self.steps, 1 - self.ratio * s / self.steps
            plan, stats = self.decide(model, 1 - after / before, taylor,
                                      (sizes, self.ratio * s / self.steps))
            done, kept = self.apply(model, plan, "the pruning plan", ctx)
            stats.update(done)
            for key, (size, idx) in kept.items():
                sizes.setdefault(key, size)
                original[key] = original.get(key, np.arange(size))[idx]
            for k in ("channels_removed", "approximate_folds", "bn_scale_fallbacks"):
                totals[k] = totals.get(k, 0) + stats.get(k, 0)
        for grp in plan["groups"]:
            key = frozenset(grp["layers"])
            if key in original:
                grp["channels"], grp["kept"] = sizes[key], original[key].tolist()
        pruned = sum(1 for g in plan["groups"] if len(g["kept"]) < g["channels"])
        stats = {**stats, **{k: v for k, v in totals.items() if v}, "pruned": pruned,
                 "steps": self.steps}
        return PassResult(model, pruned > 0, stats, {"plan": plan, "ratio": self.ratio})

    def _analyse(self, model: Model) -> tuple[Coupling, dict[int, list[int]]]:
        """The channel groups of ``model`` (coupling.py), the protected ones blocked."""
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
        return c, groups

    def decide(self, model: Model, ratio: float, taylor=None, schedule=None
               ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the plan -- {"groups": [{layers, channels, kept, scores}], "blocked": [{layers,
        channels, reasons}]}, the decision's stats) of one round of analysis, scoring and
        selection at ``ratio``. ``schedule`` (during steps): (original size of each group by
        its layers, ratio reached this round)."""
        c, groups = self._analyse(model)
        rng = np.random.default_rng(self.seed)
        prunable = {r: m for r, m in groups.items() if not c.is_blocked(r)}
        scores, fallbacks = {}, 0
        for root, members in prunable.items():
            scores[root], fell = group_scores(model.graph, c, members, self.criterion, rng,
                                              taylor)
            fallbacks += fell
        applied_ratio = None
        if self.target_macs > 0:
            keep, applied_ratio = self._search_macs(model, c, prunable, scores)
        else:
            keep = self._select(c, prunable, scores, ratio, schedule)
        stats: dict[str, Any] = {"groups": len(groups),
                                 "blocked": sum(1 for r in groups if c.is_blocked(r))}
        if fallbacks:
            stats["bn_scale_fallbacks"] = fallbacks
        if applied_ratio is not None:
            stats["ratio"] = applied_ratio
        return self._record(c, groups, scores, keep), stats

    def apply(self, model: Model, plan: dict[str, Any], source: str,
              ctx: PassContext | None = None
              ) -> tuple[dict[str, Any], dict[frozenset, tuple[int, np.ndarray]]]:
        """Cut ``model`` as ``plan`` says (groups matched by their layers' names; deterministic):
        (surgery stats, {group layers: (channels before, kept indices)}). ``ctx`` gives the
        sample run its sizes (calibration data) and engine."""
        ctx = ctx if ctx is not None else PassContext()
        c, groups = self._analyse(model)
        prunable = {r: m for r, m in groups.items() if not c.is_blocked(r)}
        keep = self._replay(c, prunable, plan.get("groups", []), source)
        constants = {}
        if keep and c.consumers:
            constants = surgery.removed_constants(
                model, c, keep, surgery.sample_feeds(model, ctx.calibration_data), ctx.engine)
        approximate = surgery.apply(model, c, keep, constants)
        removed = sum(c.sources[m[0]].size - len(keep[r]) for r, m in prunable.items()
                      if r in keep)
        stats = {"groups": len(groups), "pruned": len(keep),
                 "blocked": sum(1 for r in groups if c.is_blocked(r)),
                 "channels_removed": removed}
        if approximate:
            stats["approximate_folds"] = approximate
        kept = {frozenset(self._layer_names(c, prunable[r])): (c.sources[r].size, keep[r])
                for r in keep}
        return stats, kept

    def _search_macs(self, model: Model, c: Coupling, prunable: dict[int, list[int]],
                     scores: dict[int, np.ndarray]) -> tuple[dict[int, np.ndarray], float]:
        """(the selection, the ratio) of the smallest ratio whose pruned model has at most target-macs of
        the original MACs (bisection; each candidate is cut on a clone and counted)."""
        from optc.ir import clone
        from optc.report import model_stats

        def macs(keep) -> int:
            trial = clone(model)
            tc = analyse(trial.graph)  # same graph, same order: the same group roots
            surgery.apply(trial, tc, keep, {})
            return model_stats(trial).macs

        total = macs({})
        lo, hi = 0.0, self.max_ratio
        best = self._select(c, prunable, scores, hi)
        fewest = macs(best)
        if fewest > self.target_macs * total:
            raise OptcError(f"prune: target-macs={self.target_macs:g} is out of reach: at "
                            f"max-ratio={self.max_ratio:g} the model keeps "
                            f"{fewest / total:.2f} of its MACs")
        for _ in range(12):
            mid = (lo + hi) / 2
            keep = self._select(c, prunable, scores, mid)
            if macs(keep) <= self.target_macs * total:
                hi, best = mid, keep
            else:
                lo = mid
        return best, round(hi, 4)

    def _select(self, c: Coupling, prunable: dict[int, list[int]],
                scores: dict[int, np.ndarray], ratio: float, schedule=None
                ) -> dict[int, np.ndarray]:
        """root -> kept indices (sorted) for every group that loses channels."""
        sizes = {r: c.sources[m[0]].size for r, m in prunable.items()}
        if self.scope == "local":
            counts = {r: size - int(np.floor(size * ratio)) for r, size in sizes.items()}
            if schedule is not None:  # rounds count from the original sizes (no drift)
                original, total = schedule
                for r, members in prunable.items():
                    o = original.get(frozenset(self._layer_names(c, members)), sizes[r])
                    counts[r] = min(sizes[r], o - int(np.floor(o * total)))
        else:
            # one ranking: the lowest `ratio` of all prunable channels go, within max-ratio
            pool = [(s, r) for r in prunable for s in scores[r]]
            budget = int(np.floor(len(pool) * ratio))
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
            chunks = c.chunks(r)  # grouped convs: the same number kept in each group
            if chunks > 1:
                if size % chunks:
                    continue
                n = min(size, max(chunks, int(round(n / chunks)) * chunks))
            if n >= size:
                continue
            keep[r] = _top(scores[r], n, chunks, c.tied(r))
        self._keep_every_part(c, keep, scores)
        return keep

    @staticmethod
    def _keep_every_part(c: Coupling, keep: dict[int, np.ndarray],
                         scores: dict[int, np.ndarray]) -> None:
        """A Split part or a Slice range must keep a channel: where the selection emptied
        one, its best channel comes back."""
        parts = [p for _, ps in c.splits for p in ps] + [x.sub(a, b) for _, x, a, b in c.slices]
        for part in parts:
            if len(surgery.positions(c, part, keep)):
                continue
            seg = next(s for s in part.segments if s.source is not None)
            root = c.find(seg.source)
            if c.chunks(root) > 1:  # adding one back would unbalance its groups
                del keep[root]
                continue
            span = np.arange(seg.start, seg.start + seg.length)
            best = span[int(np.argmax(scores[root][span]))]
            keep[root] = np.sort(np.append(keep[root], best))
            if len(keep[root]) == c.sources[root].size:
                del keep[root]

    def _read_plan(self) -> dict[str, Any]:
        import json
        from pathlib import Path

        try:
            doc = json.loads(Path(self.plan).read_text())
            if not isinstance(doc["groups"], list):
                raise TypeError("'groups' is not a list")
        except FileNotFoundError:
            raise OptcError(f"{self.plan}: pruning plan not found") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise OptcError(f"{self.plan}: not a pruning plan ({e})") from None
        return doc

    def _replay(self, c: Coupling, prunable: dict[int, list[int]], entries: list,
                source: str) -> dict[int, np.ndarray]:
        """Kept indices from a plan, matched to this graph's groups by their layers."""
        by_layers = {frozenset(self._layer_names(c, m)): r for r, m in prunable.items()}
        keep = {}
        for e in entries:
            root = by_layers.get(frozenset(e.get("layers", [])))
            if root is None:
                raise OptcError(f"{source}: no prunable group of layers "
                                f"{', '.join(e.get('layers', []))} in this graph")
            size = c.sources[root].size
            kept = np.asarray(e.get("kept", []), np.int64)
            if e.get("channels") != size or len(kept) == 0 or kept.min() < 0 or \
                    kept.max() >= size or len(np.unique(kept)) != len(kept):
                raise OptcError(f"{source}: group {', '.join(e['layers'])}: kept indices "
                                f"do not fit its {size} channels")
            kept = np.sort(kept)
            if len(kept) < size and not _fits(kept, size, c.chunks(root), c.tied(root)):
                raise OptcError(f"{source}: group {', '.join(e['layers'])}: kept indices "
                                f"break its grouped convs or channel shuffle (they need the "
                                f"same count in each of {c.chunks(root)} equal parts, and "
                                f"the same offsets in each of {c.tied(root)})")
            if len(kept) < size:
                keep[root] = kept
        return keep

    @staticmethod
    def _layer_names(c: Coupling, members: list[int]) -> list[str]:
        return [c.sources[i].node.name or c.sources[i].node.outputs[0].name for i in members]

    def report_markdown(self, artifacts: dict[str, Any], directory) -> str:
        """The prune section of --report's report.md; writes DIR/prune_plan.json (replayable
        with ``prune{plan=DIR/prune_plan.json}``)."""
        from pathlib import Path

        plan = artifacts["plan"]
        path = Path(directory) / "prune_plan.json"
        _write_plan(plan, path)
        ratio = artifacts.get("ratio", self.ratio)
        lines = [f"## prune (ratio={ratio:g}, criterion={self.criterion}, "
                 f"scope={self.scope}, round-to={self.round_to})", "",
                 f"Plan: [prune_plan.json](prune_plan.json) (replay: "
                 f"`prune{{plan={path}}}`)", "",
                 "| layers | channels | kept |", "|---|---|---|"]
        for grp in plan["groups"]:
            lines.append(f"| {', '.join(f'`{x}`' for x in grp['layers'])} | "
                         f"{grp['channels']} | {len(grp['kept'])} |")
        lines += ["", "Blocked groups:", "", "| layers | channels | why |", "|---|---|---|"]
        for b in plan.get("blocked", []):
            lines.append(f"| {', '.join(f'`{x}`' for x in b['layers'])} | {b['channels']} | "
                         f"{'; '.join(b['reasons'])} |")
        return "\n".join(lines) + "\n"

    def replay(self, artifacts: dict[str, Any], directory) -> Pass:
        import tempfile

        fd, path = tempfile.mkstemp(prefix="prune_plan_", suffix=".json", dir=directory)
        with open(fd, "w") as f:
            f.write(_plan_text(artifacts["plan"]))
        return Prune(plan=path)

    def _record(self, c: Coupling, groups: dict[int, list[int]], scores, keep
                ) -> dict[str, Any]:
        """The plan: every prunable group with its kept channels and scores, and the blocked
        groups with their reasons."""
        plan: dict[str, Any] = {"groups": [], "blocked": []}
        for root, members in groups.items():
            layers = self._layer_names(c, members)
            if c.is_blocked(root):
                plan["blocked"].append({"layers": layers, "channels": c.sources[root].size,
                                     "reasons": c.blocked[c.find(root)]})
                continue
            plan["groups"].append({
                "layers": layers, "channels": c.sources[root].size,
                "kept": (keep[root].tolist() if root in keep
                         else list(range(c.sources[root].size))),
                "scores": ([round(float(s), 6) for s in scores[root]]
                           if root in scores else [])})
        return plan


def _plan_text(plan: dict[str, Any]) -> str:
    import json

    return json.dumps({"groups": plan["groups"], "blocked": plan.get("blocked", [])},
                      indent=1) + "\n"


def _write_plan(plan: dict[str, Any], path) -> None:
    from pathlib import Path

    Path(path).write_text(_plan_text(plan))

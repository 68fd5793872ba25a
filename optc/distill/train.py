"""Fine-tune a student ONNX model against one or more teachers, write the weights back.

``distill(teachers, student, data, config)`` runs the student as a TorchGraph (weights and
biases trainable; a QDQ student trains with fake quantization, see executor.py), the teachers
as frozen TorchGraphs, and minimises the Hinton loss (plus FitNets hints) with Adam, the
learning rate decaying on a cosine over the epochs. After each
epoch the validation metric (top-1 accuracy on ``val``'s labels, or top-1 agreement with the
teacher when it has none; ties broken by the validation loss, cross-entropy or KL to the
teachers) picks the best weights, the student as given (epoch 0) included; without ``val`` the
epoch with the lowest training loss is kept. The best epoch is written back into a copy of the
student model: only initializer values change.

Teacher-assistant chains (Mirzadeh et al., 2020) are two ordinary runs: teacher -> assistant,
then assistant -> student.

Scale-out: under ``torchrun`` (its RANK / WORLD_SIZE / LOCAL_RANK protocol) each process
trains a DistributedDataParallel replica on its shard (gloo on CPU, nccl on GPU). The sampler
is a DistributedSampler (shuffled per epoch from ``seed``, ``drop_last``) in every case, with
one replica when not distributed, and each process takes ``batch_size / world_size`` samples
per step: the union of the processes' k-th batches is the single process's k-th batch, and
DDP averages the gradients, so N processes follow the single-process run up to float
summation order.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from optc.data import LABELS
from optc.distill.executor import TorchGraph
from optc.distill.losses import Regressor, hint_loss, kd_loss, soft_targets
from optc.errors import OptcError
from optc.ir import Model, load


@dataclass
class DistillConfig:
    temperature: float = 4.0
    alpha: float = 0.9  # weight of the soft-target term; 0 = hard labels only
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    seed: int = 0
    hints: list[tuple[str, str]] = field(default_factory=list)  # (teacher tensor, student)
    hint_weight: float = 1.0
    learn_scales: bool = False  # QDQ students: train the quantization scales too (LSQ)
    output: str | None = None  # the logits output (default: the first graph output)

    def check(self) -> None:
        if self.temperature <= 0:
            raise OptcError(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise OptcError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.epochs < 0:
            raise OptcError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise OptcError(f"batch size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise OptcError(f"learning rate must be > 0, got {self.lr}")


@dataclass
class EpochLog:
    epoch: int
    loss: float
    metric: float | None
    seconds: float


@dataclass
class DistillResult:
    model: Model  # the student with the best epoch's weights written back
    history: list[EpochLog]
    best_epoch: int  # 0: the weights as given were best
    metric_name: str
    initial_metric: float | None


class _Student(nn.Module):
    """The trained parts: the student graph and the hint regressors (DDP wraps this)."""

    def __init__(self, graph: TorchGraph, regressors: list[Regressor]):
        super().__init__()
        self.graph = graph
        self.regressors = nn.ModuleList(regressors)

    def forward(self, feeds: dict, capture: Sequence[str]):
        return self.graph(feeds, capture)


def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def check_compatible(teacher: Model, student: Model, label: str = "teacher") -> None:
    """Same input names, dtypes and static dims; one clear line otherwise."""
    def inputs(m: Model) -> dict:
        g = m.graph
        return {v.name: v for v in g.inputs if not g.is_initializer(v)}

    t, s = inputs(teacher), inputs(student)
    if set(t) != set(s):
        raise OptcError(f"{label} and student have different inputs: {label} "
                        f"{', '.join(sorted(t))}; student {', '.join(sorted(s))}")
    for name in t:
        a, b = t[name].shape, s[name].shape
        if a is not None and b is not None:
            same = len(a) == len(b) and all(
                not (isinstance(x, int) and isinstance(y, int)) or x == y for x, y in zip(a, b))
            if not same:
                raise OptcError(f"input '{name}' has shape {list(a)} in the {label} but "
                                f"{list(b)} in the student")
        if t[name].dtype != s[name].dtype:
            raise OptcError(f"input '{name}' has a different type in the {label} and the "
                            f"student")


def _logits_name(graph: TorchGraph, wanted: str | None, label: str) -> str:
    names = graph.output_names
    if wanted is None:
        return names[0]
    if wanted not in names:
        raise OptcError(f"{label} has no output '{wanted}' (outputs: {', '.join(names)})")
    return wanted


def _metric(student: TorchGraph, logits: str, val: dict, teachers: list[TorchGraph],
            t_logits: list[str], batch: int, temperature: float) -> tuple[float, float]:
    """(top-1 accuracy on val's labels, mean cross-entropy), or without labels (top-1
    agreement with the first teacher, mean KL to the teachers' soft targets)."""
    inputs = list(student.input_names)
    n = len(val[inputs[0]])
    hits, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, n, batch):
            feeds = {k: torch.as_tensor(val[k][i:i + batch]) for k in inputs}
            z = student(feeds)[logits].cpu()
            if LABELS in val:
                ref = torch.as_tensor(val[LABELS][i:i + batch])
                loss += float(torch.nn.functional.cross_entropy(z, ref, reduction="sum"))
            else:
                t_z = [t(feeds)[name].cpu() for t, name in zip(teachers, t_logits)]
                ref = t_z[0].argmax(1)
                loss += float(kd_loss(z, soft_targets(t_z, temperature), None,
                                      temperature=temperature, alpha=1.0)) * len(z)
            hits += int((z.argmax(1) == ref).sum())
    return hits / n, loss / n


def distill(teachers: Sequence, student, data: dict[str, np.ndarray],
            config: DistillConfig | None = None, *, val: dict[str, np.ndarray] | None = None,
            progress: bool = False, log: Callable[[str], None] | None = None
            ) -> DistillResult:
    """Fine-tune ``student`` (path, bytes, ModelProto or Model) on ``data`` ({input: samples,
    optional ``labels``}) against ``teachers``; returns the student with the best weights."""
    config = config or DistillConfig()
    config.check()
    rank, world, local_rank = dist_env()
    if log is None or rank != 0:  # under torchrun only rank 0 reports
        def log(_msg: str) -> None:
            return None
    progress = progress and rank == 0
    student_model = load(student)
    teacher_models = [load(t) for t in teachers]
    if not teacher_models and config.alpha > 0:
        raise OptcError("distillation needs a teacher (or alpha=0 for hard labels only)")
    for i, t in enumerate(teacher_models):
        check_compatible(t, student_model, "teacher" if len(teacher_models) == 1
                         else f"teacher {i + 1}")
    if config.alpha < 1 and LABELS not in data:
        raise OptcError(f"the data has no '{LABELS}', which alpha={config.alpha:g} < 1 needs "
                        f"for its hard-label term (alpha=1 distils without labels)")
    if val is not None and LABELS not in val and not teacher_models:
        raise OptcError(f"the validation data has no '{LABELS}' and there is no teacher to "
                        f"agree with")
    if config.hints and len(teacher_models) != 1:
        raise OptcError("hints need exactly one teacher")
    if world > 1 and config.batch_size % world:
        raise OptcError(f"batch size {config.batch_size} does not split over {world} processes")

    torch.manual_seed(config.seed)
    device = torch.device("cpu")
    if world > 1:
        import torch.distributed as dist

        if torch.cuda.is_available():
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    elif torch.cuda.is_available():
        device = torch.device("cuda")

    s_graph = TorchGraph(student_model, learn_scales=config.learn_scales)
    t_graphs = [TorchGraph(t, trainable="none").to(device).eval() for t in teacher_models]
    inputs = s_graph.input_names
    s_logits = _logits_name(s_graph, config.output, "student")
    t_logits = [_logits_name(t, config.output, "teacher") for t in t_graphs]
    for k in inputs:
        if k not in data:
            raise OptcError(f"the data has no input '{k}' (it has {', '.join(sorted(data))})")
    n = len(data[inputs[0]])
    if n == 0:
        raise OptcError("the data holds no samples")

    # hint regressors are shaped from one sample of each tensor
    regressors = []
    if config.hints:
        probe = {k: torch.as_tensor(data[k][:1]) for k in inputs}
        with torch.no_grad():
            t_out = t_graphs[0].cpu()(probe, [t for t, _ in config.hints])
            s_out = s_graph(probe, [s for _, s in config.hints])
        t_graphs[0].to(device)
        for t_name, s_name in config.hints:
            regressors.append(Regressor(tuple(s_out[s_name].shape), tuple(t_out[t_name].shape),
                                        f"{t_name}:{s_name}"))
    module = _Student(s_graph, regressors).to(device)
    if not list(module.parameters()):
        raise OptcError("the student has no trainable tensors")
    trained: nn.Module = module
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # parameters that only feed outputs other than the logits get no gradient
        trained = DistributedDataParallel(module, device_ids=[local_rank]
                                          if device.type == "cuda" else None,
                                          find_unused_parameters=True)
    optim = torch.optim.Adam(module.parameters(), lr=config.lr,
                             weight_decay=config.weight_decay)
    # cosine decay of the learning rate over the run, stepped per epoch
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optim, max(config.epochs, 1))

    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    per_rank = config.batch_size // world
    tensors = {k: torch.as_tensor(np.asarray(data[k])) for k in inputs}
    labels = torch.as_tensor(np.asarray(data[LABELS])) if LABELS in data else None
    metric_name = "accuracy" if val is not None and LABELS in val else "teacher agreement"
    val_data = val if val is not None else None
    initial = None
    if val_data is not None:
        initial, initial_loss = _metric(s_graph, s_logits, val_data, t_graphs, t_logits, 256,
                                        config.temperature)
        log(f"epoch 0: {metric_name} {initial:.4f}, val loss {initial_loss:.4f} (the student "
            f"as given)")
        best_key: tuple[float, float] = (initial, -initial_loss)
    else:
        best_key = (-np.inf, -np.inf)
    best = (0, copy.deepcopy(s_graph.state_dict()))
    history: list[EpochLog] = []
    capture_s = [s for _, s in config.hints]
    capture_t = [t for t, _ in config.hints]

    from rich.progress import Progress

    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("distill", total=config.epochs * max(1, len(sampler) // per_rank))
        for epoch in range(1, config.epochs + 1):
            start = time.perf_counter()
            sampler.set_epoch(epoch)
            order = torch.as_tensor(list(iter(sampler)))
            module.train()
            total, steps = 0.0, 0
            for i in range(0, len(order), per_rank):
                idx = order[i:i + per_rank]
                feeds = {k: tensors[k][idx].to(device) for k in inputs}
                out = trained(feeds, capture_s)
                loss = torch.zeros((), device=device)
                if config.alpha > 0 or capture_t:
                    with torch.no_grad():
                        t_outs = [t(feeds, capture_t if j == 0 else ())
                                  for j, t in enumerate(t_graphs)]
                    probs = soft_targets([o[name] for o, name in zip(t_outs, t_logits)],
                                         config.temperature) if t_outs else None
                else:
                    t_outs, probs = [], None
                y = labels[idx].to(device) if labels is not None else None
                loss = loss + kd_loss(out[s_logits], probs, y, temperature=config.temperature,
                                      alpha=config.alpha)
                for reg, (t_name, s_name) in zip(module.regressors, config.hints):
                    loss = loss + config.hint_weight * hint_loss(reg, out[s_name],
                                                                 t_outs[0][t_name])
                optim.zero_grad()
                loss.backward()
                optim.step()
                total += float(loss.detach())
                steps += 1
                bar.advance(task)
            schedule.step()
            seconds = time.perf_counter() - start
            mean_loss = total / max(steps, 1)
            metric = None
            module.eval()
            if val_data is not None:
                metric, val_loss = _metric(s_graph, s_logits, val_data, t_graphs, t_logits, 256,
                                           config.temperature)
                key = (metric, -val_loss)  # the metric first, its ties by the val loss
            else:
                key = (-mean_loss, 0.0)
            better = key > best_key
            if better:
                best_key = key
                best = (epoch, copy.deepcopy(s_graph.state_dict()))
            history.append(EpochLog(epoch, mean_loss, metric, seconds))
            log(f"epoch {epoch}: loss {mean_loss:.4f}"
                + (f", {metric_name} {metric:.4f}, val loss {val_loss:.4f}"
                   if metric is not None else "")
                + f" ({seconds:.2f} s)" + (" *" if better else ""))
    s_graph.load_state_dict(best[1])
    return DistillResult(s_graph.write_back(), history, best[0], metric_name, initial)


def prune_and_distill(teacher, data: dict[str, np.ndarray], *, ratio: float, steps: int = 1,
                      prune_options: str = "", config: DistillConfig | None = None,
                      val: dict[str, np.ndarray] | None = None,
                      log: Callable[[str], None] | None = None) -> tuple[Model, list]:
    """Iterative pruning with recovery (Torch-Pruning's schedule, on ONNX): ``steps`` rounds,
    each pruning ``1 - (1 - ratio) ** (1 / steps)`` of the channels left (so the rounds
    together keep about ``1 - ratio``) and then distilling from ``teacher`` (the original
    model) with ``config``. Returns (the final student, each round's DistillResult).
    ``prune_options``: more prune options, e.g. "criterion=l2 round-to=4"."""
    import optc

    if steps < 1:
        raise OptcError(f"steps must be >= 1, got {steps}")
    if not 0 <= ratio < 1:
        raise OptcError(f"ratio must be in [0, 1), got {ratio}")
    teacher_model = load(teacher)
    per_step = 1 - (1 - ratio) ** (1 / steps)
    student, _ = optc.optimize(copy.deepcopy(teacher_model), passes="default")
    rounds = []
    for k in range(steps):
        student, _ = optc.optimize(student, passes=f"prune{{ratio={per_step:.6f} "
                                                   f"{prune_options}}}")
        result = distill([teacher_model], student, data, config, val=val, log=log)
        rounds.append(result)
        student = result.model
    return student, rounds

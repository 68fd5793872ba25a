"""Run models in onnxruntime and compare their outputs.

The oracle is onnxruntime with its graph optimizations off (ORT_DISABLE_ALL): its own fusions
would hide our bugs. Inputs are seeded random tensors shaped from the model's inputs (symbolic
dims become 1), or samples read from DATA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from optc.errors import OptcError
from optc.ir import Model, serialize

# default tolerance for lossless pipelines (DESIGN.md: rtol 1e-5, atol 1e-6 x output scale)
RTOL = 1e-5
ATOL = 1e-6

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16,
    "tensor(uint16)": np.uint16, "tensor(int32)": np.int32, "tensor(uint32)": np.uint32,
    "tensor(int64)": np.int64, "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_,
}


def ort_session(model: str | os.PathLike | bytes | Model, *, optimize: bool = False,
                threads: int | None = 1) -> ort.InferenceSession:
    """An onnxruntime CPU session; graph optimizations off unless ``optimize``."""
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if isinstance(model, Model):
        model = serialize(model)
    elif not isinstance(model, bytes):
        model = str(model)
    try:
        return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        label = model if isinstance(model, str) else "model"
        raise OptcError(f"{label}: onnxruntime cannot load it: {_first_line(e)}") from e


def session(model: str | os.PathLike | bytes | Model, runtime: str = "ort", *,
            threads: int | None = 1, optimize: bool = False, tune: bool = False,
            precision: str = "fp32"):
    """A session of ``runtime`` ('ort' or 'optc'); both have get_inputs/get_outputs/run.
    ``optimize``: each runtime's graph optimizations at their highest level (onnxruntime's
    ORT_ENABLE_ALL, optc's "all"); off otherwise, so the model runs as written. ``tune``:
    optc's per-layer choices timed on this CPU (InferenceSession's ``tune``); ``precision``:
    optc's (InferenceSession's; onnxruntime runs float32)."""
    if runtime == "ort":
        return ort_session(model, optimize=optimize, threads=threads)
    if runtime == "optc":
        from optc.runtime import InferenceSession

        return InferenceSession(model, threads=threads,
                                optimization="all" if optimize else "off", tune=tune,
                                precision=precision)
    raise OptcError(f"unknown runtime '{runtime}' (ort or optc)")


def random_feeds(sess, seed: int = 0, batch: int = 1) -> dict[str, np.ndarray]:
    """Seeded random inputs for every required input of ``sess`` (onnxruntime or optc);
    symbolic dims become ``batch``."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in sess.get_inputs():
        dtype = _ORT_TYPES.get(i.type)
        if dtype is None:
            raise OptcError(f"input '{i.name}' has type {i.type}, which random inputs do not "
                            f"support; pass --data")
        shape = [d if isinstance(d, int) and d >= 0 else batch for d in i.shape]
        if np.issubdtype(dtype, np.floating):
            feeds[i.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype is np.bool_:
            feeds[i.name] = rng.integers(0, 2, shape).astype(np.bool_)
        else:
            feeds[i.name] = rng.integers(0, 8, shape).astype(dtype)
    return feeds


def run(sess, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an onnxruntime or optc session on the feeds it needs; outputs by name."""
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    try:
        outs = sess.run(names, {k: v for k, v in feeds.items() if k in wanted})
    except OptcError:
        raise
    except Exception as e:
        raise OptcError(f"onnxruntime failed to run the model: {_first_line(e)}") from e
    return dict(zip(names, outs))


@dataclass
class OutputComparison:
    name: str
    max_abs: float
    max_rel: float  # max |a - b| / max |a|: error relative to the output's scale
    cosine: float
    top1: float | None  # fraction of rows whose argmax agrees (outputs of rank >= 2)
    within_tolerance: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def compare_arrays(name: str, ref: np.ndarray, got: np.ndarray, *, rtol: float = RTOL,
                   atol: float = ATOL) -> OutputComparison:
    if ref.shape != got.shape:
        raise OptcError(f"output '{name}': shapes differ, {ref.shape} vs {got.shape}")
    a = ref.astype(np.float64).reshape(-1)
    b = got.astype(np.float64).reshape(-1)
    diff = np.abs(a - b)
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    max_abs = float(diff.max()) if a.size else 0.0
    max_rel = max_abs / scale if scale > 0 else max_abs
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cosine = float(a @ b / (na * nb)) if na > 0 and nb > 0 else float(na == nb)
    top1 = None
    if ref.ndim >= 2 and ref.shape[-1] > 1 and np.issubdtype(ref.dtype, np.floating):
        top1 = float(np.mean(ref.argmax(-1) == got.argmax(-1)))
    ok = bool(np.all(diff <= atol * max(scale, 1e-30) + rtol * np.abs(a))) or max_abs == 0.0
    return OutputComparison(name, max_abs, max_rel, cosine, top1, ok)


def compare_models(a: str | os.PathLike | bytes | Model, b: str | os.PathLike | bytes | Model,
                   data: dict[str, np.ndarray] | None = None, *, seed: int = 0,
                   rtol: float = RTOL, atol: float = ATOL, runtime: str = "ort",
                   ) -> list[OutputComparison]:
    """Run ``a`` in onnxruntime (optimizations off: the oracle) and ``b`` in ``runtime`` ('ort'
    or 'optc') on the same inputs and compare every output of ``a`` with the output of the same
    name in ``b``.

    ``data``: samples per input (leading axis), e.g. from ``optc.data.read_data``; fed in
    batches of the model's static batch size. Without it, one seeded random input is used.
    """
    from optc.data import batches

    sa, sb = ort_session(a), session(b, runtime)
    missing = [i.name for i in sb.get_inputs() if i.name not in {j.name for j in sa.get_inputs()}]
    if missing:
        raise OptcError(f"the second model needs input(s) {', '.join(missing)} that the first "
                        f"does not have")
    if data is None:
        feeds_list = [random_feeds(sa, seed)]
    else:
        static = {i.name: (i.shape[0] if i.shape and isinstance(i.shape[0], int) else None)
                  for i in sa.get_inputs()}
        feeds_list = list(batches(data, static))
    ra_parts, rb_parts = [], []
    for feeds in feeds_list:
        ra_parts.append(run(sa, feeds))
        rb_parts.append(run(sb, feeds))
    ra = {k: np.concatenate([r[k] for r in ra_parts]) if len(ra_parts) > 1 else ra_parts[0][k]
          for k in ra_parts[0]}
    rb = {k: np.concatenate([r[k] for r in rb_parts]) if len(rb_parts) > 1 else rb_parts[0][k]
          for k in rb_parts[0]}
    out = []
    for name, ref in ra.items():
        if name not in rb:
            raise OptcError(f"output '{name}' of the first model is missing from the second")
        out.append(compare_arrays(name, ref, rb[name], rtol=rtol, atol=atol))
    return out


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:400]

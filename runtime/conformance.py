"""The ONNX backend node tests (onnx.backend.test.case.node, generated in memory by onnx), run
case by case on optc.runtime or on onnxruntime, with onnx's own comparison
(``onnx.backend.test.runner.Runner.assert_similar_outputs``, each case's rtol/atol).

Used by tests/runtime/test_backend_node.py (optc.runtime, every case) and by
benchmarks/node_tests.py (both runtimes side by side on the same cases).

The reference set is the node tests onnx ships without their ``_expanded`` variants (an
``_expanded`` case is the same test run through the op's function body, so it tests the ops of
the body rather than the op); ``cases(expanded=True)`` adds them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

#: training-mode cases (Dropout/BatchNorm in training mode, optimizers): an inference runtime
#: does not run them
TRAINING_MARKERS = ("training", "_train_")


@dataclass(frozen=True)
class Outcome:
    status: str  # "passed", "failed" (ran, wrong result), "error" (refused or raised)
    reason: str = ""


def cases(expanded: bool = False) -> list[Any]:
    """The node test cases onnx ships (onnx.backend.test.case.test_case.TestCase), by name."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = collect_testcases(None)
    return sorted((c for c in found if expanded or "_expanded" not in c.name),
                  key=lambda c: c.name)


def is_training(name: str) -> bool:
    return any(m in name for m in TRAINING_MARKERS)


def _normalize(item: Any) -> Any:
    from onnx.backend.test.runner import _normalize_tensor

    return _normalize_tensor(item)


def check(case: Any, run: Any) -> None:
    """Run ``case`` through ``run(model) -> callable(inputs list) -> outputs list`` and assert
    its outputs as onnx's runner does (AssertionError on a mismatch)."""
    prepared = run(case.model)
    for inputs, ref in case.data_sets:
        outputs = prepared([_normalize(x) for x in inputs])
        _assert_similar([_normalize(x) for x in ref], list(outputs), case)


def _assert_similar(ref: list, outputs: list, case: Any) -> None:
    """onnx's comparison, one output at a time. A sequence output is compared element by
    element as a list of tensors: onnx's runner recurses into a sequence with bare arrays and
    calls len() on them, which raises TypeError on a 0-d element (test_loop16_seq_none)."""
    from onnx.backend.test.runner import Runner

    if len(outputs) != len(ref):
        raise AssertionError(f"{len(outputs)} outputs, expected {len(ref)}")
    for r, o in zip(ref, outputs):
        if isinstance(r, (list, tuple)) and isinstance(o, (list, tuple)):
            if len(o) != len(r):
                raise AssertionError(f"sequence of {len(o)} tensors, expected {len(r)}")
            _assert_similar(list(r), list(o), case)
        else:
            Runner.assert_similar_outputs([r], [o], rtol=case.rtol, atol=case.atol,
                                          model_dir=case.name)


def outcome(case: Any, run: Any) -> Outcome:
    """``check`` as an Outcome, the reason being the first line of what went wrong."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            check(case, run)
    except AssertionError as e:
        return Outcome("failed", _first_line(e))
    except Exception as e:  # noqa: BLE001 -- a runtime refuses a case in many ways
        return Outcome("error", f"{type(e).__name__}: {_first_line(e)}")
    return Outcome("passed")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:200]


def optc_runner(model: onnx.ModelProto):
    from optc.runtime.session import InferenceSession

    session = InferenceSession(model, optimization="off")
    names = [i.name for i in session.get_inputs()]
    return lambda inputs: session.run(None, dict(zip(names, inputs)))


def ort_runner(model: onnx.ModelProto):
    """onnxruntime, graph optimizations off, one thread (as every numeric check of optc)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.log_severity_level = 4
    session = ort.InferenceSession(model.SerializeToString(), so,
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda inputs: session.run(None, dict(zip(names, inputs)))

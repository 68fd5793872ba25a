"""The ONNX backend node tests (onnx.backend.test.case.node, generated in memory by onnx) run
through optc.runtime as an onnx Backend, with onnx's own runner and its own comparison
(onnx.backend.test.runner.Runner.assert_similar_outputs).

Selected: every node test of an op optc.runtime implements (the op a test was written for is
its single node, or for an ``_expanded`` test the op whose function body it runs). Skipped,
each with its reason (unittest.SkipTest, never a silent pass): training-mode tests, tests
whose tensors have a dtype outside float32/float64/int8/uint8/int16/uint16/int32/int64/bool,
and tests whose graph also needs an op optc.runtime does not implement. The count is printed
at the end of the test session (tests/conftest.py).
"""

import re
import unittest
import warnings

import onnx
import onnx.backend.test
from onnx import TensorProto

from optc.runtime import supported_ops
from optc.runtime.backend import OptcBackend

TESTED_DTYPES = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT8, TensorProto.UINT8,
                 TensorProto.INT16, TensorProto.UINT16, TensorProto.INT32, TensorProto.INT64,
                 TensorProto.BOOL}
OPS = {op for (domain, op) in supported_ops() if domain == ""}


def _graph_ops(graph: onnx.GraphProto) -> set[str]:
    ops = set()
    for n in graph.node:
        ops.add(n.op_type)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                ops |= _graph_ops(a.g)
    return ops


def _dtypes(graph: onnx.GraphProto) -> set[int]:
    types = set()
    for vi in list(graph.input) + list(graph.output):
        if vi.type.HasField("tensor_type"):
            types.add(vi.type.tensor_type.elem_type)
        else:
            types.add(-1)  # sequences, optionals, maps: not tensors
    types.update(t.data_type for t in graph.initializer)
    for n in graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                types.add(a.t.data_type)
    return types


def skip_reason(model: onnx.ModelProto) -> str | None:
    unsupported = sorted(_graph_ops(model.graph) - OPS)
    if unsupported:
        return f"uses {', '.join(unsupported)}, which optc.runtime does not implement"
    odd = sorted(_dtypes(model.graph) - TESTED_DTYPES)
    if odd:
        names = [TensorProto.DataType.Name(t) if t >= 0 else "non-tensor" for t in odd]
        return f"dtype {', '.join(names)} is outside the tested set"
    return None


def _selected() -> list[str]:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    single = {c.name: c.model.graph.node[0].op_type for c in cases if len(c.model.graph.node) == 1}

    def tested_op(name: str) -> str | None:
        if name in single:
            return single[name]
        base = re.sub(r"_expanded.*$", "", name)
        return single.get(base)

    return sorted(c.name for c in cases if tested_op(c.name) in OPS)


class ConformanceBackend(OptcBackend):
    """optc's backend, plus the skip rules of this test module."""

    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        reason = skip_reason(model)
        if reason is not None:
            raise unittest.SkipTest(reason)
        return super().prepare(model, device, **kwargs)


SELECTED = set(_selected())
_backend_test = onnx.backend.test.BackendTest(ConformanceBackend, __name__)
_backend_test.include("^(" + "|".join(re.escape(n) for n in sorted(SELECTED)) + ")_cpu$")
for pattern in (r"training", r"_train_"):
    _backend_test.exclude(pattern)  # training-mode tests are out of scope (inference runtime)
# only the node tests, and only the selected ones (the runner would list every other test of
# every kind as skipped, which says nothing about optc)
OnnxBackendNodeModelTest = _backend_test.test_cases["OnnxBackendNodeModelTest"]
for _name in [n for n in vars(OnnxBackendNodeModelTest) if n.startswith("test_")]:
    if _name.removesuffix("_cpu") not in SELECTED:
        delattr(OnnxBackendNodeModelTest, _name)

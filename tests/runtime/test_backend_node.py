"""Every ONNX backend node test onnx ships (onnx.backend.test.case.node, generated in memory,
``_expanded`` variants included) on optc.runtime, compared with onnx's own comparison and each
case's own rtol/atol (runtime/conformance.py).

A case passes only by matching onnx's expected outputs, except the kinds below; each is still
a test that can fail:

- training-mode cases: skipped (an inference runtime does not run them);
- ops of the ai.onnx.preview domains (FlexAttention, the training optimizers): the test
  asserts the "no kernel" OptcError;
- Bernoulli (and its _expanded body, RandomUniformLike) draws random numbers, so neither runtime
  can reproduce onnx's expected values: the test checks shape, dtype and that every value is 0
  or 1.

A case outside these kinds that starts failing fails the suite; a refused case that starts
running fails too (so the list shrinks as kernels land). The tally is printed at the end of the
test session (tests/conftest.py); ``python benchmarks/node_tests.py`` prints it side by side
with onnxruntime's.
"""

import warnings

import numpy as np
import onnx
import pytest

from optc.errors import OptcError
from optc.runtime import conformance as C

CASES = C.cases(expanded=True)
#: ops whose output is random: their cases cannot match onnx's expected values
RANDOM_OPS = {"Bernoulli", "RandomUniform", "RandomUniformLike", "RandomNormal",
              "RandomNormalLike", "Multinomial"}


def _graphs(graph: onnx.GraphProto):
    yield graph
    for n in graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _graphs(g)


def kind(case) -> tuple[str, str]:
    """(kind, reason) of a case: "training", "preview", "random" or "exact"."""
    if C.is_training(case.name):
        return "training", "training mode: optc.runtime is an inference runtime"
    nodes = [n for g in _graphs(case.model.graph) for n in g.node]
    preview = sorted({f"{n.domain}.{n.op_type}" for n in nodes
                      if n.domain.startswith("ai.onnx.preview")})
    if preview:
        return "preview", f"{', '.join(preview)}: preview-domain op, no kernel"
    random = sorted({n.op_type for n in nodes} & RANDOM_OPS)
    if random:
        if not case.name.startswith("test_bernoulli"):
            raise AssertionError(f"{case.name}: a random case this module has no check for")
        return "random", f"{', '.join(random)} draws random numbers: Bernoulli's output is " \
            "checked for shape, dtype and 0/1 values"
    return "exact", ""


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_node(case, record_property):
    what, reason = kind(case)
    record_property("node_test", what)
    if what == "training":
        pytest.skip(reason)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if what == "preview":
            with pytest.raises(OptcError, match=r"no kernel for op ai\.onnx\.preview"):
                C.check(case, C.optc_runner)
        elif what == "random":
            run = C.optc_runner(case.model)
            for inputs, ref in case.data_sets:
                outputs = run([C._normalize(x) for x in inputs])
                for got, want in zip(outputs, ref):
                    assert got.shape == want.shape and got.dtype == want.dtype
                    assert set(np.unique(got).tolist()) <= {0, 1}
        else:
            C.check(case, C.optc_runner)


def test_optc_passes_every_case_onnxruntime_passes():
    """The acceptance count: on the node tests (no ``_expanded`` variants), every case
    onnxruntime (graph optimizations off, 1 thread) passes, optc.runtime passes too."""
    ort_passed, optc_passed = set(), set()
    for case in C.cases():
        if C.is_training(case.name):
            continue
        if C.outcome(case, C.ort_runner).status == "passed":
            ort_passed.add(case.name)
        if C.outcome(case, C.optc_runner).status == "passed":
            optc_passed.add(case.name)
    assert sorted(ort_passed - optc_passed) == []
    assert len(optc_passed) >= len(ort_passed)

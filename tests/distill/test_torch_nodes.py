"""The ONNX backend node tests run through the torch executor (optc.distill.TorchGraph).

Selected: each node test whose op has a torch function in ``optc.distill.ops``, with every
graph input fed as a torch tensor (so the torch op runs, not optc.runtime's NumPy kernel).
Compared with onnx's runner comparison and each case's own tolerances. Skipped, each with its
reason: tensors of a dtype outside float32/float64/int8/uint8/int32/int64/bool, and what the
executor refuses with a clear error (training mode, MaxPool's Indices output, blocked
quantization). QuantizeLinear's integers are held in float tensors (see optc.distill.ops):
checked to be whole numbers, then compared as the expected integer type.
"""

import unittest
import warnings

import numpy as np
import pytest
import onnx
from onnx import TensorProto, helper, numpy_helper

import torch

from optc.distill import TorchGraph
from optc.distill.ops import OPS
from optc.errors import OptcError

DTYPES = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT32, TensorProto.INT64,
          TensorProto.INT8, TensorProto.UINT8,
          TensorProto.BOOL}
REFUSED = ("training mode", "Indices output", "blocked quantization")
QUANTIZERS = ("QuantizeLinear", "DynamicQuantizeLinear")


def _graph_ops(graph: onnx.GraphProto) -> set[str]:
    ops = set()
    for n in graph.node:
        ops.add(n.op_type)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                ops |= _graph_ops(a.g)
    return ops


def _dtypes(graph: onnx.GraphProto) -> set[int]:
    """Element types of the graph's inputs, outputs, initializers and tensor attributes (-1
    for a sequence, optional or map)."""
    types = set()
    for vi in list(graph.input) + list(graph.output):
        if vi.type.HasField("tensor_type"):
            types.add(vi.type.tensor_type.elem_type)
        else:
            types.add(-1)
    types.update(t.data_type for t in graph.initializer)
    for n in graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                types.add(a.t.data_type)
    return types


def _cases():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    return sorted((c for c in cases if len(c.model.graph.node) == 1 and
                   c.model.graph.node[0].op_type in OPS and
                   c.model.graph.node[0].domain in ("", "ai.onnx")),
                  key=lambda c: c.name)


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_node(case):
    from onnx.backend.test.runner import Runner

    model = case.model
    odd = sorted(_dtypes(model.graph) - DTYPES)
    if odd:
        raise unittest.SkipTest("dtype " + ", ".join(
            TensorProto.DataType.Name(t) if t >= 0 else "non-tensor" for t in odd) +
            " is outside the tested set")
    assert _graph_ops(model.graph) <= set(OPS)
    for inputs, expected in case.data_sets:
        inputs = [numpy_helper.to_array(a) if isinstance(a, TensorProto) else a
                  for a in inputs]
        feeds = {i.name: torch.from_numpy(np.array(a, dtype=helper.tensor_dtype_to_np_dtype(
            i.type.tensor_type.elem_type))) for i, a in zip(model.graph.input, inputs)
            if a is not None}
        try:
            tg = TorchGraph(model, trainable="none")
            out = tg(feeds)
        except OptcError as e:
            if any(r in str(e) for r in REFUSED):
                raise unittest.SkipTest(f"refused: {e}") from e
            raise
        got = [out[o.name].detach().numpy() for o in model.graph.output]
        expected = [numpy_helper.to_array(a) if isinstance(a, TensorProto) else a
                    for a in expected]
        if model.graph.node[0].op_type in QUANTIZERS:
            # the executor holds quantized values in float tensors (to let gradients through)
            ints = [e.dtype.kind in "iu" for e in expected]
            assert all(np.array_equal(g, np.round(g)) for g, i in zip(got, ints) if i)
            got = [g.astype(e.dtype) if i else g for g, e, i in zip(got, expected, ints)]
        Runner.assert_similar_outputs(expected, got, rtol=case.rtol, atol=case.atol,
                                      model_dir=None)

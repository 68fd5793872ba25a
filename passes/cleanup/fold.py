"""fold-constants: evaluate nodes whose inputs are all constant and store the results as
initializers.

When it fires: a standard-domain node with no subgraph, not random, whose every input is a
constant initializer (one that is not also a graph input; see freeze-initializers), and whose
outputs are not graph outputs. Also Shape and Size of a value whose shape is fully static
(shapes come from onnx shape inference), so shape arithmetic on static models folds away.
ConstantOfShape-built weights (the onnx ``light`` models) fold to initializers this way.

The math: the node is evaluated with onnx's reference implementation (the spec's semantics),
or with onnxruntime (optimizations off) for the (op, opset) pairs the reference lacks, so
folding is exact. Not folded: DequantizeLinear of constant weights unless ``fold-dq=true``
(QDQ models keep weights in int8 on purpose); results larger than ``size-limit-mb`` that are
bigger than the node's inputs (e.g. a huge Expand/Tile of a scalar: folding it would only bloat
the file); nodes whose evaluation raises (they are left as they are and counted in the stats).
Constants that only fed folded nodes are removed by the pass itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import onnx
import onnx.reference
from onnx import helper

from optc.ir import Model, Node, Value, infer_shapes, serde
from optc.pass_base import Pass, PassContext, PassResult, register
from optc.passes._common import (NONDETERMINISTIC, drop_unused_constants, is_standard,
                                 replace_with_constants)

_SHAPE_OPS = {"Shape", "Size"}


@register
@dataclass(frozen=True)
class FoldConstants(Pass):
    """Evaluate nodes whose inputs are all constant into initializers."""

    name: ClassVar[str] = "fold-constants"
    size_limit_mb: float = field(default=1024.0, metadata={
        "help": "do not fold a node whose results exceed this size and its inputs' size"})
    fold_dq: bool = field(default=False, metadata={
        "help": "also fold DequantizeLinear of constant (quantized) weights"})
    fold_shapes: bool = field(default=True, metadata={
        "help": "fold Shape/Size of values whose shape is fully static"})

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        g = model.graph
        if self.fold_shapes and any(n.op_type in _SHAPE_OPS for n in g.nodes):
            infer_shapes(model)
        folded = failed = skipped_large = 0
        limit = self.size_limit_mb * 2**20
        touched: set[Value] = set()  # constants read by folded nodes and the ones they became
        for node in g.nodes:
            if not self._foldable(model, node):
                continue
            try:
                results = self._evaluate(model, node)
            except Exception:  # the node would fail at run time too: leave it to the runtime
                failed += 1
                continue
            out_bytes = sum(np.asarray(r).nbytes for r in results)
            in_bytes = sum(v.nbytes for v in node.inputs if v is not None)
            if out_bytes > limit and out_bytes > in_bytes:
                skipped_large += 1
                continue
            touched.update(v for v in node.inputs if v is not None)
            outputs = [v.name for v in node.outputs]
            replace_with_constants(g, node, results)
            touched.update(g.initializers[name] for name in outputs)
            folded += 1
        drop_unused_constants(g, touched)  # finish the job: no dead constants left behind
        stats = {"folded": folded}
        if failed:
            stats["evaluation_failed"] = failed
        if skipped_large:
            stats["skipped_large"] = skipped_large
        return PassResult(model, folded > 0, stats)

    def _foldable(self, model: Model, node: Node) -> bool:
        g = model.graph
        if not is_standard(node) or node.subgraphs or node.op_type in NONDETERMINISTIC:
            return False
        if node.op_type == "DequantizeLinear" and not self.fold_dq:
            return False
        if any(v is None or g.is_output(v) for v in node.outputs):
            return False
        if self.fold_shapes and node.op_type in _SHAPE_OPS and node.inputs[0] is not None:
            if node.inputs[0].static_shape() is not None:
                return True
        inputs = [v for v in node.inputs if v is not None]
        return bool(inputs) and all(g.is_constant(v) for v in inputs)

    def _evaluate(self, model: Model, node: Node) -> list[np.ndarray]:
        x = node.inputs[0]
        if node.op_type == "Shape" and x is not None and not model.graph.is_constant(x):
            shape = np.array(x.static_shape(), dtype=np.int64)
            start = node.attr("start", 0)
            end = node.attr("end", None)
            return [shape[start:end]]
        if node.op_type == "Size" and x is not None and not model.graph.is_constant(x):
            return [np.array(int(np.prod(x.static_shape())), dtype=np.int64)]
        names = [f"in{i}" if v is not None else "" for i, v in enumerate(node.inputs)]
        outs = [f"out{i}" for i in range(len(node.outputs))]
        proto = serde.node_to_proto(node)
        del proto.input[:]
        proto.input.extend(names)
        del proto.output[:]
        proto.output.extend(outs)
        feeds = {n: v.const_value for n, v in zip(names, node.inputs) if v is not None}
        graph = helper.make_graph(
            [proto], "fold",
            [helper.make_tensor_value_info(n, v.dtype, v.const_value.shape)
             for n, v in zip(names, node.inputs) if v is not None],
            [onnx.ValueInfoProto(name=n) for n in outs])
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in
                                                    model.opset_imports.items()])
        m.ir_version = max(model.ir_version, 4)
        try:
            results = onnx.reference.ReferenceEvaluator(m).run(None, feeds)
        except Exception:
            # onnx's reference lacks some (op, opset) pairs, e.g. DequantizeLinear-13:
            # onnxruntime implements them
            from optc.validate import ort_session

            session = ort_session(m.SerializeToString())
            results = session.run(None, feeds)
        return [np.asarray(r) for r in results]

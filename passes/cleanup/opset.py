"""convert-opset{to=17}: raise the model's ai.onnx opset, keeping what it computes.

When it fires: the model imports an ai.onnx opset below ``to``. Exporters still write 11 and
12 (paddle2onnx, older torch and tf2onnx), the onnx model zoo 7-9, while quantize needs 13
(per-channel DequantizeLinear): run_pipeline inserts this pass in front of any pass whose
``min_opset`` the model is below, and the pipeline text and report show it.

The math: none. onnx's version converter rewrites each node by the adapters between schema
versions (Clip's min/max attributes to inputs, Squeeze/Unsqueeze/Split/Reduce* axes to inputs,
Upsample to Resize, Softmax's 2-D coercion made explicit, ...).

Where the converter is wrong, and what this pass does about it:
- It does not touch the bodies of If / Loop / Scan: a node there keeps its old form under the
  new opset (an Unsqueeze with an ``axes`` attribute under opset 13). This pass converts each
  body itself, innermost first, as a model of its own whose inputs are the body's inputs and
  the outer values it reads (typed from shape inference of the whole model); the constants
  the adapters add become initializers of the body.
- It keeps the old IR version, which may be older than the new opset needs (onnxruntime
  rejects opset 13 under IR 3): the IR version is raised to the first that allows the opsets.
- It cannot lower an opset: ``to`` below the model's opset is an error.
The converted model is checked with onnx.checker and onnx's shape inference before it replaces
the old one; a failure is a clear error naming the converter, never a half-converted model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import onnx
from onnx import helper

from optc.errors import OptcError
from optc.ir import Model
from optc.pass_base import Pass, PassContext, PassResult, register

#: the newest opset onnx's converter and onnxruntime both handle well
DEFAULT_OPSET = 17


def _convert_bodies(graph: onnx.GraphProto, types: dict[str, onnx.TypeProto], old: int,
                    to: int, domains: list[onnx.OperatorSetIdProto], taken: set[str]) -> None:
    """Convert the body of every If / Loop / Scan in ``graph`` (recursively) in place;
    ``taken``: the names of the values made so far (the new ones get names not in it)."""
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        types.setdefault(vi.name, vi.type)
    for node in graph.node:
        for attr in node.attribute:
            bodies = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for body in bodies:
                _convert_bodies(body, dict(types), old, to, domains, taken)
                _convert_body(body, types, old, to, domains, node, taken)


def _names(graph: onnx.GraphProto) -> set[str]:
    """Every value name in ``graph`` and its subgraphs."""
    names = {v.name for v in list(graph.input) + list(graph.output)}
    names |= {i.name for i in graph.initializer}
    for n in graph.node:
        names |= set(n.input) | set(n.output)
        for a in n.attribute:
            for body in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                names |= _names(body)
    return names


def _convert_body(body: onnx.GraphProto, types: dict[str, onnx.TypeProto], old: int, to: int,
                  domains: list[onnx.OperatorSetIdProto], owner: onnx.NodeProto,
                  taken: set[str]) -> None:
    local = {v.name for v in body.input} | {i.name for i in body.initializer}
    local |= {o for n in body.node for o in n.output}
    outer = []  # values the body reads from enclosing scopes
    for n in body.node:
        for name in n.input:
            if name and name not in local and name not in outer:
                outer.append(name)
    inputs = list(body.input)
    for name in outer:
        if name not in types:
            raise OptcError(f"the body of '{owner.name}' ({owner.op_type}) reads '{name}' from "
                            f"an outer scope, whose type is unknown: cannot convert it")
        inputs.append(helper.make_value_info(name, types[name]))
    standalone = helper.make_model(
        helper.make_graph(list(body.node), "body", inputs, list(body.output),
                          list(body.initializer), value_info=list(body.value_info)),
        opset_imports=[helper.make_opsetid(o.domain, old if o.domain in ("", "ai.onnx")
                                           else o.version) for o in domains])
    try:
        converted = onnx.version_converter.convert_version(standalone, to).graph
    except Exception as e:  # noqa: BLE001 -- the converter raises several kinds
        raise OptcError(f"onnx's version converter failed on the body of '{owner.name}' "
                        f"({owner.op_type}), opset {old} -> {to}: "
                        f"{' '.join(str(e).split())[:300]}") from None
    # the converter names what it adds (_v_0, ...) afresh in each model: give those values
    # names no other value of the body or its scopes has
    known = local | set(outer) | set(types)
    rename = {}
    for name in [i.name for i in converted.initializer] + [o for n in converted.node
                                                          for o in n.output]:
        if name and name not in known and name not in rename:
            fresh, k = f"{body.name}_{name}", 0
            while fresh in known or fresh in taken:
                k += 1
                fresh = f"{body.name}_{name}_{k}"
            rename[name] = fresh
            taken.add(fresh)
    for n in converted.node:
        n.input[:] = [rename.get(x, x) for x in n.input]
        n.output[:] = [rename.get(x, x) for x in n.output]
    for init in converted.initializer:
        init.name = rename.get(init.name, init.name)
    del body.node[:]
    body.node.extend(converted.node)
    del body.initializer[:]
    body.initializer.extend(converted.initializer)


@register
@dataclass(frozen=True)
class ConvertOpset(Pass):
    """Raise the ai.onnx opset (onnx's version converter, checked; subgraphs verified)."""

    name: ClassVar[str] = "convert-opset"
    to: int = field(default=DEFAULT_OPSET, metadata={"help": "the ai.onnx opset to convert to"})

    def requires(self, model: Model, ctx: PassContext) -> None:
        newest = onnx.defs.onnx_opset_version()
        if not 7 <= self.to <= newest:
            raise OptcError(f"to={self.to} is outside 7..{newest}")
        if self.to < model.opset:
            raise OptcError(f"the model is opset {model.opset}, newer than "
                            f"to={self.to}; optc only raises opsets")
        if model.opset < 7 and self.to > model.opset:
            raise OptcError(f"the model is opset {model.opset}; conversion "
                            f"starts at opset 7")

    def run(self, model: Model, ctx: PassContext) -> PassResult:
        from optc.ir import load, serialize

        old = model.opset
        if old >= self.to:
            return PassResult(model, False, {"from": old, "to": old})
        proto = onnx.load_from_string(serialize(model))
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for n in proto.graph.node for a in n.attribute):
            inferred = onnx.shape_inference.infer_shapes(proto)
            _convert_bodies(proto.graph, {vi.name: vi.type for vi in
                                          inferred.graph.value_info}, old, self.to,
                            list(proto.opset_import), _names(proto.graph))
        # the converter and the checks copy every tensor through onnx's C++ IR (half a minute
        # for VGG-19's 550 MB) but never read weight data: large initializers go through them
        # as external-data stubs and get their bytes back at the end
        held = {}
        for init in proto.graph.initializer:
            if len(init.raw_data) > 4096:
                held[init.name] = init.raw_data
                init.raw_data = b""
                init.data_location = onnx.TensorProto.EXTERNAL
                del init.external_data[:]
                init.external_data.add(key="location", value="optc-held-in-memory")
        try:
            converted = onnx.version_converter.convert_version(proto, self.to)
        except Exception as e:  # noqa: BLE001 -- the converter raises several kinds
            raise OptcError(f"onnx's version converter failed from opset {old} "
                            f"to {self.to}: {' '.join(str(e).split())[:300]}") from None
        converted.ir_version = max(converted.ir_version, helper.find_min_ir_version_for(
            list(converted.opset_import), True))
        try:  # every node against its schema (check_model would want the stubs' files)
            ctx_ = onnx.checker.C.CheckerContext()
            ctx_.ir_version = converted.ir_version
            ctx_.opset_imports = {o.domain: o.version for o in converted.opset_import}
            lex = onnx.checker.C.LexicalScopeContext()
            for node in converted.graph.node:
                if not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                           for a in node.attribute):  # bodies: strict shape inference below
                    onnx.checker.C.check_node(node.SerializeToString(), ctx_, lex)
            onnx.shape_inference.infer_shapes(converted, check_type=True, strict_mode=True)
        except Exception as e:  # noqa: BLE001
            raise OptcError(f"onnx's version converter wrote an invalid model "
                            f"(opset {old} -> {self.to}): "
                            f"{' '.join(str(e).split())[:300]}") from None
        for init in converted.graph.initializer:
            if init.name in held:
                init.raw_data = held.pop(init.name)
                init.data_location = onnx.TensorProto.DEFAULT
                del init.external_data[:]
        if held:
            raise OptcError(f"onnx's version converter dropped initializer(s) "
                            f"{', '.join(sorted(held))}")
        new = load(converted)
        model.__dict__.update(new.__dict__)  # the caller's Model object is the one edited
        return PassResult(model, True, {"from": old, "to": self.to})

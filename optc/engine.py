"""Where optc runs a model for its own analyses: calibration, pruning's sample run, the checks
quantize makes on its output.

Two engines, chosen by ``PassContext.engine`` (``--engine``):

* ``optc``: optc.runtime. Every value is handed to the observer as soon as it exists and then
  released, so calibration memory is one batch's live activations, whatever the model's size.
* ``ort``: onnxruntime (graph optimizations off: the values observed are the model's own, not
  those of onnxruntime's fusions). The values asked for are added to a copy of the model as
  outputs (element type only: no shape that could disagree with another input size), so one
  run returns all of them at once.
* ``auto`` (the default): optc.runtime where it runs the model, else onnxruntime -- a model
  with an op optc.runtime has no kernel for (If, LSTM, LayerNormalization, ...) is still
  calibrated and pruned, as long as onnxruntime runs it. A model optc.runtime refuses at run
  time (a kernel's unsupported case) moves to onnxruntime for the rest of the work.

``Runner.engine`` says which one ran (for the pass's stats and the report).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import numpy as np
import onnx

from optc.errors import OptcError
from optc.ir import Model, serialize

ENGINES = ("auto", "optc", "ort")

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                onnx.TensorProto.BFLOAT16}


class Runner:
    """Runs ``model`` on feeds and shows chosen values to an observer.

    ``observe``: the names of the values ``run``'s ``on_value`` sees (graph inputs included);
    None: every float value of the main graph (values inside If/Loop bodies are not seen).
    """

    def __init__(self, model: Model, engine: str = "auto",
                 observe: Collection[str] | None = None, threads: int | None = None):
        if engine not in ENGINES:
            raise OptcError(f"unknown engine '{engine}' (one of {', '.join(ENGINES)})")
        self.model = model
        self.observe = None if observe is None else set(observe)
        self.threads = threads
        self.why = ""  # why onnxruntime runs it, when auto chose it
        self._auto = engine == "auto"
        self._optc = self._ort = None
        self.engine = "ort" if engine == "ort" else "optc"
        if self.engine == "optc":
            from optc.runtime import InferenceSession

            try:
                self._optc = InferenceSession(model, threads=threads, optimization="off")
            except OptcError as e:
                if engine == "optc":
                    raise
                self._fall_back(e)
        if self.engine == "ort":
            self._start_ort()

    @property
    def input_names(self) -> list[str]:
        g = self.model.graph
        return [v.name for v in g.inputs if not g.is_initializer(v)]

    def run(self, feeds: dict[str, np.ndarray],
            on_value: Callable[[str, np.ndarray], None] | None = None) -> list[np.ndarray]:
        """The model's outputs on ``feeds``; ``on_value(name, array)`` sees each observed
        value (and each observed graph input) of the run. Keys that are not model inputs
        (``labels``) are left out."""
        wanted = set(self.input_names)
        feeds = {k: v for k, v in feeds.items() if k in wanted}
        if self._optc is not None:
            seen = on_value
            if on_value is not None and self.observe is not None:
                def seen(name, value):  # noqa: E306
                    if name in self.observe:
                        on_value(name, value)
            self._optc._check_feeds(feeds)  # bad feeds are the caller's error, not a fallback
            try:
                return self._optc.run(None, feeds, on_value=seen)
            except OptcError as e:
                if not self._auto:
                    raise
                self._fall_back(e)
                self._start_ort()
        return self._run_ort(feeds, on_value)

    # --- onnxruntime ------------------------------------------------------------------------
    def _fall_back(self, error: OptcError) -> None:
        self.engine, self._optc = "ort", None
        self.why = f"optc.runtime cannot run it: {str(error).splitlines()[0]}"

    def _start_ort(self) -> None:
        from optc.validate import ort_session

        proto = onnx.load_from_string(serialize(self.model))
        g = proto.graph
        types = _elem_types(self.model)
        outputs = {o.name for o in g.output}
        inputs = {i.name for i in g.input}
        self._extra = []
        for node in g.node:
            for name in node.output:
                if not name or name in outputs or name in inputs:
                    continue
                et = types.get(name)  # None: onnx cannot infer it (an op of another domain)
                wanted = ((et is None or et in _FLOAT_TYPES) if self.observe is None
                          else name in self.observe)
                if wanted:
                    # element type only, or nothing: onnxruntime infers what is missing
                    g.output.append(onnx.helper.make_tensor_value_info(name, et, None)
                                    if et else onnx.ValueInfoProto(name=name))
                    self._extra.append(name)
                    outputs.add(name)
        self._n_outputs = len(g.output) - len(self._extra)
        self._ort = ort_session(proto.SerializeToString(), threads=self.threads)
        self._names = [o.name for o in self._ort.get_outputs()]

    def _run_ort(self, feeds, on_value):
        try:
            outs = self._ort.run(None, feeds)
        except Exception as e:  # onnxruntime raises its own exception types
            raise OptcError(f"onnxruntime failed to run the model: "
                            f"{str(e).strip().splitlines()[0][:300]}") from e
        if on_value is not None:
            for name, arr in feeds.items():
                if self.observe is None or name in self.observe:
                    on_value(name, np.asarray(arr))
            for name, arr in zip(self._names, outs):
                if name in self.observe if self.observe is not None else \
                        np.asarray(arr).dtype.kind == "f":
                    on_value(name, arr)
        return outs[:self._n_outputs]


def _elem_types(model: Model) -> dict[str, int]:
    """Element type of every main-graph value, from onnx's type inference on the model's
    skeleton (the weights are not needed to know the types)."""
    from optc.ir.serde import to_proto

    proto = to_proto(model, skeleton=True)
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False)
    except (onnx.shape_inference.InferenceError, ValueError, RuntimeError):
        pass
    g = proto.graph
    out = {v.name: v.dtype for v in model.graph.values().values() if v.dtype}
    for vi in list(g.value_info) + list(g.output) + list(g.input):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            out.setdefault(vi.name, vi.type.tensor_type.elem_type)
    return out

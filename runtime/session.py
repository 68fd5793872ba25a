"""InferenceSession: plan once, run many times; onnxruntime-shaped API.

The plan (built in ``__init__``):
  * the graph's nodes in topological order (the IR keeps them so);
  * every value gets a slot in a flat list; initializers are bound to their slots once;
  * per node, the kernel chosen by (domain, op type, schema version at the model's opset) and
    its attributes resolved to Python values (defaults are the kernel's keyword defaults);
  * liveness: for each step, the slots whose last reader it is, released right after it runs.

``run`` tracks the bytes of the activations alive at each step (graph inputs included,
initializers not) and stores the maximum in ``peak_bytes``; ``total_activation_bytes`` is what
the run would hold if nothing were released. Bytes are logical (``ndarray.nbytes``): a view
(e.g. a Reshape) counts as if it were a copy, so the figure is an upper bound of what NumPy
really holds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from optc.errors import OptcError, at_node
from optc.ir import Graph, Model, load
from optc.runtime import plan
from optc.runtime.config import PRECISIONS, RuntimeConfig
from optc.runtime.kernels import native
from optc.runtime.kernels.native import bf16_available
from optc.runtime.registry import Kernel, lookup

_TYPE_NAMES = {
    onnx.TensorProto.FLOAT: "tensor(float)", onnx.TensorProto.DOUBLE: "tensor(double)",
    onnx.TensorProto.FLOAT16: "tensor(float16)", onnx.TensorProto.INT8: "tensor(int8)",
    onnx.TensorProto.UINT8: "tensor(uint8)", onnx.TensorProto.INT16: "tensor(int16)",
    onnx.TensorProto.UINT16: "tensor(uint16)", onnx.TensorProto.INT32: "tensor(int32)",
    onnx.TensorProto.UINT32: "tensor(uint32)", onnx.TensorProto.INT64: "tensor(int64)",
    onnx.TensorProto.UINT64: "tensor(uint64)", onnx.TensorProto.BOOL: "tensor(bool)",
    onnx.TensorProto.STRING: "tensor(string)",
}


@dataclass(frozen=True)
class NodeArg:
    """Like onnxruntime's NodeArg: name, shape (ints, str for symbolic dims, None unknown),
    type (e.g. 'tensor(float)')."""

    name: str
    shape: list | None
    type: str


@dataclass
class _Step:
    node_label: str
    kernel: Kernel
    inputs: list[int]  # slot per input, -1 for an omitted optional input
    outputs: list[int]  # slot per output, -1 for an omitted optional output
    attrs: dict[str, Any]
    release: list[int]  # slots whose last reader is this step
    op_type: str = ""
    # the kernel's fast path for the last inputs (registry: ``fast``), None before the first
    # run, False where the kernel has none for them
    fast: Callable | None | bool = None


#: standard ops that must run on every call even with constant inputs (they draw random numbers)
_NOT_FOLDED = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
               "Multinomial", "Bernoulli", "Dropout"}


#: the session's graph optimization levels (as onnxruntime's graph_optimization_level): the
#: optc pipeline each runs over the session's own copy of the model before planning
OPTIMIZATION_LEVELS = {
    "off": None,
    # lossless cleanup and fusions (constant folding, Conv+BN, ...): ORT's "basic"
    "basic": "default",
    # + optc's fused Conv/Gemm + activation ops and Winograd where its cost model picks it
    "all": "default,fuse-act{target=optc},winograd",
}
#: "all" with ``tune=True``: the Winograd choice and the depthwise conv's C path per layer
#: timed on this CPU (optc.runtime.tune)
TUNED_ALL = "default,fuse-act{target=optc},winograd{tile=tune},tune-depthwise"
#: "all" at precision "bf16": no Winograd (its transforms would stay float32 and slower than
#: the bf16 products, which take every 2-D conv)
BF16_ALL = "default,fuse-act{target=optc}"
BF16_TUNED_ALL = "default,fuse-act{target=optc},tune-depthwise"


class InferenceSession:
    """Executes an ONNX model with optc's kernels.

    ``model``: a path, serialized bytes, an onnx.ModelProto, or an optc Model/Graph.
    ``optimization``: "off", "basic" or "all" (the default, as onnxruntime's default is its
    highest level): the pipeline of OPTIMIZATION_LEVELS is run in memory on a copy of the
    model (the caller's model is not changed). Sessions optc makes for its own analyses
    (calibration, the pass engine, control-flow bodies, conformance checks) use "off".
    ``tune``: with "all", time each 3x3 layer's candidates (direct, Winograd F(2x2), F(4x4))
    and each depthwise conv's two C paths on this CPU instead of trusting the fixed rules
    fitted on one machine, and keep the choices in the per-CPU tuning
    file (optc.runtime.tune), so a layer shape is timed once per machine (a fraction of a
    second each; ResNet-50's four shapes: about 1 s). Off by default: the choice then depends
    on the machine (within the Winograd error), and tests want one answer.
    ``threads``: BLAS threads used during ``run`` (None: leave NumPy's default), and the
    threads the C kernels share their work among (None: one per CPU).
    ``native``: run the C kernels where they apply (False: NumPy only).
    ``plans``: after the first run, run each stretch of steps that the C kernels take whole
    (convs, depthwise convs, GlobalAveragePool, per-channel Mul and Add) in one C call with
    buffers the session keeps (optc.runtime.plan); False runs every step through Python (the
    benchmarks time each kernel so). The same results either way.
    ``precision``: "fp32" (the default), or "bf16" (opt-in, on CPUs with AMX-BF16: Intel
    Sapphire Rapids and later): the 2-D convs with constant weights, depthwise ones aside,
    and the MatMul/Gemm nodes with a constant 2-D weight round their inputs and weights to
    bfloat16 and sum the products in float32; the rest of the model stays float32. Expect about 1e-2 relative error (``optc bench --precision bf16``
    reports it); an OptcError where the CPU has no AMX-BF16.
    All three are the session's own (``config``, a RuntimeConfig): sessions with different
    settings may run at the same time in different threads. The BLAS thread limit, where
    ``threads`` is given, is set through threadpoolctl for the duration of each run, and that
    limit is process-wide: concurrent sessions should give the same ``threads``.
    """

    def __init__(self, model: str | os.PathLike | bytes | onnx.ModelProto | Model | Graph,
                 threads: int | None = None, *, native: bool = True,
                 optimization: str = "all", tune: bool = False, precision: str = "fp32",
                 plans: bool = True, _captured: Sequence = ()):
        if isinstance(model, Graph):
            model = Model(model)
        if optimization not in OPTIMIZATION_LEVELS:
            raise OptcError(f"unknown optimization level '{optimization}' (one of "
                            f"{', '.join(OPTIMIZATION_LEVELS)})")
        if precision not in PRECISIONS:
            raise OptcError(f"unknown precision '{precision}' (one of {', '.join(PRECISIONS)})")
        if precision == "bf16" and not (native and bf16_available()):
            raise OptcError("precision 'bf16' needs the C kernels on a CPU with AMX-BF16; "
                            + ("native=False runs NumPy only" if not native else
                               "this CPU has none (use precision 'fp32')"))
        self.optimization = optimization
        self._model = load(model)
        if optimization == "all":
            pipeline = {(False, "fp32"): OPTIMIZATION_LEVELS["all"], (True, "fp32"): TUNED_ALL,
                        (False, "bf16"): BF16_ALL, (True, "bf16"): BF16_TUNED_ALL}[
                bool(tune), precision]
        else:
            pipeline = OPTIMIZATION_LEVELS[optimization]
        if pipeline is not None:
            from optc.ir.serde import clone
            from optc.pipeline import run_pipeline

            if self._model is model:  # the caller's own Model: optimize a copy
                self._model = clone(self._model)
            run_pipeline(self._model, pipeline, engine="optc")
        # a control-flow body (runtime/control.py): the outer-scope values it reads are fed
        # like inputs
        self._captured = list(_captured)
        self.threads = threads
        self.config = RuntimeConfig(native=native, threads=threads or os.cpu_count() or 1,
                                    precision=precision)
        self.peak_bytes = 0
        self.total_activation_bytes = 0
        self.plans = plans and self.config.native  # (native: the C extension is built)
        self._program: list | None = None  # the steps with Segments, after a run (plans)
        self._plan()

    # --- plan -------------------------------------------------------------------------------
    def _plan(self) -> None:
        model, g = self._model, self._model.graph
        slots: dict[int, int] = {}

        def slot(v) -> int:
            if v is None:
                return -1
            key = id(v)
            if key not in slots:
                slots[key] = len(slots)
            return slots[key]

        self._constants: dict[int, np.ndarray] = {}
        for v in g.initializers.values():
            self._constants[slot(v)] = v.const_value
        overridable = {v.name for v in g.inputs if g.is_initializer(v)}
        self._inputs = [v for v in g.inputs if v.name not in overridable] + [
            v for v in self._captured if v not in set(g.inputs)]
        self._optional_inputs = [v for v in g.inputs if v.name in overridable]
        # what run() checks a feed against, read from the IR once: (dtype name, NumPy dtype
        # or None, shape or None) per input name
        self._feed_specs = {}
        for v in self._inputs + self._optional_inputs:
            if v.type is not None and v.type.WhichOneof("value") not in (None, "tensor_type"):
                # a sequence, optional or map: passed through as given (a list, None, ...)
                self._feed_specs[v.name] = (v.type.WhichOneof("value"), None, None)
                continue
            known_type = v.dtype is not None and v.dtype in _TYPE_NAMES
            self._feed_specs[v.name] = (
                _TYPE_NAMES[v.dtype] if known_type else None,
                helper.tensor_dtype_to_np_dtype(v.dtype) if known_type else None, v.shape)
        self._input_slots = {v.name: slot(v) for v in list(g.inputs) + self._captured}
        self._steps: list[_Step] = []
        for node in g.nodes:
            label = f"node '{node.name}' ({node.op_type})" if node.name else \
                f"a {node.op_type} node"
            opset = model.opset_imports.get(node.domain or "",
                                             model.opset_imports.get("ai.onnx", 1))
            if node.domain not in ("", "ai.onnx") and node.domain not in model.opset_imports:
                opset = 1
            inputs = list(node.inputs)
            if node.subgraphs:  # If / Loop: bodies as sessions, their captures as inputs
                from optc.runtime.control import captured, control_kernel, reference_kernel

                k = control_kernel(node, model, self.threads, self.config.native,
                                   self.config.precision) or \
                    reference_kernel(node, opset, label)
                inputs += captured(node)
                self._steps.append(_Step(label, k, [slot(v) for v in inputs],
                                         [slot(v) for v in node.outputs], {}, [],
                                         node.op_type))
                continue
            try:
                k = lookup(node.op_type, node.domain, opset)
            except OptcError as e:
                from optc.runtime.control import REFERENCE_DOMAINS, reference_kernel

                if (node.domain or "") not in REFERENCE_DOMAINS + ("ai.onnx",):
                    raise OptcError(f"{label}: {e}") from e

                self._steps.append(_Step(label, reference_kernel(node, opset, label),
                                         [slot(v) for v in inputs],
                                         [slot(v) for v in node.outputs], {}, [],
                                         node.op_type))
                continue
            attrs = {}
            for name in node.attributes:
                if name not in k.attributes:
                    raise OptcError(f"{label}: attribute '{name}' is not supported by "
                                    f"optc.runtime's {node.op_type} kernel")
                attrs[name] = node.attr(name)
            if k.wants_outputs:
                attrs["_outputs"] = len(node.outputs)
            if k.wants_config:
                attrs["_config"] = self.config
            if k.prepare is not None:
                # initializers a feed may override are not constants the state may keep
                constants = [v.const_value if v is not None and g.is_constant(v) and
                             v.name not in overridable else None for v in node.inputs]
                attrs["_state"] = k.prepare(self.config, constants,
                                            {a: attrs[a] for a in attrs if a in k.attributes})
            self._steps.append(_Step(label, k, [slot(v) for v in node.inputs],
                                     [slot(v) for v in node.outputs], attrs, [],
                                     node.op_type if node.domain in ("", "ai.onnx") else ""))
        self._output_slots = [slot(v) for v in g.outputs]
        names_by_id = {id(v): v.name for v in g.values().values()}
        self._slot_names = {s: names_by_id.get(key, "") for key, s in slots.items()}
        overridden = {self._input_slots[n] for n in overridable}
        self._fold_constant_steps(overridden)
        self._fixed = set(self._constants) - overridden  # constants no feed replaces
        self._output_names = [v.name for v in g.outputs]
        self._n_slots = len(slots)
        # liveness: release each activation after its last reader (never outputs/constants)
        keep = set(self._output_slots) | set(self._constants)
        last: dict[int, int] = {}
        for i, step in enumerate(self._steps):
            for s in step.inputs:
                if s >= 0:
                    last[s] = i
            for s in step.outputs:
                if s >= 0:
                    last.setdefault(s, i)  # produced but never read: release at once
        for s, i in last.items():
            if s not in keep:
                self._steps[i].release.append(s)

    def _fold_constant_steps(self, overridable: set[int]) -> None:
        """Run once, here, every step whose inputs are all constants (a DequantizeLinear of an
        int8 weight, the Mul of two scales): its outputs become constants too, as
        onnxruntime's constant folding does. Not folded: random ops, and initializers the
        caller may override (graph inputs). A step that fails here is left to fail at run
        time, where the error names the node. ``run``'s on_value still sees the folded values
        (after the inputs)."""
        self._folded: list[int] = []
        kept = []
        for step in self._steps:
            ins = [s for s in step.inputs if s >= 0]
            if not ins or step.op_type in _NOT_FOLDED or any(
                    s not in self._constants or s in overridable for s in ins):
                kept.append(step)
                continue
            try:
                result = step.kernel.fn(*[self._constants[s] if s >= 0 else None
                                          for s in step.inputs], **step.attrs)
            except Exception:  # noqa: BLE001 - reported with the node's name by run()
                kept.append(step)
                continue
            for s, value in zip(step.outputs, result if isinstance(result, tuple)
                                else (result,)):
                if s >= 0:
                    self._constants[s] = value
                    self._folded.append(s)
        self._steps = kept
        # a kernel's prepare step saw only the graph's constants: where folding made more of
        # a step's inputs constant (the DequantizeLinear of a float layer's int8 weight), it
        # prepares again with them, so that, e.g., a conv packs those weights once, not on
        # every run (DenseNet-121's int8 classifier conv: 0.85 ms a run repacking 4 MB)
        folded = set(self._folded)
        for step in kept:
            if step.kernel.prepare is None or not folded.intersection(step.inputs):
                continue
            constants = [self._constants.get(s) if s >= 0 and s not in overridable else None
                         for s in step.inputs]
            step.attrs["_state"] = step.kernel.prepare(
                self.config, constants,
                {a: v for a, v in step.attrs.items() if a in step.kernel.attributes})

    # --- onnxruntime-shaped API ---------------------------------------------------------------
    def get_inputs(self) -> list[NodeArg]:
        return [_node_arg(v) for v in self._inputs]

    def get_outputs(self) -> list[NodeArg]:
        return [_node_arg(v) for v in self._model.graph.outputs]

    def get_overridable_initializers(self) -> list[NodeArg]:
        return [_node_arg(v) for v in self._optional_inputs]

    def run(self, output_names: Sequence[str] | None, input_feed: dict[str, Any],
            run_options: Any = None, *,
            on_value: Callable[[str, np.ndarray], None] | None = None) -> list[np.ndarray]:
        """Run the model; returns the requested outputs (all when None) in order.

        ``on_value(name, array)``, if given, sees every graph input and every value a node
        produces, as soon as it exists (calibration observes activations this way without
        keeping them)."""
        if output_names is None:
            output_names = self._output_names
        wanted = []
        for name in output_names:
            if name not in self._output_names:
                raise OptcError(f"unknown output '{name}'; the model's outputs are: "
                                f"{', '.join(self._output_names)}")
            wanted.append(self._output_slots[self._output_names.index(name)])
        env: list[Any] = [None] * self._n_slots
        for s, arr in self._constants.items():
            env[s] = arr
        live = 0
        for name, arr in self._check_feeds(input_feed).items():
            env[self._input_slots[name]] = arr
            live += _nbytes(arr)
            if on_value is not None:
                on_value(name, arr)
        total = peak = live
        if on_value is not None:
            for s in self._folded:
                on_value(self._slot_names[s], self._constants[s])
        # the first run (and one after the inputs changed) records the steps' C ops; the
        # next ones run the program built from them; on_value sees every step's value
        planning = self.plans and on_value is None
        record = {} if planning and self._program is None else None
        items = self._program if planning and record is None else self._steps
        if self.threads:
            with _blas_controller().limit(limits=self.threads):
                live, peak, total = self._execute(items, env, live, peak, total, on_value,
                                                  record)
        else:
            live, peak, total = self._execute(items, env, live, peak, total, on_value, record)
        if record is not None:
            self._program = plan.build(self._steps, record, self._constants, self._fixed,
                                       set(self._output_slots))
        self.peak_bytes, self.total_activation_bytes = peak, total
        # hand out arrays the caller owns: never the session's constants, the caller's own
        # inputs, or views into either (as onnxruntime, which copies its outputs)
        shared = {id(a) for a in self._constants.values()} | {id(a) for a in input_feed.values()}
        return [_owned(env[s], shared) for s in wanted]

    def _execute(self, items: list, env: list, live: int, peak: int, total: int,
                 on_value: Callable[[str, np.ndarray], None] | None = None,
                 record: dict | None = None) -> tuple[int, int, int]:
        """Run ``items`` (steps, or the program's steps and Segments) over env; ``record``,
        if given, gets each step's C op (plan.build's records)."""
        for i, item in enumerate(items):
            if item.__class__ is plan.Segment:
                done = item.run(env, native._ckernels.run_plan)
                if done == plan.DONE:
                    peak = max(peak, live + item.rise)
                    live += item.net
                    total += item.produced
                    continue
                if done == plan.STALE:  # other inputs: plan again after this run
                    self._program = None
                for step in self._steps[item.first:item.last + 1]:
                    live, peak, total = self._step(step, env, live, peak, total, on_value)
                continue
            live, peak, total = self._step(item, env, live, peak, total, on_value, record, i)
        return live, peak, total

    def _step(self, step: _Step, env: list, live: int, peak: int, total: int, on_value,
              record: dict | None = None, index: int = -1) -> tuple[int, int, int]:
        args = [env[s] if s >= 0 else None for s in step.inputs]
        try:
            result = step.fast(args) if step.fast else None
            if result is None:
                result = step.kernel.fn(*args, **step.attrs)
                if step.fast is not False and step.kernel.fast is not None:
                    step.fast = step.kernel.fast(args, step.attrs) or False
            if record is not None and step.kernel.plan is not None:
                _record(step, index, args, result, record)
        except (OptcError, ValueError, TypeError, IndexError, ZeroDivisionError) as e:
            raise at_node(step.node_label, e) from e
        if not isinstance(result, tuple):
            result = (result,)
        for s, value in zip(step.outputs, result):
            if s >= 0:
                env[s] = value
                n = _nbytes(value)
                live += n
                total += n
                if on_value is not None:
                    on_value(self._slot_names[s], value)
        peak = max(peak, live)
        for s in step.release:
            if env[s] is not None:
                live -= _nbytes(env[s])
                env[s] = None
        return live, peak, total

    def _check_feeds(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        out = {}
        for name, arr in feeds.items():
            spec = self._feed_specs.get(name)
            if spec is None:
                raise OptcError(f"unknown input '{name}'; the model's inputs are: "
                                f"{', '.join(x.name for x in self._inputs) or 'none'}")
            type_name, expected, shape = spec
            if type_name in ("sequence_type", "optional_type", "map_type"):
                out[name] = [np.asarray(a) for a in arr] if isinstance(arr, (list, tuple)) \
                    else arr
                continue
            arr = np.asarray(arr)
            if expected is not None and arr.dtype != expected:
                raise OptcError(f"input '{name}' must be {type_name} ({expected}), got "
                                f"{arr.dtype}")
            if shape is not None:
                if arr.ndim != len(shape):
                    raise OptcError(f"input '{name}' must have rank {len(shape)} "
                                    f"({_fmt(shape)}), got shape {list(arr.shape)}")
                for i, (want, got) in enumerate(zip(shape, arr.shape)):
                    # -1 / 0 (paddle2onnx, some tf2onnx exports): a dynamic dim
                    if isinstance(want, int) and want > 0 and want != got:
                        raise OptcError(f"input '{name}' dim {i} must be {want} "
                                        f"({_fmt(shape)}), got shape {list(arr.shape)}")
            out[name] = arr
        missing = [v.name for v in self._inputs if v.name not in out]
        if missing:
            raise OptcError(f"missing input(s) {', '.join(missing)}")
        return out


def _record(step: _Step, index: int, args: list, result: Any, record: dict) -> None:
    """The step's C op for these inputs (its kernel's plan hook) into record[index], with its
    output's shape and its inputs' shapes (plan.build), where its output is one float32
    C-contiguous array and so is every array the op reads."""
    if len(step.outputs) != 1 or step.outputs[0] < 0 or result.__class__ is not np.ndarray \
            or result.dtype != np.float32 or not result.flags.c_contiguous:
        return
    op = step.kernel.plan(args, step.attrs)
    if op is None:
        return
    for k in op.operands:
        a = args[k] if isinstance(k, int) and k < len(args) else None
        if a is not None and (a.__class__ is not np.ndarray or a.dtype != np.float32 or
                              not a.flags.c_contiguous):
            return
    record[index] = (op, result.shape, tuple(getattr(a, "shape", None) for a in args))


def _nbytes(value: Any) -> int:
    """Bytes of a value: a tensor, a sequence (list) of tensors, or an empty optional."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return getattr(value, "nbytes", 0)


def _owned(value: Any, shared: set[int]) -> Any:
    """``value`` as the caller's own: a copy where it is (or views) a constant or a feed."""
    if isinstance(value, list):
        return [_owned(v, shared) for v in value]
    if isinstance(value, np.ndarray) and (id(value) in shared or value.base is not None):
        return value.copy()
    return value


_CONTROLLER = None


def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, made once: building it scans every
    loaded library (as long as a whole small model's run), limiting through it is cheap."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


def _fmt(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _node_arg(v) -> NodeArg:
    shape = list(v.shape) if v.shape is not None else None
    return NodeArg(v.name, shape, _TYPE_NAMES.get(v.dtype, "unknown"))

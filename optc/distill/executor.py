"""TorchGraph: an optc graph executed with torch ops, its initializers as parameters.

The graph is never rebuilt or re-exported: ``TorchGraph(model)`` plans one step per node, in
the graph's order, and ``write_back()`` copies the trained tensors into a copy of the model's
initializers, so structure, names and metadata are untouched.

Which values are *live* (carry gradients or depend on the graph's inputs) is decided when the
module is built: graph inputs, trainable initializers, and every output of a node reading a
live value -- except Shape, whose sizes are static. A node reading a live value runs with the
torch op of ``optc.distill.ops``; a node reading only static values (shape arithmetic,
Constant, the product of two scales) runs with optc.runtime's NumPy kernel, so those ops have
one implementation. A graph that needs a torch op the table lacks is refused when the module
is built, naming the node.

Trainable tensors (``trainable="weights"``, the default): float initializers that are the
weight or bias of Conv, ConvTranspose, Gemm (and optc's fused forms), a constant operand of
MatMul, BatchNormalization's scale and bias, PRelu's slope, and the constant of an Add right
after a MatMul (a bias). In a QDQ graph the same positions are reached through a
DequantizeLinear: the integer initializer becomes a float *latent* parameter (its dequantized
value), and the DequantizeLinear fake-quantizes it on every forward (straight-through
estimator), so training moves the real-valued weight and ``write_back`` rounds it to the
integer grid again. ``learn_scales=True`` also trains the QuantizeLinear/DequantizeLinear
scales (LSQ, gradient scaled by 1/sqrt(numel * Qmax) as in the paper).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from onnx import helper
from torch import nn

from optc.distill import ops as tops
from optc.errors import OptcError, at_node
from optc.ir import Model, Node, Value, clone, load
from optc.runtime.kernels.quant import dequantize_array, quantize_array
from optc.runtime.registry import lookup, since_version

_WEIGHT_INPUTS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "FusedConv": (1, 2),
                  "FusedConvTranspose": (1, 2), "Gemm": (0, 1, 2), "FusedGemm": (0, 1, 2),
                  "MatMul": (0, 1), "BatchNormalization": (1, 2), "PRelu": (1,)}
_QUANT = ("QuantizeLinear", "DequantizeLinear")


@dataclass
class _Step:
    node: Node
    label: str
    fn: Callable
    torch: bool  # torch op (reads a live value) or optc.runtime's NumPy kernel
    inputs: list[int]
    outputs: list[int]
    attrs: dict
    latent: str | None = None  # DequantizeLinear of a latent weight: its parameter name
    grad_scale_qmax: int = 0  # Q/DQ whose scale is learned: Qmax for LSQ's gradient scale
    output_names: list[str] = field(default_factory=list)


def _label(node: Node) -> str:
    return f"node '{node.name}' ({node.op_type})" if node.name else f"a {node.op_type} node"


def _grad_scale(x: torch.Tensor, g: float) -> torch.Tensor:
    """x forward, g * dL/dx backward."""
    return x * g + (x - x * g).detach()


class TorchGraph(nn.Module):
    """Run ``model`` (a path, bytes, onnx.ModelProto or optc Model) with torch.

    ``trainable``: "weights" (default), "all" (every float initializer), "none", or an
    iterable of initializer names. ``learn_scales``: train quantization scales too (LSQ).
    ``forward(feeds, capture=())`` takes {input name: tensor or array} and returns
    {name: tensor} for the graph outputs and each captured value name.
    """

    def __init__(self, model, *, trainable: str | Iterable[str] = "weights",
                 learn_scales: bool = False):
        super().__init__()
        self.model = load(model)
        g = self.model.graph
        self._slots: dict[str, int] = {}
        for v in list(g.inputs) + list(g.initializers.values()):
            self._slot(v)
        for n in g.nodes:
            for v in n.outputs:
                self._slot(v)
        names = self._choose_trainable(trainable)
        latent = {name for name in names if g.initializers[name].const_value.dtype.kind in "iu"}
        scales = self._scale_names() if learn_scales else set()
        self.learn_scales = learn_scales
        # parameters (ordered by the graph's initializer order: the same on every process)
        self.params = nn.ParameterList()
        self.param_names: list[str] = []
        self._param_index: dict[str, int] = {}
        self._latent: dict[str, Node] = {}  # latent weight name -> its DequantizeLinear
        for name, v in g.initializers.items():
            if name not in names and name not in scales:
                continue
            arr = v.const_value
            if name in latent:  # its dequantized value is set once the plan can compute it
                uses = v.uses()
                if len(uses) != 1 or uses[0][0].op_type != "DequantizeLinear" or uses[0][1]:
                    raise OptcError(f"trainable tensor '{name}' is an integer tensor that no "
                                    f"DequantizeLinear alone reads: it cannot be trained")
                self._latent[name] = uses[0][0]
                arr = np.zeros(arr.shape, np.float32)
            self._param_index[name] = len(self.params)
            self.param_names.append(name)
            self.params.append(nn.Parameter(torch.from_numpy(np.array(arr, copy=True))))
        self._static: dict[int, np.ndarray] = {}  # slot -> constant array (not a parameter)
        for name, v in g.initializers.items():
            if name not in self._param_index:
                self._static[self._slots[name]] = v.const_value
        self._plan()
        if self._latent:
            env = self._run(None, only_constants=True)
            with torch.no_grad():
                for name, dq in self._latent.items():
                    scale, zp = self._qparams(dq, env)
                    w = g.initializers[name].const_value
                    real = dequantize_array(w, scale, zp, dq.attr("axis", 1), 0)
                    self.params[self._param_index[name]].copy_(torch.from_numpy(real))

    # --- building ---------------------------------------------------------------------------
    def _slot(self, v: Value | None) -> int:
        if v is None:
            return -1
        return self._slots.setdefault(v.name, len(self._slots))

    def _choose_trainable(self, trainable) -> set[str]:
        g = self.model.graph
        floats = {name for name, v in g.initializers.items()
                  if v.const_value.dtype.kind == "f"}
        if trainable == "none":
            return set()
        if trainable == "all":
            return floats
        if trainable != "weights":
            wanted = set(trainable)
            unknown = sorted(wanted - set(g.initializers))
            if unknown:
                raise OptcError(f"trainable tensor(s) not among the initializers: "
                                f"{', '.join(unknown)}")
            return wanted
        chosen = set()
        for name, v in g.initializers.items():
            kind = v.const_value.dtype.kind
            for node, index in v.uses():
                target, position = node, index
                if kind in "iu":
                    # an integer weight counts through its DequantizeLinear
                    if node.op_type != "DequantizeLinear" or index != 0 or \
                            len(v.uses()) != 1:
                        continue
                    users = node.outputs[0].uses()
                    if len(users) != 1:
                        continue
                    target, position = users[0]
                elif kind != "f":
                    continue
                if position in _WEIGHT_INPUTS.get(target.op_type, ()) or (
                        target.op_type == "Add" and self._after_matmul(target)):
                    chosen.add(name)
        return chosen

    @staticmethod
    def _after_matmul(add: Node) -> bool:
        return any(i is not None and i.producer() is not None and
                   i.producer().op_type == "MatMul" for i in add.inputs)

    def _scale_names(self) -> set[str]:
        g = self.model.graph
        return {n.inputs[1].name for n in g.nodes
                if n.op_type in _QUANT and g.is_initializer(n.inputs[1])}

    def _plan(self) -> None:
        g, model = self.model.graph, self.model
        live = {self._slots[v.name] for v in g.inputs if not g.is_initializer(v)}
        live |= {self._slots[name] for name in self._param_index}
        self._input_names = [v.name for v in g.inputs if not g.is_initializer(v)]
        self._input_free: list[bool] = []  # step depends on no graph input (constants only)
        depends = {self._slots[v.name] for v in g.inputs if not g.is_initializer(v)}
        self._steps: list[_Step] = []
        buffers: set[str] = set()
        for node in g.nodes:
            label = _label(node)
            if node.subgraphs:
                raise OptcError(f"{label}: ops with subgraphs are not supported by the torch "
                                f"executor")
            ins = [self._slot(v) for v in node.inputs]
            outs = [self._slot(v) for v in node.outputs]
            is_live = any(s in live for s in ins) and node.op_type != "Shape"
            domain = node.domain if node.domain not in ("ai.onnx",) else ""
            opset = model.opset_imports.get(domain, 1 if domain else model.opset)
            if is_live and node.op_type not in tops.OPS:
                raise OptcError(f"{label}: op {node.op_type} is not supported by the torch "
                                f"executor (optc distill)")
            try:
                k = lookup(node.op_type, domain, opset)
            except OptcError as e:
                raise OptcError(f"{label}: {e}") from e
            latent = None
            if node.op_type == "DequantizeLinear" and node.inputs[0].name in self._latent:
                latent = node.inputs[0].name
            if is_live or node.op_type == "Shape" and any(s in live for s in ins):
                fn = tops.OPS[node.op_type]
                attrs = self._attrs(node, fn, label)
                if "_since" in inspect.signature(fn).parameters:
                    attrs["_since"] = since_version(node.op_type, domain, opset) or 1
                for v in node.inputs:
                    if v is not None and g.is_initializer(v) and v.name not in self._param_index:
                        buffers.add(v.name)
                torch_step = True
            else:
                fn, torch_step = k.fn, False
                attrs = {name: node.attr(name) for name in node.attributes}
                if k.wants_outputs:
                    attrs["_outputs"] = len(node.outputs)
            qmax = 0
            if torch_step and node.op_type in _QUANT and node.inputs[1].name in self._param_index:
                qmax = self._qmax(node)
            step = _Step(node, label, fn, torch_step, ins, outs, attrs, latent, qmax,
                         [v.name if v is not None else "" for v in node.outputs])
            self._steps.append(step)
            if is_live:
                live.update(s for s in outs if s >= 0)
            dep = any(s in depends for s in ins)
            self._input_free.append(not dep)
            if dep:
                depends.update(s for s in outs if s >= 0)
        # constants that torch ops read live on the module's device, as buffers
        self._buffer_attr: dict[int, str] = {}
        for i, name in enumerate(sorted(buffers)):
            arr = np.ascontiguousarray(g.initializers[name].const_value)
            attr = f"const_{i}"
            self.register_buffer(attr, torch.from_numpy(arr.copy()), persistent=False)
            self._buffer_attr[self._slots[name]] = attr
        self._output_names = [v.name for v in g.outputs]

    @staticmethod
    def _attrs(node: Node, fn: Callable, label: str) -> dict:
        params = inspect.signature(fn).parameters
        open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        attrs = {}
        for name in node.attributes:
            if name in tops.IGNORED_ATTRIBUTES:
                continue
            if name not in params and not open_ended:
                raise OptcError(f"{label}: attribute '{name}' is not supported by the torch "
                                f"executor's {node.op_type}")
            attrs[name] = node.attr(name)
        if "_outputs" in params:
            attrs["_outputs"] = len(node.outputs)
        return attrs

    def _qmax(self, node: Node) -> int:
        zp = node.inputs[2] if len(node.inputs) > 2 else None
        if zp is not None and zp.const_value is not None:
            kind = zp.const_value.dtype
        elif node.op_type == "DequantizeLinear" and node.inputs[0].const_value is not None:
            kind = node.inputs[0].const_value.dtype
        else:
            kind = np.dtype(np.uint8)
        return int(np.iinfo(kind).max)

    # --- running ----------------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return list(self._input_names)

    @property
    def output_names(self) -> list[str]:
        return list(self._output_names)

    def _device(self) -> torch.device:
        for p in self.params:
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def forward(self, feeds: dict, capture: Sequence[str] = ()) -> dict[str, torch.Tensor]:
        missing = [n for n in self._input_names if n not in feeds]
        if missing:
            raise OptcError(f"missing input(s) {', '.join(missing)}")
        env = self._run(feeds, only_constants=False)
        out = {}
        for name in list(self._output_names) + list(capture):
            if name not in self._slots:
                raise OptcError(f"no tensor named '{name}' in the graph")
            value = env[self._slots[name]]
            out[name] = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
        return out

    def _run(self, feeds: dict | None, only_constants: bool) -> list:
        device = self._device()
        env: list = [None] * len(self._slots)
        for s, arr in self._static.items():
            env[s] = arr
        for s, attr in self._buffer_attr.items():
            env[s] = getattr(self, attr)
        for name, i in self._param_index.items():
            env[self._slots[name]] = self.params[i]
        if feeds is not None:
            for name in self._input_names:
                x = feeds[name]
                env[self._slots[name]] = x.to(device) if isinstance(x, torch.Tensor) else \
                    torch.as_tensor(np.asarray(x), device=device)
        for step, free in zip(self._steps, self._input_free):
            if only_constants and not free:
                continue
            args = [env[s] if s >= 0 else None for s in step.inputs]
            try:
                result = self._call(step, args, device)
            except (OptcError, RuntimeError, ValueError, TypeError, IndexError) as e:
                raise at_node(step.label, e) from e
            if not isinstance(result, tuple):
                result = (result,)
            for s, value in zip(step.outputs, result):
                if s >= 0:
                    env[s] = value
        return env

    def _call(self, step: _Step, args: list, device: torch.device):
        if not step.torch:
            return step.fn(*[np.asarray(a) if a is not None else None for a in args],
                           **step.attrs)
        args = [a if a is None or isinstance(a, torch.Tensor)
                else torch.as_tensor(np.array(a), device=device) for a in args]
        if step.grad_scale_qmax:
            # LSQ: g = 1 / sqrt(N * Qmax), N the weight count, or the features per sample
            data = args[0]
            n = data.numel() if step.latent is not None or data.ndim == 0 else data[0].numel()
            args[1] = _grad_scale(args[1], 1.0 / math.sqrt(max(n, 1) * step.grad_scale_qmax))
        if step.latent is not None:
            return self._fake_quant(step, args)
        return step.fn(*args, **step.attrs)

    def _fake_quant(self, step: _Step, args: list) -> torch.Tensor:
        """A latent weight through its DequantizeLinear: quantize to the integer type of the
        stored initializer with the node's scale, then dequantize (straight-through)."""
        w, scale = args[0], args[1]
        zp = args[2] if len(args) > 2 else None
        dtype = self.model.graph.initializers[step.latent].const_value.dtype
        info = np.iinfo(dtype)
        axis = step.attrs.get("axis", 1)
        s = tops._param(scale, w, axis, 0)
        q = tops.round_ste(w / s)
        if zp is not None:
            q = q + tops._param(zp, w, axis, 0).to(q.dtype)
        q = torch.clamp(q, float(info.min), float(info.max))
        return tops.dequantize(q, scale, zp, axis=axis)

    # --- writing back -----------------------------------------------------------------------
    @torch.no_grad()
    def write_back(self) -> Model:
        """A copy of the model whose initializers hold the trained values (latent weights
        rounded back to their integer type with the current scales); nothing else differs."""
        out = clone(self.model)
        g = out.graph
        env = self._run(None, only_constants=True)
        for name, i in self._param_index.items():
            v = g.initializers[name]
            old = v.const_value
            value = self.params[i].detach().cpu().numpy()
            if name in self._latent:
                value = self._requantize(name, value, env)
            v.set_const(np.ascontiguousarray(value.astype(old.dtype, copy=False))
                        .reshape(old.shape))
        return out

    def _qparams(self, dq: Node, env: list) -> tuple[np.ndarray, np.ndarray | None]:
        """The current (scale, zero point) of a latent weight's DequantizeLinear."""
        args = [_numpy(env[self._slots[v.name]]) if v is not None else None
                for v in dq.inputs[1:]]
        return args[0], (args[1] if len(args) > 1 else None)

    def _requantize(self, name: str, w: np.ndarray, env: list) -> np.ndarray:
        """Round a latent weight to its integer type with the current scale (and zero point):
        optc.runtime's QuantizeLinear, the rounding the fake quantization used forward."""
        dq = self._latent[name]
        scale, zp = self._qparams(dq, env)
        dtype = self.model.graph.initializers[name].const_value.dtype
        return quantize_array(w.astype(scale.dtype), scale, zp, dq.attr("axis", 1), 0,
                         helper.np_dtype_to_tensor_dtype(dtype))

    def trainable_names(self) -> list[str]:
        return list(self.param_names)


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)

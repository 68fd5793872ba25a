"""The kernel table: (domain, op type, schema since-version) -> kernel function.

A kernel is a plain function. Its positional parameters are the op's inputs in ONNX order
(``None`` for an omitted optional input); its keyword-only parameters are the ONNX attribute
names with the spec's defaults. It returns one array or a tuple (one entry per output). A kernel
that needs to know how many outputs the node asks for declares a keyword ``_outputs``.

    @kernel("LeakyRelu", (1, 6, 16))
    def leaky_relu(x, *, alpha=0.01, consumed_inputs=None):
        return np.where(x >= 0, x, x * x.dtype.type(alpha))

``versions`` lists the schema versions (``since_version`` of the op's schemas in onnx) that the
function implements; the session resolves a node's version from the model's opset import, so a
version nobody registered is a clear "unsupported" error rather than a silent guess.

A kernel may have a prepare step, ``prepare(config, constants, attrs) -> state``: the session
calls it once per node when it plans (``constants``: the node's constant inputs, None for the
others) and passes the result as the kernel's ``_state`` keyword (packed weights, resolved C
calls). And a fast path, ``fast(args, attrs) -> run | None``: after a step has run, the session
asks for a call specialised to those inputs and tries ``run(args)`` first on the next runs; run
returns the outputs, or None where the inputs no longer fit it (another shape: the session then
calls the kernel and asks again). It skips the kernel's keyword binding and checks, which on a
mobile net cost as much as small layers (per-node Python work, cold in cache after each big
layer). And a plan hook, ``plan(args, attrs) -> optc.runtime.plan.PlanOp | None``: the C op
that computes the step's output from these inputs, so that the session can run a stretch of
such steps in one C call (optc.runtime.plan); None where the kernel has no C op for them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import onnx

from optc.errors import OptcError

#: optc's own ops (fused layers, Winograd, FFT; run by optc.runtime only)
OPTC_DOMAIN = "ai.optc"
#: onnxruntime's contrib ops (FusedConv, QLinearAdd)
ORT_DOMAIN = "com.microsoft"


@dataclass(frozen=True)
class Kernel:
    fn: Callable
    op_type: str
    domain: str
    since: int
    attributes: frozenset[str]  # keyword-only parameter names (ONNX attribute names)
    wants_outputs: bool
    wants_config: bool = False
    prepare: Callable | None = None
    fast: Callable | None = None
    plan: Callable | None = None


_TABLE: dict[tuple[str, str, int], Kernel] = {}


def _norm_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


_PRIVATE = ("_outputs", "_config", "_state")


def kernel(op_type: str, versions: Iterable[int], *, domain: str = "",
           prepare: Callable | None = None, fast: Callable | None = None,
           plan: Callable | None = None) -> Callable[[Callable], Callable]:
    """Register ``fn`` as the kernel of ``op_type`` for each schema version in ``versions``
    (``prepare``: its prepare step; ``fast``: its fast path; ``plan``: its plan hook; see
    the module docstring)."""

    def register(fn: Callable) -> Callable:
        params = {p.name: p for p in inspect.signature(fn).parameters.values()}
        attrs = frozenset(name for name, p in params.items()
                          if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in _PRIVATE)
        if prepare is not None and "_state" not in params:
            raise TypeError(f"{fn.__name__} has a prepare step but no _state keyword")
        for v in versions:
            key = (_norm_domain(domain), op_type, v)
            if key in _TABLE:
                raise ValueError(f"kernel for {key} registered twice")
            _TABLE[key] = Kernel(fn, op_type, _norm_domain(domain), v, attrs,
                                 "_outputs" in params, "_config" in params, prepare, fast, plan)
        return fn

    return register


def since_version(op_type: str, domain: str, opset: int) -> int | None:
    """The since_version of the schema of ``op_type`` in effect at ``opset`` (None if onnx has
    no schema for it, e.g. optc's own domain)."""
    try:
        return onnx.defs.get_schema(op_type, opset, _norm_domain(domain)).since_version
    except onnx.defs.SchemaError:
        return None


def table() -> dict[tuple[str, str, int], Kernel]:
    """The kernel table, built-in kernels included: {(domain, op, since_version): Kernel}."""
    import optc.runtime.kernels  # noqa: F401  (registers the built-in kernels)

    return _TABLE


def lookup(op_type: str, domain: str, opset: int) -> Kernel:
    """The kernel for ``op_type`` at ``opset`` of its domain; OptcError if there is none."""
    table()
    domain = _norm_domain(domain)
    since = since_version(op_type, domain, opset)
    if since is None:
        # ops without an onnx schema (optc's domain): the newest kernel at or below opset
        candidates = [k for (d, o, v), k in _TABLE.items() if d == domain and o == op_type
                      and v <= opset]
        if candidates:
            return max(candidates, key=lambda k: k.since)
    else:
        k = _TABLE.get((domain, op_type, since))
        if k is not None:
            return k
    versions = sorted(v for (d, o, v) in _TABLE if d == domain and o == op_type)
    label = f"{domain or 'ai.onnx'}.{op_type}"
    if versions:
        raise OptcError(f"optc.runtime does not support {label} version {since or opset} "
                        f"(opset {opset}); it implements versions {versions}")
    raise OptcError(f"optc.runtime has no kernel for op {label} (opset {opset})")


def supported_ops() -> dict[tuple[str, str], list[int]]:
    """{(domain, op_type): [schema versions]} of every registered kernel."""
    out: dict[tuple[str, str], list[int]] = {}
    for d, o, v in sorted(table()):
        out.setdefault((d, o), []).append(v)
    return out

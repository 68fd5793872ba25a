"""The pass protocol and the pass registry.

A pass is a frozen dataclass whose fields are its options (one definition serves the Python
API, the pipeline text, the CLI and ``optc passes``)::

    @register
    @dataclass(frozen=True)
    class FoldConstants(Pass):
        '''Evaluate nodes whose inputs are all constant.'''
        name: ClassVar[str] = "fold-constants"
        size_limit_mb: float = field(default=512.0, metadata={"help": "..."})

        def run(self, model: Model, ctx: PassContext) -> PassResult: ...

Passes receive the whole ``Model`` (not only its Graph) because some need the opset imports,
and a ``PassContext``: what the run brings from outside the model (calibration data, whether a
report is wanted, the instruments). ``run`` edits the model in place and returns
``PassResult(model, modified, stats, artifacts)``; what a pass decided or measured (a
quantization plan, the pruned groups) goes in ``artifacts``, never on the pass object, so one
configured pass can run on many models, in many threads. Running a pass twice equals running
it once, and the second run reports ``modified=False``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from optc.errors import OptcError
from optc.ir.core import Model


@dataclass
class PassResult:
    """What a pass returns: the model (edited in place), whether it changed, small JSON-able
    ``stats`` for the run report, and ``artifacts``: what the pass decided or measured (e.g.
    quantize's ``plan``), for the report, the reproducer and the caller."""

    model: Model
    modified: bool
    stats: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)


@dataclass
class PassContext:
    """What a pipeline run hands every pass besides the model.

    ``calibration_data``: DATA (input name -> samples along axis 0), or a list of feeds (one
    run each, for models whose inputs are not all batched), for the passes that
    calibrate (``uses_calibration``); ``collect_report``: a report is wanted, so passes may
    measure more (quantize's per-layer SQNR); ``instruments``: the pipeline's instruments
    (optc.instruments), which passes never call themselves; ``engine``: where passes run the
    model for their own analyses (calibration, pruning's sample run): optc.engine's ``auto``
    (optc.runtime where it runs the model, else onnxruntime), ``optc`` or ``ort``."""

    calibration_data: Mapping[str, Any] | list[Mapping[str, Any]] | None = None
    collect_report: bool = False
    instruments: list[Any] = field(default_factory=list)
    engine: str = "auto"


@dataclass(frozen=True)
class Pass:
    """Base class of every pass. Subclasses are frozen dataclasses; fields are options."""

    name: ClassVar[str] = ""
    #: True when the pass never changes the model's outputs beyond float rounding.
    lossless: ClassVar[bool] = True
    #: True when the pass reads ``PassContext.calibration_data``.
    uses_calibration: ClassVar[bool] = False
    #: the lowest ai.onnx opset the pass works at; run_pipeline runs convert-opset first on
    #: an older model (and the pipeline text records it)
    min_opset: ClassVar[int] = 1

    def requires(self, model: Model, ctx: PassContext) -> None:
        """Raise OptcError if a precondition of this pass does not hold."""

    def run(self, model: Model, ctx: PassContext) -> PassResult:  # pragma: no cover
        raise NotImplementedError

    def __call__(self, model: Model, ctx: PassContext | None = None) -> PassResult:
        ctx = ctx if ctx is not None else PassContext()
        self.requires(model, ctx)
        return self.run(model, ctx)

    def report_markdown(self, artifacts: dict[str, Any], directory) -> str:
        """This pass's section of ``optc optimize --report DIR``'s report.md, from the
        ``artifacts`` of its run (it may write files under DIR); empty for passes without
        one."""
        return ""

    def replay(self, artifacts: dict[str, Any], directory) -> Pass:
        """The pass that redoes the run that gave ``artifacts`` exactly, its plan written
        under ``directory`` (what the reproducer writes); a pass whose run depends on its
        options and the model alone is its own replay."""
        return self

    # --- options ----------------------------------------------------------------------------
    @classmethod
    def options(cls) -> list[Option]:
        hints = typing.get_type_hints(cls)
        return [Option(f.name.replace("_", "-"), f.name, hints[f.name], _default(f),
                       f.metadata.get("help", ""))
                for f in dataclasses.fields(cls)]

    @classmethod
    def summary(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def __str__(self) -> str:
        opts = " ".join(f"{o.key}={format_option(getattr(self, o.attr))}" for o in self.options())
        return f"{self.name}{{{opts}}}" if opts else self.name


@dataclass(frozen=True)
class Option:
    key: str  # as written in pipeline text, e.g. "size-limit-mb"
    attr: str  # dataclass field name, e.g. "size_limit_mb"
    type: Any
    default: Any
    help: str


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()  # type: ignore[misc]
    return None


def format_option(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(format_option(v) for v in value)
    if value is None:
        return "none"
    return str(value)


def parse_option(option: Option, text: str, pass_name: str) -> Any:
    """Convert the text of a pipeline option to the field's type."""
    typ = option.type
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if text.lower() == "none":
            return None
        typ = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(typ), typing.get_args(typ)
    try:
        if typ is bool:
            low = text.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
        if typ is str:
            return text
        if origin in (list, tuple):
            inner = args[0] if args else str
            items = [t for t in text.split(",") if t]
            conv = [parse_option(Option(option.key, option.attr, inner, None, ""), t, pass_name)
                    for t in items]
            return conv if origin is list else tuple(conv)
        if origin is typing.Literal:
            if text in args:
                return text
            raise ValueError
    except ValueError:
        pass
    else:
        raise OptcError(f"pass '{pass_name}': option '{option.key}' has an unsupported type")
    expected = {bool: "true or false", int: "an integer", float: "a number"}.get(
        typ, " | ".join(map(str, args)) if origin is typing.Literal else str(typ))
    raise OptcError(f"pass '{pass_name}': option '{option.key}' expects {expected}, got '{text}'")


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------
_REGISTRY: dict[str, type[Pass]] = {}

#: Named pipelines that expand inside a pipeline text. Filled by optc.passes.
PRESETS: dict[str, str] = {}


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make a pass available by its ``name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise TypeError(f"two passes are named '{cls.name}'")
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Pass]]:
    """Every registered pass by name (importing optc.passes registers the built-in ones)."""
    import optc.passes  # noqa: F401  (registers the built-in passes)

    return dict(_REGISTRY)


def presets() -> dict[str, str]:
    import optc.passes  # noqa: F401

    return dict(PRESETS)

"""The pass protocol and the pass registry.

A pass is a dataclass whose fields are its options (one definition serves the Python API, the
pipeline text, the CLI and ``optc passes``)::

    @register
    @dataclass
    class FoldConstants(Pass):
        '''Evaluate nodes whose inputs are all constant.'''
        name: ClassVar[str] = "fold-constants"
        size_limit_mb: float = field(default=512.0, metadata={"help": "..."})

        def run(self, model: Model) -> PassResult: ...

Passes receive the whole ``Model`` (not only its Graph) because some need the opset imports.
``run`` edits the model in place and returns ``PassResult(model, modified, stats)``; running a
pass twice equals running it once, and the second run reports ``modified=False``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from optc.errors import OptcError
from optc.ir.core import Model


@dataclass
class PassResult:
    model: Model
    modified: bool
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pass:
    """Base class of every pass. Subclasses are dataclasses; fields are options."""

    name: ClassVar[str] = ""
    #: True when the pass never changes the model's outputs beyond float rounding.
    lossless: ClassVar[bool] = True

    def requires(self, model: Model) -> None:
        """Raise OptcError if a precondition of this pass does not hold."""

    def run(self, model: Model) -> PassResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, model: Model) -> PassResult:
        self.requires(model)
        return self.run(model)

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

    def option_values(self) -> dict[str, Any]:
        return {o.key: getattr(self, o.attr) for o in self.options()}

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

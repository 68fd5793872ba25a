"""Pipeline text (MLIR style) and the pass manager.

Grammar::

    pipeline := item ("," item)*
    item     := NAME ["{" [option (WS option)*] "}"]
    option   := KEY "=" VALUE        # VALUE has no whitespace and no braces; lists use ","

``NAME`` is a registered pass or a preset (``default``, ``cleanup``); presets expand in place
and take no options. ``str(pipeline)`` is the canonical text: presets expanded, every option
written out, so that it reproduces the run exactly; it is stored in the optimized model's
``metadata_props["optc.pipeline"]``.

The pass manager runs the passes in order, verifies the IR after each one, records per-pass
time and stats, can print the IR after a named pass, and writes a reproducer (input model +
pipeline text up to the failing pass + traceback) when a pass raises.
"""

from __future__ import annotations

import difflib
import re
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optc.errors import OptcError
from optc.ir import Model, VerificationError, format_graph, verify
from optc.pass_base import Pass, parse_option, presets, registry

METADATA_KEY = "optc.pipeline"


class Pipeline:
    """An ordered list of configured passes."""

    def __init__(self, passes: list[Pass]):
        self.passes = list(passes)

    @classmethod
    def parse(cls, text: str) -> Pipeline:
        return cls(_parse(text, depth=0))

    @property
    def lossless(self) -> bool:
        return all(p.lossless for p in self.passes)

    def __str__(self) -> str:
        return ",".join(str(p) for p in self.passes)

    def __len__(self) -> int:
        return len(self.passes)


_ITEM = re.compile(r"\s*([A-Za-z0-9_.\-]+)\s*(\{([^{}]*)\})?\s*(,|$)")


def _parse(text: str, depth: int) -> list[Pass]:
    if depth > 8:
        raise OptcError("pipeline presets nest too deeply")
    text = text.strip()
    if not text:
        raise OptcError("empty pipeline")
    passes_by_name = registry()
    preset_texts = presets()
    out: list[Pass] = []
    pos = 0
    while pos < len(text):
        m = _ITEM.match(text, pos)
        if m is None:
            raise OptcError(f"cannot parse pipeline at '{text[pos:pos + 30]}': expected "
                            f"name{{key=value ...}}")
        name, options = m.group(1), m.group(3)
        pos = m.end()
        if m.group(4) == "," and pos >= len(text):
            raise OptcError("pipeline ends with ','")
        if name in preset_texts:
            if options and options.strip():
                raise OptcError(f"preset '{name}' takes no options")
            out.extend(_parse(preset_texts[name], depth + 1))
            continue
        cls = passes_by_name.get(name)
        if cls is None:
            raise OptcError(f"unknown pass '{name}'"
                            + _did_you_mean(name, list(passes_by_name) + list(preset_texts)))
        out.append(_configure(cls, options or ""))
    return out


def _configure(cls: type[Pass], text: str) -> Pass:
    opts = {o.key: o for o in cls.options()}
    kwargs: dict[str, Any] = {}
    for token in text.split():
        key, eq, value = token.partition("=")
        if not eq or not key:
            raise OptcError(f"pass '{cls.name}': option '{token}' is not key=value")
        key = key.replace("_", "-")
        opt = opts.get(key)
        if opt is None:
            known = ", ".join(opts) or "none"
            raise OptcError(f"pass '{cls.name}' has no option '{key}'"
                            + (_did_you_mean(key, list(opts)) or f" (its options: {known})"))
        if opt.attr in kwargs:
            raise OptcError(f"pass '{cls.name}': option '{key}' given twice")
        kwargs[opt.attr] = parse_option(opt, value, cls.name)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise OptcError(f"pass '{cls.name}': {e}") from e


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


# --------------------------------------------------------------------------------------------
# pass manager
# --------------------------------------------------------------------------------------------
@dataclass
class PassRecord:
    name: str
    seconds: float
    modified: bool
    stats: dict[str, Any] = field(default_factory=dict)
    nodes_after: int = 0


@dataclass
class RunReport:
    pipeline: str
    records: list[PassRecord]
    nodes_before: int
    nodes_after: int

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.records)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline, "nodes_before": self.nodes_before,
            "nodes_after": self.nodes_after, "seconds": self.seconds,
            "passes": [dict(name=r.name, seconds=r.seconds, modified=r.modified,
                            nodes_after=r.nodes_after, stats=_jsonable(r.stats))
                       for r in self.records],
        }


class PassFailed(OptcError):
    """A pass raised; the message names the pass and, when one was written, the reproducer."""

    def __init__(self, message: str, repro_dir: Path | None):
        super().__init__(message)
        self.repro_dir = repro_dir


def run_pipeline(
    model: Model,
    pipeline: Pipeline | str,
    *,
    print_ir_after: str | None = None,
    printer: Callable[[str], None] = print,
    repro_source: str | Path | None = None,
    calib: Any = None,
) -> RunReport:
    """Run ``pipeline`` over ``model`` in place.

    ``print_ir_after``: a pass name or ``all``; the IR is printed after each matching pass.
    ``repro_source``: the input model file; when a pass raises, a reproducer folder is written
    (the input model, the pipeline text up to the failing pass, the traceback) and its path is
    in the error message.
    ``calib``: calibration DATA (input name -> samples), handed to the passes that use it
    (those with a ``calibration_data`` attribute, e.g. quantize).
    """
    if isinstance(pipeline, str):
        pipeline = Pipeline.parse(pipeline)
    if print_ir_after and print_ir_after != "all" and \
            print_ir_after not in {p.name for p in pipeline.passes}:
        raise OptcError(f"--print-ir-after '{print_ir_after}': no such pass in the pipeline"
                        + _did_you_mean(print_ir_after, [p.name for p in pipeline.passes]))
    users = [p for p in pipeline.passes if hasattr(p, "calibration_data")]
    if calib is not None and not users:
        raise OptcError("calibration data was given but no pass in the pipeline uses it "
                        "(add quantize)")
    for p in users:
        p.calibration_data = calib
    nodes_before = len(model.graph)
    records: list[PassRecord] = []
    for i, p in enumerate(pipeline.passes):
        start = time.perf_counter()
        try:
            p.requires(model)
            result = p.run(model)
            verify(model.graph)
        except VerificationError as e:  # the pass broke the IR: a bug in the pass
            raise _pass_bug(p, Pipeline(pipeline.passes[: i + 1]), e, repro_source) from e
        except OptcError as e:  # bad input or an unsupported case: the user's one-line error
            raise OptcError(f"pass '{p.name}': {e}") from e
        except Exception as e:  # a bug in the pass: keep what is needed to reproduce it
            raise _pass_bug(p, Pipeline(pipeline.passes[: i + 1]), e, repro_source) from e
        records.append(PassRecord(p.name, time.perf_counter() - start, result.modified,
                                  dict(result.stats), len(model.graph)))
        if print_ir_after in ("all", p.name):
            printer(f"// ----- IR after {p} -----\n{format_graph(model.graph)}")
    model.metadata_props[METADATA_KEY] = str(pipeline)
    return RunReport(str(pipeline), records, nodes_before, len(model.graph))


def _pass_bug(p: Pass, prefix: Pipeline, error: Exception,
              repro_source: str | Path | None) -> PassFailed:
    repro = _write_reproducer(repro_source, prefix, error)
    where = f"; reproducer written to {repro}" if repro else ""
    return PassFailed(f"pass '{p.name}' failed: {type(error).__name__}: "
                      f"{' '.join(str(error).split())}{where}", repro)


def _write_reproducer(source: str | Path | None, pipeline: Pipeline,
                      error: Exception) -> Path | None:
    if source is None:
        return None
    try:
        d = Path(tempfile.mkdtemp(prefix="optc-repro-"))
        shutil.copyfile(source, d / "model.onnx")
        (d / "pipeline.txt").write_text(str(pipeline) + "\n")
        (d / "error.txt").write_text("".join(traceback.format_exception(error)))
        (d / "README.txt").write_text(
            "Reproduce with:\n  optc optimize model.onnx -o out.onnx --debug "
            "--passes \"$(cat pipeline.txt)\"\n")
        return d
    except OSError:
        return None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (int, float, str, bool)) or obj is None:
        return obj
    return str(obj)

"""Pipeline text (MLIR style) and the pass manager.

Grammar::

    pipeline := item ("," item)*
    item     := NAME ["{" [option (WS option)*] "}"]
    option   := KEY "=" VALUE        # VALUE has no whitespace and no braces; lists use ","

``NAME`` is a registered pass or a preset (``default``, ``cleanup``); presets expand in place
and take no options. ``str(pipeline)`` is the canonical text: presets expanded, every option
written out, so that it reproduces the run exactly; it is stored in the optimized model's
``metadata_props["optc.pipeline"]``.

The pass manager runs the passes in order with one PassContext and a list of instruments
(optc.instruments): the IR verified after each pass, per-pass time, stats and artifacts
recorded, the IR printed after a named pass, a reproducer (input model + the exact pipeline up
to the failing pass + traceback) written when a pass fails with a bug.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optc.errors import IRError, OptcError
from optc.instruments import (Instrument, PassRecord, PrintIRAfter, Reproducer, Timing,
                              VerifyAfterPass)
from optc.ir import Model, VerificationError
from optc.pass_base import Pass, PassContext, parse_option, presets, registry

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
    collect_report: bool = False,
    instruments: Sequence[Instrument] = (),
    engine: str = "auto",
    input_shapes: dict[str, Sequence[int]] | None = None,
) -> RunReport:
    """Run ``pipeline`` over ``model`` in place.

    ``print_ir_after``: a pass name or ``all``; the IR is printed after each matching pass.
    ``repro_source``: the input model file; when a pass fails with a bug, a reproducer folder
    is written (optc.instruments.Reproducer) and its path is in the error message.
    ``calib``: calibration DATA (input name -> samples), in the PassContext of the passes that
    use it (``uses_calibration``, e.g. quantize). ``collect_report``: passes may measure more
    for a report (``PassContext.collect_report``). ``instruments``: more instruments, run
    after the built-in ones. ``engine``: where passes run the model for their analyses
    (optc.engine: auto, optc or ort). ``input_shapes``: input name -> static dims, fixed in
    the model before the first pass (``--input-shape``, optc.ir.set_input_shapes).
    """
    from optc.engine import ENGINES

    if engine not in ENGINES:
        raise OptcError(f"unknown engine '{engine}' (one of {', '.join(ENGINES)})")
    if isinstance(pipeline, str):
        pipeline = Pipeline.parse(pipeline)
    if print_ir_after and print_ir_after != "all" and \
            print_ir_after not in {p.name for p in pipeline.passes}:
        raise OptcError(f"--print-ir-after '{print_ir_after}': no such pass in the pipeline"
                        + _did_you_mean(print_ir_after, [p.name for p in pipeline.passes]))
    if calib is not None and not any(p.uses_calibration for p in pipeline.passes):
        raise OptcError("calibration data was given but no pass in the pipeline uses it "
                        "(add quantize)")
    timing = Timing()
    reproducer = Reproducer(repro_source) if repro_source is not None else None
    active: list[Instrument] = [VerifyAfterPass(), timing]
    if print_ir_after:
        active.append(PrintIRAfter(print_ir_after, printer))
    if reproducer is not None:
        active.append(reproducer)
    active += list(instruments)
    ctx = PassContext(calibration_data=calib, collect_report=collect_report,
                      instruments=active, engine=engine)
    if input_shapes:
        from optc.ir import set_input_shapes

        set_input_shapes(model, {k: tuple(v) for k, v in input_shapes.items()})
    nodes_before = len(model.graph)
    ran: list[Pass] = []  # the passes as run: with any convert-opset run_pipeline inserted
    for p in pipeline.passes:
        if model.opset < p.min_opset:
            from optc.passes.cleanup.opset import ConvertOpset

            _run_one(ConvertOpset(to=p.min_opset), len(ran), model, ctx, active, reproducer)
            ran.append(ConvertOpset(to=p.min_opset))
        _run_one(p, len(ran), model, ctx, active, reproducer)
        ran.append(p)
    text = str(Pipeline(ran))
    model.metadata_props[METADATA_KEY] = text
    return RunReport(text, timing.records, nodes_before, len(model.graph))


def _run_one(p: Pass, i: int, model: Model, ctx: PassContext, active: list[Instrument],
             reproducer: Reproducer | None) -> None:
    """Run one pass with its instruments; errors become one-line OptcErrors or PassFailed
    with a reproducer."""
    for inst in active:
        inst.before_pass(p, model, ctx)
    try:
        p.requires(model, ctx)
        result = p.run(model, ctx)
        for inst in active:
            inst.after_pass(p, model, result)
    except (VerificationError, IRError) as e:  # the pass misused or broke the IR: a bug
        raise _pass_bug(p, i, e, active, reproducer) from e
    except OptcError as e:  # bad input or an unsupported case: the user's one-line error
        raise OptcError(f"pass '{p.name}': {e}") from e
    except Exception as e:  # a bug in the pass: keep what is needed to reproduce it
        raise _pass_bug(p, i, e, active, reproducer) from e


def _pass_bug(p: Pass, index: int, error: Exception, active: list[Instrument],
              reproducer: Reproducer | None) -> PassFailed:
    for inst in active:
        inst.pass_failed(p, index, error)
    repro = reproducer.written if reproducer is not None else None
    where = f"; reproducer written to {repro}" if repro else ""
    return PassFailed(f"pass '{p.name}' failed: {type(error).__name__}: "
                      f"{' '.join(str(error).split())}{where}", repro)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (int, float, str, bool)) or obj is None:
        return obj
    return str(obj)

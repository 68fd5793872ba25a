"""Pass instruments (as TVM's PassInstrument): what the pass manager does around every pass.

An instrument sees each pass before it runs and after it returned, and is told when one
raised; passes never call instruments themselves. ``run_pipeline`` builds its instruments from
its arguments (verification and timing always; ``print_ir_after``; the reproducer when it knows
the input file) and runs any extra ones the caller gives.

``after_pass`` may raise: VerifyAfterPass raises the IR's VerificationError, which the pass
manager reports as a bug in the pass that just ran.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optc.ir import Model, format_graph, verify
from optc.pass_base import Pass, PassContext, PassResult


class Instrument:
    """Base class: every hook does nothing."""

    def before_pass(self, p: Pass, model: Model, ctx: PassContext) -> None:
        """Called before ``p.requires``."""

    def after_pass(self, p: Pass, model: Model, result: PassResult) -> None:
        """Called after ``p.run`` returned."""

    def pass_failed(self, p: Pass, index: int, error: Exception) -> None:
        """Called when ``p`` (the ``index``-th pass) raised or broke the IR."""


class VerifyAfterPass(Instrument):
    """Check the IR's invariants after every pass (optc.ir.verify)."""

    def after_pass(self, p: Pass, model: Model, result: PassResult) -> None:
        verify(model.graph)


@dataclass
class PassRecord:
    name: str
    seconds: float
    modified: bool
    stats: dict[str, Any] = field(default_factory=dict)
    nodes_after: int = 0
    #: the pass's PassResult.artifacts (its plan, what it measured): for reports, not JSON
    artifacts: dict[str, Any] = field(default_factory=dict)


class Timing(Instrument):
    """Wall time, stats, artifacts and node count of every pass that ran, in ``records``
    (time from before ``requires`` to after ``run``, instruments that run later excluded)."""

    def __init__(self) -> None:
        self.records: list[PassRecord] = []
        self._start = 0.0

    def before_pass(self, p: Pass, model: Model, ctx: PassContext) -> None:
        self._start = time.perf_counter()

    def after_pass(self, p: Pass, model: Model, result: PassResult) -> None:
        self.records.append(PassRecord(p.name, time.perf_counter() - self._start,
                                       result.modified, dict(result.stats), len(model.graph),
                                       result.artifacts))


class PrintIRAfter(Instrument):
    """Print the IR after each pass named ``name`` (``all``: after every pass)."""

    def __init__(self, name: str, printer: Callable[[str], None] = print) -> None:
        self.name, self.printer = name, printer

    def after_pass(self, p: Pass, model: Model, result: PassResult) -> None:
        if self.name in ("all", p.name):
            self.printer(f"// ----- IR after {p} -----\n{format_graph(model.graph)}")


class Reproducer(Instrument):
    """When a pass fails with a bug (not a user error), write a folder that reproduces it:
    the input model, the pipeline up to the failing pass -- each pass before it replaced by
    its exact replay (``Pass.replay``: quantize's plan file instead of a latency probe that
    would choose again) -- and the traceback. ``written`` is the folder (None until then, or
    if it could not be written)."""

    def __init__(self, source: str | Path) -> None:
        self.source = Path(source)
        self.written: Path | None = None
        self._done: list[tuple[Pass, dict[str, Any]]] = []

    def after_pass(self, p: Pass, model: Model, result: PassResult) -> None:
        self._done.append((p, result.artifacts))

    def pass_failed(self, p: Pass, index: int, error: Exception) -> None:
        from optc.pipeline import Pipeline

        try:
            d = Path(tempfile.mkdtemp(prefix="optc-repro-"))
            shutil.copyfile(self.source, d / "model.onnx")
            passes = [done.replay(artifacts, d) for done, artifacts in self._done[:index]]
            (d / "pipeline.txt").write_text(str(Pipeline([*passes, p])) + "\n")
            (d / "error.txt").write_text("".join(traceback.format_exception(error)))
            (d / "README.txt").write_text(
                "Reproduce with (in this folder):\n  optc optimize model.onnx -o out.onnx "
                "--debug --passes \"$(cat pipeline.txt)\"\n")
            self.written = d
        except OSError:
            self.written = None

"""Session-wide test hooks."""

import os
import tempfile


def pytest_configure(config):
    """The per-CPU tuning files (optc.runtime.tune) of this run go to a directory of its own,
    never the user's ~/.cache/optc/tune: `optc bench` tunes by default, and a test must not
    read a choice some earlier run left (nor leave one)."""
    if "OPTC_TUNE_DIR" not in os.environ:
        config._optc_tune = tempfile.TemporaryDirectory(prefix="optc-tune-")
        os.environ["OPTC_TUNE_DIR"] = config._optc_tune.name


def pytest_unconfigure(config):
    tune = getattr(config, "_optc_tune", None)
    if tune is not None:
        os.environ.pop("OPTC_TUNE_DIR", None)
        tune.cleanup()


def pytest_terminal_summary(terminalreporter):
    """Print how the ONNX backend node tests went on optc.runtime: matched onnx's expected
    outputs, checked another way (random ops), refused with the asserted error (preview-domain
    ops), skipped (training mode), failed."""
    kinds = {"exact": "matched onnx's expected outputs",
             "random": "random op, checked for shape, dtype and values",
             "preview": "ai.onnx.preview op, refused with the asserted error",
             "training": "training mode, skipped"}
    counts: dict[str, int] = {}
    failed = 0
    for outcome in ("passed", "skipped", "failed"):
        for rep in terminalreporter.stats.get(outcome, []):
            if "test_backend_node.py::test_node" not in rep.nodeid:
                continue
            if outcome == "failed":
                failed += 1
                continue
            if (rep.when != "call") if outcome == "passed" else rep.when not in ("call", "setup"):
                continue
            what = dict(rep.user_properties).get("node_test", "?")
            counts[what] = counts.get(what, 0) + 1
    if counts or failed:
        terminalreporter.write_sep("=", "ONNX backend node tests on optc.runtime")
        for what, label in kinds.items():
            if counts.get(what):
                terminalreporter.write_line(f"{counts[what]:>5} {label}")
        terminalreporter.write_line(f"{failed:>5} failed")

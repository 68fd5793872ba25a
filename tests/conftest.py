"""Session-wide test hooks."""


def pytest_terminal_summary(terminalreporter):
    """Print how many ONNX backend node tests optc.runtime passed (and skipped, and why)."""
    counts = {}
    reasons = {}
    for outcome in ("passed", "skipped", "failed"):
        for rep in terminalreporter.stats.get(outcome, []):
            if "test_backend_node.py" not in rep.nodeid or rep.when not in ("call", "setup"):
                continue
            if outcome == "passed" and rep.when != "call":
                continue
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome == "skipped" and isinstance(rep.longrepr, tuple):
                reason = rep.longrepr[2].replace("Skipped: ", "")
                key = reason.split(",")[0] if reason.startswith("uses ") else reason
                key = "uses an op optc.runtime does not implement" if \
                    key.startswith("uses ") else key
                reasons[key] = reasons.get(key, 0) + 1
    if counts:
        terminalreporter.write_sep("=", "ONNX backend node tests on optc.runtime")
        terminalreporter.write_line(
            f"{counts.get('passed', 0)} passed, {counts.get('failed', 0)} failed, "
            f"{counts.get('skipped', 0)} skipped")
        for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            terminalreporter.write_line(f"  skipped {n}: {reason}")

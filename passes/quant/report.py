"""The quantize section of ``optc optimize --report DIR``: report.md text and PNG plots.

* every layer: int8 or float, the output SQNR with only that layer int8, and why (the latency
  probe's timings, or the accuracy budget that sent it back to float);
* every quantized activation: the thresholds each calibration method would choose, the one
  used, scale and zero point, and a plot of its |x| histogram with those thresholds
  (DIR/quantize/NN_name.png, log-scale counts).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from optc.passes.quant.observers import Observer

_METHODS = ("max", "percentile", "mse", "kl")


def _thresholds(obs: Observer, percentile: float) -> dict[str, float]:
    return {m: obs.threshold(m, percentile=percentile) for m in _METHODS}


def _plot(obs: Observer, name: str, thresholds: dict[str, float], chosen: float | None,
          path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    edges = obs.edges
    ax.stairs(np.maximum(obs.hist, 0.5), edges, fill=True, alpha=0.5, label="|x| histogram")
    ax.set_yscale("log")
    for (method, t), colour in zip(thresholds.items(), ("C1", "C2", "C3", "C4")):
        ax.axvline(t, color=colour, lw=2.5 if chosen is not None and np.isclose(t, chosen)
                   else 1.0, label=f"{method} {t:.4g}")
    ax.set_xlim(0, max(thresholds.values()) * 1.05 or 1.0)
    ax.set_xlabel("|x|")
    ax.set_ylabel("count")
    ax.set_title(name if len(name) < 70 else "..." + name[-67:], fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _file_name(i: int, name: str) -> str:
    return f"{i:03d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('_')[-60:]}.png"


def markdown(q, directory: str | Path) -> str:
    """The report section for a Quantize pass that has run; writes its plots."""
    lines = [f"## quantize (mode={q.mode}, method={q.method})", ""]
    if q.mode != "static":
        lines.append("No calibration in this mode: weights only are quantized ahead of time.")
        return "\n".join(lines) + "\n"
    if q.model_sqnr is not None:
        lines += [f"Output SQNR of the quantized model vs float on the first calibration batch "
                  f"(onnxruntime): **{q.model_sqnr:.1f} dB**"
                  + (f" (budget {q.min_sqnr:g} dB)" if q.min_sqnr > 0 else ""), ""]
    n_int8 = sum(ok for ok, _ in q.decisions.values())
    lines += [f"{n_int8} of {len(q.decisions)} layers int8.", "",
              "| layer | int8 | SQNR alone (dB) | why |", "|---|---|---|---|"]
    for name, (ok, why) in q.decisions.items():
        s = q.layer_sqnr.get(name)
        lines.append(f"| `{name}` | {'yes' if ok else 'no'} | "
                     f"{'-' if s is None else f'{s:.1f}'} | {why} |")
    plots = Path(directory) / "quantize"
    plots.mkdir(parents=True, exist_ok=True)
    lines += ["", "Activations (thresholds of each method; the one used in bold):", "",
              "| tensor | " + " | ".join(_METHODS) + " | scale | zero point | plot |",
              "|---" * (len(_METHODS) + 4) + "|"]
    for i, (name, (used, scale, zero)) in enumerate(q.activations.items()):
        obs = q.observers.get(name)
        if obs is None or used is None:  # a pass-through op's output inherits its scale
            lines.append(f"| `{name}` | " + " | ".join("-" for _ in _METHODS)
                         + f" | {scale:.4g} | {zero} | (inherited) |")
            continue
        ts = _thresholds(obs, q.percentile)
        applied = q.methods_used.get(name, q.method)
        cells = [f"**{t:.4g}**" if np.isclose(t, used) and m == applied else f"{t:.4g}"
                 for m, t in ts.items()]
        file = _file_name(i, name)
        _plot(obs, name, ts, used, plots / file)
        lines.append(f"| `{name}` | " + " | ".join(cells)
                     + f" | {scale:.4g} | {zero} | [png](quantize/{file}) |")
    return "\n".join(lines) + "\n"

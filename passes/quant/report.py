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


def markdown(q, plan, observers: dict[str, Observer], activations: dict, directory,
             plan_path) -> str:
    """The report section for a run of the Quantize pass ``q``: its ``plan`` (written at
    ``plan_path``), the calibration ``observers`` (none on a replay) and the ``activations``
    the rewrite wrote (name -> (threshold or None when inherited, scale, zero point)); writes
    the plots."""
    method = plan.options.get("method", q.method)
    lines = [f"## quantize (mode={plan.mode}, method={method})", "",
             f"Plan: [{Path(plan_path).name}]({Path(plan_path).name}) (replay: "
             f"`quantize{{plan={plan_path}}}`)", ""]
    if plan.mode != "static":
        lines.append("No calibration in this mode: weights only are quantized ahead of time.")
        return "\n".join(lines) + "\n"
    if plan.model_sqnr is not None:
        lines += [f"Output SQNR of the quantized model vs float on the first calibration batch "
                  f"(onnxruntime): **{plan.model_sqnr:.1f} dB**"
                  + (f" (budget {q.min_sqnr:g} dB)" if q.min_sqnr > 0 else ""), ""]
    n_int8 = sum(ok for ok, _ in plan.layers.values())
    lines += [f"{n_int8} of {len(plan.layers)} layers int8.", "",
              "| layer | int8 | SQNR alone (dB) | why |", "|---|---|---|---|"]
    for name, (ok, why) in plan.layers.items():
        s = plan.layer_sqnr.get(name)
        lines.append(f"| `{name}` | {'yes' if ok else 'no'} | "
                     f"{'-' if s is None else f'{s:.1f}'} | {why} |")
    plots = Path(directory) / "quantize"
    plots.mkdir(parents=True, exist_ok=True)
    lines += ["", "Activations (thresholds of each method; the one used in bold):", "",
              "| tensor | " + " | ".join(_METHODS) + " | scale | zero point | plot |",
              "|---" * (len(_METHODS) + 4) + "|"]
    for i, (name, (used, scale, zero)) in enumerate(activations.items()):
        obs = observers.get(name)
        if obs is None or used is None:  # inherited from a pass-through op, or a replay
            lines.append(f"| `{name}` | " + " | ".join("-" for _ in _METHODS)
                         + f" | {scale:.4g} | {zero} | "
                         + ("(inherited) |" if used is None else "(replayed plan) |"))
            continue
        ts = _thresholds(obs, q.percentile)
        params = plan.activations.get(name)
        applied = params.method if params is not None and params.method else method
        cells = [f"**{t:.4g}**" if np.isclose(t, used) and m == applied else f"{t:.4g}"
                 for m, t in ts.items()]
        file = _file_name(i, name)
        _plot(obs, name, ts, used, plots / file)
        lines.append(f"| `{name}` | " + " | ".join(cells)
                     + f" | {scale:.4g} | {zero} | [png](quantize/{file}) |")
    return "\n".join(lines) + "\n"

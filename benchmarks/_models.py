"""The models the runtime benchmarks time: `light` architectures with seeded random weights
and the models/ nets (imported by runtime_vs_ort.py and int8_runtime.py, run as scripts)."""

from __future__ import annotations

from pathlib import Path

import optc
from optc.testing import light_at_opset, light_model, randomize_light

REPO = Path(__file__).resolve().parent.parent


def model_files(light: tuple[str, ...], wanted: list[str] | None, directory: str | Path,
                opset: int | None = None) -> list[Path]:
    """The light models named in ``light`` (random weights, constant-folded by optc, at
    ``opset`` or newer when given) saved under ``directory``, then models/*.onnx; only the
    names in ``wanted`` when it is given."""
    paths = []
    for name in light:
        if wanted and name not in wanted:
            continue
        proto = light_at_opset(name, opset) if opset else randomize_light(light_model(name))
        model, _ = optc.optimize(proto, passes="freeze-initializers,fold-constants")
        path = Path(directory) / f"{name}_random.onnx"
        optc.save(model, path)
        paths.append(path)
    return paths + [p for p in sorted((REPO / "models").glob("*.onnx"))
                    if not wanted or p.stem in wanted]

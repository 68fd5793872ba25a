"""A quantization plan: everything quantize decided, as data that replays exactly.

``Quantize.decide`` makes one (calibration, the latency probe, the accuracy budget);
``Quantize.apply`` rewrites the model from it and nothing else, so ``quantize{plan=FILE}``
reproduces a run bit for bit without calibration data or timings. The JSON file::

    {"format": "optc.quantize-plan", "version": 1,
     "mode": "static",
     "options": {"method": "percentile", "activation_type": "uint8", "symmetric": true,
                 "per_channel": true, "reduce_range": false, "bias_correction": true},
     "layers": {"conv1": {"int8": true, "why": "onnxruntime 0.1 ms float, ..."}, ...},
     "activations": {"x": {"scale": 0.0123, "zero_point": 0, "threshold": 1.57,
                           "method": "percentile"}, ...},
     "bias_shifts": {"conv1.weight": [0.001, ...] or null, ...},
     "sqnr": {"model": 38.2, "layers": {"conv1": 45.1}}}

``layers`` holds every candidate layer (by selection.key) in graph order, int8 or left
float with the reason; ``activations`` the scale and zero point of each tensor whose
quantization parameters come from calibration (those a pass-through op inherits are not
listed); ``bias_shifts`` the bias correction of each weight (null: none). ``sqnr`` is what
the decision measured, for the report only. Floats are written with Python's repr, which
reads back to the same double, so a replay computes the same float32 constants.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optc.errors import OptcError

FORMAT = "optc.quantize-plan"
VERSION = 1
#: the options the rewrite reads (the rest only steer the decision)
REWRITE_OPTIONS = ("method", "activation_type", "symmetric", "per_channel", "reduce_range",
                   "bias_correction")


@dataclass(frozen=True)
class ActivationParams:
    scale: float
    zero_point: int
    threshold: float | None = None  # for the report: the clipping threshold chosen
    method: str | None = None  # for the report: the calibration method applied


@dataclass
class QuantPlan:
    mode: str
    options: dict[str, Any]
    #: layer key -> (int8?, why), every candidate in graph order
    layers: dict[str, tuple[bool, str]]
    activations: dict[str, ActivationParams] = field(default_factory=dict)
    bias_shifts: dict[str, np.ndarray | None] = field(default_factory=dict)
    model_sqnr: float | None = None
    layer_sqnr: dict[str, float] = field(default_factory=dict)

    # --- JSON ------------------------------------------------------------------------------
    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "mode": self.mode, "options": self.options,
            "layers": {k: {"int8": ok, "why": why} for k, (ok, why) in self.layers.items()},
            "activations": {k: {"scale": float(a.scale), "zero_point": int(a.zero_point),
                                "threshold": None if a.threshold is None
                                else float(a.threshold), "method": a.method}
                            for k, a in self.activations.items()},
            "bias_shifts": {k: None if v is None else [float(x) for x in np.ravel(v)]
                            for k, v in self.bias_shifts.items()},
            "sqnr": {"model": self.model_sqnr, "layers": self.layer_sqnr},
        }

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.as_json(), indent=1) + "\n")

    @classmethod
    def read(cls, path: str | Path) -> QuantPlan:
        try:
            doc = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise OptcError(f"{path}: quantization plan not found") from None
        except (OSError, ValueError) as e:
            raise OptcError(f"{path}: not a readable JSON quantization plan ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise OptcError(f"{path}: not a quantization plan (no \"format\": \"{FORMAT}\"; "
                            f"it is the quantize_plan.json that --report writes)")
        if doc.get("version") != VERSION:
            raise OptcError(f"{path}: quantization plan version {doc.get('version')}; this "
                            f"optc reads version {VERSION}")
        try:
            options = dict(doc["options"])
            missing = [o for o in REWRITE_OPTIONS if o not in options]
            if missing:
                raise KeyError(", ".join(missing))
            sqnr = doc.get("sqnr") or {}
            return cls(
                mode=str(doc["mode"]), options=options,
                layers={str(k): (bool(v["int8"]), str(v["why"]))
                        for k, v in doc["layers"].items()},
                activations={str(k): ActivationParams(float(v["scale"]), int(v["zero_point"]),
                                                      v.get("threshold"), v.get("method"))
                             for k, v in doc.get("activations", {}).items()},
                bias_shifts={str(k): None if v is None else np.asarray(v, np.float64)
                             for k, v in doc.get("bias_shifts", {}).items()},
                model_sqnr=sqnr.get("model"), layer_sqnr=dict(sqnr.get("layers") or {}))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise OptcError(f"{path}: malformed quantization plan (missing or bad {e})") \
                from None

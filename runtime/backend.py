"""optc.runtime as an ``onnx.backend.base.Backend`` (what the ONNX backend tests drive)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from optc.runtime.session import InferenceSession


class OptcBackendRep(BackendRep):
    def __init__(self, session: InferenceSession):
        self.session = session

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, dict):
            feeds = inputs
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            names = [i.name for i in self.session.get_inputs()]
            feeds = dict(zip(names, inputs))
        return tuple(self.session.run(None, feeds))


class OptcBackend(Backend):
    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper().startswith("CPU")

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any
                ) -> OptcBackendRep:
        super().prepare(model, device, **kwargs)
        return OptcBackendRep(InferenceSession(model))

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU",
                  **kwargs: Any) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)


prepare = OptcBackend.prepare
run_model = OptcBackend.run_model
supports_device = OptcBackend.supports_device

"""optc: an ONNX graph compiler and model optimizer.

Python API (see README.md)::

    import optc
    model = optc.load("model.onnx")
    report = optc.optimize(model, passes="default")
    optc.save(model, "out.onnx")
"""

from __future__ import annotations

from optc.errors import OptcError
from optc.ir import Graph, Model, Node, Value, load, save, verify
from optc.pass_base import Pass, PassResult, register

__version__ = "0.1.0"


def optimize(model, passes: str = "default", calib=None, **kwargs):
    """Run a pipeline (text or Pipeline) over ``model`` (path, bytes, ModelProto or Model).

    ``calib``: calibration DATA for quantize: a path (.npz, or a folder of .npy/.npz) or a
    dict of input name -> samples. Returns ``(model, report)``; a Model given in is edited in
    place.
    """
    from optc.pipeline import run_pipeline

    model = load(model)
    if calib is not None and not isinstance(calib, dict):
        from optc.data import read_data

        inputs = [v.name for v in model.graph.inputs if not model.graph.is_initializer(v)]
        calib = read_data(calib, inputs)
    report = run_pipeline(model, passes, calib=calib, **kwargs)
    return model, report


__all__ = ["Graph", "Model", "Node", "OptcError", "Pass", "PassResult", "Value", "load",
           "optimize", "register", "save", "verify", "__version__"]

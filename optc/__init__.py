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

    ``calib``: calibration DATA for quantize: a path (.npz, a folder of .npy/.npz, a folder
    of per-run feeds, see optc.data), a dict of input name -> samples, or a list of feeds (one
    run each: models whose inputs are not all batched). Other keywords go to
    ``optc.pipeline.run_pipeline`` (``engine``, ``input_shapes``, ``collect_report``, ...).
    Returns ``(model, report)``; a Model given in is edited in place.
    """
    from optc.pipeline import run_pipeline

    model = load(model)
    if calib is not None and not isinstance(calib, (dict, list, tuple)):
        from optc.data import read_calibration

        calib = read_calibration(calib, model)
    report = run_pipeline(model, passes, calib=calib, **kwargs)
    return model, report


__all__ = ["Graph", "Model", "Node", "OptcError", "Pass", "PassResult", "Value", "load",
           "optimize", "register", "save", "verify", "__version__"]

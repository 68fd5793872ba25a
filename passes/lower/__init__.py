"""Lowerings of convolutions to faster algorithms (Winograd) for optc's runtime, each with a
``portable`` form in standard ONNX ops that onnxruntime can check."""

from optc.passes.lower.winograd import Winograd  # noqa: F401

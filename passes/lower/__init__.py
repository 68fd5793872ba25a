"""Lowerings of convolutions to faster algorithms for optc's runtime: Winograd (with a
``portable`` form in standard ONNX ops that onnxruntime can check) and FFT, and QDQ convs to
QLinearConv for integer-only int8 execution; and tune-depthwise, which picks the C path of
each depthwise conv by timing both on this CPU."""

from optc.passes.lower.fft import FFTLower  # noqa: F401
from optc.passes.lower.qlinear import QLinear  # noqa: F401
from optc.passes.lower.tune_depthwise import TuneDepthwise  # noqa: F401
from optc.passes.lower.winograd import Winograd  # noqa: F401

"""optc.runtime: optc's own executor (NumPy kernels today; C kernels, Winograd/FFT and int8
arrive with the fast-runtime issue and register over the same table).

    from optc.runtime import InferenceSession
    sess = InferenceSession("model.onnx")          # same calls as onnxruntime's
    outputs = sess.run(None, {"input": x})
    print(sess.peak_bytes)                         # peak activation memory of that run
"""

from optc.runtime.registry import OPTC_DOMAIN, kernel, lookup, supported_ops
from optc.runtime.session import InferenceSession, NodeArg

__all__ = ["OPTC_DOMAIN", "InferenceSession", "NodeArg", "kernel", "lookup", "supported_ops"]

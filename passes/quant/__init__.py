"""Quantization: streaming calibration observers, the calibration driver, and QDQ insertion."""

from optc.passes.quant.calibrate import calibrate  # noqa: F401
from optc.passes.quant.observers import METHODS, Observer, quant_params  # noqa: F401
from optc.passes.quant.qdq import Quantize  # noqa: F401
from optc.passes.quant.equalize import Equalize  # noqa: F401

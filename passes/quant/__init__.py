"""Quantization: streaming calibration observers (today); QDQ insertion and accuracy recovery
arrive with the rest of the quantization issue."""

from optc.passes.quant.calibrate import calibrate  # noqa: F401
from optc.passes.quant.observers import METHODS, Observer, quant_params  # noqa: F401

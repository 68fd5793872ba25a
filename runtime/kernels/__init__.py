"""optc.runtime's NumPy kernels, one module per family; importing this package registers them."""

from optc.runtime.kernels import (  # noqa: F401
    conv, elementwise, fft, fused, math, nn, pool, qlinear, quant, reduce, resize, tensor,
    winograd)

"""optc.runtime's NumPy kernels, one module per family; importing this package registers them."""

from optc.runtime.kernels import conv, elementwise, nn, pool, quant, resize, tensor  # noqa: F401

"""optc.runtime's NumPy kernels, one module per family; importing this package registers them."""

from optc.runtime.kernels import (  # noqa: F401
    conv, elementwise, fft, fused, indexing, math, nn, normalization, pool, qlinear, quant,
    reduce, resize, rnn, tensor, winograd)

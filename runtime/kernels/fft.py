"""FFT convolution for large kernels (5x5 and up): ai.optc FFTConv, written by the ``fft``
lowering pass.

A stride-1 convolution (cross-correlation) is a point-wise product in the frequency domain.
The padded input is cut into overlapping tiles of F x F pixels (overlap-save: consecutive tiles
start To = F - k + 1 apart), each tile is transformed with a real 2-D FFT, and for every
frequency bin the sum over input channels is one complex GEMM:

    Y[bin] (M x tiles) = W[bin] (M x C) @ X[bin] (C x tiles),   W = FFT(flipped filters),

transformed back (inverse real FFT); of each F x F result the last To x To pixels are the
output tile (the first k - 1 rows/columns wrapped around and are dropped). Per output pixel
and channel pair that is 4 F (F/2 + 1) / To^2 real multiplications against k^2 for direct
convolution: for k = 5 and F = 16, 4.0 against 25.

The filter transforms W depend only on F, so the pass stores them (real and imaginary parts,
float32, shape (2, F * (F/2 + 1), M, C)). Error: FFT round-off, about 1e-6 relative in float32
(measured in the tests).

Kernel inputs: X (N, C, H, W), the transformed filters, optional bias (M), optional Z
(FusedConv's residual input, added before the activation); attributes
``fft_size`` (F), ``kernel_shape``, ``pads`` (top, left, bottom, right) and optionally the
fused ``activation`` / ``activation_params``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from optc.errors import OptcError
from optc.runtime.kernels.fused import apply_activation
from optc.runtime.registry import OPTC_DOMAIN, kernel


def transform_filters(w: np.ndarray, f: int) -> np.ndarray:
    """(M, C, kh, kw) -> (2, F * (F/2 + 1), M, C): real and imaginary parts of the FFT of each
    flipped filter, zero-padded to F x F."""
    m, c, kh, kw = w.shape
    if kh > f or kw > f:
        raise OptcError(f"FFT size {f} is smaller than the {kh}x{kw} kernel")
    spec = np.fft.rfft2(w[:, :, ::-1, ::-1].astype(np.float64), s=(f, f))  # (M, C, F, F/2+1)
    spec = spec.reshape(m, c, -1).transpose(2, 0, 1)
    return np.stack([spec.real, spec.imag]).astype(w.dtype)


@kernel("FFTConv", (1,), domain=OPTC_DOMAIN)
def fft_conv(x, wf, b=None, z=None, *, fft_size, kernel_shape, pads=(0, 0, 0, 0), activation=None,
             activation_params=None):
    f = int(fft_size)
    kh, kw = (int(k) for k in kernel_shape)
    n, c, h, w = x.shape
    bins = f * (f // 2 + 1)
    if wf.shape[0] != 2 or wf.shape[1] != bins or wf.shape[3] != c:
        raise OptcError(f"FFTConv filters {list(wf.shape)} do not fit FFT size {f} and {c} "
                        f"input channels")
    mo = wf.shape[2]
    pads = list(pads)
    ho, wo = h + pads[0] + pads[2] - kh + 1, w + pads[1] + pads[3] - kw + 1
    to_h, to_w = f - kh + 1, f - kw + 1
    th, tw = -(-ho // to_h), -(-wo // to_w)
    # pad so the th x tw tiles (F x F inputs, To apart) fit exactly
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], th * to_h + kh - 1 - h - pads[0]),
                    (pads[1], tw * to_w + kw - 1 - w - pads[1])))
    sn, sc, sh, sw = xp.strides
    tiles = as_strided(xp, (n, c, th, tw, f, f), (sn, sc, to_h * sh, to_w * sw, sh, sw),
                       writeable=False)
    spec = np.fft.rfft2(tiles)  # (N, C, th, tw, F, F/2+1)
    ctype = np.complex64 if x.dtype == np.float32 else np.complex128
    xs = spec.reshape(n, c, th * tw, bins).transpose(3, 1, 0, 2).reshape(bins, c, -1)
    wc = (wf[0] + 1j * wf[1]).astype(ctype)  # (bins, M, C)
    ys = np.matmul(wc, xs.astype(ctype))  # (bins, M, tiles): one complex GEMM per bin
    ys = ys.reshape(f, f // 2 + 1, mo, n, th, tw).transpose(2, 3, 4, 5, 0, 1)
    full = np.fft.irfft2(ys, s=(f, f))  # (M, N, th, tw, F, F)
    out = full[..., kh - 1:, kw - 1:]  # the valid (non-wrapped) part of each tile
    y = out.transpose(1, 0, 2, 4, 3, 5).reshape(n, mo, th * to_h, tw * to_w)[:, :, :ho, :wo]
    y = np.ascontiguousarray(y, dtype=x.dtype)
    if b is not None:
        y += b.reshape(1, -1, 1, 1).astype(x.dtype)
    if z is not None:  # FusedConv's residual input
        y = y + z
    if activation:
        y = apply_activation(activation, activation_params, y)
    return y

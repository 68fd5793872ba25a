"""Winograd minimal filtering F(m x m, 3 x 3) for 3x3, stride-1 convolutions: ai.optc
WinogradConv, written by the ``winograd`` lowering pass.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016): an output tile
of m x m pixels needs an input tile d of a x a (a = m + 2) and

    Y = A^T [ U (.) V ] A,   U = G g G^T  (per filter, transformed once, stored),
                             V = B^T d B  (per input tile)

where (.) is an element-wise product summed over input channels. Done for all tiles at once,
the sum over channels is one GEMM per tile position (i, j): M[i,j] = U[i,j] (M x C) @
V[i,j] (C x tiles), a^2 GEMMs of C*M*tiles multiplications against 9*m^2*C*M*tiles/... for
direct convolution: 2.25x fewer for F(2x2,3x3), 4x fewer for F(4x4,3x3). The transforms are
additions (and small constant multiplies for m = 4); their cost grows with the tile count, not
with the channel count, so large channel counts gain most.

Error: the transforms are exact for m = 2 (entries 0, +-1, 1/2); for m = 4 the matrices hold
1/4, 1/6, 1/24, 2, 4, 8 and the float32 error grows (measured in the tests and the benchmark).

Kernel inputs: X (N, C, H, W), U (a*a, M, C) float, optional bias (M), optional Z (a residual
input added before the activation, FusedConv's fourth input); attributes ``tile`` (m),
``pads`` (top, left, bottom, right), and optionally the fused ``activation`` /
``activation_params`` of FusedConv.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from optc.errors import OptcError
from optc.runtime.config import DEFAULT, RuntimeConfig
from optc.runtime.kernels import native
from optc.runtime.kernels.fused import apply_activation
from optc.runtime.registry import OPTC_DOMAIN, kernel

# F(2x2, 3x3)
_BT2 = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
_G2 = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
_AT2 = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)
# F(4x4, 3x3)
_BT4 = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                 [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64)
_G4 = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64)
_AT4 = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                 [0, 1, -1, 8, -8, 1]], np.float64)

TILES = (2, 4)


def matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B^T, G, A^T) of F(m x m, 3 x 3)."""
    if m == 2:
        return _BT2, _G2, _AT2
    if m == 4:
        return _BT4, _G4, _AT4
    raise OptcError(f"Winograd tile {m} is not supported (tiles: {TILES})")


def transform_weights(w: np.ndarray, m: int) -> np.ndarray:
    """U = G g G^T for every (output, input) channel pair: (M, C, 3, 3) -> (a*a, M, C)."""
    _, g, _ = matrices(m)
    a = m + 2
    u = np.einsum("ik,mckl,jl->ijmc", g, w.astype(np.float64), g, optimize=True)
    return u.reshape(a * a, w.shape[0], w.shape[1]).astype(w.dtype)


def output_size(h: int, w: int, pads) -> tuple[int, int]:
    return h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2


class WinogradState:
    """What a WinogradConv node keeps in the session's plan: its constant transformed
    weights u, packed once for the C GEMM (native.pack_panels)."""

    __slots__ = ("u", "packed")

    def __init__(self, u: np.ndarray):
        self.u = u
        self.packed = native.pack_panels(u)


def prepare_winograd(config: RuntimeConfig, constants: list, attrs: dict
                     ) -> WinogradState | None:
    u = constants[1] if len(constants) > 1 else None
    if not config.native or not native.simd_float() or u is None or u.ndim != 3 or \
            u.dtype != np.float32:
        return None
    return WinogradState(u)


def _winograd_plan(args, attrs):
    """A WinogradConv step as a plan's op (registry: ``plan``): native.winograd_blocked's,
    with the node's packed filters; None where that does not run it."""
    x, u = args[0], args[1]
    state, config = attrs.get("_state"), attrs.get("_config") or DEFAULT
    if not config.native or state is None or state.u is not u or \
            x.__class__ is not np.ndarray or x.ndim != 4:
        return None
    m = int(attrs["tile"])
    pads = list(attrs.get("pads", (0, 0, 0, 0)))
    if u.shape[0] != (m + 2) ** 2 or u.shape[2] != x.shape[1]:
        return None
    ho, wo = output_size(x.shape[2], x.shape[3], pads)
    return native.winograd_plan_op(x, u, args[2] if len(args) > 2 else None, m, -(-ho // m),
                                   -(-wo // m), pads, (ho, wo), attrs.get("activation"),
                                   attrs.get("activation_params"),
                                   args[3] if len(args) > 3 else None, config.threads,
                                   state.packed)


@kernel("WinogradConv", (1,), domain=OPTC_DOMAIN, prepare=prepare_winograd,
        plan=_winograd_plan)
def winograd_conv(x, u, b=None, z=None, *, tile, pads=(0, 0, 0, 0), activation=None,
                  activation_params=None, _config=None, _state=None):
    m = int(tile)
    a = m + 2
    bt, _, at = matrices(m)
    n, c, h, w = x.shape
    if u.shape[0] != a * a or u.shape[2] != c:
        raise OptcError(f"WinogradConv weights {list(u.shape)} do not fit tile {m} and "
                        f"{c} input channels")
    pads = list(pads)
    ho, wo = output_size(h, w, pads)
    th, tw = -(-ho // m), -(-wo // m)
    config = _config or DEFAULT
    packed = _state.packed if _state is not None and _state.u is u else None
    y = None
    if config.native:  # all in C, a block of tiles at a time
        y = native.winograd_blocked(x, u, b, m, th, tw, pads, (ho, wo), activation,
                                    activation_params, z, config.threads, packed)
    if y is not None:
        return y
    # pad so that th x tw tiles (each m x m outputs from a x a inputs) fit exactly
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], th * m + 2 - h - pads[0]),
                    (pads[1], tw * m + 2 - w - pads[1])))
    if config.native:  # transforms in C, the GEMMs shared among threads
        y = native.winograd_conv(xp, u, b, m, th, tw, (ho, wo), activation, activation_params,
                                 z, config.threads, packed)
    if y is not None:
        return y
    sn, sc, sh, sw = xp.strides
    tiles = as_strided(xp, (n, c, th, tw, a, a), (sn, sc, m * sh, m * sw, sh, sw),
                       writeable=False)
    dt = x.dtype
    # V = B^T d B for every tile, as two GEMMs against the small transform (one per axis):
    # (N, C, th, tw, a_j, a_k) -> (N, C, th, tw, a_k, a_i) -> (N, C, th, tw, a_i, a_l)
    v = np.tensordot(tiles, bt.T.astype(dt), axes=([4], [0]))
    v = np.tensordot(v, bt.T.astype(dt), axes=([4], [0]))
    # -> (a*a, C, N*th*tw): one (C x tiles) matrix per tile position
    v = np.ascontiguousarray(v.transpose(4, 5, 1, 0, 2, 3)).reshape(a * a, c, n * th * tw)
    prod = np.matmul(u, v)  # (a*a, M, tiles): one GEMM per tile position
    mo = u.shape[1]
    # Y = A^T M A, again one axis at a time: (a_i, a_j, M, tiles) -> (m_o, m_q, M, tiles)
    prod = prod.reshape(a, a, mo * n * th * tw)
    y = np.tensordot(at.astype(dt), prod, axes=([1], [0]))  # (m_o, a_j, rest)
    y = np.tensordot(at.astype(dt), y, axes=([1], [1]))  # (m_q, m_o, rest)
    # (m_q, m_o, M, N, th, tw) -> (N, M, th, m_o, tw, m_q)
    y = y.reshape(m, m, mo, n, th, tw).transpose(3, 2, 4, 1, 5, 0)
    y = y.reshape(n, mo, th * m, tw * m)[:, :, :ho, :wo]
    y = np.ascontiguousarray(y)
    if b is not None:
        y += b.reshape(1, -1, 1, 1).astype(dt)
    if z is not None:
        y = y + z
    if activation:
        y = apply_activation(activation, activation_params, y)
    return y

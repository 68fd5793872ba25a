"""Streaming calibration observers: one per tensor, memory independent of the number of samples.

An observer sees batches of a tensor's values (``update``) and keeps
* the exact minimum and maximum, and
* a histogram of |x| with a fixed number of bins (default 2048) over [0, R). When a batch
  exceeds R, R doubles (as often as needed) and pairs of bins merge -- an exact re-binning, so
  the histogram never depends on the order in which batches arrive beyond the final range.
Two observers of the same tensor (e.g. from two workers) ``merge``.

Thresholds (the clipping value T of a symmetric range [-T, T]; with b bits the scale is
s = T / (2^(b-1) - 1) and Q = clamp(round(r / s))):
* ``max``: T = max |x| (exact, not from the histogram);
* ``percentile``: the smallest bin edge below which ``percentile`` % of |x| lie;
* ``mse``: the bin edge minimising the expected squared error between x and its quantized
  value, every candidate edge evaluated at once (values taken at their bin centres);
* ``kl``: TensorRT's entropy calibration: for every candidate edge i (from 128 bins up) the
  reference distribution P is the histogram cut at i with the outliers added to its last bin,
  Q is P merged into 128 levels and spread back over P's non-empty bins, and T minimises
  KL(P || Q); every candidate is evaluated, vectorised over candidates and bins together
  (chunks of 256 candidates: a few MB), no Python loop per candidate. For a
  non-negative tensor the bin holding the zeros is left out (exact zeros stay exact);
* ``global``: a threshold given by the user.
The references are TensorRT's "8-bit Inference with TensorRT" (Migacz, GTC 2017) for ``kl``
and onnxruntime's calibrators (onnxruntime/python/tools/quantization/calibrate.py) for what
users compare against; the histogram doubling scheme is optc's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from optc.errors import OptcError

METHODS = ("max", "percentile", "mse", "kl", "global")


@dataclass
class Observer:
    """Running statistics of one tensor."""

    bins: int = 2048
    min: float = float("inf")
    max: float = float("-inf")
    count: int = 0
    hist: np.ndarray = field(default=None)  # type: ignore[assignment]
    range: float = 0.0  # the histogram covers |x| in [0, range)
    #: the tensor's shape for one sample (batch dimension 1), as last seen; for the
    #: quantizer's latency probe
    sample_shape: tuple[int, ...] | None = None
    #: per-channel (axis 1) sums and the number of values summed per channel, for the mean
    #: that bias correction needs; None until a tensor of rank >= 2 is seen
    channel_sum: np.ndarray | None = None
    channel_count: int = 0

    def __post_init__(self) -> None:
        if self.bins < 128 or self.bins % 2:
            raise OptcError(f"observers need an even number of bins >= 128, got {self.bins}")
        if self.hist is None:
            self.hist = np.zeros(self.bins, dtype=np.int64)

    def update(self, x: np.ndarray, name: str = "tensor") -> None:
        x = np.asarray(x)
        if x.size == 0:
            return
        if not np.all(np.isfinite(x)):
            raise OptcError(f"{name}: calibration saw NaN or Inf values")
        lo, hi = float(x.min()), float(x.max())
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        peak = max(abs(lo), abs(hi))
        if peak >= self.range:
            self._grow(peak)
        # bin = floor(|x| * bins / range): with power-of-two bins and range the factor is a
        # power of two, so the product is exact and re-binning after a doubling is exact too
        # (several times faster than np.histogram)
        scaled = np.abs(x).ravel()
        if scaled.dtype.kind != "f":
            scaled = scaled.astype(np.float64)
        scaled *= scaled.dtype.type(self.bins / self.range)
        idx = scaled.astype(np.int64)
        np.minimum(idx, self.bins - 1, out=idx)
        self.hist += np.bincount(idx, minlength=self.bins)
        self.count += x.size
        if x.ndim >= 2:
            sums = x.sum(axis=tuple(i for i in range(x.ndim) if i != 1), dtype=np.float64)
            if self.channel_sum is None:
                self.channel_sum = sums
            elif self.channel_sum.shape == sums.shape:
                self.channel_sum = self.channel_sum + sums
            self.channel_count += x.size // x.shape[1]

    @property
    def channel_mean(self) -> np.ndarray | None:
        """Mean of each channel (axis 1) over everything observed."""
        if self.channel_sum is None or self.channel_count == 0:
            return None
        return self.channel_sum / self.channel_count

    def _grow(self, peak: float) -> None:
        """Double the range until ``peak`` fits strictly inside it, merging bin pairs."""
        if self.range == 0.0:
            # first batch: a power of two just above the peak keeps later doublings exact
            self.range = 2.0 ** np.ceil(np.log2(peak)) if peak > 0 else 1.0
            if self.range <= peak:
                self.range *= 2
            return
        while self.range <= peak:
            self.hist = np.concatenate([self.hist.reshape(-1, 2).sum(axis=1),
                                        np.zeros(self.bins // 2, dtype=np.int64)])
            self.range *= 2

    def merge(self, other: Observer) -> None:
        if other.bins != self.bins:
            raise OptcError("cannot merge observers with different bin counts")
        if other.count == 0:
            return
        self.sample_shape = self.sample_shape or other.sample_shape
        target = max(self.range, other.range)
        mine, theirs = self._at_range(target), other._at_range(target)
        self.hist = mine + theirs
        self.range = target
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)
        self.count += other.count
        if other.channel_sum is not None:
            if self.channel_sum is None:
                self.channel_sum = other.channel_sum.copy()
            elif self.channel_sum.shape == other.channel_sum.shape:
                self.channel_sum = self.channel_sum + other.channel_sum
            self.channel_count += other.channel_count

    def _at_range(self, target: float) -> np.ndarray:
        hist, r = self.hist.copy(), self.range
        if r == 0.0:
            return np.zeros(self.bins, dtype=np.int64)
        while r < target:
            hist = np.concatenate([hist.reshape(-1, 2).sum(axis=1),
                                   np.zeros(self.bins // 2, dtype=np.int64)])
            r *= 2
        return hist

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(0.0, self.range, self.bins + 1)

    # --- thresholds ----------------------------------------------------------------------------
    def threshold(self, method: str = "max", *, percentile: float = 99.99, bits: int = 8,
                  value: float | None = None) -> float:
        """The symmetric clipping threshold T of ``method`` (see the module docstring)."""
        if self.count == 0:
            raise OptcError("calibration saw no data for this tensor")
        peak = max(abs(self.min), abs(self.max))
        if method == "max":
            return peak
        if method == "global":
            if value is None or value <= 0:
                raise OptcError("method 'global' needs a positive threshold value")
            return float(value)
        if peak == 0.0:
            return 0.0
        if method == "percentile":
            if not 0 < percentile <= 100:
                raise OptcError(f"percentile must be in (0, 100], got {percentile}")
            cdf = np.cumsum(self.hist) / self.count
            i = int(np.searchsorted(cdf, percentile / 100.0))
            return min(float(self.edges[min(i + 1, self.bins)]), peak)
        if method == "mse":
            return min(self._mse(bits), peak)
        if method == "kl":
            return min(self._kl(bits), peak)
        raise OptcError(f"unknown calibration method '{method}' (one of {', '.join(METHODS)})")

    def _mse(self, bits: int) -> float:
        levels = 2 ** (bits - 1) - 1
        edges = self.edges
        centres = (edges[:-1] + edges[1:]) / 2
        used = np.nonzero(self.hist)[0]
        counts, x = self.hist[used].astype(np.float64), centres[used]
        candidates = edges[max(1, self.bins // 16):]  # thresholds below 1/16 of the range
        scale = candidates / levels  # clip hard enough to be absurd for 8 bits
        q = np.clip(np.round(x[None, :] / scale[:, None]), -levels, levels) * scale[:, None]
        err = ((q - x[None, :]) ** 2 * counts[None, :]).sum(axis=1)
        return float(candidates[int(np.argmin(err))])

    def _kl(self, bits: int) -> float:
        hist = self.hist.astype(np.float64)
        if self.min >= 0:
            # a Relu output: the spike of exact zeros is represented exactly whatever the
            # threshold, and left in it would push KL towards absurdly small thresholds
            # (TensorRT's entropy calibrator drops the zero bin too)
            hist[0] = 0.0
        levels = 2 ** (bits - 1)  # 128 quantized bins for int8, as TensorRT
        candidates = np.arange(levels, self.bins + 1)
        kl = np.concatenate([_kl_divergences(hist, c, levels)
                             for c in np.array_split(candidates, -(-len(candidates) // 256))])
        if not np.isfinite(kl).any():
            return float(self.edges[-1])
        return float(self.edges[candidates[int(np.argmin(kl))]])


def _kl_divergences(hist: np.ndarray, cuts: np.ndarray, levels: int) -> np.ndarray:
    """KL(P || Q) for each candidate cut i in ``cuts`` (bins kept), all at once; inf where a
    distribution is empty. For cut i: P = hist[:i] with the outliers (hist[i:]) added to its
    last bin; Q = hist[:i] merged into ``levels`` groups (bin j in group j * levels // i),
    each group's mass spread evenly over the group's bins that are non-empty in P; both
    smoothed by ``_smooth``'s rule. Rows are candidates, columns bins."""
    n = int(cuts.max())  # bins at or beyond the largest cut play no part
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # tail[i] = sum(hist[i:])
    cum_hist = np.concatenate([[0.0], np.cumsum(hist)])
    hist = hist[:n]
    c = cuts[:, None]
    j = np.arange(n)[None, :]
    valid = j < c
    p = np.where(valid, hist[None, :], 0.0)
    last = (cuts - 1)[:, None]
    np.put_along_axis(p, last, np.take_along_axis(p, last, 1) + tail[cuts][:, None], 1)
    nonzero = p > 0
    # groups are contiguous: group g covers bins [ceil(g i / levels), ceil((g+1) i / levels))
    g = np.arange(levels + 1)[None, :]
    starts = (g * c + levels - 1) // levels
    q_sum = np.diff(cum_hist[starts], axis=1)
    cum_nz = np.concatenate([np.zeros((len(cuts), 1), np.int64), np.cumsum(nonzero, axis=1)],
                            axis=1)
    n_sum = np.diff(np.take_along_axis(cum_nz, starts, 1), axis=1)
    groups = np.minimum(j * levels // c, levels - 1)
    q = np.where(nonzero, np.take_along_axis(q_sum / np.maximum(n_sum, 1), groups, 1), 0.0)
    ps, qs = _smooth_rows(p, valid), _smooth_rows(q, valid)
    ok = ~(np.isnan(ps).any(1) | np.isnan(qs).any(1))
    mask = ps > 0
    ratio = np.where(mask, ps, 1.0) / np.where(mask, qs, 1.0)
    kl = np.sum(np.where(mask, ps * np.log(ratio), 0.0), axis=1)
    return np.where(ok, kl, np.inf)


def _smooth_rows(d: np.ndarray, valid: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """``_smooth`` applied to each row's valid bins; a row with no mass becomes NaN."""
    total = d.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = d / total
    zero = valid & (d == 0)
    present = valid & ~zero
    n_zero = zero.sum(axis=1, keepdims=True)
    n_nonzero = present.sum(axis=1, keepdims=True)
    safe_nonzero = np.maximum(n_nonzero, 1)
    taken = eps * n_zero / safe_nonzero
    smallest = np.where(present, d, np.inf).min(axis=1, keepdims=True)
    shrink = smallest <= taken
    eps_row = np.where(shrink, smallest / 2 * n_nonzero / np.maximum(n_zero, 1), eps)
    taken = eps_row * n_zero / safe_nonzero
    out = np.where(zero, eps_row, np.where(present, d - taken, 0.0))
    return np.where(total > 0, out, np.nan)


def _smooth(d: np.ndarray, eps: float = 1e-4) -> np.ndarray | None:
    """Normalise ``d`` and move a little mass onto its empty bins, so that KL(P || Q) stays
    finite where Q is empty but P is not (as MXNet's and onnxruntime's entropy calibrators)."""
    total = d.sum()
    if total <= 0:
        return None
    d = d / total
    zero = d == 0
    n_zero, n_nonzero = int(zero.sum()), int((~zero).sum())
    if n_zero == 0:
        return d
    taken = eps * n_zero / n_nonzero
    if np.any(d[~zero] <= taken):
        eps = float(d[~zero].min()) / 2 * n_nonzero / n_zero
        taken = eps * n_zero / n_nonzero
    return np.where(zero, eps, d - taken)


def quant_params(threshold: float, *, signed: bool = True, bits: int = 8
                 ) -> tuple[float, int]:
    """(scale, zero point) of a symmetric range [-T, T] (signed) or [0, T] (unsigned, for
    non-negative tensors such as Relu outputs: the quantization range is then the activation).
    Zero is exactly representable in both."""
    if threshold <= 0:
        return 1.0, 0
    if signed:
        return threshold / (2 ** (bits - 1) - 1), 0
    return threshold / (2 ** bits - 1), 0

"""Calibration observers against thresholds computed by hand (or by brute force on the raw
data) on known distributions."""

import tracemalloc

import numpy as np
import pytest

from optc.errors import OptcError
from optc.passes.quant import Observer, quant_params
from optc.passes.quant.observers import _kl_divergences

RNG = np.random.default_rng(0)


def observe(data, batches=8, bins=2048):
    o = Observer(bins=bins)
    for chunk in np.array_split(data, batches):
        o.update(chunk)
    return o


def quant_mse(x, t, bits=8):
    levels = 2 ** (bits - 1) - 1
    s = t / levels
    return float(np.mean((np.clip(np.round(x / s), -levels, levels) * s - x) ** 2))


def test_max_is_exact_and_keeps_outliers():
    x = RNG.laplace(0, 1, 100_000)
    x[17] = -55.5
    o = observe(x)
    assert o.threshold("max") == 55.5
    assert (o.min, o.max) == (float(x.min()), float(x.max()))


@pytest.mark.parametrize("dist, pct, expected", [
    ("uniform", 99.0, 0.99),           # |U(-1, 1)| is U(0, 1)
    ("gauss", 99.99, 3.8906),          # two-sided 99.99 % of N(0, 1)
    ("gauss", 95.0, 1.9600),
])
def test_percentile_matches_the_distribution(dist, pct, expected):
    x = RNG.uniform(-1, 1, 2_000_000) if dist == "uniform" else RNG.standard_normal(2_000_000)
    o = observe(x)
    t = o.threshold("percentile", percentile=pct)
    bin_width = o.range / o.bins
    assert abs(t - expected) < max(3 * bin_width, 0.02 * expected)
    assert abs(t - np.percentile(np.abs(x), pct)) <= 2 * bin_width


@pytest.mark.parametrize("dist", ["uniform", "gauss", "laplace"])
def test_mse_threshold_is_the_brute_force_optimum(dist):
    x = {"uniform": RNG.uniform(-1, 1, 400_000), "gauss": RNG.standard_normal(400_000),
         "laplace": RNG.laplace(0, 1, 400_000)}[dist]
    o = observe(x)
    t = o.threshold("mse")
    grid = np.linspace(0.05, 1.0, 400) * np.abs(x).max()
    best = min(quant_mse(x, g) for g in grid)
    assert quant_mse(x, t) <= best * 1.02


def test_kl_and_mse_clip_outliers_max_does_not():
    x = RNG.laplace(0, 1, 1_000_000)
    x[:2] = [25.0, -25.0]
    o = observe(x)
    peak = o.threshold("max")
    assert peak == 25.0
    assert o.threshold("mse") < peak / 2
    assert o.threshold("kl") < peak / 2
    assert o.threshold("percentile", percentile=99.99) < peak / 2


def test_kl_keeps_a_uniform_range():
    o = observe(RNG.uniform(-1, 1, 500_000))
    assert o.threshold("kl") > 0.95


def test_global_threshold():
    o = observe(RNG.standard_normal(1000))
    assert o.threshold("global", value=2.5) == 2.5
    with pytest.raises(OptcError, match="needs a positive threshold"):
        o.threshold("global")


def test_histogram_regrows_exactly_and_merges():
    small, large = RNG.uniform(-1, 1, 10_000), RNG.uniform(-100, 100, 10_000)
    a = Observer()
    a.update(small)
    a.update(large)
    b = Observer()
    b.update(large)
    b.update(small)
    # the same data in either order: the same range and the same counts
    assert a.range == b.range and np.array_equal(a.hist, b.hist)
    assert a.hist.sum() == a.count == 20_000
    c, d = Observer(), Observer()
    c.update(small)
    d.update(large)
    c.merge(d)
    assert c.range == a.range and np.array_equal(c.hist, a.hist)


def test_memory_is_independent_of_the_number_of_batches():
    def peak(batches):
        o = Observer()
        tracemalloc.start()
        for i in range(batches):
            o.update(np.random.default_rng(i).standard_normal((8, 16, 16, 16)).astype(np.float32))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    assert peak(512) <= peak(64) * 1.1


def test_bad_data():
    o = Observer()
    with pytest.raises(OptcError, match="act: calibration saw NaN or Inf"):
        o.update(np.array([1.0, np.nan]), name="act")
    with pytest.raises(OptcError, match="saw no data"):
        Observer().threshold("max")
    with pytest.raises(OptcError, match="unknown calibration method 'avg'"):
        observe(RNG.standard_normal(100)).threshold("avg")


def test_quant_params():
    s, zp = quant_params(12.7)
    assert zp == 0 and abs(s - 0.1) < 1e-12
    s, zp = quant_params(25.5, signed=False)
    assert zp == 0 and abs(s - 0.1) < 1e-12


def _kl_loop(obs: Observer, bits: int = 8) -> np.ndarray:
    """KL(P || Q) of every candidate cut (128 .. bins), inf where skipped: TensorRT's entropy
    calibration written as the plain loop over candidates (the oracle for the vectorised
    search)."""
    from optc.passes.quant.observers import _smooth

    levels = 2 ** (bits - 1)
    hist = obs.hist.astype(np.float64)
    if obs.min >= 0:
        hist[0] = 0.0
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])
    out = []
    for i in range(levels, obs.bins + 1):
        sliced = hist[:i]
        p = sliced.copy()
        p[-1] += tail[i]
        nonzero = p > 0
        groups = np.arange(i) * levels // i
        starts = np.searchsorted(groups, np.arange(levels))
        q_sum = np.add.reduceat(sliced, starts)
        n_sum = np.add.reduceat(nonzero.astype(np.float64), starts)
        q = np.where(nonzero, (q_sum / np.maximum(n_sum, 1.0))[groups], 0.0)
        ps, qs = _smooth(p), _smooth(q)
        if ps is None or qs is None:
            out.append(np.inf)
            continue
        mask = ps > 0
        out.append(float(np.sum(ps[mask] * np.log(ps[mask] / qs[mask]))))
    return np.array(out)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["gauss", "relu", "laplace_outliers", "sparse"])
def test_vectorised_kl_equals_the_loop(kind, seed):
    rng = np.random.default_rng(seed)
    x = {"gauss": lambda: rng.standard_normal(20000),
         "relu": lambda: np.maximum(rng.standard_normal(20000), 0),
         "laplace_outliers": lambda: np.concatenate([rng.laplace(size=20000), [60.0, -80.0]]),
         "sparse": lambda: rng.choice([0.0, 1.0, 2.5, 7.0], size=500)}[kind]()
    obs = Observer(bins=512 if seed % 2 else 2048)
    obs.update(x.astype(np.float32))
    expected = _kl_loop(obs)
    hist = obs.hist.astype(np.float64)
    if obs.min >= 0:
        hist[0] = 0.0
    cuts = np.arange(128, obs.bins + 1)
    got = np.concatenate([_kl_divergences(hist, c, 128) for c in np.array_split(cuts, 5)])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-15)
    # the threshold is the first cut of least divergence (ties: exact in the loop, so compare
    # divergences rather than cuts)
    chosen = int(np.searchsorted(obs.edges, obs._kl(8)))  # the cut, before clamping to max
    assert expected[chosen - 128] <= expected.min() * (1 + 1e-9) + 1e-15

"""Binned exact KS and raw two-sample KS: exactness, agreement with scipy, calibration, power."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from modeldeploy_drift.ks import (
    binned_ks_statistic,
    binned_ks_test,
    ks_2samp_raw,
    ks_pvalue_raw,
    multinomial_ks_sf,
)
from modeldeploy_drift.profile import numeric_profile
from scipy import stats

from .drift_helpers import live_counts, normal_reference


def _brute_force_sf(probs: list[float], n: int, d: float) -> float:
    """P(D >= d) by enumerating every multinomial outcome."""
    cum = np.cumsum(probs)[:-1]
    total = 0.0
    b = len(probs)
    for counts in itertools.product(range(n + 1), repeat=b - 1):
        if sum(counts) > n:
            continue
        full = (*counts, n - sum(counts))
        pmf = float(math.factorial(n))
        for c, p in zip(full, probs, strict=True):
            pmf *= p**c / math.factorial(c)
        stat = max(abs(s / n - c) for s, c in zip(np.cumsum(full)[:-1], cum, strict=True))
        if stat >= d - 1e-12:
            total += pmf
    return total


@pytest.mark.parametrize(
    ("probs", "n"),
    [([0.25, 0.25, 0.25, 0.25], 6), ([0.1, 0.5, 0.0, 0.4], 7), ([0.7, 0.3], 9), ([0.2] * 5, 4)],
)
def test_multinomial_sf_matches_enumeration(probs: list[float], n: int) -> None:
    cum = np.cumsum(probs)[:-1]
    # every attainable statistic value, plus values in between
    values = {abs(k / n - c) for k in range(n + 1) for c in cum}
    for d in sorted(values | {v + 0.013 for v in values}):
        if d <= 0:
            continue
        assert multinomial_ks_sf(probs, n, d) == pytest.approx(_brute_force_sf(probs, n, d), abs=1e-10), (probs, n, d)


def test_multinomial_sf_tends_to_kolmogorov_with_fine_bins() -> None:
    # 2000 equiprobable bins and n = 20: the binned statistic is the continuous one
    probs = np.full(2000, 1 / 2000)
    for d in (0.15, 0.25, 0.35):
        assert multinomial_ks_sf(probs, 20, d) == pytest.approx(stats.kstwo.sf(d, 20), abs=0.01)


def test_multinomial_sf_large_n_uses_fft_and_stays_a_probability() -> None:
    probs = np.full(32, 1 / 32)
    p = multinomial_ks_sf(probs, 10_000, 0.012)
    assert 0.0 < p < 1.0
    # asymptotic check: sqrt(n) * D ~ sup of a Brownian bridge on 31 points <= Kolmogorov tail
    assert p <= stats.kstwobign.sf(0.012 * 100) + 0.01


def test_fft_and_direct_convolution_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    from modeldeploy_drift import ks

    probs = np.full(32, 1 / 32)
    monkeypatch.setattr(ks, "_FFT_MIN_WORK", 10**12)
    direct = [multinomial_ks_sf(probs, 10_000, d) for d in (0.006, 0.01, 0.02)]
    monkeypatch.setattr(ks, "_FFT_MIN_WORK", 0)
    fft = [multinomial_ks_sf(probs, 10_000, d) for d in (0.006, 0.01, 0.02)]
    assert fft == pytest.approx(direct, abs=1e-9)


def test_large_windows_use_the_asymptotic_path_and_stay_calibrated() -> None:
    """n = 40,000 > EXACT_MAX_N (e.g. merged replicas): FPR still near alpha."""
    rng = np.random.default_rng(13)
    prof, _ = normal_reference(rng, n=200_000)
    reps, rejected = 300, 0
    for _ in range(reps):
        _, p = binned_ks_test(prof.counts, live_counts(prof, rng.normal(size=40_000)))
        rejected += p <= 0.05
    assert 0.02 <= rejected / reps <= 0.085
    _, p_shift = binned_ks_test(prof.counts, live_counts(prof, rng.normal(0.03, size=40_000)))
    assert p_shift < 0.01


def test_multinomial_sf_edge_cases() -> None:
    assert multinomial_ks_sf([0.5, 0.5], 10, 0.0) == 1.0
    assert multinomial_ks_sf([1.0], 10, 0.3) == 1.0
    assert multinomial_ks_sf([0.5, 0.5], 10, 1.5) == 0.0
    with pytest.raises(ValueError):
        multinomial_ks_sf([-0.1, 1.1], 10, 0.1)


def test_binned_statistic_is_ks_at_the_edges() -> None:
    ref = [10, 10, 10, 10]
    live = [0, 5, 5, 10]
    # cumulative: ref .25 .5 .75, live 0 .25 .5 -> max diff .25
    assert binned_ks_statistic(ref, live) == pytest.approx(0.25)
    assert binned_ks_test(ref, [0, 0, 0, 0]) == (0.0, 1.0)


_SIZES = [(100, 100), (100, 37), (500, 200), (1000, 100), (5000, 100), (20_000, 100), (7, 13)]


@pytest.mark.parametrize(
    ("m", "n", "method"),
    # exact on a 20,000 x 100 grid is slow in pure Python (and in scipy): auto/asymp only there
    [(m, n, method) for m, n in _SIZES for method in ("auto", "exact", "asymp") if method != "exact" or m * n <= 10**6],
)
def test_raw_ks_equals_scipy(m: int, n: int, method: str) -> None:
    rng = np.random.default_rng(m * 7 + n)
    for shift, ties in ((0.0, False), (0.3, False), (0.2, True)):
        a, b = rng.normal(size=m), rng.normal(shift, size=n)
        if ties:
            a, b = np.round(a), np.round(b)
        d, p = ks_2samp_raw(a, b, method=method)  # type: ignore[arg-type]
        ref = stats.ks_2samp(a, b, method=method)
        assert d == pytest.approx(ref.statistic, abs=1e-12)
        assert abs(p - ref.pvalue) < 1e-6
        assert ks_pvalue_raw(a, b, method=method) == p  # type: ignore[arg-type]


def test_raw_ks_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        ks_2samp_raw([], [1.0])
    with pytest.raises(ValueError):
        ks_2samp_raw([1.0], [2.0], method="nope")  # type: ignore[arg-type]


def _rejections(n: int, shift: float, reps: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    ours = theirs = 0
    for _ in range(reps):
        ref_values = rng.normal(size=20_000)
        prof = numeric_profile("x", ref_values)
        live = rng.normal(shift, size=n)
        _, p = binned_ks_test(prof.counts, live_counts(prof, live))
        ours += p <= 0.05
        theirs += stats.ks_2samp(ref_values, live).pvalue <= 0.05
    return ours / reps, theirs / reps


@pytest.mark.parametrize(("n", "seed"), [(100, 1), (500, 2)])
def test_binned_ks_is_calibrated(n: int, seed: int) -> None:
    """False-positive rate at alpha = 0.05 within 2.5 SE (1000 reps: SE = 0.0069)."""
    rng = np.random.default_rng(seed)
    prof, _ = normal_reference(rng)
    reps, rejected = 1000, 0
    for rep in range(reps):
        # redraw the reference now and then: the test accounts for the reference's noise
        if rep % 50 == 0:
            prof, _ref = normal_reference(rng)
        _, p = binned_ks_test(prof.counts, live_counts(prof, rng.normal(size=n)))
        rejected += p <= 0.05
    assert 0.033 <= rejected / reps <= 0.067


def test_binned_ks_power_matches_scipy_on_raw_data() -> None:
    """Same raw data: power at 0.25 SD, n = 100 at least scipy's minus 3 points."""
    ours, theirs = _rejections(100, 0.25, reps=300, seed=3)
    assert ours >= theirs - 0.03
    assert ours >= 0.45


def test_binned_ks_accounts_for_a_small_reference() -> None:
    """Reference of 1000 rows, live windows of 1000: still calibrated (two-sample scaling)."""
    rng = np.random.default_rng(5)
    reps, rejected = 300, 0
    for _ in range(reps):
        prof, _c = normal_reference(rng, n=1000)
        _, p = binned_ks_test(prof.counts, live_counts(prof, rng.normal(size=1000)))
        rejected += p <= 0.05
    assert 0.02 <= rejected / reps <= 0.085


def test_binned_ks_with_ties_is_not_anticonservative() -> None:
    """A feature with 5 distinct values: exact discrete p-value, FPR <= alpha + noise."""
    rng = np.random.default_rng(11)
    values = rng.integers(0, 5, size=20_000).astype(float)
    prof = numeric_profile("k", values)
    assert prof.edges == (0.0, 1.0, 2.0, 3.0, 4.0)  # the last bin (4, inf) is empty
    assert prof.counts[-1] == 0
    reps, rejected = 300, 0
    for _ in range(reps):
        _, p = binned_ks_test(prof.counts, live_counts(prof, rng.integers(0, 5, size=200)))
        rejected += p <= 0.05
    assert rejected / reps <= 0.075

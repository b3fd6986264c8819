"""Kolmogorov-Smirnov tests: exact binned KS against a reference profile, and raw two-sample KS.

Binned test (what the live monitor uses)
----------------------------------------
The reference profile keeps, per numeric feature, B bins whose edges are reference quantiles
and the reference count in each bin.  The live window keeps only counts in the same bins, so
the statistic is the KS distance evaluated at the bin edges::

    D = max_j | L_j - R_j |      j = 1 .. B-1 (interior edges)

with ``L`` the live and ``R`` the reference cumulative proportions.  ``D`` is never larger than
the raw-data KS distance, so using the Kolmogorov distribution for it would be conservative
(and throw power away).  Instead the p-value is computed **exactly** for the discrete
statistic: under H0 the live counts are Multinomial(n, p) with ``p`` the reference bin
proportions, and ``P(D >= d)`` is a boundary-crossing probability of the cumulative counts,
evaluated by a dynamic programme over the bins (multinomial = independent Poissons
conditioned on their sum; one small convolution per bin).  Ties and discreteness (a feature
with few distinct values has fewer, unequal bins) are handled exactly by the same recursion.

The reference itself is a finite sample of ``N`` rows.  Its sampling error adds variance
``R_j (1 - R_j) / N`` to each ``L_j - R_j``; the test accounts for it with the two-sample
scaling of Smirnov's statistic: the observed ``D`` is shrunk by ``sqrt(N / (N + n))`` before
the exact one-sample tail is taken (for ``N >> n`` this factor is 1 and the test is exact).

For ``n`` above ``EXACT_MAX_N`` the recursion is evaluated at ``n' = EXACT_MAX_N`` with the
statistic rescaled by ``sqrt(n / n')`` (``sqrt(n) D`` has converged to its limit, the supremum
of a Brownian bridge over the bin grid, long before that): asymptotic, bounded cost.

Raw test
--------
:func:`ks_pvalue_raw` / :func:`ks_2samp_raw` compute the two-sample KS test from raw samples
with the same conventions as ``scipy.stats.ks_2samp`` (two-sided): ``exact`` counts lattice
paths inside the band (Hodges 1958), ``asymp`` uses the one-sample exact distribution at the
effective size ``round(m n / (m + n))``, ``auto`` picks ``exact`` when both sizes are at most
10,000.  It exists to validate the binned test against the textbook one.
"""

from __future__ import annotations

import math
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import signal, special, stats

FloatArray = npt.NDArray[np.float64]

EXACT_MAX_N: Final = 10_000
"""Largest live sample size for which the binned p-value is computed exactly."""

_AUTO_MAX_N: Final = 10_000  # same switch as scipy's ks_2samp(method="auto")
_REL_TOL: Final = 1e-9  # an observed statistic counts as "at least d"
_FFT_MIN_WORK: Final = 200_000  # direct convolution below this many multiply-adds

KsMethod = Literal["auto", "exact", "asymp"]


def binned_ks_statistic(ref_counts: npt.ArrayLike, live_counts: npt.ArrayLike) -> float:
    """KS distance between two binned samples, evaluated at the interior bin edges."""
    ref = np.asarray(ref_counts, dtype=np.float64)
    live = np.asarray(live_counts, dtype=np.float64)
    if ref.shape != live.shape or ref.ndim != 1:
        raise ValueError("reference and live counts must be 1-D arrays of the same length")
    n_ref, n_live = ref.sum(), live.sum()
    if n_ref <= 0 or n_live <= 0 or ref.size < 2:
        return 0.0
    diff = np.cumsum(live)[:-1] / n_live - np.cumsum(ref)[:-1] / n_ref
    return float(np.max(np.abs(diff)))


def _poisson_kernel(lam: float) -> tuple[int, FloatArray]:
    """Poisson(lam) pmf on the range that carries all but a negligible (<1e-30) mass."""
    if lam <= 0.0:
        return 0, np.ones(1)
    spread = 12.0 * math.sqrt(lam) + 30.0
    k_lo = max(0, math.floor(lam - spread))
    k_hi = math.ceil(lam + spread)
    k = np.arange(k_lo, k_hi + 1, dtype=np.float64)
    logpmf = k * math.log(lam) - lam - special.gammaln(k + 1.0)
    return k_lo, np.exp(logpmf)


def multinomial_ks_sf(probs: npt.ArrayLike, n: int, d: float) -> float:
    """Exact ``P(max_j |S_j / n - P_j| >= d)`` for cumulative Multinomial(n, probs) counts.

    ``S_j`` are the cumulative counts and ``P_j`` the cumulative probabilities at the interior
    edges (``j = 1 .. B-1``).  Bins with probability 0 are allowed.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or np.any(p < 0) or not np.isfinite(p).all():
        raise ValueError("probs must be a non-empty 1-D array of non-negative numbers")
    total = p.sum()
    if total <= 0:
        raise ValueError("probs must not all be zero")
    p = p / total
    if n <= 0 or d <= 0.0 or p.size < 2:
        return 1.0
    if d > 1.0 + _REL_TOL:
        return 0.0
    cum = np.cumsum(p)[:-1]
    nd = n * d * (1.0 - _REL_TOL)
    lo = np.floor(n * cum - nd).astype(np.int64) + 1
    hi = np.ceil(n * cum + nd).astype(np.int64) - 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, n)
    if np.any(lo > hi):
        return 1.0
    # v[k - offset] = P(S_j = k and no crossing so far, Poisson-ised counts)
    offset = 0
    v = np.ones(1)
    for j in range(p.size):
        k_lo, kern = _poisson_kernel(n * p[j])
        if v.size * kern.size > _FFT_MIN_WORK:
            v = signal.fftconvolve(v, kern)
            np.maximum(v, 0.0, out=v)  # FFT round-off can leave tiny negatives
        else:
            v = np.convolve(v, kern)
        offset += k_lo
        a, b = (int(lo[j]), int(hi[j])) if j < p.size - 1 else (n, n)
        start, stop = max(a - offset, 0), min(b - offset + 1, v.size)
        if start >= stop:
            return 1.0
        v = v[start:stop]
        offset += start
    inside_joint = float(v[0]) if offset == n and v.size else 0.0
    log_norm = n * math.log(n) - n - float(special.gammaln(n + 1.0))  # log P(Poisson(n) = n)
    inside = inside_joint / math.exp(log_norm)
    return float(min(1.0, max(0.0, 1.0 - inside)))


def binned_ks_test(ref_counts: npt.ArrayLike, live_counts: npt.ArrayLike) -> tuple[float, float]:
    """KS statistic and p-value of live bin counts against reference bin counts.

    Exact for ``n <= EXACT_MAX_N`` given the reference proportions, with the finite-reference
    correction described in the module docstring.  Returns ``(statistic, p_value)``.
    """
    ref = np.asarray(ref_counts, dtype=np.float64)
    live = np.asarray(live_counts, dtype=np.float64)
    d = binned_ks_statistic(ref, live)
    n_ref, n = float(ref.sum()), round(float(live.sum()))
    if d <= 0.0 or n == 0:
        return d, 1.0
    d_test = d * math.sqrt(n_ref / (n_ref + n))
    if n > EXACT_MAX_N:
        d_test *= math.sqrt(n / EXACT_MAX_N)
        n = EXACT_MAX_N
    return d, multinomial_ks_sf(ref / n_ref, n, d_test)


def ks_statistic_raw(ref: npt.ArrayLike, live: npt.ArrayLike) -> float:
    """Two-sample KS distance ``sup |F_ref - F_live|`` of raw samples (ties handled)."""
    a = np.sort(np.asarray(ref, dtype=np.float64).ravel())
    b = np.sort(np.asarray(live, dtype=np.float64).ravel())
    if a.size == 0 or b.size == 0:
        raise ValueError("both samples must be non-empty")
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def _exact_two_sample_sf(m: int, n: int, h: int) -> float:
    """``P(D_{m,n} >= h / lcm(m, n))`` by counting lattice paths that leave the band.

    ``A(i, j)`` is the probability that a uniformly random monotone path from ``(0, 0)`` to
    ``(i, j)`` has touched ``|i n - j m| / g >= h``; it obeys
    ``A(i, j) = (i A(i-1, j) + j A(i, j-1)) / (i + j)`` inside the band and is 1 outside.
    Only the band (width ~ 2 h g / m per column) is kept.
    """
    if m < n:
        m, n = n, m
    g = math.gcd(m, n)
    mg, ng = m // g, n // g
    # column i holds j in [lo_i, hi_i): points strictly inside the band |i*ng - j*mg| < h
    prev_lo, prev = 0, [0.0] * min(-(-h // mg), n + 1)
    for i in range(1, m + 1):
        lo = min(max((ng * i - h) // mg + 1, 0), n)
        hi = min(-((-(ng * i + h)) // mg), n + 1)
        if hi <= lo:
            return 1.0
        cur = [0.0] * (hi - lo)
        val = 0.0 if lo == 0 else 1.0  # A(i, lo - 1) lies outside the band
        prev_hi = prev_lo + len(prev)
        for jj in range(hi - lo):
            j = lo + jj
            left = prev[j - prev_lo] if prev_lo <= j < prev_hi else 1.0
            val = (left * i + val * j) / (i + j)
            cur[jj] = val
        prev_lo, prev = lo, cur
    last = n - prev_lo
    return float(prev[last]) if 0 <= last < len(prev) else 1.0


def ks_2samp_raw(ref: npt.ArrayLike, live: npt.ArrayLike, *, method: KsMethod = "auto") -> tuple[float, float]:
    """Two-sided two-sample KS test on raw data: ``(statistic, p_value)``.

    Matches ``scipy.stats.ks_2samp(ref, live, method=method)`` (two-sided) to within
    floating-point round-off; ``exact`` is exact, ``asymp`` asymptotic in the two-sample sense.
    """
    a = np.asarray(ref, dtype=np.float64).ravel()
    b = np.asarray(live, dtype=np.float64).ravel()
    d = ks_statistic_raw(a, b)
    n1, n2 = a.size, b.size
    if method not in ("auto", "exact", "asymp"):
        raise ValueError(f"method must be 'auto', 'exact' or 'asymp', not {method!r}")
    mode = method
    if mode == "auto":
        mode = "exact" if max(n1, n2) <= _AUTO_MAX_N else "asymp"
    if mode == "exact":
        g = math.gcd(n1, n2)
        lcm = (n1 // g) * n2
        h = round(d * lcm)
        d = h / lcm
        if h == 0:
            return d, 1.0
        return d, min(1.0, max(0.0, _exact_two_sample_sf(n1, n2, h)))
    big, small = max(n1, n2), min(n1, n2)
    en = big * small / (big + small)
    return d, float(np.clip(stats.kstwo.sf(d, round(en)), 0.0, 1.0))


def ks_pvalue_raw(ref: npt.ArrayLike, live: npt.ArrayLike, *, method: KsMethod = "auto") -> float:
    """p-value of :func:`ks_2samp_raw` (two-sided), equal to scipy's ``ks_2samp`` p-value."""
    return ks_2samp_raw(ref, live, method=method)[1]

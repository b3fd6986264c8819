"""Secondary drift scores (PSI, Jensen-Shannon), the categorical chi-squared test, multiple testing.

* **PSI** ``sum (q - p) ln(q / p)`` over the reference cells, with both proportion vectors
  smoothed as ``(x + eps) / (1 + eps * B)``, ``eps = PSI_EPSILON = 1e-4``, so empty cells give
  a large but finite contribution (the usual "replace 0 by 0.0001" convention).  PSI is
  biased upwards on small windows (about ``(B - 1) / n`` under no drift: 0.15 for 32 bins and
  200 rows), so the usual 0.1 / 0.25 thresholds only mean something for large windows; the
  verdicts use the p-values.
* **Jensen-Shannon distance** (base 2, in [0, 1]) on the raw proportions; empty cells need no
  epsilon (``0 log 0 = 0``).
* **Chi-squared** for categorical features: Pearson's statistic on the 2 x K table of reference
  counts against live counts (test of homogeneity).  This is the goodness-of-fit test against
  the reference frequencies with the reference's own sampling error accounted for (it tends
  to the GOF test as the reference grows), and it stays defined when the live window has a
  category the reference never had.  Cells whose expected live count is below
  ``min_expected`` (default 5) are pooled into one cell (and that cell into the smallest other
  one if still too small); asymptotic chi-squared p-value, ``df = cells - 1``.
* **Multiple testing** over features: Bonferroni (``p * m``) or Benjamini-Hochberg adjusted
  p-values; the dataset p-value is the smallest adjusted p-value (for BH that is Simes' global
  test), so "dataset drifted" is "some feature is flagged" at level alpha.
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

FloatArray = npt.NDArray[np.float64]
Correction = Literal["bonferroni", "bh"]

PSI_EPSILON: Final = 1e-4
DEFAULT_MIN_EXPECTED: Final = 5.0


def _proportions(counts: npt.ArrayLike) -> FloatArray:
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    return c / total if total > 0 else np.zeros_like(c)


def psi(ref_counts: npt.ArrayLike, live_counts: npt.ArrayLike, *, eps: float = PSI_EPSILON) -> float:
    """Population stability index of live against reference counts over the same cells."""
    p, q = _proportions(ref_counts), _proportions(live_counts)
    if p.shape != q.shape:
        raise ValueError("reference and live counts must have the same cells")
    p = (p + eps) / (1.0 + eps * p.size)
    q = (q + eps) / (1.0 + eps * q.size)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(ref_counts: npt.ArrayLike, live_counts: npt.ArrayLike) -> float:
    """Jensen-Shannon distance (base 2, 0 = identical, 1 = disjoint) between two histograms."""
    p, q = _proportions(ref_counts), _proportions(live_counts)
    if p.shape != q.shape:
        raise ValueError("reference and live counts must have the same cells")
    m = 0.5 * (p + q)

    def kl(a: FloatArray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    value = 0.5 * kl(p) + 0.5 * kl(q)
    return float(np.sqrt(max(0.0, min(1.0, value))))


def chi2_test(
    ref_counts: npt.ArrayLike,
    live_counts: npt.ArrayLike,
    *,
    min_expected: float = DEFAULT_MIN_EXPECTED,
) -> tuple[float, float, int]:
    """Chi-squared test of live against reference cell counts: ``(statistic, p_value, df)``."""
    ref = np.asarray(ref_counts, dtype=np.float64)
    live = np.asarray(live_counts, dtype=np.float64)
    if ref.shape != live.shape or ref.ndim != 1:
        raise ValueError("reference and live counts must be 1-D with the same cells")
    n_ref, n_live = ref.sum(), live.sum()
    if n_ref <= 0 or n_live <= 0:
        return 0.0, 1.0, 0
    keep = (ref + live) > 0
    ref, live = ref[keep], live[keep]
    share = n_live / (n_ref + n_live)
    expected_live = (ref + live) * share
    small = expected_live < min_expected
    if small.any():
        pooled_ref, pooled_live = ref[small].sum(), live[small].sum()
        ref, live = ref[~small], live[~small]
        if (pooled_ref + pooled_live) * share < min_expected and ref.size:
            j = int(np.argmin(ref + live))
            ref[j] += pooled_ref
            live[j] += pooled_live
        else:
            ref = np.append(ref, pooled_ref)
            live = np.append(live, pooled_live)
    if ref.size < 2:
        return 0.0, 1.0, 0
    totals = ref + live
    e_live = totals * share
    e_ref = totals - e_live
    statistic = float(np.sum((live - e_live) ** 2 / e_live + (ref - e_ref) ** 2 / e_ref))
    df = int(ref.size - 1)
    return statistic, float(stats.chi2.sf(statistic, df)), df


def adjust_pvalues(p_values: npt.ArrayLike, method: Correction) -> FloatArray:
    """Adjusted p-values: Bonferroni ``min(1, m p)`` or Benjamini-Hochberg (step-up, monotone)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    if method == "bonferroni":
        return np.minimum(1.0, p * m)
    if method == "bh":
        order = np.argsort(p)
        ranked = p[order] * m / np.arange(1, m + 1)
        ranked = np.minimum.accumulate(ranked[::-1])[::-1]
        out = np.empty(m)
        out[order] = np.minimum(1.0, ranked)
        return out
    raise ValueError(f"correction must be 'bonferroni' or 'bh', not {method!r}")

"""PSI, Jensen-Shannon, categorical chi-squared and multiple-testing adjustments."""

from __future__ import annotations

import numpy as np
import pytest
from modeldeploy_drift.stats import PSI_EPSILON, adjust_pvalues, chi2_test, js_distance, psi
from scipy import stats
from scipy.spatial import distance


def test_psi_and_js_basics() -> None:
    ref = [100, 200, 300, 400]
    assert psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert js_distance(ref, [1, 2, 3, 4]) == pytest.approx(0.0, abs=1e-12)
    live = [400, 300, 200, 100]
    p, q = np.array(ref) / 1000, np.array(live) / 1000
    assert psi(ref, live) == pytest.approx(np.sum((q - p) * np.log(q / p)), rel=1e-3)
    assert js_distance(ref, live) == pytest.approx(distance.jensenshannon(p, q, base=2))
    # disjoint supports: JS = 1, PSI finite thanks to the epsilon
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    value = psi([10, 0], [0, 10])
    assert np.isfinite(value) and value > 10
    assert PSI_EPSILON == 1e-4


def test_chi2_without_pooling_equals_scipy_contingency() -> None:
    ref = np.array([400, 300, 200, 100])
    live = np.array([35, 30, 20, 15])
    stat, p, df = chi2_test(ref, live)
    expected = stats.chi2_contingency(np.vstack([ref, live]), correction=False)
    assert stat == pytest.approx(expected.statistic)
    assert p == pytest.approx(expected.pvalue)
    assert df == 3


def test_chi2_pools_small_cells_and_handles_unseen() -> None:
    ref = np.array([5000, 3000, 2000, 3, 2, 0])  # two rare categories and "unseen" (never in ref)
    live = np.array([50, 30, 18, 0, 0, 2])
    stat, p, df = chi2_test(ref, live)
    assert df == 2  # the three small cells are pooled, then into the smallest other cell
    assert 0.0 <= p <= 1.0 and np.isfinite(stat)
    # a lot of unseen mass is detected
    _, p_unseen, _ = chi2_test([5000, 3000, 2000, 0], [30, 20, 10, 40])
    assert p_unseen < 1e-10
    assert chi2_test([10, 0], [0, 0]) == (0.0, 1.0, 0)
    assert chi2_test([10], [5]) == (0.0, 1.0, 0)


def test_adjustments() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.02])
    assert np.allclose(adjust_pvalues(p, "bonferroni"), [0.04, 0.16, 0.12, 0.08])
    # BH: sorted 0.01 0.02 0.03 0.04 -> 0.04 0.04 0.04 0.04
    assert np.allclose(adjust_pvalues(p, "bh"), [0.04, 0.04, 0.04, 0.04])
    assert np.allclose(adjust_pvalues([0.5, 0.001], "bh"), [0.5, 0.002])
    assert adjust_pvalues([], "bh").size == 0
    with pytest.raises(ValueError):
        adjust_pvalues(p, "holm")  # type: ignore[arg-type]


def test_categorical_chi2_is_calibrated_and_powerful() -> None:
    """[.4,.3,.2,.1] -> [.35,.3,.2,.15] at n = 500: power >= 0.85; FPR near 0.05."""
    rng = np.random.default_rng(21)
    p0, p1 = [0.4, 0.3, 0.2, 0.1], [0.35, 0.3, 0.2, 0.15]
    reps = 1000
    null_rej = alt_rej = 0
    for _ in range(reps):
        ref = rng.multinomial(20_000, p0)
        null_rej += chi2_test(ref, rng.multinomial(500, p0))[1] <= 0.05
        alt_rej += chi2_test(ref, rng.multinomial(500, p1))[1] <= 0.05
    assert 0.029 <= null_rej / reps <= 0.071  # 3 SE
    assert alt_rej / reps >= 0.85

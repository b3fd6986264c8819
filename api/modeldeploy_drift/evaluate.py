"""Judge a window against the profile: per-feature tests, multiple-testing rule, dataset verdict.

Rules
-----
* Numeric features: exact binned KS (:func:`ks.binned_ks_test`) on the non-missing values.
  Categorical features: chi-squared (:func:`stats.chi2_test`) over categories + other +
  missing.  Every tested feature also gets PSI and Jensen-Shannon distance on the same cells.
* A window with fewer than ``min_samples`` rows is ``Insufficient`` (nothing is tested).  A
  feature with fewer than ``min_samples`` values (e.g. mostly missing) is reported untested
  and left out of the correction; if no feature can be tested the window is ``Insufficient``.
* Feature p-values are adjusted over the ``m`` tested features with Bonferroni or
  Benjamini-Hochberg (``correction``); a feature is drifted when its adjusted p-value is at
  most ``alpha``; the dataset p-value is the smallest adjusted p-value and the window is
  ``Drifted`` exactly when some feature is.
* The prediction is tested the same way but on its own, at level ``alpha`` uncorrected; it
  does not change the dataset status (``prediction.drifted`` says it).
* A state built from another profile gives ``Unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .ks import binned_ks_test
from .profile import CategoricalProfile, FeatureProfile, NumericProfile, Profile
from .report import DriftReport, DriftStatus, FeatureDrift
from .state import WindowState
from .stats import DEFAULT_MIN_EXPECTED, Correction, adjust_pvalues, chi2_test, js_distance, psi

DEFAULT_ALPHA: Final = 0.05
DEFAULT_MIN_SAMPLES: Final = 100


@dataclass(frozen=True)
class DriftConfig:
    """Decision parameters."""

    alpha: float = DEFAULT_ALPHA
    correction: Correction = "bh"
    min_samples: int = DEFAULT_MIN_SAMPLES
    min_expected: float = DEFAULT_MIN_EXPECTED
    """Chi-squared: cells with a smaller expected live count are pooled."""

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.correction not in ("bonferroni", "bh"):
            raise ValueError(f"correction must be 'bonferroni' or 'bh', got {self.correction!r}")
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, got {self.min_samples}")


def assess_feature(
    feature: FeatureProfile,
    live_cells: npt.ArrayLike,
    config: DriftConfig = DriftConfig(),
) -> FeatureDrift:
    """Test one feature's live cell counts (layout of ``feature.reference_cells()``)."""
    live = np.asarray(live_cells, dtype=np.int64)
    ref = feature.reference_cells()
    if live.shape != ref.shape:
        raise ValueError(f"{feature.name}: {live.size} live cells, profile has {ref.size}")
    rows = int(live.sum())
    missing_fraction = float(live[-1] / rows) if rows else None
    if isinstance(feature, NumericProfile):
        ref_v, live_v = ref[:-1], live[:-1]
        n = int(live_v.sum())
        base = FeatureDrift(feature.name, "numeric", "ks", n=n, missing_fraction=missing_fraction)
        if int(ref_v.sum()) == 0:
            return _note(base, "no reference values")
        if n < config.min_samples:
            return _note(base, f"insufficient: {n} values < {config.min_samples}")
        statistic, p_value = binned_ks_test(ref_v, live_v)
    else:
        assert isinstance(feature, CategoricalProfile)
        ref_v, live_v = ref, live
        n = rows
        k = len(feature.categories)
        base = FeatureDrift(
            feature.name,
            "categorical",
            "chi2",
            n=n,
            missing_fraction=missing_fraction,
            other_fraction=float(live[k] / rows) if rows else None,
        )
        if n < config.min_samples:
            return _note(base, f"insufficient: {n} rows < {config.min_samples}")
        statistic, p_value, _ = chi2_test(ref_v, live_v, min_expected=config.min_expected)
    return FeatureDrift(
        name=base.name,
        kind=base.kind,
        test=base.test,
        n=n,
        statistic=statistic,
        p_value=p_value,
        p_adjusted=p_value,
        psi=psi(ref_v, live_v),
        js=js_distance(ref_v, live_v),
        drifted=p_value <= config.alpha,
        missing_fraction=missing_fraction,
        other_fraction=base.other_fraction,
    )


def _note(entry: FeatureDrift, note: str) -> FeatureDrift:
    return FeatureDrift(
        entry.name,
        entry.kind,
        entry.test,
        n=entry.n,
        missing_fraction=entry.missing_fraction,
        other_fraction=entry.other_fraction,
        note=note,
    )


def evaluate(
    profile: Profile,
    state: WindowState,
    config: DriftConfig = DriftConfig(),
    *,
    model_version: str | None = None,
    checked_at: datetime | None = None,
) -> DriftReport:
    """Evaluate a (possibly merged) window state against its profile."""
    now = checked_at or datetime.now(UTC)

    def report(status: DriftStatus, rows: int, **fields: Any) -> DriftReport:
        return DriftReport(
            status=status,
            window_rows=rows,
            checked_at=now,
            model_version=model_version,
            correction=config.correction,
            alpha=config.alpha,
            min_samples=config.min_samples,
            **fields,
        )

    if state.profile_digest != profile.digest():
        return report(
            DriftStatus.UNKNOWN,
            state.window_rows,
            reason="window state was built from another profile",
        )
    rows = state.window_rows
    if rows < config.min_samples:
        return report(
            DriftStatus.INSUFFICIENT,
            rows,
            reason=f"{rows} rows in the window, at least {config.min_samples} needed",
        )
    window = state.window_counts()
    slices = state.cell_slices()
    entries = [assess_feature(f, window[slices[i]], config) for i, f in enumerate(profile.features)]
    prediction = None
    if profile.prediction is not None:
        prediction = assess_feature(profile.prediction, window[slices[-1]], config)
        if prediction.n == 0:
            prediction = _note(prediction, "no predictions observed")
    tested = [i for i, e in enumerate(entries) if e.p_value is not None]
    if not tested:
        return report(
            DriftStatus.INSUFFICIENT,
            rows,
            features=tuple(entries),
            prediction=prediction,
            reason="no feature has enough values to test",
        )
    raw = np.asarray([entries[i].p_value for i in tested], dtype=np.float64)
    adjusted = adjust_pvalues(raw, config.correction)
    for i, q in zip(tested, adjusted, strict=True):
        e = entries[i]
        entries[i] = FeatureDrift(
            name=e.name,
            kind=e.kind,
            test=e.test,
            n=e.n,
            statistic=e.statistic,
            p_value=e.p_value,
            p_adjusted=float(q),
            psi=e.psi,
            js=e.js,
            drifted=bool(q <= config.alpha),
            missing_fraction=e.missing_fraction,
            other_fraction=e.other_fraction,
        )
    dataset_p = float(adjusted.min())
    score = max(entries[i].js or 0.0 for i in tested)
    drifted = any(entries[i].drifted for i in tested)
    return report(
        DriftStatus.DRIFTED if drifted else DriftStatus.NO_DRIFT,
        rows,
        p_value=dataset_p,
        score=score,
        features=tuple(entries),
        prediction=prediction,
    )

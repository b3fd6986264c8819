"""Dataset verdicts: Insufficient, multiple testing, prediction drift, status dict, JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from modeldeploy_drift import (
    DriftConfig,
    DriftReport,
    DriftStatus,
    Profile,
    WindowState,
    build_profile,
    evaluate,
)

WHEN = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def _numeric_profile(rng: np.random.Generator, features: int, n: int = 5000) -> Profile:
    return build_profile(rng.normal(size=(n, features)), predictions=rng.normal(size=n))


def _window(profile: Profile, rows: np.ndarray, preds: np.ndarray | None = None) -> WindowState:
    st = WindowState(profile, window_size=max(1, len(rows)), buckets=1)
    st.observe(rows, preds)
    return st


def test_insufficient_window() -> None:
    rng = np.random.default_rng(0)
    prof = _numeric_profile(rng, 3)
    st = _window(prof, rng.normal(size=(99, 3)))
    report = evaluate(prof, st, DriftConfig(min_samples=100), checked_at=WHEN)
    assert report.status is DriftStatus.INSUFFICIENT
    assert report.p_value is None and report.window_rows == 99
    assert "99 rows" in (report.reason or "")
    empty = evaluate(prof, WindowState(prof))
    assert empty.status is DriftStatus.INSUFFICIENT


def test_feature_with_too_few_values_is_left_out() -> None:
    rng = np.random.default_rng(1)
    prof = _numeric_profile(rng, 2)
    rows = rng.normal(size=(300, 2))
    rows[:250, 1] = np.nan  # only 50 values
    report = evaluate(prof, _window(prof, rows))
    assert report.status is DriftStatus.NO_DRIFT
    x0, x1 = report.features
    assert x0.tested and not x1.tested
    assert x1.note is not None and "insufficient" in x1.note
    assert x1.missing_fraction == pytest.approx(250 / 300)
    rows[:, 0] = np.nan
    report = evaluate(prof, _window(prof, rows))
    assert report.status is DriftStatus.INSUFFICIENT
    assert report.reason == "no feature has enough values to test"


def test_drift_is_found_and_sorted() -> None:
    rng = np.random.default_rng(2)
    prof = _numeric_profile(rng, 6)
    rows = rng.normal(size=(1000, 6))
    rows[:, 4] += 0.5
    rows[:, 1] += 0.25
    report = evaluate(prof, _window(prof, rows), model_version="v7", checked_at=WHEN)
    assert report.status is DriftStatus.DRIFTED
    assert [f.name for f in report.drifted_features] == ["x4", "x1"]
    assert report.top_features(2)[0].name == "x4"
    assert report.p_value is not None and report.p_value < 1e-6
    assert report.model_version == "v7"
    x4 = report.features[4]
    assert x4.psi is not None and x4.psi > 0.1 and x4.js is not None and x4.js > 0.1
    assert report.score == pytest.approx(max(f.js or 0 for f in report.features))


def test_bh_flags_at_least_what_bonferroni_flags() -> None:
    rng = np.random.default_rng(3)
    prof = _numeric_profile(rng, 10)
    rows = rng.normal(size=(500, 10))
    rows[:, :5] += 0.12  # five weak shifts
    st = _window(prof, rows)
    bh = evaluate(prof, st, DriftConfig(correction="bh"))
    bonf = evaluate(prof, st, DriftConfig(correction="bonferroni"))
    raw = [f.p_value for f in bh.features]
    assert raw == [f.p_value for f in bonf.features]
    assert {f.name for f in bonf.drifted_features} <= {f.name for f in bh.drifted_features}
    assert len(bh.drifted_features) > len(bonf.drifted_features)
    m = len(raw)
    assert bonf.p_value == pytest.approx(min(1.0, m * min(p for p in raw if p is not None)))
    assert bh.p_value is not None and bonf.p_value is not None and bh.p_value <= bonf.p_value


@pytest.mark.parametrize("correction", ["bh", "bonferroni"])
def test_dataset_false_positive_rate_with_20_null_features(correction: str) -> None:
    """20 independent null features, n = 200: P(Drifted) <= alpha (+ 2 SE for 200 reps)."""
    rng = np.random.default_rng(4)
    prof = _numeric_profile(rng, 20, n=10_000)
    config = DriftConfig(correction=correction)  # type: ignore[arg-type]
    reps = 200
    drifted = 0
    for _ in range(reps):
        report = evaluate(prof, _window(prof, rng.normal(size=(200, 20))), config)
        drifted += report.status is DriftStatus.DRIFTED
    assert drifted / reps <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / reps)


def test_prediction_drift_is_reported_separately() -> None:
    rng = np.random.default_rng(5)
    n = 5000
    prof = build_profile(
        {"a": rng.normal(size=n), "c": rng.choice(["x", "y"], size=n)},
        predictions=rng.choice(["no", "yes"], p=[0.8, 0.2], size=n),
    )
    rows = np.empty((600, 2), dtype=object)
    rows[:, 0] = rng.normal(size=600)
    rows[:, 1] = rng.choice(["x", "y"], size=600)
    preds = rng.choice(["no", "yes"], p=[0.5, 0.5], size=600)
    report = evaluate(prof, _window(prof, rows, preds))
    assert report.status is DriftStatus.NO_DRIFT
    assert report.prediction is not None and report.prediction.drifted
    assert report.prediction.test == "chi2"
    status = report.to_status_dict()
    assert status["prediction"]["drifted"] is True
    no_preds = evaluate(prof, _window(prof, rows))
    assert no_preds.prediction is not None and not no_preds.prediction.tested


def test_unseen_categories_drift_without_crashing() -> None:
    rng = np.random.default_rng(6)
    prof = build_profile({"c": rng.choice(["a", "b", "c"], size=3000)})
    rows = rng.choice(["a", "b", "c", "brand-new", "other-new"], size=(400, 1)).astype(object)
    report = evaluate(prof, _window(prof, rows))
    (c,) = report.features
    assert c.drifted and c.other_fraction == pytest.approx(np.mean(np.isin(rows, ["brand-new", "other-new"])))


def test_other_profile_gives_unknown() -> None:
    rng = np.random.default_rng(7)
    prof, other = _numeric_profile(rng, 2), _numeric_profile(rng, 2)
    st = _window(other, rng.normal(size=(200, 2)))
    report = evaluate(prof, st)
    assert report.status is DriftStatus.UNKNOWN
    assert DriftReport.unknown("no profile").to_status_dict()["status"] == "Unknown"


def test_status_dict_is_bounded_and_camel_case() -> None:
    rng = np.random.default_rng(8)
    n_features = 300
    names = [f"feature_{i:03d}_" + "x" * 240 for i in range(n_features)]
    prof = build_profile(rng.normal(size=(2000, n_features)), feature_names=names)
    rows = rng.normal(size=(300, n_features))
    rows[:, :50] += 1.0
    report = evaluate(prof, _window(prof, rows), checked_at=WHEN)
    status = report.to_status_dict(top_k=5)
    assert status["status"] == "Drifted" and 50 <= status["featuresDrifted"] <= 55  # BH: FDR 5%
    assert len(status["topFeatures"]) == 5
    assert all(len(f["name"]) <= 63 for f in status["topFeatures"])
    assert len(json.dumps(status)) < 2500
    assert len(json.dumps(report.to_status_dict(top_k=10_000))) < 8000  # top_k is capped
    keys = set(status) | {k for f in status["topFeatures"] for k in f}
    assert all("_" not in k for k in keys)
    assert status["checkedAt"] == "2026-11-24T12:00:00Z"


def test_report_json_round_trip() -> None:
    rng = np.random.default_rng(9)
    prof = _numeric_profile(rng, 3)
    rows = rng.normal(size=(400, 3))
    report = evaluate(prof, _window(prof, rows, rng.normal(size=400)), model_version="v1", checked_at=WHEN)
    again = DriftReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        DriftConfig(alpha=0)
    with pytest.raises(ValueError):
        DriftConfig(correction="holm")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DriftConfig(min_samples=0)


def test_merged_replicas_give_the_same_verdict_as_one_server() -> None:
    rng = np.random.default_rng(10)
    prof = _numeric_profile(rng, 4)
    rows = rng.normal(size=(900, 4))
    rows[:, 2] += 0.3
    preds = rng.normal(size=900)
    single = WindowState(prof, window_size=900)
    replicas = [WindowState(prof, window_size=300) for _ in range(3)]
    for i in range(0, 900, 25):
        single.observe(rows[i : i + 25], preds[i : i + 25])
        replicas[(i // 25) % 3].observe(rows[i : i + 25], preds[i : i + 25])
    merged = WindowState.merge(replicas)
    a = evaluate(prof, single, checked_at=WHEN)
    b = evaluate(prof, merged, checked_at=WHEN)
    assert a == b and a.status is DriftStatus.DRIFTED

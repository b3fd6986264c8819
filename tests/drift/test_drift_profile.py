"""Reference profiles: building from tables and models, size bound, JSON round trip, validation."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from modeldeploy_drift.profile import (
    MAX_BINS,
    MAX_FEATURE_JSON_BYTES,
    CategoricalProfile,
    NumericProfile,
    Profile,
    ProfileError,
    build_profile,
)


def _table(rng: np.random.Generator, n: int = 2000) -> dict[str, Any]:
    return {
        "age": rng.normal(40, 10, size=n),
        "city": rng.choice(["paris", "lyon", "nice"], p=[0.6, 0.3, 0.1], size=n),
        "flag": rng.random(size=n) < 0.3,
        "target": rng.integers(0, 2, size=n),
    }


def test_types_bins_and_categories_from_the_data() -> None:
    rng = np.random.default_rng(0)
    prof = build_profile(_table(rng), exclude=["target"], bins=20)
    assert prof.feature_names == ("age", "city", "flag")
    age, city, flag = prof.features
    assert isinstance(age, NumericProfile) and isinstance(city, CategoricalProfile)
    assert isinstance(flag, CategoricalProfile) and set(flag.categories) == {"true", "false"}
    assert len(age.edges) == 19 and sum(age.counts) == 2000
    # equiprobable bins: every bin holds about 1/20 of the reference
    assert max(age.counts) - min(age.counts) <= 2
    assert city.categories == ("paris", "lyon", "nice") and city.other == 0
    assert prof.prediction is None and prof.rows == 2000


def test_array_input_names_and_explicit_categorical() -> None:
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.normal(size=500), rng.integers(0, 4, size=500)])
    prof = build_profile(x, categorical=["x1"])
    assert prof.feature_names == ("x0", "x1")
    assert isinstance(prof.features[1], CategoricalProfile)
    counts = prof.features[1].counts
    assert list(counts) == sorted(counts, reverse=True)  # most frequent first
    named = build_profile(x, feature_names=["a", "b"])
    assert named.feature_names == ("a", "b")


def test_missing_values_and_high_cardinality() -> None:
    rng = np.random.default_rng(2)
    n = 5000
    vals = rng.normal(size=n)
    vals[:100] = np.nan
    ids = np.array([f"user-{i}" for i in rng.integers(0, 3000, size=n)], dtype=object)
    ids[:7] = None
    prof = build_profile({"v": vals, "id": ids}, max_categories=10)
    v, ident = prof.features
    assert isinstance(v, NumericProfile) and v.missing == 100 and sum(v.counts) == n - 100
    assert isinstance(ident, CategoricalProfile)
    assert len(ident.categories) == 10 and ident.missing == 7
    assert sum(ident.counts) + ident.other + ident.missing == n
    assert ident.distinct > 1000


def test_feature_json_is_bounded() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    long_cats = np.array([f"{'é' * 150}-{i}" for i in rng.integers(0, 500, size=n)], dtype=object)
    huge_cats = np.array(["z" * 5000] * n, dtype=object)
    prof = build_profile(
        {
            "heavy_tailed": rng.standard_cauchy(size=n) * 1e12,
            "long": long_cats,
            "huge": huge_cats,
            "many": rng.integers(0, 10**9, size=n).astype(str),
        },
        bins=MAX_BINS,
        max_categories=1000,
    )
    for f in prof.features:
        size = len(json.dumps(f.to_dict()))
        assert size <= MAX_FEATURE_JSON_BYTES, (f.name, size)
    huge = prof.feature("huge")
    assert isinstance(huge, CategoricalProfile) and huge.categories == () and huge.other == n
    Profile.from_json(prof.to_json())  # still loads


def test_json_round_trip_and_digest() -> None:
    rng = np.random.default_rng(4)
    when = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    prof = build_profile(_table(rng), exclude=["target"], predictions=rng.normal(size=2000), created_at=when)
    assert prof.created_at == "2026-11-24T12:00:00Z"
    assert isinstance(prof.prediction, NumericProfile)
    text = prof.to_json()
    loaded = Profile.from_json(text)
    assert loaded == prof
    assert loaded.digest() == prof.digest()
    assert json.loads(loaded.to_json()) == json.loads(text)
    assert json.loads(text)["schemaVersion"] == 1


def test_model_gives_feature_order_and_prediction_profile() -> None:
    from sklearn.linear_model import LinearRegression, LogisticRegression

    rng = np.random.default_rng(5)
    n = 600

    class Frame:
        """Minimal DataFrame stand-in (columns + item access)."""

        def __init__(self, cols: dict[str, np.ndarray]) -> None:
            self._cols = cols
            self.columns = list(cols)

        def __getitem__(self, key: str) -> np.ndarray:
            return self._cols[key]

    x = rng.normal(size=(n, 2))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    clf = LogisticRegression().fit(x, y)
    clf.feature_names_in_ = np.array(["b", "a"], dtype=object)  # as if fitted on a frame
    data = Frame({"a": x[:, 1], "b": x[:, 0], "target": y})
    prof = build_profile(data, model=clf, model_sha256="ab" * 32)
    assert prof.feature_names == ("b", "a")
    assert isinstance(prof.prediction, CategoricalProfile)
    assert set(prof.prediction.categories) == {"0", "1"}
    assert prof.model_sha256 == "ab" * 32 and prof.model_type is not None
    assert "LogisticRegression" in prof.model_type

    reg = LinearRegression().fit(x, x[:, 0] * 2.0)
    prof_r = build_profile(x, model=reg)
    assert isinstance(prof_r.prediction, NumericProfile)

    with pytest.raises(ProfileError, match="missing from the data: b"):
        build_profile({"a": x[:, 1]}, model=clf)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("schemaVersion"), r"profile.schemaVersion: missing"),
        (lambda d: d.update(schemaVersion=7), r"unsupported version 7"),
        (lambda d: d.update(kind="Other"), r"profile.kind"),
        (lambda d: d.update(features=[]), r"at least one feature"),
        (lambda d: d["features"][0].update(type="text"), r"features\[0\] \(age\).type"),
        (lambda d: d["features"][0]["counts"].pop(), r"features\[0\] \(age\).counts: expected 20"),
        (lambda d: d["features"][0]["edges"].reverse(), r"strictly increasing"),
        (lambda d: d["features"][0]["edges"].__setitem__(0, "x"), r"edges\[0\]: expected a finite"),
        (lambda d: d["features"][0].update(missing=-1), r"missing: must not be negative"),
        (lambda d: d["features"][1]["counts"].append(3), r"\(city\).counts: expected 3 counts"),
        (lambda d: d["features"][1]["categories"].__setitem__(0, "lyon"), r"duplicate categories"),
        (lambda d: d["features"][1].update(counts=[1.5, 2, 3]), r"counts\[0\]: expected an integer"),
        (lambda d: d["features"].append(dict(d["features"][0])), r"duplicate feature names: age"),
        (lambda d: d["features"][0].update(name=""), r"name: must be 1..256"),
        (lambda d: d.update(prediction=[]), r"profile.prediction: expected an object"),
    ],
)
def test_bad_profiles_say_what_is_wrong(mutate: Any, message: str) -> None:
    rng = np.random.default_rng(6)
    good = build_profile(_table(rng), exclude=["target", "flag"], bins=20).to_dict()
    mutate(good)
    with pytest.raises(ProfileError, match=message):
        Profile.from_dict(good)


def test_bad_json_and_oversized_feature() -> None:
    with pytest.raises(ProfileError, match="not valid JSON"):
        Profile.from_json("{nope")
    with pytest.raises(ProfileError, match="expected an object"):
        Profile.from_json("[1, 2]")
    big = {
        "schemaVersion": 1,
        "features": [
            {
                "name": "c",
                "type": "categorical",
                "categories": [f"c{i:05d}" for i in range(2000)],
                "counts": [1] * 2000,
            }
        ],
    }
    with pytest.raises(ProfileError, match="bytes of JSON, the limit is 8192"):
        Profile.from_dict(big)


def test_build_rejects_bad_arguments() -> None:
    rng = np.random.default_rng(7)
    with pytest.raises(ProfileError, match="bins must be between"):
        build_profile({"a": rng.normal(size=10)}, bins=1)
    with pytest.raises(ProfileError, match="no rows"):
        build_profile({"a": np.array([])})
    with pytest.raises(ProfileError, match="different lengths"):
        build_profile({"a": np.zeros(3), "b": np.zeros(4)})
    with pytest.raises(ProfileError, match="predictions for 10 rows"):
        build_profile({"a": rng.normal(size=10)}, predictions=[1, 2])
    with pytest.raises(ProfileError, match="unknown features: zz"):
        build_profile({"a": rng.normal(size=10)}, categorical=["zz"])


def test_all_missing_and_constant_columns() -> None:
    prof = build_profile({"empty": np.full(50, np.nan), "const": np.ones(50)})
    empty, const = prof.features
    assert isinstance(empty, NumericProfile) and empty.edges == () and empty.missing == 50
    assert isinstance(const, NumericProfile) and const.edges == (1.0,)
    assert const.summary.std == 0.0
    assert all(v is None or math.isfinite(v) for v in const.summary.quantiles)
    Profile.from_json(prof.to_json())

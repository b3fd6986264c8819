"""Live window state: counting, sliding window, bounded memory, merge, JSON round trip."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from modeldeploy_drift.profile import (
    CategoricalProfile,
    NumericProfile,
    Profile,
    build_profile,
)
from modeldeploy_drift.state import StateError, WindowState


def _profile(seed: int = 0) -> Profile:
    rng = np.random.default_rng(seed)
    n = 3000
    return build_profile(
        {
            "a": rng.normal(size=n),
            "b": rng.exponential(size=n),
            "c": rng.choice(["x", "y", "z"], size=n),
        },
        predictions=rng.choice(["no", "yes"], size=n),
        bins=16,
    )


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    x = np.empty((n, 3), dtype=object)
    x[:, 0] = rng.normal(size=n)
    x[:, 1] = rng.exponential(size=n)
    x[:, 2] = rng.choice(["x", "y", "z", "w"], size=n)
    return x


def _expected_cells(profile: Profile, rows: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """Reference implementation: per-value loops."""
    cells: list[int] = []
    for j, f in enumerate(profile.features):
        counts = np.zeros(f.n_cells, dtype=np.int64)
        for v in rows[:, j]:
            if isinstance(f, NumericProfile):
                counts[int(np.searchsorted(f.edges, float(v), side="left"))] += 1
            else:
                counts[f.cell_of(str(v))] += 1
        cells.extend(counts.tolist())
    pred = profile.prediction
    assert isinstance(pred, CategoricalProfile)
    pc = np.zeros(pred.n_cells, dtype=np.int64)
    for v in preds:
        pc[pred.cell_of(str(v))] += 1
    return np.asarray([*cells, *pc.tolist()])


def test_counts_match_a_per_value_reference() -> None:
    prof = _profile()
    rng = np.random.default_rng(1)
    rows = _rows(rng, 400)
    preds = rng.choice(["no", "yes", "maybe"], size=400)
    st = WindowState(prof, window_size=1000)
    st.observe(rows[:1], preds[:1])  # single-row path
    st.observe(rows[1:20], preds[1:20])  # broadcast path
    st.observe(rows[20:], preds[20:])  # searchsorted path
    assert st.window_rows == 400
    assert np.array_equal(st.window_counts(), _expected_cells(prof, rows, preds))
    c = st.feature_counts("c")
    assert c[3] == np.sum(rows[:, 2] == "w")  # unseen category "w" counted as other
    assert st.feature_counts("prediction")[2] == np.sum(preds == "maybe")


def test_numeric_only_fast_path_equals_object_path() -> None:
    rng = np.random.default_rng(2)
    prof = build_profile(rng.normal(size=(2000, 4)))
    x = rng.normal(size=(300, 4))
    fast, slow = WindowState(prof), WindowState(prof)
    fast.observe(x)
    slow.observe(x.astype(object))
    for i in range(5):  # and row by row
        fast.observe(x[i])
        slow.observe(x[i].astype(object))
    assert np.array_equal(fast.window_counts(), slow.window_counts())


def test_bad_values_never_crash() -> None:
    prof = _profile()
    st = WindowState(prof)
    weird = np.array(
        [
            [None, "3.5", None],
            ["abc", float("inf"), 3],
            [float("nan"), -float("inf"), ""],
            [True, b"1", 2.5],
            [{"a": 1}, [1], object()],
        ],
        dtype=object,
    )
    st.observe(weird, predictions=[None, 1, "yes", float("nan"), "other"])
    a, b, c = (st.feature_counts(n) for n in ("a", "b", "c"))
    assert a[-1] == 4  # None, "abc", NaN, dict -> missing; True -> 1.0
    assert b[-1] == 1  # [1] is not a number; "3.5", b"1" and +-inf are numbers
    assert c[-1] == 2 and c[3] == 3  # None and "" missing; 3, 2.5, object() other
    assert st.window_rows == 5
    with pytest.raises(ValueError, match="rows must have 3 columns"):
        st.observe(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="2 predictions for 3 rows"):
        st.observe(_rows(np.random.default_rng(0), 3), predictions=["a", "b"])


@pytest.mark.parametrize("single_row_path", [True, False])
def test_row_by_row_equals_batch_for_any_value(single_row_path: bool) -> None:
    prof = _profile()
    values = [None, "3.5", " 2 ", "nan", "", "abc", float("inf"), -float("inf"), float("nan"), True, 7, b"1", 2.5, 0.0]
    cats = [None, "", "x", "y", "w", 3, 2.5, float("nan"), True, b"x"]
    rng = np.random.default_rng(9)
    rows = np.empty((60, 3), dtype=object)
    for i in range(60):
        rows[i] = [values[rng.integers(len(values))], values[rng.integers(len(values))], cats[rng.integers(len(cats))]]
    preds = [cats[rng.integers(len(cats))] for _ in range(60)]
    batch, single = WindowState(prof), WindowState(prof)
    single._enc.use_row_path = single_row_path  # both single-row implementations
    batch.observe(rows, preds)
    for i in range(60):
        single.observe(rows[i], [preds[i]])
    assert np.array_equal(batch.window_counts(), single.window_counts())
    numeric = WindowState(build_profile(rng.normal(size=(500, 2))))
    numeric_batch = WindowState(numeric.profile)
    numeric._enc.use_row_path = single_row_path
    x = rng.normal(size=(40, 2))
    x[::7, 1] = np.nan
    numeric_batch.observe(x)
    for row in x:
        numeric.observe(row)
    assert np.array_equal(numeric.window_counts(), numeric_batch.window_counts())


def test_sliding_window_keeps_the_last_rows() -> None:
    prof = build_profile({"v": np.arange(100.0)}, bins=10)
    st = WindowState(prof, window_size=100, buckets=10)
    # feed 0..999; the window should hold the last 91..100 rows
    for start in range(0, 1000, 7):
        st.observe(np.arange(start, min(start + 7, 1000), dtype=float).reshape(-1, 1))
    assert 90 <= st.window_rows <= 100
    assert st.total_rows == 1000
    # all recent values are > 99 -> last bin only
    counts = st.feature_counts("v")
    assert counts[-2] == st.window_rows and counts[:-2].sum() == 0


def test_big_batch_equals_row_by_row() -> None:
    prof = _profile()
    rng = np.random.default_rng(3)
    rows = _rows(rng, 2500)
    preds = rng.choice(["no", "yes"], size=2500)
    one, many = WindowState(prof, window_size=300, buckets=6), WindowState(prof, window_size=300, buckets=6)
    one.observe(rows[:13], preds[:13])
    many.observe(rows[:13], preds[:13])
    one.observe(rows[13:], preds[13:])  # evicts most of the batch at once
    for i in range(13, 2500, 50):
        many.observe(rows[i : i + 50], preds[i : i + 50])
    assert one.to_dict() == many.to_dict()


def test_skipped_rows_are_tallied_not_counted() -> None:
    """A caller may leave out the rows a batch evicts again (`kept_rows`): the state is the same."""
    prof = _profile()
    rng = np.random.default_rng(4)
    rows = _rows(rng, 2500)
    preds = rng.choice(["no", "yes"], size=2500)
    full, lean = WindowState(prof, window_size=300, buckets=6), WindowState(prof, window_size=300, buckets=6)
    for st in (full, lean):
        st.observe(rows[:13], preds[:13])
    kept = lean.kept_rows(2487)
    assert kept < 2487 and kept > (6 - 1) * 50  # the last partial bucket plus five full ones
    lean.observe(rows[2500 - kept :], preds[2500 - kept :], skipped=2487 - kept)
    full.observe(rows[13:], preds[13:])
    assert lean.to_dict() == full.to_dict()
    assert WindowState(prof, window_size=300).kept_rows(250) == 250, "a batch that fits is kept whole"
    with pytest.raises(ValueError, match="stay in the window"):
        lean.observe(rows[:10], preds[:10], skipped=kept)  # rows that would have stayed were left out


def test_memory_is_bounded() -> None:
    prof = _profile()
    st = WindowState(prof, window_size=1000, buckets=10)
    before = st.nbytes
    rng = np.random.default_rng(4)
    for _ in range(20):
        st.observe(_rows(rng, 500))
    assert st.nbytes == before
    assert len(json.dumps(st.to_dict())) < 20 * 1024


def _feed(states: list[WindowState], rows: np.ndarray, preds: np.ndarray, chunk: int) -> None:
    for k, i in enumerate(range(0, len(rows), chunk)):
        states[k % len(states)].observe(rows[i : i + chunk], preds[i : i + chunk])


def test_merge_equals_one_state_that_saw_all_rows() -> None:
    prof = _profile()
    rng = np.random.default_rng(5)
    rows = _rows(rng, 1500)
    preds = rng.choice(["no", "yes"], size=1500)
    single = WindowState(prof, window_size=3000)
    replicas = [WindowState(prof, window_size=1000) for _ in range(3)]
    _feed([single], rows, preds, 37)
    _feed(replicas, rows, preds, 37)
    merged = WindowState.merge(replicas)
    assert np.array_equal(merged.window_counts(), single.window_counts())
    assert merged.window_rows == single.window_rows == 1500
    assert merged.total_rows == 1500 and merged.window_size == 3000

    a, b, c = replicas
    left = WindowState.merge([WindowState.merge([a, b]), c])
    right = WindowState.merge([a, WindowState.merge([b, c])])
    assert left.to_dict() == right.to_dict() == merged.to_dict()  # associative
    assert WindowState.merge([c, a, b]).to_dict()["buckets"] == merged.to_dict()["buckets"]
    assert WindowState.merge([a]).to_dict()["buckets"] == a.to_dict()["buckets"]


def test_merge_of_collapsed_states_keeps_the_window_totals() -> None:
    prof = _profile()
    rng = np.random.default_rng(6)
    replicas = [WindowState(prof, window_size=500) for _ in range(2)]
    _feed(replicas, _rows(rng, 3000), rng.choice(["no", "yes"], size=3000), 64)
    wire = [WindowState.from_dict(json.loads(json.dumps(r.to_dict(collapse=True))), prof) for r in replicas]
    assert np.array_equal(WindowState.merge(wire).window_counts(), WindowState.merge(replicas).window_counts())


def test_merge_refuses_other_profiles() -> None:
    with pytest.raises(StateError, match="different profiles"):
        WindowState.merge([WindowState(_profile(0)), WindowState(_profile(1))])
    with pytest.raises(StateError, match="at least one"):
        WindowState.merge([])


def test_json_round_trip_continues_identically() -> None:
    prof = _profile()
    rng = np.random.default_rng(7)
    st = WindowState(prof, window_size=200, buckets=4)
    st.observe(_rows(rng, 333), rng.choice(["no", "yes"], size=333))
    d = st.to_dict()
    assert all(isinstance(v, int) for b in d["buckets"] for v in b["counts"])
    copy = WindowState.from_dict(json.loads(json.dumps(d)), prof)
    assert copy.to_dict() == d
    more, preds = _rows(rng, 77), rng.choice(["no", "yes"], size=77)
    st.observe(more, preds)
    copy.observe(more, preds)
    assert copy.to_dict() == st.to_dict()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schemaVersion=2), "schemaVersion"),
        (lambda d: d.update(profileDigest="0" * 16), "is not this profile"),
        (lambda d: d.update(cells=[1, 2]), "layout does not match"),
        (lambda d: d.update(fill=10**6), "inconsistent"),
        (lambda d: d.update(buckets=[]), "non-empty list"),
        (lambda d: d["buckets"][0]["counts"].pop(), r"buckets\[0\].counts: expected"),
        (lambda d: d["buckets"][0]["counts"].__setitem__(0, -1), "non-negative integers"),
        (lambda d: d["buckets"][0].update(rows=1), "do not add up"),
        (lambda d: d.update(totalRows="many"), "totalRows"),
    ],
)
def test_bad_state_dicts(mutate: Any, message: str) -> None:
    prof = _profile()
    st = WindowState(prof, window_size=100, buckets=2)
    st.observe(_rows(np.random.default_rng(8), 30))
    d = st.to_dict()
    mutate(d)
    with pytest.raises(StateError, match=message):
        WindowState.from_dict(d, prof)


def test_constructor_checks() -> None:
    with pytest.raises(ValueError):
        WindowState(_profile(), window_size=0)
    with pytest.raises(ValueError):
        WindowState(_profile(), window_size=10, buckets=11)

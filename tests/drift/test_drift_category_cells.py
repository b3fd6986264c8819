"""The vectorised category lookup gives exactly the cells of `cell_of(category_key(v))` for every dtype."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from modeldeploy_drift.category_cells import CategoryCells
from modeldeploy_drift.profile import CategoricalProfile
from modeldeploy_drift.table import category_key

# Keys an integer, a float, a bool or a string may map to, and keys nothing numeric maps to.
CATEGORIES = ("0", "1", "2", "-3", "10", "true", "1.5", "cat", "dog", "", "01", "+4", "9223372036854775807")


def profile(categories: tuple[str, ...] = CATEGORIES) -> CategoricalProfile:
    cats = tuple(c for c in categories if c)  # "" is missing, never a category
    return CategoricalProfile("f", cats, tuple(1 for _ in cats), other=1, missing=1, distinct=len(cats) + 1)


def per_value(p: CategoricalProfile, column: np.ndarray[Any, Any]) -> list[int]:
    return [p.cell_of(category_key(v)) for v in column.tolist()]


def check(column: np.ndarray[Any, Any], categories: tuple[str, ...] = CATEGORIES) -> None:
    p = profile(categories)
    got = CategoryCells(p).encode(column)
    assert got.dtype == np.int64
    assert got.tolist() == per_value(p, column), column


@pytest.mark.parametrize(
    "column",
    [
        np.array([0, 1, 2, -3, 10, 4, 7, -1]),
        np.array([0, 1, 2, 255], dtype=np.uint8),
        np.array([1, 2, 2**63 + 5], dtype=np.uint64),  # beyond int64: per-value path
        np.array([True, False, True]),
        np.array([0.0, 1.0, -3.0, 1.5, np.nan, -0.0, 2.5, np.inf]),
        np.array([1.0, 2.0, np.nan]),
        np.array(["cat", "dog", "", "bird", "1", "01", "+4", "true"]),
        np.array([b"cat", b"x"]),
        np.array(["cat", None, 1, 2.0, True, float("nan")], dtype=object),
        np.array([], dtype=np.int64),
        np.array([], dtype=str),
    ],
    ids=["int", "uint8", "uint64-huge", "bool", "float-mixed", "float-integral", "text", "bytes", "object", "empty-int",
         "empty-text"],
)
def test_every_dtype_matches_the_per_value_path(column: np.ndarray[Any, Any]) -> None:
    check(column)


def test_a_profile_without_categories_counts_other_and_missing() -> None:
    check(np.array(["a", ""]), categories=())
    check(np.array([1, 2]), categories=())
    check(np.array([np.nan, 1.0]), categories=())


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.int64, st.integers(0, 30), elements=st.integers(-20, 20)))
def test_random_integer_columns(column: np.ndarray[Any, Any]) -> None:
    check(column, categories=tuple(str(i) for i in range(-5, 15, 2)))


FLOATS = st.floats(-10, 10) | st.integers(-5, 5).map(float) | st.just(np.nan)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float64, st.integers(0, 30), elements=FLOATS))
def test_random_float_columns(column: np.ndarray[Any, Any]) -> None:
    check(column)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["cat", "dog", "", "1", "Cat", "dog ", "x"]), max_size=30))
def test_random_text_columns(values: list[str]) -> None:
    check(np.asarray(values, dtype=str))

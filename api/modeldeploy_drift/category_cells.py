"""Vectorised category -> cell lookup for whole columns (predicted labels, text or integer features).

:meth:`CategoricalProfile.cell_of` on :func:`category_key` costs a Python call per value; for a
column of one NumPy dtype the same cells come from one ``searchsorted`` over the profile's sorted
category keys.  Every dtype follows ``category_key``'s canonical keys exactly (``1``, ``1.0`` and
``"1"`` share ``"1"``; booleans are ``"true"``/``"false"``; ``""`` and NaN are missing); the rare
columns it cannot vectorise exactly (objects, non-integral floats, huge integers) take the
per-value path.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .profile import CategoricalProfile
from .table import category_key

IntArray = npt.NDArray[np.int64]
_EXACT_FLOAT: Final = 2.0**53  # integral floats below this map to str(int(x)), as category_key does


class CategoryCells:
    """Local cell indices (categories, then other, then missing) of a column's values."""

    def __init__(self, profile: CategoricalProfile) -> None:
        self.profile = profile
        self.other = len(profile.categories)
        self.missing = self.other + 1
        order = sorted(range(len(profile.categories)), key=lambda i: profile.categories[i])
        self._text_keys = np.asarray([profile.categories[i] for i in order], dtype=str)
        self._text_cells = np.asarray(order, dtype=np.int64)
        ints = [(int(c), i) for i, c in enumerate(profile.categories) if _is_int_key(c)]
        ints.sort()
        self._int_keys = np.asarray([k for k, _ in ints], dtype=np.int64)
        self._int_cells = np.asarray([i for _, i in ints], dtype=np.int64)
        self._bool_cells = np.asarray([profile.cell_of("false"), profile.cell_of("true")], dtype=np.int64)

    def encode(self, column: npt.NDArray[Any]) -> IntArray:
        """Cell index of every value of a 1-D column."""
        kind = column.dtype.kind
        if kind == "U":
            cells = _lookup(self._text_keys, self._text_cells, column, self.other)
            cells[column == ""] = self.missing
            return cells
        if kind == "b":
            return self._bool_cells[column.astype(np.int64)]
        if kind in "iu" and (column.dtype.itemsize < 8 or kind == "i" or not _over_int64(column)):
            return _lookup(self._int_keys, self._int_cells, column.astype(np.int64), self.other)
        if kind == "f":
            nan = np.isnan(column)
            finite = column[~nan]
            if np.all((np.abs(finite) < _EXACT_FLOAT) & (finite == np.floor(finite))):
                whole = np.where(nan, 0, column).astype(np.int64)
                cells = _lookup(self._int_keys, self._int_cells, whole, self.other)
                cells[nan] = self.missing
                return cells
        return self.encode_values(column.tolist())

    def encode_values(self, values: list[Any]) -> IntArray:
        """Per-value path for anything `encode` cannot vectorise exactly."""
        cell_of = self.profile.cell_of
        return np.asarray([cell_of(category_key(v)) for v in values], dtype=np.int64)


def _lookup(keys: npt.NDArray[Any], cells: IntArray, values: npt.NDArray[Any], other: int) -> IntArray:
    """cells[k] where values == keys[k] (keys sorted), else `other`."""
    if keys.size == 0:
        return np.full(values.shape, other, dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, values), keys.size - 1)
    found: IntArray = np.where(keys[pos] == values, cells[pos], other).astype(np.int64, copy=False)
    return found


def _is_int_key(key: str) -> bool:
    """Whether `category_key` gives this key to some integer (canonical decimal, no '+', no '-0')."""
    try:
        return str(int(key)) == key
    except ValueError:
        return False


def _over_int64(column: npt.NDArray[Any]) -> bool:
    return bool(column.size) and int(column.max()) > np.iinfo(np.int64).max

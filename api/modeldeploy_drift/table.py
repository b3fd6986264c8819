"""Columns of a training table: CSV/Parquet reading, column normalisation and category keys."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Columns = dict[str, npt.NDArray[Any]]

MISSING_TOKENS = frozenset({"", "na", "nan", "null", "none", "n/a"})
"""Cell texts (compared lower-cased, stripped) read as missing in CSV files."""


class TableError(ValueError):
    """The training table cannot be read or does not have the expected shape."""


def category_key(value: object) -> str | None:
    """Canonical text of a categorical value, or None when the value is missing.

    ``1``, ``1.0`` and ``"1"`` share the key ``"1"``; booleans become ``"true"``/``"false"``;
    ``None``, NaN and the empty string are missing.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value if value else None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        if math.isnan(f):
            return None
        if f.is_integer() and abs(f) < 2.0**53:
            return str(int(f))
        return repr(f)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace") or None
    return str(value)


def to_float(value: object) -> float:
    """``float(value)``, or NaN when the value is missing or not a number."""
    if value is None:
        return math.nan
    if isinstance(value, str) and value.strip().lower() in MISSING_TOKENS:
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def as_float_array(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Convert to float64 (any shape); values that are not numbers become NaN."""
    arr = np.asarray(values)
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64, copy=False)
    try:
        out = arr.astype(np.float64)
    except (TypeError, ValueError):
        flat = [to_float(v) for v in arr.ravel().tolist()]
        return np.asarray(flat, dtype=np.float64).reshape(arr.shape)
    return out


def is_numeric_column(values: npt.NDArray[Any]) -> bool:
    """True when every non-missing value of the column is a number (booleans are not)."""
    if values.dtype.kind == "b":
        return False
    if values.dtype.kind in "iuf":
        return True
    for v in values.ravel().tolist():
        if v is None:
            continue
        if isinstance(v, bool | np.bool_):
            return False
        if isinstance(v, int | float | np.integer | np.floating):
            continue
        if isinstance(v, str):
            if v.strip().lower() in MISSING_TOKENS:
                continue
            try:
                float(v)
            except ValueError:
                return False
            continue
        return False
    return True


def as_columns(data: object, feature_names: Sequence[str] | None = None) -> Columns:
    """Normalise a table to ``{name: 1-D array}``, keeping column order.

    Accepts a mapping of columns, a DataFrame-like object (``.columns`` and item access), a
    structured array, or a 2-D array (names from ``feature_names`` or ``x0, x1, ...``).
    """
    cols: Columns = {}
    if isinstance(data, Mapping):
        for name, col in data.items():
            cols[str(name)] = np.asarray(col)
    elif hasattr(data, "columns") and hasattr(data, "__getitem__"):
        for name in list(data.columns):
            col = data[name]
            cols[str(name)] = np.asarray(col.to_numpy() if hasattr(col, "to_numpy") else col)
    else:
        arr = np.asarray(data)
        if arr.dtype.names:
            for name in arr.dtype.names:
                cols[name] = arr[name]
        else:
            if arr.ndim == 1:
                arr = arr.reshape(-1, 1)
            if arr.ndim != 2:
                raise TableError(f"expected a 2-D table, got an array of shape {arr.shape}")
            if feature_names is not None and len(feature_names) != arr.shape[1]:
                raise TableError(f"{len(feature_names)} feature names for a table of {arr.shape[1]} columns")
            names = list(feature_names) if feature_names is not None else None
            for j in range(arr.shape[1]):
                cols[names[j] if names else f"x{j}"] = arr[:, j]
    lengths = {name: col.shape[0] if col.ndim else 0 for name, col in cols.items()}
    bad = [name for name, col in cols.items() if col.ndim != 1]
    if bad:
        raise TableError(f"columns must be 1-D; not: {', '.join(bad[:5])}")
    if len(set(lengths.values())) > 1:
        raise TableError(f"columns have different lengths: {lengths}")
    return cols


def read_csv(path: Path) -> Columns:
    """Read a CSV file with a header row into string columns (cells kept as text)."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise TableError(f"{path}: empty file, expected a header row") from None
        names = [h.strip() for h in header]
        if len(set(names)) != len(names) or any(not n for n in names):
            raise TableError(f"{path}: header has empty or duplicate column names")
        rows = list(reader)
    for i, row in enumerate(rows, start=2):
        if len(row) != len(names):
            raise TableError(f"{path}:{i}: {len(row)} cells, header has {len(names)}")
    if not rows:
        raise TableError(f"{path}: no data rows")
    values = np.array(rows, dtype=object).reshape(len(rows), len(names))
    return {name: values[:, j] for j, name in enumerate(names)}


def read_parquet(path: Path) -> Columns:
    """Read a Parquet file (needs the optional ``pyarrow`` package)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - depends on the environment
        raise TableError("reading Parquet needs the 'pyarrow' package (pip install pyarrow)") from None
    table = pq.read_table(path)
    return {name: np.asarray(table.column(name).to_numpy(zero_copy_only=False)) for name in table.column_names}


def read_table(path: str | Path) -> Columns:
    """Read a training table from ``.csv`` or ``.parquet``."""
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.is_file():
        raise TableError(f"{p}: no such file")
    if suffix == ".csv":
        return read_csv(p)
    if suffix in (".parquet", ".pq"):
        return read_parquet(p)
    raise TableError(f"{p}: unsupported file type {suffix!r} (expected .csv or .parquet)")

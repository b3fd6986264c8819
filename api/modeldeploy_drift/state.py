"""Live window state of one replica: bounded, mergeable counts in the reference profile's cells.

Design
------
Every feature (and the prediction) owns a contiguous range of *cells* in one flat int64
counter vector: numeric features one cell per reference bin plus one for missing values,
categorical features one per listed category plus "other" (unseen) and missing.  A row adds
exactly one count to each feature's range.

The window is a **sliding window of about ``window_size`` rows**, kept as a ring of ``K``
buckets (``buckets``, default 10) of ``capacity = ceil(window_size / K)`` rows each.  New rows
fill the newest bucket; when it is full the ring advances and the oldest bucket is zeroed.
The window is the sum of the K buckets: between ``(K-1) * capacity`` and ``K * capacity``
rows once warm, i.e. the last ``window_size`` rows at a granularity of ``capacity`` rows.
``buckets=1`` gives a tumbling window.  Memory is ``K * cells`` int64 whatever the traffic.

Cost of :meth:`WindowState.observe`: one vectorised bin lookup per feature per batch
(``searchsorted`` for large batches, one broadcast comparison against all edges for small
ones), one ``bincount`` per bucket touched; nothing grows with traffic.

Merging
-------
Replicas see disjoint parts of the traffic.  :meth:`WindowState.merge` sums their buckets
aligned by age (newest with newest), their capacities, fills and row totals, so the merged
window is the union of the replicas' windows (``R`` replicas of ``window_size`` rows give a
window of up to ``R * window_size`` rows).  Merging is associative and commutative, and the
window counts of a merge equal those of one state that observed all the rows (as long as no
rows were evicted).  Raw rows are never kept or merged.

JSON (:meth:`WindowState.to_dict`, all ints)::

    {"schemaVersion": 1, "kind": "DriftWindowState", "profileDigest": "<16 hex>",
     "windowSize": 1000, "capacity": 100, "fill": 37, "totalRows": 123456,
     "cells": [33, 33, 12, ...],              # cells per feature, then prediction (layout check)
     "buckets": [{"rows": 37, "counts": [...]}, ...]}   # newest first

``to_dict(collapse=True)`` sends the window as a single bucket (K times smaller), which is all
the operator needs to merge and evaluate.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from .category_cells import CategoryCells
from .profile import CategoricalProfile, FeatureProfile, NumericProfile, Profile
from .table import as_float_array, category_key, to_float

STATE_SCHEMA_VERSION: Final = 1
STATE_KIND: Final = "DriftWindowState"
DEFAULT_WINDOW_SIZE: Final = 1000
DEFAULT_BUCKETS: Final = 10
_BROADCAST_MAX_ROWS: Final = 32  # batches up to this size use one broadcast comparison
_ROW_PATH_MAX_FEATURES: Final = 16  # single numeric rows up to this width skip numpy per feature

IntArray = npt.NDArray[np.int64]


class StateError(ValueError):
    """A window state cannot be loaded or merged (bad shape, other profile)."""


class _Encoder:
    """Maps raw rows to flat cell indices for one profile's layout."""

    def __init__(self, profile: Profile) -> None:
        feats: list[FeatureProfile] = list(profile.features)
        if profile.prediction is not None:
            feats.append(profile.prediction)
        self.n_features = len(profile.features)
        self.cells = [f.n_cells for f in feats]
        self.offsets = np.concatenate([[0], np.cumsum(self.cells)]).astype(np.int64)
        self.total_cells = int(self.offsets[-1])
        self.numeric_cols = np.asarray(
            [j for j, f in enumerate(profile.features) if isinstance(f, NumericProfile)],
            dtype=np.int64,
        )
        self.categorical_cols = [j for j, f in enumerate(profile.features) if isinstance(f, CategoricalProfile)]
        self.features = tuple(profile.features)
        self.prediction = profile.prediction
        self.category_cells = {
            j: CategoryCells(f) for j, f in enumerate(feats) if isinstance(f, CategoricalProfile)
        }  # by position in `feats` (the prediction is last)
        # padded edge matrix for the broadcast path: row j = edges of numeric feature j, +inf pad
        num = [f for f in profile.features if isinstance(f, NumericProfile)]
        width = max((len(f.edges) for f in num), default=0)
        self.edge_matrix = np.full((len(num), max(width, 1)), np.inf)
        for i, f in enumerate(num):
            self.edge_matrix[i, : len(f.edges)] = f.edges
        self.num_edges = [np.asarray(f.edges, dtype=np.float64) for f in num]
        self.num_offsets = self.offsets[self.numeric_cols] if num else np.empty(0, np.int64)
        self.num_missing = self.num_offsets + np.asarray([len(f.counts) for f in num], np.int64)
        # categorical lookups with the feature's offset folded in: key -> global cell
        self.cat_lookup: list[tuple[dict[str, int], int, CategoricalProfile]] = []
        for j in self.categorical_cols:
            cat = self.features[j]
            assert isinstance(cat, CategoricalProfile)
            off = int(self.offsets[j])
            index = {c: off + i for i, c in enumerate(cat.categories)}
            self.cat_lookup.append((index, off + len(cat.categories), cat))
        # per-feature specs for the pure-Python single-row path (no numpy call per feature);
        # it wins for narrow numeric rows and for any row with categorical values
        self.use_row_path = self.n_features <= _ROW_PATH_MAX_FEATURES or bool(self.categorical_cols)
        self.row_specs: list[tuple[bool, list[float], int, int, dict[str, int], CategoricalProfile | None]] = []
        for j, feat in enumerate(profile.features):
            off = int(self.offsets[j])
            if isinstance(feat, NumericProfile):
                self.row_specs.append((True, list(feat.edges), off, off + len(feat.counts), {}, None))
            else:
                index = {c: off + i for i, c in enumerate(feat.categories)}
                self.row_specs.append((False, [], off, off + len(feat.categories), index, feat))

    def _numeric(self, x: npt.NDArray[np.float64]) -> IntArray:
        """Cell indices (rows, n_numeric) of a float matrix of the numeric features."""
        if x.shape[0] <= _BROADCAST_MAX_ROWS:
            bins = (self.edge_matrix[None, :, :] < x[:, :, None]).sum(axis=2)
        else:
            bins = np.empty(x.shape, dtype=np.int64)
            for i, edges in enumerate(self.num_edges):
                bins[:, i] = np.searchsorted(edges, x[:, i], side="left")
        idx: IntArray = (self.num_offsets[None, :] + bins).astype(np.int64, copy=False)
        nan = np.isnan(x)
        if nan.any():
            idx = np.where(nan, self.num_missing[None, :], idx)
        return idx

    def _single(self, position: int, col: npt.NDArray[Any]) -> IntArray:
        """Global cell indices of one column of the feature (or prediction) at `position`."""
        offset = int(self.offsets[position])
        cells = self.category_cells.get(position)
        if cells is not None:
            return offset + cells.encode(col)
        f = self.prediction if position == self.n_features else self.features[position]
        assert isinstance(f, NumericProfile)
        x = as_float_array(col)
        b = np.searchsorted(np.asarray(f.edges, dtype=np.float64), x, side="left")
        b = np.where(np.isnan(x), len(f.counts), b)
        return (offset + b).astype(np.int64)

    def encode(self, rows: npt.NDArray[Any]) -> IntArray:
        """Cell indices, shape (rows, n_features)."""
        n = rows.shape[0]
        out = np.empty((n, self.n_features), dtype=np.int64)
        if self.numeric_cols.size:
            if rows.dtype.kind in "biuf" and not self.categorical_cols:
                x = rows.astype(np.float64, copy=False)
            else:
                x = as_float_array(rows[:, self.numeric_cols])
            out[:, self.numeric_cols] = self._numeric(x)
        if self.categorical_cols and rows.dtype.kind != "O":
            for j in self.categorical_cols:  # one dtype: vectorised per column
                out[:, j] = self._single(j, rows[:, j])
        elif self.categorical_cols:
            # object rows: one pass over the categorical values: a dict lookup per value (strings), the
            # canonical key only for other types (numbers, None, NaN, bytes, ...)
            cells: list[int] = []
            append = cells.append
            lookup = self.cat_lookup
            for row in rows[:, self.categorical_cols].tolist():
                for (index, other, f), v in zip(lookup, row, strict=True):
                    if type(v) is str and v:
                        append(index.get(v, other))
                    else:
                        append(other - len(f.categories) + f.cell_of(category_key(v)))
            out[:, self.categorical_cols] = np.asarray(cells, dtype=np.int64).reshape(n, len(self.categorical_cols))
        return out

    def encode_row(self, values: list[Any]) -> list[int]:
        """Cell indices of one row given as a list (same cells as :meth:`encode`)."""
        out: list[int] = []
        append = out.append
        for (numeric, edges, off, last, index, cat), v in zip(self.row_specs, values, strict=True):
            if numeric:
                x = v if type(v) is float else to_float(v)
                append(last if x != x else off + bisect_left(edges, x))
            elif type(v) is str and v:
                append(index.get(v, last))
            else:
                assert cat is not None
                append(off + cat.cell_of(category_key(v)))
        return out

    def encode_prediction(self, predictions: npt.NDArray[Any]) -> IntArray:
        """Cell indices of the predictions, shape (rows,)."""
        assert self.prediction is not None
        return self._single(self.n_features, predictions)


class WindowState:
    """Per-replica sliding window of cell counts (see module docstring).

    Not thread-safe: a server observing from several threads serialises ``observe`` (and
    ``to_dict``) with one lock; the work under it is a few microseconds per request.
    """

    def __init__(
        self,
        profile: Profile,
        *,
        window_size: int = DEFAULT_WINDOW_SIZE,
        buckets: int = DEFAULT_BUCKETS,
    ) -> None:
        if window_size < 1:
            raise ValueError(f"window_size must be at least 1, got {window_size}")
        if not 1 <= buckets <= window_size:
            raise ValueError(f"buckets must be between 1 and window_size, got {buckets}")
        self.profile = profile
        self.profile_digest = profile.digest()
        self.window_size = window_size
        self.capacity = math.ceil(window_size / buckets)
        self._enc = _Encoder(profile)
        self._counts: IntArray = np.zeros((buckets, self._enc.total_cells), dtype=np.int64)
        self._rows: IntArray = np.zeros(buckets, dtype=np.int64)
        self._head = 0
        self._fill = 0
        self.total_rows = 0

    # ------------------------------------------------------------------ observing

    @property
    def buckets(self) -> int:
        """Number of buckets in the ring."""
        return int(self._rows.shape[0])

    @property
    def window_rows(self) -> int:
        """Rows currently in the window."""
        return int(self._rows.sum())

    @property
    def nbytes(self) -> int:
        """Bytes held by the counters (the state's memory, excluding the profile)."""
        return int(self._counts.nbytes + self._rows.nbytes)

    def _rotate(self) -> None:
        self._head = (self._head + 1) % self.buckets
        self._counts[self._head] = 0
        self._rows[self._head] = 0
        self._fill = 0

    def kept_rows(self, n: int) -> int:
        """How many of the last rows of an ``n``-row batch are still in the window after it.

        The rows before them would be evicted within the batch, so they need no counting (see
        ``skipped`` of :meth:`observe`).
        """
        cap, k = self.capacity, self.buckets
        rest = n - (cap - self._fill)
        if rest <= (k - 1) * cap:
            return n
        return (k - 1) * cap + ((rest - 1) % cap) + 1

    def observe(
        self,
        rows: npt.ArrayLike | Sequence[Sequence[Any]],
        predictions: npt.ArrayLike | Sequence[Any] | None = None,
        *,
        skipped: int = 0,
    ) -> None:
        """Count a batch of rows (2-D, columns in profile feature order; 1-D = one row).

        ``predictions`` (one per row) are counted in the prediction cells when the profile
        has a prediction profile.  Values that cannot be read count as missing; unseen
        categories count as "other".  ``skipped`` rows came before ``rows`` and are not given
        because they fall out of the window within this batch (at most ``n - kept_rows(n)`` of
        the batch's ``n`` rows): they count in ``total_rows`` and keep the buckets aligned.
        """
        x = np.asarray(rows)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self._enc.n_features:
            raise ValueError(
                f"rows must have {self._enc.n_features} columns "
                f"({', '.join(self.profile.feature_names[:5])}...), got shape {x.shape}"
            )
        given = x.shape[0]
        n = skipped + given
        if n == 0:
            return
        kept = self.kept_rows(n)
        if skipped < 0 or given < kept:
            raise ValueError(f"{skipped} rows skipped, but the last {kept} of the batch's {n} stay in the window")
        pred_idx: IntArray | None = None
        if predictions is not None and self._enc.prediction is not None:
            p = np.asarray(predictions)
            if p.ndim == 2 and p.shape[1] == 1:
                p = p[:, 0]
            p = p.reshape(-1)
            if p.shape[0] != given:
                raise ValueError(f"{p.shape[0]} predictions for {given} rows")
        else:
            p = None
        cap = self.capacity
        if n == 1 and self._enc.use_row_path:
            # one request row: plain Python per value, a single numpy increment
            cells = self._enc.encode_row(x[0].tolist())
            if p is not None:
                cells.append(int(self._enc.encode_prediction(p)[0]))
            if self._fill >= cap:
                self._rotate()
            self._counts[self._head, cells] += 1  # indices are distinct across features
            self._rows[self._head] += 1
            self._fill += 1
            self.total_rows += 1
            return
        # Rows that would be evicted within this batch are not counted, keeping the bucket alignment.
        start = given - kept  # into the given rows
        if kept < n:
            self._counts[:] = 0
            self._rows[:] = 0
            self._fill = cap  # the next row starts a fresh bucket
        idx = self._enc.encode(x[start:])
        if p is not None:
            pred_idx = self._enc.encode_prediction(p[start:])
        self.total_rows += n
        pos, m = 0, kept
        while pos < m:
            if self._fill >= cap:
                self._rotate()
            take = min(cap - self._fill, m - pos)
            counts = self._counts[self._head]
            if take == 1:
                counts[idx[pos]] += 1  # one row: indices are distinct across features
                if pred_idx is not None:
                    counts[pred_idx[pos]] += 1
            else:
                flat = idx[pos : pos + take].ravel()
                if pred_idx is not None:
                    flat = np.concatenate([flat, pred_idx[pos : pos + take]])
                counts += np.bincount(flat, minlength=self._enc.total_cells)
            self._rows[self._head] += take
            self._fill += take
            pos += take

    def reset(self) -> None:
        """Forget the window (e.g. after a model or profile change)."""
        self._counts[:] = 0
        self._rows[:] = 0
        self._head = 0
        self._fill = 0

    # ------------------------------------------------------------------ reading

    def _age_order(self) -> list[int]:
        return [(self._head - a) % self.buckets for a in range(self.buckets)]

    def window_counts(self) -> IntArray:
        """Counts of every cell summed over the window."""
        window: IntArray = self._counts.sum(axis=0)
        return window

    def cell_slices(self) -> list[slice]:
        """Cell range of each feature, then of the prediction (if profiled)."""
        off = self._enc.offsets
        return [slice(int(off[i]), int(off[i + 1])) for i in range(len(off) - 1)]

    def feature_counts(self, name: str) -> IntArray:
        """Window counts of one feature's cells (``"prediction"`` for the prediction)."""
        window = self.window_counts()
        names = list(self.profile.feature_names)
        if name in names:
            return window[self.cell_slices()[names.index(name)]]
        if name == "prediction" and self.profile.prediction is not None:
            return window[self.cell_slices()[-1]]
        raise KeyError(name)

    # ------------------------------------------------------------------ JSON

    def to_dict(self, *, collapse: bool = False) -> dict[str, Any]:
        """Compact JSON-able dict (all ints); ``collapse`` sends the window as one bucket."""
        order = self._age_order()
        if collapse:
            buckets = [{"rows": self.window_rows, "counts": self.window_counts().tolist()}]
            capacity, fill = self.capacity * self.buckets, self.window_rows
        else:
            buckets = [{"rows": int(self._rows[b]), "counts": self._counts[b].tolist()} for b in order]
            capacity, fill = self.capacity, self._fill
        return {
            "schemaVersion": STATE_SCHEMA_VERSION,
            "kind": STATE_KIND,
            "profileDigest": self.profile_digest,
            "windowSize": self.window_size,
            "capacity": capacity,
            "fill": fill,
            "totalRows": self.total_rows,
            "cells": list(self._enc.cells),
            "buckets": buckets,
        }

    @classmethod
    def from_dict(cls, data: object, profile: Profile) -> WindowState:
        """Load a state dict produced by :meth:`to_dict` for the same profile (validated)."""
        if not isinstance(data, Mapping):
            raise StateError(f"state: expected an object, got {type(data).__name__}")
        if data.get("schemaVersion") != STATE_SCHEMA_VERSION:
            raise StateError(
                f"state.schemaVersion: unsupported {data.get('schemaVersion')!r}, "
                f"this build reads {STATE_SCHEMA_VERSION}"
            )
        digest = data.get("profileDigest")
        if digest != profile.digest():
            raise StateError(f"state.profileDigest: {digest!r} is not this profile ({profile.digest()})")

        def nonneg_int(v: object, where: str) -> int:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise StateError(f"state.{where}: expected a non-negative integer, got {v!r:.40}")
            return v

        window_size = nonneg_int(data.get("windowSize"), "windowSize")
        capacity = nonneg_int(data.get("capacity"), "capacity")
        fill = nonneg_int(data.get("fill"), "fill")
        total = nonneg_int(data.get("totalRows"), "totalRows")
        raw_buckets = data.get("buckets")
        if not isinstance(raw_buckets, list) or not raw_buckets:
            raise StateError("state.buckets: expected a non-empty list")
        if window_size < 1 or capacity < 1 or fill > capacity:
            raise StateError(f"state: inconsistent windowSize={window_size} capacity={capacity} fill={fill}")
        state = cls(profile, window_size=window_size, buckets=1)
        if data.get("cells") != state._enc.cells:
            raise StateError("state.cells: layout does not match the profile")
        k, c = len(raw_buckets), state._enc.total_cells
        counts = np.zeros((k, c), dtype=np.int64)
        rows = np.zeros(k, dtype=np.int64)
        slices = state.cell_slices()[: state._enc.n_features]
        for i, b in enumerate(raw_buckets):
            if not isinstance(b, Mapping):
                raise StateError(f"state.buckets[{i}]: expected an object")
            rows[i] = nonneg_int(b.get("rows"), f"buckets[{i}].rows")
            cnt = b.get("counts")
            if not isinstance(cnt, list) or len(cnt) != c:
                raise StateError(f"state.buckets[{i}].counts: expected {c} integers")
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in cnt):
                raise StateError(f"state.buckets[{i}].counts: expected non-negative integers")
            counts[i] = cnt
            sums = {int(counts[i, s].sum()) for s in slices}
            if sums and sums != {int(rows[i])}:
                raise StateError(f"state.buckets[{i}]: feature counts do not add up to rows={rows[i]}")
        state._set_ring(counts, rows)
        state.capacity, state._fill, state.total_rows = capacity, fill, total
        return state

    def _set_ring(self, counts: IntArray, rows: IntArray) -> None:
        """Install buckets given newest first (age order) as the ring, head at index 0."""
        k = rows.shape[0]
        phys = [(-a) % k for a in range(k)]  # age a lives at (head - a) % k
        self._counts = np.empty_like(counts)
        self._rows = np.empty_like(rows)
        self._counts[phys] = counts
        self._rows[phys] = rows
        self._head = 0

    # ------------------------------------------------------------------ merging

    @classmethod
    def merge(cls, states: Sequence[WindowState]) -> WindowState:
        """Sum replicas' states of the same profile into one (buckets aligned by age)."""
        if not states:
            raise StateError("merge needs at least one state")
        first = states[0]
        for s in states[1:]:
            if s.profile_digest != first.profile_digest:
                raise StateError(
                    f"cannot merge states of different profiles ({first.profile_digest} and {s.profile_digest})"
                )
        k = max(s.buckets for s in states)
        merged = cls(first.profile, window_size=sum(s.window_size for s in states), buckets=1)
        counts = np.zeros((k, first._enc.total_cells), dtype=np.int64)
        rows = np.zeros(k, dtype=np.int64)
        for s in states:
            order = s._age_order()
            counts[: s.buckets] += s._counts[order]
            rows[: s.buckets] += s._rows[order]
        merged._set_ring(counts, rows)
        merged.capacity = sum(s.capacity for s in states)
        merged._fill = sum(s._fill for s in states)
        merged.total_rows = sum(s.total_rows for s in states)
        return merged

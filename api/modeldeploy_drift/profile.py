"""Reference profile of the training data: per-feature bins or category frequencies, versioned JSON.

JSON shape (``schemaVersion`` 1, camelCase, every feature at most ``MAX_FEATURE_JSON_BYTES``)::

    {"schemaVersion": 1, "kind": "DriftProfile", "createdAt": "2026-11-24T10:00:00Z",
     "rows": 20000, "model": {"sha256": "<hex>" | null, "type": "<class>" | null} | null,
     "features": [FEATURE, ...], "prediction": FEATURE | null}

    numeric FEATURE:
    {"name": "age", "type": "numeric",
     "edges": [e1, ..., e_{B-1}],        # interior bin edges (reference quantiles), increasing
     "counts": [c0, ..., c_{B-1}],       # reference rows per bin; bin i is (e_i, e_{i+1}]
     "missing": 0,                       # reference rows with no value (NaN / empty)
     "summary": {"mean": .., "std": .., "min": .., "max": ..,
                 "quantiles": {"levels": [0, .01, ...], "values": [...]}}}

    categorical FEATURE:
    {"name": "city", "type": "categorical",
     "categories": ["paris", ...],       # top-K reference categories, most frequent first
     "counts": [n_paris, ...],
     "other": 12,                        # reference rows with a category outside the list
     "missing": 0, "distinct": 57}       # distinct non-missing categories seen in the reference

Live windows count in the same *cells*: numeric ``bins + [missing]``, categorical
``categories + [other, missing]``; a category never listed counts as "other" (unseen).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Literal

import numpy as np
import numpy.typing as npt

from .table import as_columns, as_float_array, category_key, is_numeric_column

SCHEMA_VERSION: Final = 1
PROFILE_KIND: Final = "DriftProfile"
DEFAULT_BINS: Final = 32
MIN_BINS: Final = 2
MAX_BINS: Final = 64
DEFAULT_MAX_CATEGORIES: Final = 50
MAX_CATEGORY_CHARS: Final = 200
"""Categories with longer keys are never listed (they count as "other")."""
MAX_NAME_CHARS: Final = 256
MAX_FEATURE_JSON_BYTES: Final = 8192
QUANTILE_LEVELS: Final = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
PREDICTION_NAME: Final = "prediction"
_CATEGORY_BUDGET_BYTES: Final = 6500  # room for category names + counts in one feature

FeatureType = Literal["numeric", "categorical"]


class ProfileError(ValueError):
    """A profile cannot be built or loaded; the message says where and what is wrong."""


@dataclass(frozen=True)
class NumericSummary:
    """Human-facing summary of a numeric reference column (not used by the tests)."""

    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    quantiles: tuple[float | None, ...]


@dataclass(frozen=True)
class NumericProfile:
    """Reference bins of one numeric feature."""

    name: str
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    missing: int
    summary: NumericSummary
    type: ClassVar[FeatureType] = "numeric"

    @property
    def n_cells(self) -> int:
        """Live cells: one per bin plus one for missing values."""
        return len(self.counts) + 1

    @property
    def values(self) -> int:
        """Reference rows with a value."""
        return sum(self.counts)

    def reference_cells(self) -> npt.NDArray[np.int64]:
        """Reference counts in live-cell order (bins, missing)."""
        return np.asarray((*self.counts, self.missing), dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (see module docstring)."""
        s = self.summary
        return {
            "name": self.name,
            "type": self.type,
            "edges": list(self.edges),
            "counts": list(self.counts),
            "missing": self.missing,
            "summary": {
                "mean": s.mean,
                "std": s.std,
                "min": s.min,
                "max": s.max,
                "quantiles": {"levels": list(QUANTILE_LEVELS), "values": list(s.quantiles)},
            },
        }


@dataclass(frozen=True)
class CategoricalProfile:
    """Reference frequencies of one categorical feature (top-K plus "other")."""

    name: str
    categories: tuple[str, ...]
    counts: tuple[int, ...]
    other: int
    missing: int
    distinct: int
    type: ClassVar[FeatureType] = "categorical"
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update({c: i for i, c in enumerate(self.categories)})

    @property
    def n_cells(self) -> int:
        """Live cells: one per listed category, then "other", then missing."""
        return len(self.categories) + 2

    @property
    def values(self) -> int:
        """Reference rows with a value."""
        return sum(self.counts) + self.other

    def cell_of(self, key: str | None) -> int:
        """Live cell of a category key (None = missing; unlisted = other)."""
        if key is None:
            return len(self.categories) + 1
        return self._index.get(key, len(self.categories))

    def reference_cells(self) -> npt.NDArray[np.int64]:
        """Reference counts in live-cell order (categories, other, missing)."""
        return np.asarray((*self.counts, self.other, self.missing), dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (see module docstring)."""
        return {
            "name": self.name,
            "type": self.type,
            "categories": list(self.categories),
            "counts": list(self.counts),
            "other": self.other,
            "missing": self.missing,
            "distinct": self.distinct,
        }


FeatureProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class Profile:
    """Versioned reference profile: features in model input order plus the prediction profile."""

    features: tuple[FeatureProfile, ...]
    prediction: FeatureProfile | None = None
    rows: int = 0
    created_at: str = ""
    model_sha256: str | None = None
    model_type: str | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Feature names in the column order that live rows must use."""
        return tuple(f.name for f in self.features)

    def feature(self, name: str) -> FeatureProfile:
        """The profile of one feature by name."""
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (see module docstring)."""
        model = None
        if self.model_sha256 is not None or self.model_type is not None:
            model = {"sha256": self.model_sha256, "type": self.model_type}
        return {
            "schemaVersion": self.schema_version,
            "kind": PROFILE_KIND,
            "createdAt": self.created_at,
            "rows": self.rows,
            "model": model,
            "features": [f.to_dict() for f in self.features],
            "prediction": self.prediction.to_dict() if self.prediction is not None else None,
        }

    def to_json(self, *, indent: int | None = None) -> str:
        """Serialise to JSON text (strict JSON: no NaN/Infinity)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def digest(self) -> str:
        """Short content hash of what live states depend on (features and prediction cells)."""
        body = {
            "features": [f.to_dict() for f in self.features],
            "prediction": self.prediction.to_dict() if self.prediction is not None else None,
        }
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: object) -> Profile:
        """Validate and load a profile dict; raises :class:`ProfileError` naming the bad field."""
        return _parse_profile(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> Profile:
        """Parse and validate profile JSON text."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ProfileError(f"profile is not valid JSON: {exc}") from None
        return _parse_profile(data)


# --------------------------------------------------------------------------- building


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def numeric_profile(name: str, values: npt.ArrayLike, *, bins: int = DEFAULT_BINS) -> NumericProfile:
    """Bin a numeric reference column at its quantiles ``1/B .. (B-1)/B`` (deduplicated)."""
    x = as_float_array(values).ravel()
    missing_mask = np.isnan(x)
    x = np.sort(x[~missing_mask])
    missing = int(missing_mask.sum())
    if x.size:
        levels = np.arange(1, bins) / bins
        edges = np.unique(np.quantile(x, levels, method="inverted_cdf"))
        edges = edges[np.isfinite(edges)]
    else:
        edges = np.empty(0)
    counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=edges.size + 1)
    finite = x[np.isfinite(x)]
    if finite.size:
        qs = np.quantile(finite, QUANTILE_LEVELS)
        summary = NumericSummary(
            mean=_finite_or_none(float(finite.mean())),
            std=_finite_or_none(float(finite.std())),
            min=float(finite[0]),
            max=float(finite[-1]),
            quantiles=tuple(_finite_or_none(float(q)) for q in qs),
        )
    else:
        summary = NumericSummary(None, None, None, None, tuple(None for _ in QUANTILE_LEVELS))
    return NumericProfile(
        name=name,
        edges=tuple(float(e) for e in edges),
        counts=tuple(int(c) for c in counts),
        missing=missing,
        summary=summary,
    )


def category_keys(values: npt.ArrayLike) -> list[str | None]:
    """Canonical category keys of a column (see :func:`table.category_key`)."""
    arr = np.asarray(values)
    if arr.dtype.kind == "U":
        return [v if v else None for v in arr.ravel().tolist()]
    return [category_key(v) for v in arr.ravel().tolist()]


def categorical_profile(
    name: str, values: npt.ArrayLike, *, max_categories: int = DEFAULT_MAX_CATEGORIES
) -> CategoricalProfile:
    """Count categories; keep the most frequent ones within the per-feature JSON budget."""
    keys = category_keys(values)
    present = [k for k in keys if k is not None]
    missing = len(keys) - len(present)
    freq: dict[str, int] = {}
    for k in present:
        freq[k] = freq.get(k, 0) + 1
    ranked = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))
    kept: list[tuple[str, int]] = []
    budget = _CATEGORY_BUDGET_BYTES
    for key, count in ranked:
        if len(kept) >= max_categories:
            break
        if len(key) > MAX_CATEGORY_CHARS:
            continue
        cost = len(json.dumps(key)) + len(str(count)) + 4
        if cost > budget:
            break
        budget -= cost
        kept.append((key, count))
    other = len(present) - sum(c for _, c in kept)
    return CategoricalProfile(
        name=name,
        categories=tuple(k for k, _ in kept),
        counts=tuple(c for _, c in kept),
        other=other,
        missing=missing,
        distinct=len(freq),
    )


def _model_predict(model: object, matrix: npt.NDArray[Any]) -> npt.NDArray[Any]:
    predict = getattr(model, "predict", None)
    if not callable(predict):
        raise ProfileError(f"model {type(model).__name__} has no predict() method")
    with warnings.catch_warnings():
        # a model fitted on a DataFrame warns when given the same columns as an array
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        try:
            out = np.asarray(predict(matrix))
        except Exception as exc:  # the model's own error, reported as a profile error
            raise ProfileError(f"model.predict failed on the training data: {exc}") from exc
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim != 1 or out.shape[0] != matrix.shape[0]:
        raise ProfileError(
            f"model predictions have shape {out.shape}, expected ({matrix.shape[0]},); "
            "multi-output models are not supported"
        )
    return out


def build_profile(
    data: object,
    *,
    model: object | None = None,
    predictions: npt.ArrayLike | None = None,
    feature_names: Sequence[str] | None = None,
    categorical: Collection[str] = (),
    exclude: Collection[str] = (),
    bins: int = DEFAULT_BINS,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
    prediction_type: FeatureType | None = None,
    model_sha256: str | None = None,
    created_at: datetime | None = None,
) -> Profile:
    """Build the reference profile of a training table.

    ``data`` is a mapping of columns, a DataFrame-like object, a structured array or a 2-D
    array.  Features are the model's ``feature_names_in_`` when it has them (in that order;
    they must all be in ``data``), else ``feature_names``, else the table's columns minus
    ``exclude`` (e.g. the target).  A column is numeric when all its non-missing values are
    numbers, unless named in ``categorical``; booleans are categorical.  Predictions are
    ``predictions`` if given, else ``model.predict`` on the feature matrix; they are
    categorical for classifiers (a model with ``classes_``) and non-float outputs, numeric
    otherwise, unless ``prediction_type`` says.
    """
    if not MIN_BINS <= bins <= MAX_BINS:
        raise ProfileError(f"bins must be between {MIN_BINS} and {MAX_BINS}, got {bins}")
    if max_categories < 1:
        raise ProfileError(f"max_categories must be at least 1, got {max_categories}")
    model_names = getattr(model, "feature_names_in_", None) if model is not None else None
    if model_names is not None:
        model_names = [str(n) for n in model_names]
    names_for_array = model_names if model_names is not None else feature_names
    try:
        cols = as_columns(data, names_for_array)
    except ValueError as exc:
        raise ProfileError(str(exc)) from None
    if model_names is not None:
        names = model_names
    elif feature_names is not None:
        names = [str(n) for n in feature_names]
    else:
        names = [n for n in cols if n not in set(exclude)]
    absent = [n for n in names if n not in cols]
    if absent:
        raise ProfileError(f"features missing from the data: {', '.join(absent[:10])}")
    unknown_cat = [n for n in categorical if n not in names]
    if unknown_cat:
        raise ProfileError(f"--categorical names unknown features: {', '.join(unknown_cat)}")
    if not names:
        raise ProfileError("the data has no feature columns")
    long_names = [n[:40] + "..." for n in names if len(n) > MAX_NAME_CHARS or not n]
    if long_names:
        raise ProfileError(f"feature names must be 1..{MAX_NAME_CHARS} characters: {long_names}")
    if len(set(names)) != len(names):
        raise ProfileError("duplicate feature names")
    n_features_in = getattr(model, "n_features_in_", None) if model is not None else None
    if isinstance(n_features_in, int) and n_features_in != len(names):
        raise ProfileError(f"model expects {n_features_in} features, the data gives {len(names)}")
    rows = int(next(iter(cols.values())).shape[0]) if cols else 0
    if rows == 0:
        raise ProfileError("the data has no rows")

    features: list[FeatureProfile] = []
    numeric_flags: list[bool] = []
    for name in names:
        col = cols[name]
        is_num = name not in categorical and is_numeric_column(col)
        numeric_flags.append(is_num)
        if is_num:
            features.append(numeric_profile(name, col, bins=bins))
        else:
            features.append(categorical_profile(name, col, max_categories=max_categories))

    preds: npt.NDArray[Any] | None = None
    if predictions is not None:
        preds = np.asarray(predictions).ravel()
        if preds.shape[0] != rows:
            raise ProfileError(f"{preds.shape[0]} predictions for {rows} rows")
    elif model is not None:
        if all(numeric_flags):
            matrix = np.column_stack([as_float_array(cols[n]) for n in names])
        else:
            matrix = np.empty((rows, len(names)), dtype=object)
            for j, n in enumerate(names):
                matrix[:, j] = as_float_array(cols[n]) if numeric_flags[j] else cols[n]
        preds = _model_predict(model, matrix)
    prediction: FeatureProfile | None = None
    if preds is not None:
        ptype = prediction_type
        if ptype is None:
            classifier = model is not None and hasattr(model, "classes_")
            ptype = "categorical" if classifier or preds.dtype.kind not in "f" else "numeric"
        if ptype == "numeric":
            prediction = numeric_profile(PREDICTION_NAME, preds, bins=bins)
        else:
            prediction = categorical_profile(PREDICTION_NAME, preds, max_categories=max_categories)

    stamp = (created_at or datetime.now(UTC)).astimezone(UTC)
    return Profile(
        features=tuple(features),
        prediction=prediction,
        rows=rows,
        created_at=stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        model_sha256=model_sha256,
        model_type=f"{type(model).__module__}.{type(model).__qualname__}" if model else None,
    )


# --------------------------------------------------------------------------- loading


def _fail(path: str, message: str) -> ProfileError:
    return ProfileError(f"{path}: {message}")


def _obj(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"expected an object, got {type(value).__name__}")
    return value


def _int(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"expected an integer, got {value!r:.60}")
    if value < 0:
        raise _fail(path, f"must not be negative, got {value}")
    return value


def _num(value: object, path: str, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(path, f"expected a finite number, got {value!r:.60}")
    return float(value)


def _str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"expected a string, got {value!r:.60}")
    return value


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, f"expected a list, got {type(value).__name__}")
    return value


def _parse_feature(raw: object, path: str) -> FeatureProfile:
    d = _obj(raw, path)
    name = _str(d.get("name"), f"{path}.name")
    if not name or len(name) > MAX_NAME_CHARS:
        raise _fail(f"{path}.name", f"must be 1..{MAX_NAME_CHARS} characters")
    path = f"{path} ({name[:40]})"
    size = len(json.dumps(d, allow_nan=True))
    if size > MAX_FEATURE_JSON_BYTES:
        raise _fail(path, f"is {size} bytes of JSON, the limit is {MAX_FEATURE_JSON_BYTES}")
    ftype = d.get("type")
    missing = _int(d.get("missing", 0), f"{path}.missing")
    counts = [_int(c, f"{path}.counts[{i}]") for i, c in enumerate(_list(d.get("counts"), f"{path}.counts"))]
    if ftype == "numeric":
        edges_raw = _list(d.get("edges"), f"{path}.edges")
        edges = [_num(e, f"{path}.edges[{i}]") for i, e in enumerate(edges_raw)]
        fedges = [e for e in edges if e is not None]
        if len(fedges) > MAX_BINS - 1:
            raise _fail(f"{path}.edges", f"at most {MAX_BINS - 1} edges, got {len(fedges)}")
        if any(b <= a for a, b in itertools.pairwise(fedges)):
            raise _fail(f"{path}.edges", "must be strictly increasing")
        if len(counts) != len(fedges) + 1:
            raise _fail(
                f"{path}.counts",
                f"expected {len(fedges) + 1} counts (one per bin = len(edges) + 1), got {len(counts)}",
            )
        summary_raw = _obj(d.get("summary", {}), f"{path}.summary")
        q_raw = _obj(summary_raw.get("quantiles", {}), f"{path}.summary.quantiles")
        q_values = _list(q_raw.get("values", [None] * len(QUANTILE_LEVELS)), f"{path}.summary.quantiles.values")
        summary = NumericSummary(
            mean=_num(summary_raw.get("mean"), f"{path}.summary.mean", optional=True),
            std=_num(summary_raw.get("std"), f"{path}.summary.std", optional=True),
            min=_num(summary_raw.get("min"), f"{path}.summary.min", optional=True),
            max=_num(summary_raw.get("max"), f"{path}.summary.max", optional=True),
            quantiles=tuple(
                _num(q, f"{path}.summary.quantiles.values[{i}]", optional=True) for i, q in enumerate(q_values)
            ),
        )
        return NumericProfile(name, tuple(fedges), tuple(counts), missing, summary)
    if ftype == "categorical":
        cats_raw = _list(d.get("categories"), f"{path}.categories")
        cats = [_str(c, f"{path}.categories[{i}]") for i, c in enumerate(cats_raw)]
        if any(not c for c in cats):
            raise _fail(f"{path}.categories", "categories must be non-empty strings")
        if len(set(cats)) != len(cats):
            raise _fail(f"{path}.categories", "duplicate categories")
        if len(counts) != len(cats):
            raise _fail(f"{path}.counts", f"expected {len(cats)} counts (one per category), got {len(counts)}")
        other = _int(d.get("other", 0), f"{path}.other")
        distinct = _int(d.get("distinct", len(cats)), f"{path}.distinct")
        if distinct < len(cats):
            raise _fail(f"{path}.distinct", f"{distinct} is less than the {len(cats)} categories listed")
        return CategoricalProfile(name, tuple(cats), tuple(counts), other, missing, distinct)
    raise _fail(f"{path}.type", f"expected 'numeric' or 'categorical', got {ftype!r:.60}")


def _parse_profile(data: object) -> Profile:
    d = _obj(data, "profile")
    version = d.get("schemaVersion")
    if version is None:
        raise _fail("profile.schemaVersion", "missing (is this a modeldeploy drift profile?)")
    if version != SCHEMA_VERSION:
        raise _fail("profile.schemaVersion", f"unsupported version {version!r}; this build reads {SCHEMA_VERSION}")
    kind = d.get("kind", PROFILE_KIND)
    if kind != PROFILE_KIND:
        raise _fail("profile.kind", f"expected {PROFILE_KIND!r}, got {kind!r:.60}")
    feats_raw = _list(d.get("features"), "profile.features")
    if not feats_raw:
        raise _fail("profile.features", "must list at least one feature")
    features = tuple(_parse_feature(f, f"profile.features[{i}]") for i, f in enumerate(feats_raw))
    names = [f.name for f in features]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise _fail("profile.features", f"duplicate feature names: {', '.join(dup[:5])}")
    pred_raw = d.get("prediction")
    prediction = None if pred_raw is None else _parse_feature(pred_raw, "profile.prediction")
    model_raw = d.get("model")
    sha = mtype = None
    if model_raw is not None:
        m = _obj(model_raw, "profile.model")
        sha = None if m.get("sha256") is None else _str(m.get("sha256"), "profile.model.sha256")
        mtype = None if m.get("type") is None else _str(m.get("type"), "profile.model.type")
    return Profile(
        features=features,
        prediction=prediction,
        rows=_int(d.get("rows", 0), "profile.rows"),
        created_at=_str(d.get("createdAt", ""), "profile.createdAt"),
        model_sha256=sha,
        model_type=mtype,
    )

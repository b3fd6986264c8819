"""Typed drift verdicts: per-feature entries, the dataset report and its bounded status dict.

``DriftReport.to_status_dict(top_k=5)`` (for a Kubernetes ``status.drift``; size bounded by
``top_k`` whatever the number of features, names cut to ``STATUS_NAME_CHARS``)::

    {"status": "Drifted",                       # NoDrift | Drifted | Insufficient | Unknown
     "reason": "...",                           # only for Insufficient / Unknown
     "checkedAt": "2026-11-24T10:00:00Z", "modelVersion": "v3",
     "windowRows": 1000, "minSamples": 100, "alpha": 0.05, "correction": "bh",
     "pValue": 1.2e-05, "score": 0.21,          # dataset p (corrected), max JS distance
     "featuresChecked": 20, "featuresDrifted": 2,
     "topFeatures": [{"name": "age", "kind": "numeric", "test": "ks", "statistic": 0.12,
                      "pValue": 1e-06, "pAdjusted": 2e-05, "psi": 0.3, "js": 0.2,
                      "drifted": true}, ...],   # at most top_k, most significant first
     "prediction": {"kind": "categorical", "test": "chi2", ..., "drifted": false}}

Floats are rounded to 4 significant digits; absent values are omitted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Literal

STATUS_NAME_CHARS: Final = 63
MAX_TOP_K: Final = 20

FeatureKind = Literal["numeric", "categorical"]
TestName = Literal["ks", "chi2"]


class DriftStatus(StrEnum):
    """Dataset-level verdict."""

    NO_DRIFT = "NoDrift"
    DRIFTED = "Drifted"
    INSUFFICIENT = "Insufficient"
    UNKNOWN = "Unknown"


def _round(x: float | None, digits: int = 4) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{digits}g}")


def _timestamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class FeatureDrift:
    """Test result of one feature (or of the predictions)."""

    name: str
    kind: FeatureKind
    test: TestName
    n: int
    """Live values tested (rows with a value; categorical: all rows incl. missing)."""
    statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    psi: float | None = None
    js: float | None = None
    drifted: bool = False
    missing_fraction: float | None = None
    other_fraction: float | None = None
    """Categorical: share of live rows whose category the profile does not list."""
    note: str | None = None

    @property
    def tested(self) -> bool:
        """Whether a p-value was computed."""
        return self.p_value is not None

    def to_dict(self) -> dict[str, Any]:
        """Full JSON-able dict (camelCase)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "test": self.test,
            "n": self.n,
            "statistic": self.statistic,
            "pValue": self.p_value,
            "pAdjusted": self.p_adjusted,
            "psi": self.psi,
            "js": self.js,
            "drifted": self.drifted,
            "missingFraction": self.missing_fraction,
            "otherFraction": self.other_fraction,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureDrift:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=str(d["name"]),
            kind=d["kind"],
            test=d["test"],
            n=int(d["n"]),
            statistic=d.get("statistic"),
            p_value=d.get("pValue"),
            p_adjusted=d.get("pAdjusted"),
            psi=d.get("psi"),
            js=d.get("js"),
            drifted=bool(d.get("drifted", False)),
            missing_fraction=d.get("missingFraction"),
            other_fraction=d.get("otherFraction"),
            note=d.get("note"),
        )

    def status_entry(self, *, with_name: bool = True) -> dict[str, Any]:
        """Short camelCase entry for the status dict (rounded, absent values omitted)."""
        out: dict[str, Any] = {}
        if with_name:
            name = self.name
            out["name"] = name if len(name) <= STATUS_NAME_CHARS else name[: STATUS_NAME_CHARS - 3] + "..."
        out["kind"] = self.kind
        out["test"] = self.test
        for key, value in (
            ("statistic", self.statistic),
            ("pValue", self.p_value),
            ("pAdjusted", self.p_adjusted),
            ("psi", self.psi),
            ("js", self.js),
        ):
            r = _round(value)
            if r is not None:
                out[key] = r
        out["drifted"] = self.drifted
        return out


def _significance_key(f: FeatureDrift) -> tuple[int, float, float]:
    p = f.p_adjusted if f.p_adjusted is not None else f.p_value
    return (0 if f.drifted else 1, p if p is not None else 2.0, -(f.js or 0.0))


@dataclass(frozen=True)
class DriftReport:
    """Dataset-level drift verdict for one window."""

    status: DriftStatus
    window_rows: int
    checked_at: datetime
    model_version: str | None = None
    p_value: float | None = None
    """Dataset p-value: smallest corrected feature p-value (None if nothing was tested)."""
    score: float | None = None
    """Largest Jensen-Shannon distance over the tested features."""
    correction: str = "bh"
    alpha: float = 0.05
    min_samples: int = 100
    features: tuple[FeatureDrift, ...] = ()
    prediction: FeatureDrift | None = None
    reason: str | None = None

    @classmethod
    def unknown(
        cls, reason: str, *, model_version: str | None = None, checked_at: datetime | None = None
    ) -> DriftReport:
        """A report saying drift could not be judged (no profile, no state, mismatch...)."""
        return cls(
            status=DriftStatus.UNKNOWN,
            window_rows=0,
            checked_at=checked_at or datetime.now(UTC),
            model_version=model_version,
            reason=reason,
        )

    @property
    def tested_features(self) -> tuple[FeatureDrift, ...]:
        """Features that got a p-value."""
        return tuple(f for f in self.features if f.tested)

    @property
    def drifted_features(self) -> tuple[FeatureDrift, ...]:
        """Features flagged after the multiple-testing correction, most significant first."""
        return tuple(sorted((f for f in self.features if f.drifted), key=_significance_key))

    def top_features(self, k: int = 5) -> tuple[FeatureDrift, ...]:
        """The k most significant tested features (drifted first, then by p-value)."""
        return tuple(sorted(self.tested_features, key=_significance_key)[: max(0, k)])

    def with_model_version(self, version: str | None) -> DriftReport:
        """Copy with another model version."""
        return replace(self, model_version=version)

    def to_dict(self) -> dict[str, Any]:
        """Full JSON-able dict (camelCase, every feature)."""
        return {
            "status": self.status.value,
            "windowRows": self.window_rows,
            "checkedAt": _timestamp(self.checked_at),
            "modelVersion": self.model_version,
            "pValue": self.p_value,
            "score": self.score,
            "correction": self.correction,
            "alpha": self.alpha,
            "minSamples": self.min_samples,
            "features": [f.to_dict() for f in self.features],
            "prediction": self.prediction.to_dict() if self.prediction else None,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DriftReport:
        """Inverse of :meth:`to_dict`."""
        checked = datetime.strptime(str(d["checkedAt"]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        pred = d.get("prediction")
        return cls(
            status=DriftStatus(d["status"]),
            window_rows=int(d["windowRows"]),
            checked_at=checked,
            model_version=d.get("modelVersion"),
            p_value=d.get("pValue"),
            score=d.get("score"),
            correction=str(d.get("correction", "bh")),
            alpha=float(d.get("alpha", 0.05)),
            min_samples=int(d.get("minSamples", 100)),
            features=tuple(FeatureDrift.from_dict(f) for f in d.get("features", [])),
            prediction=FeatureDrift.from_dict(pred) if pred else None,
            reason=d.get("reason"),
        )

    def to_status_dict(self, top_k: int = 5) -> dict[str, Any]:
        """Bounded camelCase summary for ``status.drift`` (see module docstring)."""
        k = max(0, min(top_k, MAX_TOP_K))
        out: dict[str, Any] = {"status": self.status.value}
        if self.reason:
            out["reason"] = self.reason[:200]
        out["checkedAt"] = _timestamp(self.checked_at)
        if self.model_version is not None:
            out["modelVersion"] = self.model_version[:STATUS_NAME_CHARS]
        out["windowRows"] = self.window_rows
        out["minSamples"] = self.min_samples
        out["alpha"] = self.alpha
        out["correction"] = self.correction
        for key, value in (("pValue", self.p_value), ("score", self.score)):
            r = _round(value)
            if r is not None:
                out[key] = r
        out["featuresChecked"] = len(self.tested_features)
        out["featuresDrifted"] = sum(1 for f in self.features if f.drifted)
        out["topFeatures"] = [f.status_entry() for f in self.top_features(k)]
        if self.prediction is not None:
            out["prediction"] = self.prediction.status_entry(with_name=False)
        return out

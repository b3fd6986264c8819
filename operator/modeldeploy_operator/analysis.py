"""Canary analysis, pure: the servers' own Prometheus counters in, a verdict with its numbers out."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from modeldeploy_api.models import AnalysisSpec
from prometheus_client.parser import text_string_to_metric_families

PREDICT_ENDPOINTS = frozenset({"predict", "predict_batch", "v2_infer"})  # the server's endpoint labels
REQUESTS = "modeldeploy_requests"
DURATION = "modeldeploy_request_duration_seconds"
PREDICTIONS = "modeldeploy_predictions"
DRIFTED = "modeldeploy_drift_dataset_drifted"


@dataclass
class Sample:
    """Cumulative counters of one track (summed over its pods) at one moment. JSON-able via to_dict."""

    requests: float = 0.0
    errors: float = 0.0  # 5xx answers: the server's fault, not the client's
    buckets: dict[str, float] = field(default_factory=dict)  # latency histogram: le -> cumulative count
    predictions: dict[str, float] = field(default_factory=dict)  # predicted label -> count
    drifted: bool = False

    def __add__(self, other: Sample) -> Sample:
        return Sample(
            self.requests + other.requests,
            self.errors + other.errors,
            _add(self.buckets, other.buckets),
            _add(self.predictions, other.predictions),
            self.drifted or other.drifted,
        )

    def __sub__(self, base: Sample) -> Sample:
        """What happened since `base`; a restarted pod's reset counters count from zero, never negative."""
        return Sample(
            max(0.0, self.requests - base.requests),
            max(0.0, self.errors - base.errors),
            {k: max(0.0, v - base.buckets.get(k, 0.0)) for k, v in self.buckets.items()},
            {k: max(0.0, v - base.predictions.get(k, 0.0)) for k, v in self.predictions.items()},
            self.drifted,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "buckets": self.buckets,
                "predictions": self.predictions, "drifted": self.drifted}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Sample:
        data = data or {}
        return cls(float(data.get("requests", 0)), float(data.get("errors", 0)),
                   {str(k): float(v) for k, v in (data.get("buckets") or {}).items()},
                   {str(k): float(v) for k, v in (data.get("predictions") or {}).items()},
                   bool(data.get("drifted", False)))


def _add(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: a.get(k, 0.0) + b.get(k, 0.0) for k in a.keys() | b.keys()}


def parse_metrics(text: str) -> Sample:
    """One pod's /metrics page as a Sample (prediction endpoints only)."""
    sample = Sample()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            endpoint = s.labels.get("endpoint")
            if s.name == f"{REQUESTS}_total" and endpoint in PREDICT_ENDPOINTS:
                sample.requests += s.value
                if s.labels.get("code", "").startswith("5"):
                    sample.errors += s.value
            elif s.name == f"{DURATION}_bucket" and endpoint in PREDICT_ENDPOINTS:
                le = s.labels["le"]
                sample.buckets[le] = sample.buckets.get(le, 0.0) + s.value
            elif s.name == f"{PREDICTIONS}_total":
                label = s.labels.get("label", "")
                sample.predictions[label] = sample.predictions.get(label, 0.0) + s.value
            elif s.name == DRIFTED and s.value >= 1:
                sample.drifted = True
    return sample


def quantile_ms(buckets: dict[str, float], q: float) -> float | None:
    """The q-quantile from cumulative histogram buckets, interpolated as Prometheus' histogram_quantile."""
    points = sorted(((math.inf if le == "+Inf" else float(le)), n) for le, n in buckets.items())
    if not points or points[-1][1] <= 0:
        return None
    rank = q * points[-1][1]
    prev_le, prev_n = 0.0, 0.0
    for le, n in points:
        if n >= rank:
            if math.isinf(le):
                return prev_le * 1000.0
            width = n - prev_n
            frac = (rank - prev_n) / width if width > 0 else 1.0
            return (prev_le + (le - prev_le) * frac) * 1000.0
        prev_le, prev_n = le, n
    return prev_le * 1000.0


def js_distance(p: dict[str, float], q: dict[str, float]) -> float | None:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two count distributions."""
    tp, tq = sum(p.values()), sum(q.values())
    if tp <= 0 or tq <= 0:
        return None
    div = 0.0
    for k in p.keys() | q.keys():
        a, b = p.get(k, 0.0) / tp, q.get(k, 0.0) / tq
        m = (a + b) / 2
        if a > 0:
            div += 0.5 * a * math.log2(a / m)
        if b > 0:
            div += 0.5 * b * math.log2(b / m)
    return math.sqrt(max(0.0, div))


@dataclass(frozen=True)
class Verdict:
    outcome: str  # Passed | Failed | Inconclusive
    requests: int
    error_rate: float | None
    p99_latency_ms: float | None
    prediction_shift: float | None
    drifted: bool
    failed_checks: tuple[str, ...]
    message: str

    def to_status(self, at: str) -> dict[str, Any]:
        out: dict[str, Any] = {"outcome": self.outcome, "requests": self.requests, "at": at, "message": self.message}
        for key, value in (("errorRate", self.error_rate), ("p99LatencyMs", self.p99_latency_ms),
                           ("predictionShift", self.prediction_shift)):
            if value is not None:
                out[key] = round(value, 4)
        out["drifted"] = self.drifted
        if self.failed_checks:
            out["failedChecks"] = list(self.failed_checks)
        return out


def judge(spec: AnalysisSpec, canary: Sample, stable: Sample | None) -> Verdict:
    """Judge the canary's traffic since the step began (`canary`, `stable` are deltas)."""
    n = int(canary.requests)
    error_rate = canary.errors / canary.requests if canary.requests else None
    p99 = quantile_ms(canary.buckets, 0.99)
    shift = js_distance(canary.predictions, stable.predictions) if stable else None
    failed: list[str] = []
    if spec.fail_on_drift and canary.drifted:
        failed.append("drift: the new version reports drift")
    if n < spec.min_requests:
        if failed:
            return Verdict("Failed", n, error_rate, p99, shift, canary.drifted, tuple(failed), "; ".join(failed))
        return Verdict("Inconclusive", n, error_rate, p99, shift, canary.drifted, (),
                       f"{n} requests since the step began; at least {spec.min_requests} needed to judge")
    if spec.max_error_rate is not None and error_rate is not None and error_rate > spec.max_error_rate:
        failed.append(f"errorRate {error_rate:.3f} > {spec.max_error_rate}")
    if spec.max_p99_latency_ms is not None and p99 is not None and p99 > spec.max_p99_latency_ms:
        failed.append(f"p99LatencyMs {p99:.1f} > {spec.max_p99_latency_ms}")
    if spec.max_prediction_shift is not None and shift is not None and shift > spec.max_prediction_shift:
        failed.append(f"predictionShift {shift:.3f} > {spec.max_prediction_shift}")
    if failed:
        return Verdict("Failed", n, error_rate, p99, shift, canary.drifted, tuple(failed), "; ".join(failed))
    return Verdict("Passed", n, error_rate, p99, shift, canary.drifted, (),
                   f"{n} requests, error rate {error_rate or 0:.3f}" + (f", p99 {p99:.1f} ms" if p99 else ""))

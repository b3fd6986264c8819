"""Prometheus metrics of one app, every series labelled with the model's name and version."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from modeldeploy_drift import DriftReport, DriftStatus
from modeldeploy_drift.table import category_key
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from modeldeploy_server.errors import ServerError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = "modeldeploy_requests"  # exported as modeldeploy_requests_total
REQUEST_ERRORS = "modeldeploy_request_errors"  # ..._total
REQUEST_DURATION = "modeldeploy_request_duration_seconds"
MODEL_INFO = "modeldeploy_model_info"
MODEL_READY = "modeldeploy_model_ready"
BATCH_SIZE = "modeldeploy_batch_size"
PREDICTED_ROWS = "modeldeploy_predicted_rows"  # ..._total
PREDICTIONS = "modeldeploy_predictions"  # ..._total, by predicted label (canary analysis reads it)
DRIFT_FEATURE_SCORE = "modeldeploy_drift_feature_score"
DRIFT_FEATURE_P_VALUE = "modeldeploy_drift_feature_p_value"
DRIFT_FEATURE_DRIFTED = "modeldeploy_drift_feature_drifted"
DRIFT_DATASET_P_VALUE = "modeldeploy_drift_dataset_p_value"
DRIFT_DATASET_DRIFTED = "modeldeploy_drift_dataset_drifted"  # canary analysis reads it
DRIFT_WINDOW_ROWS = "modeldeploy_drift_window_rows"

MAX_LABELS = 100
"""Distinct `label` values of the predictions counter; later ones are counted as OTHER_LABEL."""
OTHER_LABEL = "other"
_LABEL_CACHE = 4 * MAX_LABELS

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    """The metrics in a registry of their own (no module globals, so tests can build many apps).

    With several worker processes (PROMETHEUS_MULTIPROC_DIR set) values go to shared files and
    `render()` aggregates every worker's.
    """

    def __init__(self, model_name: str, model_version: str) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series
        self.registry = CollectorRegistry(auto_describe=True)
        self._model = (model_name, model_version)
        labels = ("model_name", "model_version")
        reg = self.registry
        self.requests = Counter(
            REQUESTS, "Requests answered, by endpoint and status code.",
            [*labels, "endpoint", "code"], registry=reg,
        )  # fmt: skip
        self.errors = Counter(
            REQUEST_ERRORS, "Requests answered with an error, by endpoint and reason.",
            [*labels, "endpoint", "reason"], registry=reg,
        )  # fmt: skip
        self.duration = Histogram(
            REQUEST_DURATION, "Time to answer a request, by endpoint.",
            [*labels, "endpoint"], buckets=_LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        self.info = Gauge(
            MODEL_INFO, "The loaded model (value 1).",
            [*labels, "format", "sha256"], registry=reg, multiprocess_mode="max",
        )  # fmt: skip
        self.ready = Gauge(
            MODEL_READY, "1 when the model is loaded and serving, else 0.",
            labels, registry=reg, multiprocess_mode="min",
        )  # fmt: skip
        self.batch_size = Histogram(
            BATCH_SIZE, "Rows per model call (micro-batches and batch requests).",
            labels, buckets=_BATCH_BUCKETS, registry=reg,
        )  # fmt: skip
        self.rows = Counter(PREDICTED_ROWS, "Rows sent to the model.", labels, registry=reg)
        self.predictions = Counter(
            PREDICTIONS, f"Predicted labels of a classifier (at most {MAX_LABELS} labels, then '{OTHER_LABEL}').",
            [*labels, "label"], registry=reg,
        )  # fmt: skip
        self.drift = DriftGauges(self.registry, self._model)
        self.ready.labels(*self._model).set(0)
        self._batch_child = self.batch_size.labels(*self._model)
        self._rows_child = self.rows.labels(*self._model)
        self._endpoints: dict[str, EndpointTimer] = {}
        self._label_children: dict[Any, Any] = {}  # raw label -> counter child
        self._label_keys: dict[str, Any] = {}  # label text -> counter child, at most MAX_LABELS (+ other)
        self._classes: np.ndarray[Any, Any] | None = None  # sorted class labels (set_classes)
        self._class_children: list[Any] = []

    def model_loaded(self, fmt: str, sha256: str) -> None:
        self.info.labels(*self._model, fmt, sha256).set(1)
        self.ready.labels(*self._model).set(1)

    def observe_batch(self, size: int) -> None:
        self._batch_child.observe(size)
        self._rows_child.inc(size)

    def set_classes(self, classes: Sequence[Any]) -> None:
        """The classifier's labels, known at load time: counting them is then a search and a bincount."""
        try:
            order = np.argsort(np.asarray(classes), kind="stable")
        except TypeError:  # labels that do not sort together: counted the general way
            return
        self._classes = np.asarray(classes)[order]
        self._class_children = [self._label_child(v) for v in self._classes.tolist()]

    def count_predictions(self, labels: np.ndarray[Any, Any]) -> None:
        """Count a model call's predicted labels (one label per row: classifiers)."""
        if labels.ndim != 1 or labels.shape[0] == 0:
            return
        if labels.shape[0] == 1:
            self._label_child(labels.tolist()[0]).inc()
            return
        classes = self._classes
        if classes is not None:
            try:
                idx = np.searchsorted(classes, labels)
                known = bool((classes[np.minimum(idx, len(classes) - 1)] == labels).all())
            except (TypeError, ValueError):
                known = False
            if known:
                for i, count in enumerate(np.bincount(idx, minlength=len(classes)).tolist()):
                    if count:
                        self._class_children[i].inc(count)
                return
        values, counts = np.unique(labels, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            self._label_child(value).inc(count)

    def _label_child(self, value: Any) -> Any:
        child = self._label_children.get(value)
        if child is not None:
            return child
        key = category_key(value) or "missing"
        child = self._label_keys.get(key)
        if child is None:
            if len(self._label_keys) >= MAX_LABELS:
                key = OTHER_LABEL
                child = self._label_keys.get(key)
            if child is None:
                child = self._label_keys[key] = self.predictions.labels(*self._model, key)
        if len(self._label_children) < _LABEL_CACHE:
            self._label_children[value] = child
        return child

    def endpoint(self, name: str) -> EndpointTimer:
        """The (cached) timer of one endpoint."""
        timer = self._endpoints.get(name)
        if timer is None:
            timer = self._endpoints[name] = EndpointTimer(self, name)
        return timer

    def render(self) -> bytes:
        path = os.environ.get(MULTIPROC_ENV)
        if path:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


class DriftGauges:
    """This replica's latest drift verdict as gauges (set by the drift monitor, off the request path).

    With several workers each one judges the whole pod's window, so the most recent value wins.
    """

    def __init__(self, registry: CollectorRegistry, model: tuple[str, str]) -> None:
        labels, feature = ("model_name", "model_version"), ("model_name", "model_version", "feature")
        mode: Final = "mostrecent"
        self._model = model
        self.feature_score = Gauge(
            DRIFT_FEATURE_SCORE, "Jensen-Shannon distance of a feature's live window from its reference (0..1).",
            feature, registry=registry, multiprocess_mode=mode,
        )  # fmt: skip
        self.feature_p_value = Gauge(
            DRIFT_FEATURE_P_VALUE, "A feature's drift test p-value, corrected for multiple testing (NaN: not tested).",
            feature, registry=registry, multiprocess_mode=mode,
        )  # fmt: skip
        self.feature_drifted = Gauge(
            DRIFT_FEATURE_DRIFTED, "1 when a feature has drifted (corrected p-value at most alpha), else 0.",
            feature, registry=registry, multiprocess_mode=mode,
        )  # fmt: skip
        self.dataset_p_value = Gauge(
            DRIFT_DATASET_P_VALUE, "Smallest corrected feature p-value of the window (NaN: not tested).",
            labels, registry=registry, multiprocess_mode=mode,
        )  # fmt: skip
        self.dataset_drifted = Gauge(
            DRIFT_DATASET_DRIFTED, "1 when this replica's window has drifted from the reference profile, else 0.",
            labels, registry=registry, multiprocess_mode=mode,
        )  # fmt: skip
        self.window_rows = Gauge(
            DRIFT_WINDOW_ROWS, "Rows in the window last judged for drift.",
            labels, registry=registry, multiprocess_mode=mode,
        )  # fmt: skip

    def update(self, report: DriftReport, features: Sequence[str]) -> None:
        """Set every gauge from `report` (features not in it, e.g. untested, get NaN and 0)."""
        entries = {f.name: f for f in report.features}
        for name in features:
            entry = entries.get(name)
            self.feature_score.labels(*self._model, name).set(_nan(entry.js if entry else None))
            self.feature_p_value.labels(*self._model, name).set(_nan(entry.p_adjusted if entry else None))
            self.feature_drifted.labels(*self._model, name).set(1 if entry is not None and entry.drifted else 0)
        self.dataset_p_value.labels(*self._model).set(_nan(report.p_value))
        self.dataset_drifted.labels(*self._model).set(1 if report.status is DriftStatus.DRIFTED else 0)
        self.window_rows.labels(*self._model).set(report.window_rows)


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


class EndpointTimer:
    """Counts and times requests to one endpoint; label children are bound once."""

    __slots__ = ("_codes", "_duration", "_metrics", "_name", "_reasons")

    def __init__(self, metrics: ServerMetrics, name: str) -> None:
        self._metrics = metrics
        self._name = name
        self._duration = metrics.duration.labels(*metrics._model, name)
        self._codes: dict[int, Any] = {}
        self._reasons: dict[str, Any] = {}

    def _count(self, code: int) -> None:
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = self._metrics.requests.labels(*self._metrics._model, self._name, str(code))
        child.inc()

    def _error(self, reason: str) -> None:
        child = self._reasons.get(reason)
        if child is None:
            child = self._reasons[reason] = self._metrics.errors.labels(*self._metrics._model, self._name, reason)
        child.inc()

    def done(self, started: float, code: int = 200) -> None:
        """Record a request that began at `started` (perf_counter) and was answered `code`."""
        self._duration.observe(time.perf_counter() - started)
        self._count(code)

    def failed(self, started: float, exc: BaseException) -> None:
        """Record a request that ended in `exc` (a ServerError's status and reason, else 500)."""
        if isinstance(exc, ServerError):
            self.done(started, exc.status)
            self._error(exc.reason)
        else:
            self.done(started, 500)
            self._error("internal_error")

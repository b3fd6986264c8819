"""Prometheus metrics of one app, every series labelled with the model's name and version."""

from __future__ import annotations

import os
import time
from typing import Any

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
        self.ready.labels(*self._model).set(0)
        self._batch_child = self.batch_size.labels(*self._model)
        self._rows_child = self.rows.labels(*self._model)
        self._endpoints: dict[str, EndpointTimer] = {}

    def model_loaded(self, fmt: str, sha256: str) -> None:
        self.info.labels(*self._model, fmt, sha256).set(1)
        self.ready.labels(*self._model).set(1)

    def observe_batch(self, size: int) -> None:
        self._batch_child.observe(size)
        self._rows_child.inc(size)

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

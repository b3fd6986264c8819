"""The transport-free data plane: loads the model, validates rows, predicts (no HTTP here)."""

from __future__ import annotations

import asyncio
import enum
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from modeldeploy_server import formats, sources, stores
from modeldeploy_server.batching import MicroBatcher
from modeldeploy_server.errors import (
    InvalidInput,
    ModelLoadError,
    ModelNotReady,
    ModelRejectedInput,
    PayloadTooLarge,
    PredictionFailed,
    ServerError,
)
from modeldeploy_server.formats import Outputs, Predictor
from modeldeploy_server.logs import ModelLogger, model_logger
from modeldeploy_server.request_batching import RequestBatcher
from modeldeploy_server.settings import ServerSettings
from modeldeploy_server.workers import available_cpus

FEATURE_LIMIT = float(np.finfo(np.float32).max)
"""Largest accepted feature magnitude: tree models and ONNX graphs compute in float32."""
MERGED_ROWS = 2048
"""Concurrent batch requests share one model call up to this many rows."""

OUTPUT_PREDICT = "predict"
OUTPUT_PROBA = "predict_proba"


class LoadState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class ModelFacts:
    """What is known about the loaded model, worked out once at load time."""

    name: str
    version: str
    format: str
    uri: str
    sha256: str
    n_features: int | None
    input_name: str
    input_dtype: np.dtype[Any]
    classes: tuple[Any, ...] | None
    """Class labels (JSON-ready) in the order of the probability columns; None for regressors."""
    class_keys: tuple[str, ...] | None
    """The labels as strings, keys of per-class probability objects."""
    label_dtype: np.dtype[Any] | None
    label_width: int | None
    """None when the model gives one value per row, k for k values per row."""
    proba_dtype: np.dtype[Any] | None
    load_seconds: float

    @property
    def is_classifier(self) -> bool:
        return self.classes is not None

    @property
    def output_names(self) -> tuple[str, ...]:
        return (OUTPUT_PREDICT, OUTPUT_PROBA) if self.is_classifier else (OUTPUT_PREDICT,)


@dataclass(frozen=True, slots=True)
class RowPrediction:
    """One row's answer: label (a JSON-ready scalar, or list for multi-output) and probabilities."""

    label: Any
    proba: list[float] | None


class ModelRuntime:
    """Loads one model and answers predictions on it; knows nothing of HTTP.

    `start()` begins loading in a background thread and returns at once; until loading ends
    `ready()` raises ModelNotReady, and after a failure it raises the load error (with its reason)
    for good. Single rows go through a MicroBatcher; multi-row requests are one model call.
    """

    def __init__(self, settings: ServerSettings, *, log: ModelLogger | None = None) -> None:
        self.settings = settings
        self.log = log or model_logger(settings)
        self.state = LoadState.LOADING
        self.error: ServerError | None = None
        self.facts: ModelFacts | None = None
        self.on_batch: Callable[[int], None] | None = None
        self.on_loaded: Callable[[ModelFacts], None] | None = None
        """Called in the loading thread once the model is ready."""
        self.on_predicted: Callable[[np.ndarray[Any, Any], Outputs], None] | None = None
        """Called in the predict thread after each model call with its rows and outputs (e.g.
        for drift statistics); must be quick, may keep a bounded number of the arrays (they are
        never reused) but must not change them; its errors are logged."""
        self._predictor: Predictor | None = None
        # Threads for the model's own pools (BLAS, OpenMP, onnxruntime), shared by the workers.
        self._threads = max(1, available_cpus() // settings.workers)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._batcher: MicroBatcher[RowPrediction] | None = None
        self._requests: RequestBatcher | None = None  # merges concurrent multi-row requests
        self._load_task: asyncio.Future[LoadState] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the batcher and load the model in the background (returns at once)."""
        self._running_batcher()
        if self.state is LoadState.LOADING and self._load_task is None:
            self._load_task = asyncio.ensure_future(asyncio.to_thread(self.load))

    async def wait_loaded(self) -> LoadState:
        if self._load_task is not None:
            await asyncio.shield(self._load_task)
        return self.state

    async def stop(self) -> None:
        if self._batcher is not None:
            await self._batcher.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _running_batcher(self) -> MicroBatcher[RowPrediction]:
        """The batcher, started on the running loop at first use."""
        if self._batcher is None:
            self._batcher = MicroBatcher(
                self._predict_rows,
                executor=self._executor,
                max_batch_size=self.settings.max_batch_size,
                max_latency_s=self.settings.max_latency_ms / 1000.0,
                max_queue_size=self.settings.max_queue_size,
                on_batch=self._batch_observed,
            )
            self._batcher.start()
        return self._batcher

    def _batch_observed(self, size: int) -> None:
        if self.on_batch is not None:
            self.on_batch(size)

    def load(self) -> LoadState:
        """Load the model now (blocking). Never raises: a failure is kept in `error`."""
        started = time.perf_counter()
        try:
            predictor, facts = self._load(started)
        except ServerError as exc:
            self.error = exc
            self.state = LoadState.FAILED
            self.log.error("model failed to load: %s", exc.message, extra={"reason": exc.reason})
        except Exception as exc:
            self.error = ModelLoadError(f"unexpected error while loading: {exc!r}")
            self.state = LoadState.FAILED
            self.log.exception("model failed to load", extra={"reason": self.error.reason})
        else:
            if self.on_loaded is not None:
                self.on_loaded(facts)
            self._predictor, self.facts = predictor, facts
            self.state = LoadState.READY
            self.log.info(
                "model loaded in %.2fs: format=%s features=%s classes=%s sha256=%s",
                facts.load_seconds,
                facts.format,
                facts.n_features,
                len(facts.classes) if facts.classes is not None else None,
                facts.sha256,
            )
        return self.state

    def _load(self, started: float) -> tuple[Predictor, ModelFacts]:
        s = self.settings
        if not s.model_uri:
            raise ModelLoadError(
                "no model configured: set MODELDEPLOY_MODEL_URI (or pass --model)",
                reason="no_model",
            )
        fmt = formats.guess_format(s.model_format, sources.uri_suffix(s.model_uri))
        if fmt in formats.PICKLE_FORMATS and s.model_sha256 is None:
            if not s.allow_unverified:
                raise ModelLoadError(
                    f"refusing to unpickle {s.model_uri} without a pinned sha256: set "
                    "MODELDEPLOY_MODEL_SHA256 (or MODELDEPLOY_ALLOW_UNVERIFIED=true for local use)",
                    reason="unverified_pickle",
                )
            self.log.warning("loading an UNVERIFIED pickle (allow_unverified is set)")
        self.log.info("loading %s model from %s", fmt, s.model_uri)
        local = sources.fetch(
            s.model_uri,
            expected_sha256=s.model_sha256,
            cache_dir=s.cache_dir,
            timeout_s=s.download_timeout_s,
            log=self.log,
            store=stores.StoreConfig.from_settings(s),
        )
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=self._threads)
        # Warnings while unpickling (e.g. a model saved by another scikit-learn version) are
        # worth one log line each, with the model named, rather than a stray stderr line.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predictor = formats.load(fmt, local.path, trusted_types=s.skops_trusted_types, threads=self._threads)
            facts = self._facts(predictor, fmt, local.sha256, started)
        for message in dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught):
            self.log.warning("while loading: %s", message)
        return predictor, facts

    def _facts(self, predictor: Predictor, fmt: str, sha256: str, started: float) -> ModelFacts:
        sample: Outputs | None = None
        if predictor.n_features is not None:
            try:  # warm-up, and the shapes and dtypes of the outputs
                sample = self._call(predictor, np.zeros((1, predictor.n_features), predictor.input_dtype))
            except ServerError as exc:
                self.log.warning("warm-up prediction on a zero row failed: %s", exc.message)
        classes = predictor.classes
        if classes is None and sample is not None and sample.proba is not None:
            classes = np.arange(sample.proba.shape[1])
        labels = classes.tolist() if classes is not None else None
        return ModelFacts(
            name=self.settings.model_name,
            version=self.settings.model_version,
            format=fmt,
            uri=self.settings.model_uri or "",
            sha256=sha256,
            n_features=predictor.n_features,
            input_name=predictor.input_name,
            input_dtype=predictor.input_dtype,
            classes=tuple(labels) if labels is not None else None,
            class_keys=tuple(str(c) for c in labels) if labels is not None else None,
            label_dtype=sample.labels.dtype if sample is not None else None,
            label_width=(sample.labels.shape[1] if sample is not None and sample.labels.ndim == 2 else None),
            proba_dtype=sample.proba.dtype if sample is not None and sample.proba is not None else None,
            load_seconds=time.perf_counter() - started,
        )

    # -- state ---------------------------------------------------------------------------

    def ready(self) -> ModelFacts:
        """The model's facts if it can predict; else raises why not (loading, or load error)."""
        facts = self.facts
        if facts is not None:
            return facts
        if self.error is not None:
            raise ModelNotReady(
                f"model {self.settings.model_name!r} failed to load: {self.error.message}",
                reason=self.error.reason,
            )
        raise ModelNotReady(f"model {self.settings.model_name!r} is still loading")

    # -- validation ----------------------------------------------------------------------

    def rows_from_lists(self, instances: Sequence[Sequence[float]]) -> np.ndarray[Any, Any]:
        """A 2-D float array from JSON rows, refusing ragged or empty input."""
        if not instances:
            raise InvalidInput("instances must hold at least one row", reason="empty_batch")
        if len(instances) > self.settings.max_instances:
            raise PayloadTooLarge(
                f"{len(instances)} rows in one request; at most {self.settings.max_instances}",
                reason="too_many_instances",
            )
        width = len(instances[0])
        for i, row in enumerate(instances):
            if len(row) != width:
                raise InvalidInput(
                    f"all rows must have the same number of features: row 0 has {width}, row {i} has {len(row)}",
                    reason="ragged_batch",
                )
        return np.array(instances, dtype=np.float64).reshape(len(instances), width)

    def validate(self, rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Rows checked for shape and values, in the model's input dtype."""
        facts = self.ready()
        if rows.ndim != 2:
            raise InvalidInput(
                f"expected rows of features (2 dimensions), got {rows.ndim} dimension(s)",
                reason="wrong_shape",
            )
        n_rows, width = rows.shape
        if n_rows == 0:
            raise InvalidInput("at least one row is needed", reason="empty_batch")
        if width == 0:
            raise InvalidInput("a row needs at least one feature", reason="wrong_feature_count")
        if n_rows > self.settings.max_instances:
            raise PayloadTooLarge(
                f"{n_rows} rows in one request; at most {self.settings.max_instances}",
                reason="too_many_instances",
            )
        if facts.n_features is not None and width != facts.n_features:
            raise InvalidInput(
                f"model {facts.name!r} expects {facts.n_features} features per row, got {width}",
                reason="wrong_feature_count",
            )
        if rows.dtype.kind not in "fiub":
            raise InvalidInput("features must be numbers", reason="not_a_number")
        if rows.dtype.kind == "f":
            # One pass: NaN fails the comparison too.
            in_range = np.abs(rows) <= FEATURE_LIMIT
            if not in_range.all():
                i, j = (int(k) for k in np.argwhere(~in_range)[0])
                value = float(rows[i, j])
                if np.isfinite(value):
                    raise InvalidInput(
                        f"row {i}, feature {j} is {value}: feature values must lie within "
                        f"+-{FEATURE_LIMIT:.4g} (the float32 range)",
                        reason="out_of_range",
                    )
                raise InvalidInput(
                    f"row {i}, feature {j} is {value}: NaN and infinity are not accepted",
                    reason="not_finite",
                )
        return rows.astype(facts.input_dtype, copy=False)

    # -- prediction ----------------------------------------------------------------------

    async def predict_one(self, features: np.ndarray[Any, Any]) -> RowPrediction:
        """One row (1-D), coalesced with concurrent rows into one model call."""
        row = self.validate(features.reshape(1, -1))
        if self.facts is not None and self.facts.n_features is None:
            return (await self._run_rows(row))[0]  # rows of unknown width are not stacked
        return await self._running_batcher().submit(row[0])

    async def predict(self, rows: np.ndarray[Any, Any]) -> Outputs:
        """Any number of rows as arrays: a single row is micro-batched, more are one call."""
        if rows.ndim != 2 or rows.shape[0] != 1:
            return await self.predict_many(rows)
        facts = self.ready()
        result = await self.predict_one(rows[0])
        return Outputs(
            labels=np.asarray([result.label], dtype=facts.label_dtype),
            proba=(np.asarray([result.proba], dtype=facts.proba_dtype) if result.proba is not None else None),
        )

    async def predict_many(self, rows: np.ndarray[Any, Any]) -> Outputs:
        """Many rows in one vectorized model call (off the event loop)."""
        checked = self.validate(rows)
        if self._requests is None:
            self._requests = RequestBatcher(self._predict_checked, self._executor, MERGED_ROWS,
                                            on_call=self._batch_observed)
        return await self._requests.submit(checked)

    async def _run_rows(self, rows: np.ndarray[Any, Any]) -> list[RowPrediction]:
        loop = asyncio.get_running_loop()
        results = await loop.run_in_executor(self._executor, self._predict_rows, rows)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results  # type: ignore[return-value]

    def _predictor_or_raise(self) -> Predictor:
        if self._predictor is None:
            self.ready()
            raise AssertionError("model facts without a predictor")
        return self._predictor

    def _call(self, predictor: Predictor, rows: np.ndarray[Any, Any]) -> Outputs:
        """One model call with the model's errors turned into ServerErrors."""
        try:
            with np.errstate(all="ignore"):
                return predictor.predict(rows)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise ModelRejectedInput(f"the model rejected the input: {exc}") from exc
        except Exception as exc:
            self.log.exception("prediction failed")
            raise PredictionFailed(f"the model failed: {type(exc).__name__}: {exc}") from exc

    def _observe(self, rows: np.ndarray[Any, Any], outputs: Outputs) -> None:
        hook = self.on_predicted
        if hook is None:
            return
        try:
            hook(rows, outputs)
        except Exception:
            self.log.exception("on_predicted hook failed (the prediction is unaffected)")

    def _predict_checked(self, rows: np.ndarray[Any, Any]) -> Outputs:
        """Executor side of predict_many: the outputs, refused whole if any is not finite."""
        outputs = self._call(self._predictor_or_raise(), rows)
        self._observe(rows, outputs)
        bad = _non_finite_rows(outputs)
        if bad.any():
            raise ModelRejectedInput(
                f"the model's output is not finite for row {int(np.argmax(bad))}",
                reason="non_finite_output",
            )
        return outputs

    def _predict_rows(self, rows: np.ndarray[Any, Any]) -> list[RowPrediction | BaseException]:
        """Executor side of the batcher: JSON-ready results, an error for each bad row."""
        outputs = self._call(self._predictor_or_raise(), rows)
        self._observe(rows, outputs)
        labels = outputs.labels.tolist()
        proba = outputs.proba.tolist() if outputs.proba is not None else None
        bad = _non_finite_rows(outputs)
        results: list[RowPrediction | BaseException] = []
        for i, label in enumerate(labels):
            if bad[i]:
                results.append(
                    ModelRejectedInput(
                        "the model's output is not finite for this row",
                        reason="non_finite_output",
                    )
                )
            else:
                results.append(RowPrediction(label, proba[i] if proba is not None else None))
        return results


def _non_finite_rows(outputs: Outputs) -> np.ndarray[Any, Any]:
    """A boolean per row: does any numeric output of that row hold NaN or infinity?"""
    n = outputs.labels.shape[0]
    bad = np.zeros(n, dtype=bool)
    if outputs.labels.dtype.kind == "f":
        bad |= ~np.isfinite(outputs.labels.reshape(n, -1)).all(axis=1)
    if outputs.proba is not None:
        bad |= ~np.isfinite(outputs.proba.reshape(n, -1)).all(axis=1)
    return bad

"""The plain REST API: /health, /ready, /predict, /predict/batch, /metrics (thin over the runtime)."""

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from modeldeploy_server import schemas
from modeldeploy_server.codec import (
    BATCH_DECODER,
    PREDICT_DECODER,
    decode,
    json_response,
    read_body,
)
from modeldeploy_server.metrics import CONTENT_TYPE, EndpointTimer, ServerMetrics
from modeldeploy_server.runtime import ModelFacts, ModelRuntime, RowPrediction
from modeldeploy_server.settings import ServerSettings

P = ParamSpec("P")
Handler = Callable[P, Awaitable[Response]]


def instrumented(timer: EndpointTimer) -> Callable[[Handler[P]], Handler[P]]:
    """Count and time every call of a route handler, errors included (by status and reason)."""

    def wrap(handler: Handler[P]) -> Handler[P]:
        @functools.wraps(handler)
        async def timed(*args: P.args, **kwargs: P.kwargs) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(*args, **kwargs)
            except BaseException as exc:
                timer.failed(started, exc)
                raise
            timer.done(started, response.status_code)
            return response

        return timed

    return wrap


def request_body(model: type[schemas._Doc]) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON body we decode ourselves (see app.openapi)."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def build_router(
    runtime: ModelRuntime,
    metrics: ServerMetrics,
    settings: ServerSettings,
    readiness: Callable[[], ModelFacts] | None = None,
) -> APIRouter:
    """The plain API; `readiness` decides /ready (default: the runtime's own readiness)."""
    is_ready = readiness or runtime.ready
    router = APIRouter()
    limit = settings.max_body_bytes

    @router.get(
        "/health",
        tags=["health"],
        summary="Liveness: the process is up (answers while the model loads)",
        responses={200: {"model": schemas.HealthBody}},
    )
    async def health() -> Response:
        return json_response({"status": "alive"})

    @router.get(
        "/ready",
        tags=["health"],
        summary="Readiness: the model is loaded (503 with the reason while loading or failed)",
        responses={200: {"model": schemas.ReadyBody}, **schemas.error_responses(503)},
    )
    async def ready() -> Response:
        facts = is_ready()
        return json_response({"status": "ready", "model_name": facts.name, "model_version": facts.version})

    @router.post(
        "/predict",
        tags=["predict"],
        summary="Predict one row (coalesced with concurrent requests into one model call)",
        responses={
            200: {"model": schemas.PredictResponse},
            **schemas.error_responses(400, 413, 415, 422, 500, 503),
        },
        openapi_extra=request_body(schemas.PredictRequest),
    )
    @instrumented(metrics.endpoint("predict"))
    async def predict(request: Request) -> Response:
        facts = runtime.ready()
        body = decode(await read_body(request, limit), PREDICT_DECODER)
        result = await runtime.predict_one(np.array(body.features, dtype=np.float64))
        return json_response(_one(facts, result, body.class_probabilities))

    @router.post(
        "/predict/batch",
        tags=["predict"],
        summary="Predict many rows in one vectorized model call",
        responses={
            200: {"model": schemas.BatchResponse},
            **schemas.error_responses(400, 413, 415, 422, 500, 503),
        },
        openapi_extra=request_body(schemas.BatchRequest),
    )
    @instrumented(metrics.endpoint("predict_batch"))
    async def predict_batch(request: Request) -> Response:
        facts = runtime.ready()
        body = decode(await read_body(request, limit), BATCH_DECODER)
        outputs = await runtime.predict_many(runtime.rows_from_lists(body.instances))
        proba = outputs.proba
        payload: dict[str, Any] = {
            "model_name": facts.name,
            "model_version": facts.version,
            "predictions": outputs.labels.tolist(),
            "probabilities": proba.max(axis=1).tolist() if proba is not None else None,
        }
        if body.class_probabilities:
            keys = facts.class_keys or ()
            payload["class_probabilities"] = (
                [dict(zip(keys, row, strict=True)) for row in proba.tolist()] if proba is not None else None
            )
        return json_response(payload)

    @router.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics",
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
        response_class=Response,
    )
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return router


def _one(facts: ModelFacts, result: RowPrediction, class_probabilities: bool) -> dict[str, Any]:
    proba = result.proba
    payload: dict[str, Any] = {
        "model_name": facts.name,
        "model_version": facts.version,
        "prediction": result.label,
        "probability": max(proba) if proba is not None else None,
    }
    if class_probabilities:
        payload["class_probabilities"] = (
            dict(zip(facts.class_keys or (), proba, strict=True)) if proba is not None else None
        )
    return payload

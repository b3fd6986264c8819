"""The app factory: wires settings, runtime, metrics, routes and the one error handler."""

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema
from starlette.convertors import Convertor
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from modeldeploy_server import __version__, auth, schemas
from modeldeploy_server.codec import error_response
from modeldeploy_server.drift_alerts import WebhookNotifier, alert_payload
from modeldeploy_server.drift_monitor import DriftMonitor, Transition
from modeldeploy_server.drift_routes import build_drift_router
from modeldeploy_server.errors import InvalidInput, ServerError
from modeldeploy_server.formats import Outputs
from modeldeploy_server.logs import configure_logging
from modeldeploy_server.metrics import ServerMetrics
from modeldeploy_server.routes import build_router
from modeldeploy_server.runtime import ModelFacts, ModelRuntime
from modeldeploy_server.settings import ServerSettings
from modeldeploy_server.v2_routes import build_v2_router
from modeldeploy_server.workers import WorkerGroup

_REQUEST_MODELS = (schemas.PredictRequest, schemas.BatchRequest, schemas.V2InferenceRequest)
_HTTP_REASONS = {404: "not_found", 405: "method_not_allowed"}

DESCRIPTION = """\
Serves one model: `/predict` for one row, `/predict/batch` for many, and the Open Inference
Protocol (KServe V2) under `/v2`. `/health` is liveness, `/ready` is readiness. With a drift
reference profile, `/drift` shows how live inputs compare with the training data. Every error is
`{"error": "<readable message>", "reason": "<machine-readable reason>"}`.
"""


_log = logging.getLogger("modeldeploy.server")

Endpoint = Callable[..., Awaitable[Response]]


class ModelApp(FastAPI):
    """FastAPI with a short path for the POST (prediction) routes.

    A POST whose path matches one of those routes calls its endpoint directly: the same function
    that FastAPI would call, minus the routing, dependency and middleware layers, which cost
    more than the prediction itself on small models. Endpoints on that path take the Request
    and their path parameters, return a Response and raise ServerError, rendered here.
    Everything else (and the OpenAPI description of those routes) is plain FastAPI.
    """

    _fast_routes: list[tuple[re.Pattern[str], Endpoint, dict[str, Convertor[Any]]]]
    _guard: Callable[[Scope], Response | None] | None = None

    def enable_fast_path(self, routes: Iterable[BaseRoute]) -> None:
        """Serve the POST routes among `routes` (as included, without prefix) the short way."""
        self._fast_routes = [
            (route.path_regex, route.endpoint, route.param_convertors)
            for route in routes
            if isinstance(route, APIRoute) and route.methods == {"POST"}
        ]

    def guard(self, check: Callable[[Scope], Response | None]) -> None:
        """Run `check` before every HTTP request, fast path included; a Response it returns is the answer."""
        self._guard = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._guard is not None:
            denied = self._guard(scope)
            if denied is not None:
                await denied(scope, receive, send)
                return
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            for regex, endpoint, convertors in getattr(self, "_fast_routes", ()):
                match = regex.match(path)
                if match is not None:
                    params = {k: convertors[k].convert(v) for k, v in match.groupdict().items()}
                    scope["app"] = self
                    await _call_fast(endpoint, params, scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


async def _call_fast(endpoint: Endpoint, params: dict[str, Any], scope: Scope, receive: Receive, send: Send) -> None:
    try:
        response = await endpoint(Request(scope, receive), **params)
    except ServerError as exc:
        response = error_response(exc)
    except Exception:
        _log.exception("unhandled error on %s", scope["path"])
        response = error_response(ServerError("internal server error"))
    await response(scope, receive, send)


def create_app(settings: ServerSettings | None = None, runtime: ModelRuntime | None = None) -> FastAPI:
    """A new app serving `runtime` (one is made from `settings` if not given).

    The lifespan starts loading in the background, so `/health` answers at once and `/ready`
    turns 200 when the model is loaded (or stays 503 with the reason if loading failed).
    """
    settings = settings or (runtime.settings if runtime is not None else ServerSettings())
    runtime = runtime or ModelRuntime(settings)
    metrics = ServerMetrics(settings.model_name, settings.model_version)
    runtime.on_batch = metrics.observe_batch
    group = (
        WorkerGroup(settings.worker_state_dir, settings.workers)
        if settings.workers > 1 and settings.worker_state_dir
        else None
    )

    def readiness() -> ModelFacts:
        """The model's facts if this process, and every sibling worker, can predict."""
        facts = runtime.ready()
        if group is not None:
            group.check()
        return facts

    monitor = (
        DriftMonitor(
            settings,
            metrics.drift,
            runtime.log,
            state_dir=Path(settings.worker_state_dir) if group is not None and settings.worker_state_dir else None,
            workers=settings.workers if group is not None else 1,
        )
        if settings.drift_reference_uri
        else None
    )
    count_labels = False
    chained = runtime.on_predicted

    def predicted(rows: np.ndarray[Any, Any], outputs: Outputs) -> None:
        """After every model call (predict thread): label counts, the drift window."""
        if count_labels:
            metrics.count_predictions(outputs.labels)
        if monitor is not None:
            monitor.observe(rows, outputs.labels)
        if chained is not None:
            chained(rows, outputs)

    def loaded(facts: ModelFacts) -> None:
        nonlocal count_labels
        count_labels = facts.is_classifier and facts.label_width is None
        if count_labels and facts.classes is not None:
            metrics.set_classes(facts.classes)
        if monitor is not None:
            monitor.load(facts)  # beside the model, before the process is ready
        metrics.model_loaded(facts.format, facts.sha256)
        if group is not None:
            group.mark_ready()

    runtime.on_loaded = loaded
    runtime.on_predicted = predicted

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        notifier = _drift_alerts(monitor, settings, runtime)
        if monitor is not None:
            monitor.start()
        try:
            yield
        finally:
            if monitor is not None:
                await monitor.stop()
            if notifier is not None:
                notifier.close()
            if group is not None:
                group.mark_gone()
            await runtime.stop()

    app = ModelApp(
        title="modeldeploy inference server",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    app.state.metrics = metrics
    app.state.drift = monitor
    if runtime.facts is not None:
        loaded(runtime.facts)

    app.add_exception_handler(ServerError, _render_server_error)
    app.add_exception_handler(HTTPException, _render_http_error)
    app.add_exception_handler(RequestValidationError, _render_validation_error)
    app.add_exception_handler(Exception, _render_unexpected)
    routers = [
        build_router(runtime, metrics, settings, readiness),
        build_v2_router(runtime, metrics, settings, readiness),
    ]
    for router in routers:
        app.include_router(router)
    app.include_router(build_drift_router(monitor, settings))
    app.openapi = _openapi(app, runtime, settings)  # type: ignore[method-assign]
    app.enable_fast_path(route for router in routers for route in router.routes)
    if settings.auth_dir:
        keys = auth.KeyDirectory(settings.auth_dir, settings.auth_reload_seconds, runtime.log)
        authenticator = auth.Authenticator(keys, metrics.registry, (settings.model_name, settings.model_version))
        app.guard(auth.RouteGuard(authenticator, (route for router in routers for route in router.routes)))
    return app


def _drift_alerts(
    monitor: DriftMonitor | None, settings: ServerSettings, runtime: ModelRuntime
) -> WebhookNotifier | None:
    """The webhook poster for this replica's drift transitions, if one is configured."""
    if monitor is None or settings.drift_webhook_url is None:
        return None
    notifier = WebhookNotifier(settings.drift_webhook_url.get_secret_value(), runtime.log)

    def transition(change: Transition) -> None:
        notifier.post(
            alert_payload(
                change, model_name=settings.model_name, model_version=settings.model_version, pod=settings.pod_name
            )
        )

    monitor.on_transition = transition
    return notifier


def app_from_env() -> FastAPI:
    """Factory for uvicorn's worker processes: settings from the MODELDEPLOY_* environment."""
    from modeldeploy_server.cli import quiet_per_call_warnings

    settings = ServerSettings()
    configure_logging(settings)
    quiet_per_call_warnings()
    return create_app(settings)


async def _render_server_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServerError)
    return error_response(exc)


async def _render_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    reason = _HTTP_REASONS.get(exc.status_code, "http_error")
    error = ServerError(str(exc.detail), reason=reason, status=exc.status_code)
    response = error_response(error)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _render_unexpected(request: Request, exc: Exception) -> Response:
    _log.error("unhandled error on %s", request.url.path, exc_info=exc)
    return error_response(ServerError("internal server error"))


async def _render_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(InvalidInput(f"invalid request: {exc.errors()}"))


def _openapi(app: FastAPI, runtime: ModelRuntime, settings: ServerSettings) -> Callable[[], Any]:
    """OpenAPI with our request bodies; once the model is loaded, tailored to its shape."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        _, defs = models_json_schema(
            [(model, "validation") for model in _REQUEST_MODELS],
            ref_template="#/components/schemas/{model}",
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(defs.get("$defs", {}))
        facts = runtime.facts
        if facts is None:
            return schema  # not cached: the model's shape is not known yet
        _tailor(schema, facts, settings)
        app.openapi_schema = schema
        return schema

    return openapi


def _tailor(schema: dict[str, Any], facts: ModelFacts, settings: ServerSettings) -> None:
    """Put the model's feature count, name and version into the schema."""
    components = schema["components"]["schemas"]
    if facts.n_features is not None:
        features = components["PredictRequest"]["properties"]["features"]
        features["minItems"] = features["maxItems"] = facts.n_features
        row = components["BatchRequest"]["properties"]["instances"]["items"]
        row["minItems"] = row["maxItems"] = facts.n_features
    instances = components["BatchRequest"]["properties"]["instances"]
    instances["minItems"] = 1
    instances["maxItems"] = settings.max_instances
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") != "path":
                    continue
                if parameter["name"] == "name":
                    parameter["schema"]["examples"] = [facts.name]
                elif parameter["name"] == "version":
                    parameter["schema"]["examples"] = [facts.version]

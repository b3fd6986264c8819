"""Drift endpoints: /drift/state and /drift/profile (read by the operator), /drift/report, the /drift page.

All are GETs, off the prediction fast path; each answers 404 (`drift_not_configured`) when no
reference profile is configured and 503 (`drift_unavailable` / `drift_loading`) while it cannot
be used.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from modeldeploy_api import constants
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, Response

from modeldeploy_server import schemas
from modeldeploy_server.codec import json_response
from modeldeploy_server.drift_monitor import NOT_CONFIGURED, DriftMonitor
from modeldeploy_server.drift_page import CSP, PageContext, render
from modeldeploy_server.settings import ServerSettings

_JSON_OBJECT: dict[str, Any] = {"content": {"application/json": {"schema": {"type": "object"}}}}


def build_drift_router(monitor: DriftMonitor | None, settings: ServerSettings) -> APIRouter:
    """The drift routes (always present, so that /docs lists them); `monitor` None: not configured."""
    router = APIRouter(tags=["drift"])
    errors: dict[int | str, dict[str, Any]] = {
        404: {"model": schemas.ErrorBody, "description": "Drift monitoring is not configured."},
        503: {"model": schemas.ErrorBody, "description": "The reference profile is loading or unusable (`reason`)."},
    }

    def configured() -> DriftMonitor:
        if monitor is None:
            raise NOT_CONFIGURED
        return monitor

    @router.get(
        constants.DRIFT_STATE_PATH,
        summary="This replica's live window (bin counts, merged over its workers) for the operator to merge",
        responses={200: _JSON_OBJECT, **errors},
    )
    async def drift_state() -> Response:
        m = configured()
        m.ready_profile()
        return json_response(await run_in_threadpool(m.state_body))

    @router.get(
        constants.DRIFT_PROFILE_PATH,
        summary="The reference profile this replica judges against",
        responses={200: _JSON_OBJECT, **errors},
    )
    async def drift_profile() -> Response:
        return json_response(configured().ready_profile().to_dict())

    @router.get(
        "/drift/report",
        summary="This replica's latest drift verdict: per-feature tests, p-values, PSI, JS distance",
        responses={200: _JSON_OBJECT, **errors},
    )
    async def drift_report() -> Response:
        return json_response(configured().latest_report().to_dict())

    # The page's errors are JSON like every other error (documented as such: the route itself is HTML).
    json_error = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schemas.ErrorBody.__name__}"}}}
    page_errors = {code: {"description": e["description"], "content": json_error} for code, e in errors.items()}

    @router.get(
        "/drift",
        summary="This replica's drift report as a page: reference vs live distribution of every feature",
        responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}, **page_errors},
        response_class=HTMLResponse,
    )
    async def drift_page() -> Response:
        m = configured()
        profile = m.ready_profile()
        context = PageContext(
            model_name=settings.model_name,
            model_version=settings.model_version,
            pod=settings.pod_name,
            window_size=settings.drift_window_size,
            interval_s=settings.drift_interval_seconds,
        )
        page = await run_in_threadpool(render, m.latest, profile.features, profile.prediction, context)
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})

    return router

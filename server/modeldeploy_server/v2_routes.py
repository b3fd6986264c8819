"""Open Inference Protocol (KServe V2) REST endpoints under /v2, thin over the runtime."""

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from modeldeploy_server import __version__, schemas, v2
from modeldeploy_server.codec import JSON, json_response, read_body
from modeldeploy_server.errors import ModelNotReady, NotFound
from modeldeploy_server.metrics import ServerMetrics
from modeldeploy_server.routes import instrumented, request_body
from modeldeploy_server.runtime import ModelFacts, ModelRuntime
from modeldeploy_server.settings import ServerSettings

SERVER_NAME = "modeldeploy"


def build_v2_router(
    runtime: ModelRuntime,
    metrics: ServerMetrics,
    settings: ServerSettings,
    readiness: Callable[[], ModelFacts] | None = None,
) -> APIRouter:
    """The V2 API; `readiness` decides the ready endpoints (default: the runtime's own)."""
    is_ready = readiness or runtime.ready
    router = APIRouter(prefix="/v2", tags=["v2 (Open Inference Protocol)"])
    limit = settings.max_body_bytes

    def served(name: str, version: str | None, check: Callable[[], ModelFacts]) -> ModelFacts:
        """The facts of the model the path names, or 404 / 503 saying why not."""
        if name != settings.model_name:
            raise NotFound(
                f"model {name!r} is not served here; this server serves {settings.model_name!r}",
                reason="model_not_found",
            )
        if version is not None and version != settings.model_version:
            raise NotFound(
                f"model {name!r} has no version {version!r}; it serves version {settings.model_version!r}",
                reason="version_not_found",
            )
        return check()

    async def server_metadata() -> Response:
        return json_response({"name": SERVER_NAME, "version": __version__, "extensions": list(v2.EXTENSIONS)})

    async def live() -> Response:
        return json_response({"live": True})

    async def server_ready() -> Response:
        try:
            is_ready()
        except ModelNotReady as exc:
            return json_response({"ready": False, **exc.body()}, exc.status)
        return json_response({"ready": True})

    async def metadata(name: str) -> Response:
        return json_response(v2.model_metadata(served(name, None, runtime.ready)))

    async def metadata_version(name: str, version: str) -> Response:
        return json_response(v2.model_metadata(served(name, version, runtime.ready)))

    async def model_ready(name: str) -> Response:
        served(name, None, is_ready)
        return json_response({"name": name, "ready": True})

    async def model_ready_version(name: str, version: str) -> Response:
        served(name, version, is_ready)
        return json_response({"name": name, "ready": True})

    async def infer_on(request: Request, name: str, version: str | None) -> Response:
        facts = served(name, version, runtime.ready)
        body = await read_body(request, limit)
        parsed, binary = v2.parse_request(body, request.headers.get(v2.HEADER_LENGTH))
        requested = v2.requested_outputs(parsed, facts)
        rows = v2.input_rows(parsed, binary, facts.n_features)
        outputs = await runtime.predict(rows)
        content, header_length = v2.encode_response(facts, parsed.id, outputs, requested)
        if header_length is None:
            return Response(content, media_type=JSON)
        return Response(
            content,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(header_length)},
        )

    timer = metrics.endpoint("v2_infer")

    @instrumented(timer)
    async def infer(request: Request, name: str) -> Response:
        return await infer_on(request, name, None)

    @instrumented(timer)
    async def infer_version(request: Request, name: str, version: str) -> Response:
        return await infer_on(request, name, version)

    def doc(model: type[schemas._Doc], *errors: int) -> dict[int | str, dict[str, Any]]:
        return {200: {"model": model}, **schemas.error_responses(*errors)}

    model = "/models/{name}"
    versioned = "/models/{name}/versions/{version}"
    infer_doc = doc(schemas.V2InferenceResponse, 400, 404, 413, 415, 422, 500, 503)
    infer_doc[200] = {
        "model": schemas.V2InferenceResponse,
        "description": "Outputs as JSON, or (binary tensor extension) a JSON header of "
        "Inference-Header-Content-Length bytes followed by the raw tensors.",
        "content": {"application/octet-stream": {}},
    }
    routes: list[tuple[str, str, Any, dict[int | str, dict[str, Any]], str]] = [
        ("GET", "", server_metadata, doc(schemas.V2ServerMetadata), "Server metadata"),
        ("GET", "/health/live", live, doc(schemas.V2Live), "Server liveness"),
        ("GET", "/health/ready", server_ready, doc(schemas.V2Ready, 503), "Server readiness"),
        ("GET", model, metadata, doc(schemas.V2ModelMetadata, 404, 503), "Model metadata"),
        (
            "GET",
            versioned,
            metadata_version,
            doc(schemas.V2ModelMetadata, 404, 503),
            "Model version metadata",
        ),
        ("GET", f"{model}/ready", model_ready, doc(schemas.V2ModelReady, 404, 503), "Model ready"),
        (
            "GET",
            f"{versioned}/ready",
            model_ready_version,
            doc(schemas.V2ModelReady, 404, 503),
            "Model version ready",
        ),
        ("POST", f"{model}/infer", infer, infer_doc, "Inference"),
        ("POST", f"{versioned}/infer", infer_version, infer_doc, "Inference on a version"),
    ]
    for method, path, endpoint, responses, summary in routes:
        extra = request_body(schemas.V2InferenceRequest) if method == "POST" else None
        router.add_api_route(
            path,
            endpoint,
            methods=[method],
            responses=responses,
            summary=summary,
            operation_id=f"v2_{endpoint.__name__}",
            openapi_extra=extra,
        )
    return router

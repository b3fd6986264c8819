"""Pydantic models that document the HTTP API in OpenAPI (requests are decoded by msgspec)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modeldeploy_server.runtime import FEATURE_LIMIT

V2Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip

Feature = Annotated[float, Field(ge=-FEATURE_LIMIT, le=FEATURE_LIMIT)]


class _Doc(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


class ErrorBody(_Doc):
    """Every error: a readable message and a machine-readable reason (V2 clients read `error`)."""

    error: str
    reason: str


class HealthBody(_Doc):
    status: Literal["alive"]


class ReadyBody(_Doc):
    status: Literal["ready"]
    model_name: str
    model_version: str


class PredictRequest(_Doc):
    features: list[Feature] = Field(description="One row of numeric features.")
    class_probabilities: bool = Field(False, description="Also return the probability of every class (classifiers).")


class PredictResponse(_Doc):
    model_name: str
    model_version: str
    prediction: Any = Field(description="Class label, or value(s) for a regressor.")
    probability: float | None = Field(
        description="Probability of the predicted class; null for models without probabilities."
    )
    class_probabilities: dict[str, float] | None = Field(None, description="Per-class probabilities, when asked for.")


class BatchRequest(_Doc):
    instances: list[list[Feature]] = Field(description="Rows of numeric features.")
    class_probabilities: bool = False


class BatchResponse(_Doc):
    model_name: str
    model_version: str
    predictions: list[Any]
    probabilities: list[float] | None
    class_probabilities: list[dict[str, float]] | None = None


# -- Open Inference Protocol (KServe V2) ------------------------------------------------------


class V2Live(_Doc):
    live: bool


class V2Ready(_Doc):
    ready: bool


class V2ServerMetadata(_Doc):
    name: str
    version: str
    extensions: list[str]


class V2ModelReady(_Doc):
    name: str
    ready: bool


class V2TensorMetadata(_Doc):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(_Doc):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]
    parameters: dict[str, Any] | None = None


class V2RequestInput(_Doc):
    name: str
    shape: list[Annotated[int, Field(ge=0)]] = Field(
        min_length=1, max_length=2, description="[rows, features], or [features] for one row."
    )
    datatype: V2Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any] = Field(description="Row-major values, flat or nested.")


class V2RequestOutput(_Doc):
    name: str
    parameters: dict[str, Any] | None = None


class V2InferenceRequest(_Doc):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2RequestInput] = Field(
        min_length=1, max_length=1, description="The one input tensor of a tabular model."
    )
    outputs: list[V2RequestOutput] | None = Field(
        default=None, description="Outputs wanted by name (predict, predict_proba); default all."
    )


class V2ResponseOutput(_Doc):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class V2InferenceResponse(_Doc):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[V2ResponseOutput]


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error codes a route may answer."""
    descriptions = {
        400: "Invalid input (malformed JSON, wrong types, wrong feature count, ...).",
        404: "Unknown model or version.",
        413: "Body or batch over the size limit.",
        415: "Unsupported content encoding.",
        422: "The model could not predict on this input.",
        500: "The model failed unexpectedly.",
        503: "Model not loaded (still loading, or failed: see `reason`), or overloaded.",
    }
    return {code: {"model": ErrorBody, "description": descriptions[code]} for code in codes}

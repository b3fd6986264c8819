"""Typed settings of one server process, read from MODELDEPLOY_* env vars and validated at start-up."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from modeldeploy_api import constants
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ModelFormat = Literal["auto", "sklearn", "skops", "onnx"]
LogFormat = Literal["text", "json"]
Correction = Literal["bh", "bonferroni"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ServerSettings(BaseSettings):
    """Everything the server needs to know; the env var of field `x` is `MODELDEPLOY_X`."""

    model_config = SettingsConfigDict(
        env_prefix=constants.ENV_PREFIX,
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
        # `model_name` etc. are ours, not pydantic's protected namespace.
        protected_namespaces=(),
    )

    # What to serve.
    model_name: str = Field(default="model", min_length=1, max_length=253, pattern=r"^[A-Za-z0-9._-]+$")
    model_version: str = Field(default="1", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._+-]+$")
    model_uri: str | None = Field(
        default=None, description="file:// URI, plain path or http(s):// URL of the model file."
    )
    model_sha256: str | None = Field(
        default=None, description="Hex sha256 of the model file, checked before it is deserialized."
    )
    model_format: ModelFormat = Field(
        default="auto", description="sklearn (joblib pickle), skops, onnx; auto guesses from the suffix."
    )
    allow_unverified: bool = Field(
        default=False, description="Load a pickle whose sha256 is not pinned (unsafe; local use only)."
    )
    skops_trusted_types: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra fully-qualified type names a skops file may hold (comma separated).",
    )

    # How to serve it.
    host: str = "0.0.0.0"
    port: int = Field(default=constants.DEFAULT_PORT, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes (the pod's CPU limit).")
    cache_dir: str = Field(
        default=constants.MODEL_CACHE_DIR,
        description="Where downloaded models are kept; a temp dir when not writable.",
    )
    download_timeout_s: float = Field(default=60.0, gt=0)
    worker_state_dir: str | None = Field(
        default=None,
        description="Set by `serve` for several workers: where each marks itself loaded.",
    )

    # Micro-batching of single-row requests.
    max_batch_size: int = Field(default=64, ge=1, le=100_000)
    max_latency_ms: float = Field(default=2.0, ge=0, le=10_000, description="Longest a row waits for batch-mates.")
    max_queue_size: int = Field(default=4096, ge=1, description="Rows waiting for a batch before new ones get 503.")

    # Request limits.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_instances: int = Field(default=10_000, ge=1, description="Rows in one batch/V2 request.")

    # Where models may come from besides paths and http(s) (see sources.py and stores.py).
    s3_endpoint: str | None = Field(default=None, description="S3-compatible endpoint URL; default: AWS.")
    s3_region: str | None = Field(default=None, description="S3 region; default: the SDK's (AWS_REGION...).")
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    s3_ca_bundle: str | None = Field(default=None, description="PEM file of CAs for the S3 endpoint's TLS.")
    gcs_endpoint: str | None = Field(default=None, description="GCS endpoint URL (an emulator); default: Google's.")
    gcs_credentials: str | None = Field(
        default=None,
        description="Service account JSON key file, or `anon`; default: Application Default Credentials.",
    )
    pvc_root: str = Field(default=constants.PVC_ROOT, description="Where pvc://CLAIM/PATH is mounted: ROOT/CLAIM.")

    # Credentials on the prediction endpoints (see auth.py).
    auth_dir: str | None = Field(
        default=None, description="Directory of accepted keys (a mounted Secret); unset: no authentication."
    )
    auth_reload_seconds: float = Field(
        default=5.0, gt=0, le=300, description="How often the key files are checked for changes."
    )

    # Observability.
    log_format: LogFormat = "text"
    log_level: str = "INFO"
    access_log: bool = False
    pod_name: str | None = Field(default=None, description="The pod's name (named in drift alerts).")

    # Drift monitoring (off unless a reference profile is given).
    drift_reference_uri: str | None = Field(
        default=None, description="Reference profile (`modeldeploy profile` output): path, file:// or http(s)://."
    )
    drift_reference_sha256: str | None = Field(default=None, description="Hex sha256 of the profile file.")
    drift_window_size: int = Field(default=1000, ge=10, le=1_000_000, description="Rows in this replica's window.")
    drift_interval_seconds: float = Field(default=30.0, gt=0, le=86_400, description="How often to judge the window.")
    drift_min_samples: int = Field(default=100, ge=1, description="Fewer rows in the window: Insufficient.")
    drift_alpha: float = Field(default=0.05, gt=0, lt=1)
    drift_correction: Correction = "bh"
    drift_webhook_url: SecretStr | None = Field(
        default=None, description="Slack-compatible webhook posted when this replica's verdict turns Drifted and back."
    )

    @field_validator("model_sha256", "drift_reference_sha256", mode="before")
    @classmethod
    def _normalise_digest(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower().removeprefix("sha256:")
            return value or None
        return value

    @field_validator("model_sha256", "drift_reference_sha256")
    @classmethod
    def _check_digest(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256.match(value):
            raise ValueError("must be 64 hex characters (a sha256 digest)")
        return value

    @field_validator("drift_webhook_url", mode="before")
    @classmethod
    def _empty_secret_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("model_uri", "drift_reference_uri", mode="before")
    @classmethod
    def _empty_uri_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("skops_trusted_types", mode="before")
    @classmethod
    def _split_types(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @model_validator(mode="after")
    def _batch_fits_requests(self) -> ServerSettings:
        if self.max_batch_size > self.max_queue_size:
            raise ValueError("max_batch_size must not exceed max_queue_size")
        return self

    def env(self) -> dict[str, str]:
        """These settings as MODELDEPLOY_* env vars (handed to worker processes)."""
        out: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            key = f"{constants.ENV_PREFIX}{name.upper()}"
            if isinstance(value, SecretStr):
                out[key] = value.get_secret_value()
            elif isinstance(value, list):
                out[key] = ",".join(value)
            elif isinstance(value, bool):
                out[key] = "true" if value else "false"
            else:
                out[key] = str(value)
        return out

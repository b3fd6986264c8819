"""Names the operator and the server agree on: API coordinates, labels and settings env vars."""

from typing import Final

GROUP: Final = "modeldeploy.dev"
VERSION: Final = "v1alpha1"
KIND: Final = "ModelDeployment"
PLURAL: Final = "modeldeployments"
SINGULAR: Final = "modeldeployment"
SHORT_NAMES: Final = ("md",)
CATEGORIES: Final = ("ml",)
API_VERSION: Final = f"{GROUP}/{VERSION}"

FIELD_MANAGER: Final = "modeldeploy-operator"

# Labels put on every child object.
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MD: Final = f"{GROUP}/modeldeployment"
LABEL_MODEL_VERSION: Final = f"{GROUP}/model-version"
LABEL_TRACK: Final = f"{GROUP}/track"  # stable | canary | preview
TRACK_STABLE: Final = "stable"
MANAGED_BY: Final = "modeldeploy"

# Settings of the server process: env var names (pydantic-settings, prefix MODELDEPLOY_).
ENV_PREFIX: Final = "MODELDEPLOY_"
ENV_MODEL_NAME: Final = "MODELDEPLOY_MODEL_NAME"
ENV_MODEL_VERSION: Final = "MODELDEPLOY_MODEL_VERSION"
ENV_MODEL_URI: Final = "MODELDEPLOY_MODEL_URI"
ENV_MODEL_SHA256: Final = "MODELDEPLOY_MODEL_SHA256"
ENV_MODEL_FORMAT: Final = "MODELDEPLOY_MODEL_FORMAT"
ENV_ALLOW_UNVERIFIED: Final = "MODELDEPLOY_ALLOW_UNVERIFIED"
ENV_HOST: Final = "MODELDEPLOY_HOST"
ENV_PORT: Final = "MODELDEPLOY_PORT"
ENV_WORKERS: Final = "MODELDEPLOY_WORKERS"
ENV_CACHE_DIR: Final = "MODELDEPLOY_CACHE_DIR"
ENV_MAX_BATCH_SIZE: Final = "MODELDEPLOY_MAX_BATCH_SIZE"
ENV_MAX_LATENCY_MS: Final = "MODELDEPLOY_MAX_LATENCY_MS"
ENV_LOG_FORMAT: Final = "MODELDEPLOY_LOG_FORMAT"
ENV_MAX_BODY_BYTES: Final = "MODELDEPLOY_MAX_BODY_BYTES"
ENV_MAX_INSTANCES: Final = "MODELDEPLOY_MAX_INSTANCES"
ENV_AUTH_DIR: Final = "MODELDEPLOY_AUTH_DIR"
ENV_S3_ENDPOINT: Final = "MODELDEPLOY_S3_ENDPOINT"
ENV_S3_REGION: Final = "MODELDEPLOY_S3_REGION"
ENV_S3_ADDRESSING_STYLE: Final = "MODELDEPLOY_S3_ADDRESSING_STYLE"
ENV_S3_CA_BUNDLE: Final = "MODELDEPLOY_S3_CA_BUNDLE"
ENV_GCS_ENDPOINT: Final = "MODELDEPLOY_GCS_ENDPOINT"
ENV_GCS_CREDENTIALS: Final = "MODELDEPLOY_GCS_CREDENTIALS"
ENV_PVC_ROOT: Final = "MODELDEPLOY_PVC_ROOT"
ENV_DRIFT_REFERENCE_URI: Final = "MODELDEPLOY_DRIFT_REFERENCE_URI"
ENV_DRIFT_REFERENCE_SHA256: Final = "MODELDEPLOY_DRIFT_REFERENCE_SHA256"
ENV_DRIFT_WINDOW_SIZE: Final = "MODELDEPLOY_DRIFT_WINDOW_SIZE"
ENV_DRIFT_INTERVAL_SECONDS: Final = "MODELDEPLOY_DRIFT_INTERVAL_SECONDS"
ENV_DRIFT_MIN_SAMPLES: Final = "MODELDEPLOY_DRIFT_MIN_SAMPLES"
ENV_DRIFT_ALPHA: Final = "MODELDEPLOY_DRIFT_ALPHA"
ENV_DRIFT_CORRECTION: Final = "MODELDEPLOY_DRIFT_CORRECTION"
ENV_DRIFT_WEBHOOK_URL: Final = "MODELDEPLOY_DRIFT_WEBHOOK_URL"
POD_NAME_ENV: Final = "MODELDEPLOY_POD_NAME"
# Standard names the object-store SDKs read (boto3), set from spec.storage secrets.
AWS_ACCESS_KEY_ID_ENV: Final = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY_ENV: Final = "AWS_SECRET_ACCESS_KEY"
AWS_SESSION_TOKEN_ENV: Final = "AWS_SESSION_TOKEN"
GCS_ANONYMOUS: Final = "anon"  # MODELDEPLOY_GCS_CREDENTIALS value: no credentials

# Server endpoints the operator reads.
DRIFT_STATE_PATH: Final = "/drift/state"
DRIFT_PROFILE_PATH: Final = "/drift/profile"

# Paths inside the server container.
MODEL_CACHE_DIR: Final = "/var/cache/modeldeploy"
TMP_DIR: Final = "/tmp"
AUTH_DIR: Final = "/var/run/secrets/modeldeploy/auth"  # the auth Secret, mounted read-only
S3_CA_DIR: Final = "/etc/modeldeploy/s3-ca"
GCS_CREDENTIALS_DIR: Final = "/var/run/secrets/modeldeploy/gcs"
PVC_ROOT: Final = "/mnt/modeldeploy/pvc"  # pvc://CLAIM/PATH is read at PVC_ROOT/CLAIM/PATH
SERVER_COMMAND: Final = ("modeldeploy", "serve")
DEFAULT_PORT: Final = 8080
DEFAULT_IMAGE: Final = "ghcr.io/modeldeploy/server:0.1.0"

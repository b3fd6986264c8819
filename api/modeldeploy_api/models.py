"""The ModelDeployment API, defined once: the CRD schema and the operator's parsing both come from here."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from . import constants as c

# Markers read by the CRD generator (crd.py) and turned into Kubernetes schema extensions.
INT_OR_STRING = {"x-kubernetes-int-or-string": True}
PRESERVE_UNKNOWN = {"x-kubernetes-preserve-unknown-fields": True}

Quantity = Annotated[int | str, Field(json_schema_extra=INT_OR_STRING)]
IntOrPercent = Annotated[int | str, Field(json_schema_extra=INT_OR_STRING)]
FreeObject = Annotated[dict[str, Any], Field(json_schema_extra=PRESERVE_UNKNOWN)]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"  # names of Secrets, ConfigMaps, claims
VERSION_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"  # also a label value: no "+"
# Where a model, a drift reference or a test set can be: a path, http(s), an object store (credentials in
# spec.storage) or a PersistentVolumeClaim.
S3_URI = r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+"
GS_URI = r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]/.+"
PVC_URI = r"pvc://[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/.+"
MODEL_URI_PATTERN = rf"^((file|https?)://.+|/.+|{S3_URI}|{GS_URI}|{PVC_URI})$"
SHA256_PATTERN = r"^[a-f0-9]{64}$"


def rules(*pairs: tuple[str, str]) -> dict[str, Any]:
    """CEL rules (rule, message) as a schema extension."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in pairs]}


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are the API server's business."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ModelSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "self.format != 'sklearn' || has(self.sha256) || self.allowUnverified",
                "model.sha256 is required for sklearn pickles (unpickling runs code); "
                "set model.allowUnverified: true only for models you built yourself",
            ),
        )
    )

    name: str = Field(
        min_length=1, max_length=63, pattern=DNS_LABEL, description="Model name, reported by the server."
    )
    version: str = Field(
        min_length=1,
        max_length=63,
        pattern=VERSION_PATTERN,
        description="Model version. Changing it rolls out the new version.",
    )
    uri: str = Field(
        min_length=1,
        max_length=2048,
        pattern=MODEL_URI_PATTERN,
        description="Where the model file is: file://, an absolute path, http(s)://, s3://bucket/key, "
        "gs://bucket/object or pvc://claim/path (the claim is mounted read-only). Credentials and endpoints "
        "of object stores are in spec.storage.",
    )
    format: Literal["sklearn", "skops", "onnx"] = Field(
        default="sklearn", description="Serialization format of the model file."
    )
    sha256: str | None = Field(
        default=None,
        pattern=SHA256_PATTERN,
        description="Hex SHA-256 of the model file, checked before the model is loaded.",
    )
    allow_unverified: bool = Field(
        default=False, description="Load a pickle without a digest. Never use for models you did not build."
    )


RESOURCES_DEFAULT: dict[str, Any] = {
    "requests": {"cpu": "500m", "memory": "512Mi"},
    "limits": {"cpu": "1", "memory": "1Gi"},
}


class ResourcesSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.limits) && 'memory' in self.limits",
                "resources.limits.memory is required: a model server without a memory limit "
                "can be OOM-killed together with its neighbours",
            ),
            *(
                (
                    f"!has(self.limits) || !has(self.requests) || !('{r}' in self.requests) "
                    f"|| !('{r}' in self.limits) || quantity(string(self.requests['{r}']))"
                    f".compareTo(quantity(string(self.limits['{r}']))) <= 0",
                    f"resources.requests.{r} must not exceed resources.limits.{r}",
                )
                for r in ("cpu", "memory")
            ),
        )
    )

    requests: dict[str, Quantity] | None = Field(default=None, description="Resource requests.")
    limits: dict[str, Quantity] | None = Field(default=None, description="Resource limits.")


class BatchingSpec(ApiModel):
    max_batch_size: int = Field(
        default=64, ge=1, le=4096, description="Most single-row requests coalesced into one predict call."
    )
    max_latency_ms: float = Field(
        default=2.0, ge=0, le=1000, description="Longest a request waits for batch-mates (milliseconds)."
    )


class EnvVar(ApiModel):
    name: str = Field(min_length=1)
    value: str | None = None
    value_from: FreeObject | None = None


class LimitsSpec(ApiModel):
    """What one request may ask of a server; larger requests are refused (413/400) before any work."""

    max_body_bytes: int | None = Field(
        default=None, ge=1024, le=1 << 30,
        description="Largest request body in bytes, after decompression (server default: 8 MiB).",
    )
    max_instances: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="Most rows in one /predict/batch or V2 request (server default: 10000).",
    )


class ServerSpec(ApiModel):
    image: str = Field(default=c.DEFAULT_IMAGE, min_length=1, description="The generic inference server image.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    port: int = Field(default=c.DEFAULT_PORT, ge=1024, le=65535, description="Container port (non-root: >= 1024).")
    workers: int | None = Field(
        default=None, ge=1, le=64, description="Server worker processes; default: from the CPU limit."
    )
    batching: BatchingSpec = Field(
        default_factory=BatchingSpec, json_schema_extra={"default": {}}, description="Adaptive micro-batching."
    )
    limits: LimitsSpec = Field(
        default_factory=LimitsSpec, json_schema_extra={"default": {}}, description="Request size limits."
    )
    env: list[EnvVar] = Field(default_factory=list, description="Extra environment variables.")


class Toleration(ApiModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class LocalObjectReference(ApiModel):
    name: str = Field(min_length=1)


class PodSpec(ApiModel):
    """Pod-level options a platform team needs; applied to every server pod."""

    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    affinity: FreeObject | None = None
    service_account_name: str | None = Field(default=None, pattern=DNS_LABEL, max_length=253)
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    priority_class_name: str | None = None


class RollingUpdateSpec(ApiModel):
    max_surge: IntOrPercent = Field(default=1, description="Extra pods during a rollout.")
    max_unavailable: IntOrPercent = Field(default=0, description="Pods that may be missing during a rollout.")


DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"


class CanaryStep(ApiModel):
    weight: int = Field(ge=1, le=100, description="Percent of traffic the new version gets in this step.")
    pause: str | None = Field(
        default=None, pattern=DURATION_PATTERN, max_length=32,
        description="How long the step lasts once the canary is ready (e.g. 30s, 5m, 1h30m); analysis runs "
        "meanwhile. Omitted: wait for the annotation modeldeploy.dev/promote=true.",
    )


class AnalysisSpec(ApiModel):
    """Checks run on the new version at every step, from the servers' own metrics."""

    interval: str = Field(default="15s", pattern=DURATION_PATTERN, max_length=32, description="Time between checks.")
    failure_limit: int = Field(default=0, ge=0, le=100, description="Failed checks tolerated before rolling back.")
    min_requests: int = Field(default=20, ge=0, description="Fewer requests than this make a check inconclusive.")
    max_error_rate: float | None = Field(default=0.05, ge=0, le=1, description="Highest share of failed requests.")
    max_p99_latency_ms: float | None = Field(default=None, gt=0, description="Highest p99 request latency.")
    max_prediction_shift: float | None = Field(
        default=None, ge=0, le=1,
        description="Highest Jensen-Shannon distance between the new and the stable version's predictions.",
    )
    fail_on_drift: bool = Field(default=False, description="Fail a check while the new version reports drift.")


class CanarySpec(ApiModel):
    steps: list[CanaryStep] = Field(min_length=1, max_length=20, description="Traffic steps; 100% follows the last.")
    max_surge: IntOrPercent = Field(
        default="25%", description="Extra pods the canary may add on top of spec.replicas (capacity never doubles)."
    )
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec, json_schema_extra={"default": {}})


class BlueGreenSpec(ApiModel):
    auto_promote: bool = Field(default=True, description="Switch traffic once the preview is ready (and validated).")
    auto_promotion_seconds: int = Field(default=0, ge=0, description="Wait this long with a ready preview first.")
    scale_down_delay_seconds: int = Field(
        default=30, ge=0, description="Keep the old version scaled this long after the switch, for instant rollback."
    )


class StrategySpec(ApiModel):
    """How a new model version is rolled out. At most one strategy may be configured (default: rollingUpdate)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "[has(self.rollingUpdate), has(self.canary), has(self.blueGreen)].filter(x, x).size() <= 1",
                "configure exactly one of strategy.rollingUpdate, strategy.canary, strategy.blueGreen",
            ),
        )
    )

    rolling_update: RollingUpdateSpec | None = Field(
        default=None, description="Replace pods in place (the default)."
    )
    canary: CanarySpec | None = Field(default=None, description="Shift traffic in steps, judged by analysis.")
    blue_green: BlueGreenSpec | None = Field(default=None, description="Start beside the old version, then switch.")


class GatewayRef(ApiModel):
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = Field(default=None, max_length=63)
    section_name: str | None = Field(default=None, max_length=253)


class TrafficSpec(ApiModel):
    gateway: GatewayRef | None = Field(
        default=None, description="Split traffic with a Gateway API HTTPRoute attached to this Gateway."
    )
    hostnames: list[str] = Field(default_factory=list, max_length=16)


class ReferenceSpec(ApiModel):
    uri: str = Field(min_length=1, max_length=2048, pattern=MODEL_URI_PATTERN,
                     description="Reference profile (`modeldeploy profile` output): any location a model can "
                     "have (file://, a path, http(s)://, s3://, gs://, pvc://; spec.storage applies).")
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)


class SecretKeyRef(ApiModel):
    name: str = Field(min_length=1, max_length=253, pattern=DNS_LABEL)
    key: str = Field(min_length=1, max_length=253)


class ObjectName(ApiModel):
    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)


class KeySelector(ApiModel):
    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class CaBundleRef(ApiModel):
    """A PEM bundle of CA certificates, from one key of a ConfigMap or of a Secret."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "has(self.configMapKeyRef) != has(self.secretKeyRef)",
                "caBundleRef needs exactly one of configMapKeyRef, secretKeyRef",
            ),
        )
    )

    config_map_key_ref: KeySelector | None = None
    secret_key_ref: KeySelector | None = None


class S3CredentialsRef(ApiModel):
    """A Secret holding an access key pair; its keys become AWS_ACCESS_KEY_ID etc. in the server pod."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    access_key_id_key: str = Field(default="AWS_ACCESS_KEY_ID", min_length=1, max_length=253)
    secret_access_key_key: str = Field(default="AWS_SECRET_ACCESS_KEY", min_length=1, max_length=253)
    session_token_key: str | None = Field(
        default=None, min_length=1, max_length=253, description="Key of a session token, for temporary credentials."
    )


class S3StorageSpec(ApiModel):
    endpoint: str | None = Field(
        default=None, pattern=r"^https?://[^/]+/?$", max_length=253,
        description="S3-compatible endpoint (MinIO, Ceph...), e.g. https://minio.storage:9000; default: AWS.",
    )
    region: str | None = Field(default=None, min_length=1, max_length=63, pattern=r"^[a-z0-9-]+$")
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="path for most self-hosted stores (bucket in the path, not the host name)."
    )
    credentials_secret_ref: S3CredentialsRef | None = Field(
        default=None,
        description="Static credentials. Omitted: the SDK's default chain (e.g. IRSA / pod identity).",
    )
    ca_bundle_ref: CaBundleRef | None = Field(
        default=None, description="CA certificates the endpoint's TLS certificate is checked against (mounted)."
    )


class GCSStorageSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(
            (
                "!(has(self.credentialsSecretRef) && self.anonymous)",
                "gcs: anonymous and credentialsSecretRef exclude each other",
            ),
        )
    )

    endpoint: str | None = Field(
        default=None, pattern=r"^https?://[^/]+/?$", max_length=253,
        description="Storage API endpoint (an emulator or a private endpoint); default: Google's.",
    )
    credentials_secret_ref: KeySelector | None = Field(
        default=None,
        description="Secret key holding a service account JSON key (mounted read-only). "
        "Omitted: Application Default Credentials (e.g. Workload Identity).",
    )
    anonymous: bool = Field(default=False, description="Read a public bucket without credentials.")


class StorageSpec(ApiModel):
    """How the servers reach the object store named by model.uri (the same for every version)."""

    s3: S3StorageSpec | None = Field(default=None, description="For s3:// URIs.")
    gcs: GCSStorageSpec | None = Field(default=None, description="For gs:// URIs.")


class AuthSpec(ApiModel):
    """Credentials required on the prediction endpoints; health, readiness and /metrics stay open."""

    secret_ref: ObjectName = Field(
        description="Secret whose every key holds accepted credentials, one per line: sent as "
        "`Authorization: Bearer <key>` or `X-API-Key: <key>`. Several keys coexist, for rotation; the Secret "
        "is mounted (not put in env), so edits apply without a restart."
    )


class DriftAlertSpec(ApiModel):
    webhook_secret_ref: SecretKeyRef = Field(
        description="Secret key holding a Slack-compatible webhook URL; the servers post when drift starts or ends."
    )


class DriftSpec(ApiModel):
    reference: ReferenceSpec
    window_size: int = Field(default=1000, ge=10, le=1_000_000, description="Rows in the sliding window judged.")
    interval: str = Field(default="30s", pattern=DURATION_PATTERN, max_length=32, description="How often to judge.")
    min_samples: int = Field(default=100, ge=1, description="Fewer rows in the window: Insufficient.")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="Family-wise (Bonferroni) or false-discovery (BH) rate.")
    correction: Literal["bh", "bonferroni"] = "bh"
    alert: DriftAlertSpec | None = None


class MonitoringSpec(ApiModel):
    drift: DriftSpec | None = Field(default=None, description="Watch live inputs and predictions for drift.")


class ValidationSpec(ApiModel):
    """A test set the new version must score on before it gets any traffic (run as a Job)."""

    data_uri: str = Field(min_length=1, max_length=2048, pattern=MODEL_URI_PATTERN,
                          description="Labelled test set (CSV with a header row): any location a model can have "
                          "(spec.storage applies).")
    data_sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)
    target: str = Field(min_length=1, max_length=253, description="Name of the label column.")
    metric: Literal["accuracy", "f1", "roc_auc", "rmse", "mae"]
    threshold: float = Field(description="Lowest acceptable accuracy/f1/roc_auc, highest acceptable rmse/mae.")
    timeout_seconds: int = Field(default=600, ge=10, le=86400)


class ModelDeploymentSpec(ApiModel):
    model: ModelSpec
    replicas: int = Field(default=1, ge=0, le=1000, description="Desired server pods.")
    resources: ResourcesSpec = Field(
        default_factory=lambda: ResourcesSpec.model_validate(RESOURCES_DEFAULT),
        json_schema_extra={"default": RESOURCES_DEFAULT},
        description="Server container resources; defaults apply when omitted.",
    )
    server: ServerSpec = Field(default_factory=ServerSpec, json_schema_extra={"default": {}})
    storage: StorageSpec | None = Field(
        default=None, description="Endpoints and credentials of the object store holding the model (s3://, gs://)."
    )
    auth: AuthSpec | None = Field(default=None, description="Require an API key or bearer token to predict.")
    pod: PodSpec = Field(default_factory=PodSpec, json_schema_extra={"default": {}})
    strategy: StrategySpec = Field(default_factory=StrategySpec, json_schema_extra={"default": {}})
    traffic: TrafficSpec = Field(default_factory=TrafficSpec, json_schema_extra={"default": {}})
    validation: ValidationSpec | None = Field(default=None, description="Gate a new version on a test-set score.")
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec, json_schema_extra={"default": {}})


# ---- status ----------------------------------------------------------------------------------

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    type: str
    status: ConditionStatus
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


class DriftStatus(ApiModel):
    status: Literal["NoDrift", "Drifted", "Insufficient", "Unknown"] = "Unknown"
    message: str | None = None
    details: FreeObject | None = None


class ModelRef(ApiModel):
    version: str
    uri: str
    format: str | None = None
    sha256: str | None = None
    allow_unverified: bool | None = None


class HistoryEntry(ModelRef):
    at: str | None = None
    outcome: str | None = Field(default=None, description="Deployed, Promoted, Superseded, RolledBack, Aborted...")


class ValidationRecord(ApiModel):
    version: str
    sha256: str | None = None
    metric: str | None = None
    threshold: float | None = None
    score: float | None = None
    passed: bool | None = None
    message: str | None = None
    at: str | None = None


class RolloutStatus(ApiModel):
    strategy: Literal["RollingUpdate", "Canary", "BlueGreen"] | None = None
    phase: Literal["Progressing", "Paused", "Promoting", "Succeeded", "Degraded", "Aborted"] | None = None
    stable: ModelRef | None = Field(default=None, description="The version the stable Deployment runs.")
    new: ModelRef | None = Field(default=None, description="The version being rolled out.")
    step: int | None = Field(default=None, description="Index of the current canary step.")
    started_at: str | None = None
    step_started_at: str | None = None
    last_check_at: str | None = None
    preview_ready_at: str | None = None
    switched_at: str | None = None
    promoted_at: str | None = None
    checks: int | None = None
    failures: int | None = None
    passed_checks: int | None = None
    baseline: FreeObject | None = Field(default=None, description="Counters at the start of the step.")
    last_analysis: FreeObject | None = None
    weights: dict[str, int] | None = None
    traffic: str | None = Field(default=None, description="version=percent pairs, e.g. 1.4.0=90,1.5.0=10.")
    traffic_precision: str | None = None
    message: str | None = None
    reason: str | None = Field(default=None, description="Why the rollout stopped (Degraded/Aborted).")


class ModelDeploymentStatus(ApiModel):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    current_version: str | None = Field(default=None, description="Version serving all replicas.")
    previous_version: str | None = Field(default=None, description="Version served before the current one.")
    desired_version: str | None = Field(default=None, description="Version the spec asks for.")
    replicas: int | None = None
    ready_replicas: int | None = None
    updated_replicas: int | None = None
    available_replicas: int | None = None
    selector: str | None = Field(default=None, description="Label selector of the server pods (scale subresource).")
    url: str | None = Field(default=None, description="In-cluster URL of the prediction service.")
    drift: DriftStatus | None = None
    rollout: RolloutStatus | None = None
    validations: list[ValidationRecord] = Field(default_factory=list, max_length=20,
                                                description="Validation results by model digest, newest first.")
    history: list[HistoryEntry] = Field(default_factory=list, max_length=20,
                                        description="Last versions rolled out, newest first.")

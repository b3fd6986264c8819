"""Pure builders: a ModelDeployment in, the desired child objects out. No I/O, no cluster."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from modeldeploy_api import constants as c
from modeldeploy_api.models import ModelDeploymentSpec

from .durations import parse_duration
from .quantity import parse_quantity

if TYPE_CHECKING:
    from .rollout import Plan

Body = dict[str, Any]

SERVICE_PORT = 80
CONTAINER_NAME = "server"
SERVER_UID = 10001
PROGRESS_DEADLINE_SECONDS = 600
CA_BUNDLE_FILE = "ca.crt"
GCS_KEY_FILE = "key.json"
MAX_AUTO_WORKERS = 8
PRESTOP_SECONDS = 5


def parse_spec(md: Body) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(md.get("spec") or {})


def selector_labels(name: str) -> dict[str, str]:
    """Every server pod of the ModelDeployment, whatever its track (what the Service selects)."""
    return {c.LABEL_MD: name}


def track_labels(name: str, track: str = c.TRACK_STABLE) -> dict[str, str]:
    """The pods of one track: a Deployment's (immutable) selector. Tracks never overlap."""
    return {c.LABEL_MD: name, c.LABEL_TRACK: track}


def selector_string(name: str, track: str = c.TRACK_STABLE) -> str:
    return ",".join(f"{k}={v}" for k, v in track_labels(name, track).items())


def deployment_name(name: str, track: str = c.TRACK_STABLE) -> str:
    return name if track == c.TRACK_STABLE else f"{name}-{track}"


def common_labels(name: str) -> dict[str, str]:
    return {
        c.LABEL_NAME: "modeldeploy-server",
        c.LABEL_INSTANCE: name,
        c.LABEL_COMPONENT: "inference-server",
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        **selector_labels(name),
    }


def owner_reference(md: Body) -> Body:
    meta = md["metadata"]
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def service_url(name: str, namespace: str) -> str:
    return f"http://{name}.{namespace}.svc.cluster.local"


def auto_workers(spec: ModelDeploymentSpec) -> int:
    """Workers follow the CPU the pod may use: the limit, else the request, else one."""
    if spec.server.workers:
        return spec.server.workers
    res = spec.resources
    cpu = (res.limits or {}).get("cpu") or (res.requests or {}).get("cpu")
    if cpu is None:
        return 1
    return max(1, min(MAX_AUTO_WORKERS, math.ceil(parse_quantity(cpu))))


def _resources(spec: ModelDeploymentSpec) -> Body:
    out: Body = {}
    for key in ("requests", "limits"):
        values = getattr(spec.resources, key)
        if values:
            out[key] = {k: str(v) for k, v in values.items()}
    return out


def _env(spec: ModelDeploymentSpec) -> list[Body]:
    model = spec.model
    env: list[Body] = [
        {"name": c.ENV_MODEL_NAME, "value": model.name},
        {"name": c.ENV_MODEL_VERSION, "value": model.version},
        {"name": c.ENV_MODEL_URI, "value": model.uri},
        {"name": c.ENV_MODEL_FORMAT, "value": model.format},
    ]
    if model.sha256:
        env.append({"name": c.ENV_MODEL_SHA256, "value": model.sha256})
    if model.allow_unverified:
        env.append({"name": c.ENV_ALLOW_UNVERIFIED, "value": "true"})
    env += [
        {"name": c.ENV_PORT, "value": str(spec.server.port)},
        {"name": c.ENV_WORKERS, "value": str(auto_workers(spec))},
        {"name": c.ENV_CACHE_DIR, "value": c.MODEL_CACHE_DIR},
        {"name": c.ENV_MAX_BATCH_SIZE, "value": str(spec.server.batching.max_batch_size)},
        {"name": c.ENV_MAX_LATENCY_MS, "value": str(spec.server.batching.max_latency_ms)},
        {"name": c.ENV_LOG_FORMAT, "value": "json"},
    ]
    limits = spec.server.limits
    if limits.max_body_bytes is not None:
        env.append({"name": c.ENV_MAX_BODY_BYTES, "value": str(limits.max_body_bytes)})
    if limits.max_instances is not None:
        env.append({"name": c.ENV_MAX_INSTANCES, "value": str(limits.max_instances)})
    env += _storage_env(spec)
    if spec.auth is not None:
        env.append({"name": c.ENV_AUTH_DIR, "value": c.AUTH_DIR})
    env.append({"name": c.POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    drift = spec.monitoring.drift
    if drift is not None:
        env += [
            {"name": c.ENV_DRIFT_REFERENCE_URI, "value": drift.reference.uri},
            {"name": c.ENV_DRIFT_WINDOW_SIZE, "value": str(drift.window_size)},
            {"name": c.ENV_DRIFT_INTERVAL_SECONDS, "value": str(parse_duration(drift.interval))},
            {"name": c.ENV_DRIFT_MIN_SAMPLES, "value": str(drift.min_samples)},
            {"name": c.ENV_DRIFT_ALPHA, "value": str(drift.alpha)},
            {"name": c.ENV_DRIFT_CORRECTION, "value": drift.correction},
        ]
        if drift.reference.sha256:
            env.append({"name": c.ENV_DRIFT_REFERENCE_SHA256, "value": drift.reference.sha256})
        if drift.alert is not None:
            ref = drift.alert.webhook_secret_ref
            env.append({"name": c.ENV_DRIFT_WEBHOOK_URL,
                        "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    ours = {e["name"] for e in env}
    for extra in spec.server.env:
        if extra.name in ours:  # the operator's settings win; a user cannot point the pod at another model
            continue
        item: Body = {"name": extra.name}
        if extra.value is not None:
            item["value"] = extra.value
        if extra.value_from is not None:
            item["valueFrom"] = extra.value_from
        env.append(item)
    return env


def _storage_env(spec: ModelDeploymentSpec) -> list[Body]:
    """Where the object store is and how to authenticate to it; secrets only by reference."""
    env: list[Body] = []
    store = spec.storage
    s3 = store.s3 if store else None
    if s3 is not None:
        for name, value in ((c.ENV_S3_ENDPOINT, s3.endpoint), (c.ENV_S3_REGION, s3.region)):
            if value:
                env.append({"name": name, "value": value})
        env.append({"name": c.ENV_S3_ADDRESSING_STYLE, "value": s3.addressing_style})
        creds = s3.credentials_secret_ref
        if creds is not None:
            keys = [(c.AWS_ACCESS_KEY_ID_ENV, creds.access_key_id_key),
                    (c.AWS_SECRET_ACCESS_KEY_ENV, creds.secret_access_key_key)]
            if creds.session_token_key:
                keys.append((c.AWS_SESSION_TOKEN_ENV, creds.session_token_key))
            env += [{"name": n, "valueFrom": {"secretKeyRef": {"name": creds.name, "key": k}}} for n, k in keys]
        if s3.ca_bundle_ref is not None:
            env.append({"name": c.ENV_S3_CA_BUNDLE, "value": f"{c.S3_CA_DIR}/{CA_BUNDLE_FILE}"})
    gcs = store.gcs if store else None
    if gcs is not None:
        if gcs.endpoint:
            env.append({"name": c.ENV_GCS_ENDPOINT, "value": gcs.endpoint})
        if gcs.credentials_secret_ref is not None:
            env.append({"name": c.ENV_GCS_CREDENTIALS, "value": f"{c.GCS_CREDENTIALS_DIR}/{GCS_KEY_FILE}"})
        elif gcs.anonymous:
            env.append({"name": c.ENV_GCS_CREDENTIALS, "value": c.GCS_ANONYMOUS})
    return env


def pvc_claim(uri: str) -> str | None:
    """The claim named by a pvc://CLAIM/PATH URI (the model's or the drift reference's)."""
    if not uri.startswith("pvc://"):
        return None
    return uri.removeprefix("pvc://").split("/", 1)[0]


def add_claims(volumes: list[Body], mounts: list[Body], *named_uris: tuple[str, str | None]) -> None:
    """Mount the claim of each pvc:// URI read-only at PVC_ROOT/CLAIM, under the given volume name, once per claim."""
    mounted = {m["mountPath"] for m in mounts}
    for name, uri in named_uris:
        claim = pvc_claim(uri) if uri else None
        if claim is None or f"{c.PVC_ROOT}/{claim}" in mounted:
            continue
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": name, "mountPath": f"{c.PVC_ROOT}/{claim}", "readOnly": True})
        mounted.add(f"{c.PVC_ROOT}/{claim}")


def _extra_volumes(spec: ModelDeploymentSpec) -> tuple[list[Body], list[Body]]:
    """(volumes, mounts) for the model's and the reference's claims, the store's CA bundle and key file, the auth keys.

    All read-only. Secrets are mounted rather than put in env so that an edited Secret reaches the
    running server (the kubelet updates the files; the server re-reads them).
    """
    volumes: list[Body] = []
    mounts: list[Body] = []
    drift = spec.monitoring.drift
    add_claims(volumes, mounts, ("model-pvc", spec.model.uri),
               ("reference-pvc", drift.reference.uri if drift is not None else None))
    s3 = spec.storage.s3 if spec.storage else None
    if s3 is not None and s3.ca_bundle_ref is not None:
        ref = s3.ca_bundle_ref
        if ref.config_map_key_ref is not None:
            sel = ref.config_map_key_ref
            source: Body = {"configMap": {"name": sel.name, "items": [{"key": sel.key, "path": CA_BUNDLE_FILE}]}}
        else:
            assert ref.secret_key_ref is not None  # CEL: exactly one
            sel = ref.secret_key_ref
            source = {"secret": {"secretName": sel.name, "items": [{"key": sel.key, "path": CA_BUNDLE_FILE}]}}
        volumes.append({"name": "s3-ca", **source})
        mounts.append({"name": "s3-ca", "mountPath": c.S3_CA_DIR, "readOnly": True})
    gcs = spec.storage.gcs if spec.storage else None
    if gcs is not None and gcs.credentials_secret_ref is not None:
        sel = gcs.credentials_secret_ref
        volumes.append({"name": "gcs-credentials", "secret": {
            "secretName": sel.name, "items": [{"key": sel.key, "path": GCS_KEY_FILE}], "defaultMode": 0o440}})
        mounts.append({"name": "gcs-credentials", "mountPath": c.GCS_CREDENTIALS_DIR, "readOnly": True})
    if spec.auth is not None:
        # The whole Secret (no items): a key added for rotation appears without a new pod.
        volumes.append({"name": "auth", "secret": {"secretName": spec.auth.secret_ref.name, "defaultMode": 0o440}})
        mounts.append({"name": "auth", "mountPath": c.AUTH_DIR, "readOnly": True})
    return volumes, mounts


def store_access(spec: ModelDeploymentSpec) -> tuple[list[Body], list[Body], list[Body]]:
    """(env, volumes, mounts) that let any pod of this model read it from its store (no auth keys)."""
    volumes, mounts = _extra_volumes(spec)
    keep = [i for i, v in enumerate(volumes) if v["name"] != "auth"]
    return _storage_env(spec), [volumes[i] for i in keep], [mounts[i] for i in keep]


def _probe(path: str, period: int, failures: int, timeout: int = 2) -> Body:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


CONTAINER_SECURITY_CONTEXT: Body = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": SERVER_UID,
    "runAsGroup": SERVER_UID,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

POD_SECURITY_CONTEXT: Body = {
    "runAsNonRoot": True,
    "runAsUser": SERVER_UID,
    "runAsGroup": SERVER_UID,
    "fsGroup": SERVER_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def build_pod_template(md: Body, spec: ModelDeploymentSpec, track: str = c.TRACK_STABLE) -> Body:
    name = md["metadata"]["name"]
    extra_volumes, extra_mounts = _extra_volumes(spec)
    container: Body = {
        "name": CONTAINER_NAME,
        "image": spec.server.image,
        "imagePullPolicy": spec.server.image_pull_policy,
        "command": list(c.SERVER_COMMAND),
        "ports": [{"name": "http", "containerPort": spec.server.port, "protocol": "TCP"}],
        "env": _env(spec),
        "resources": _resources(spec),
        # Startup covers the model download and load; liveness only starts after it.
        "startupProbe": _probe("/health", period=2, failures=150),
        "livenessProbe": _probe("/health", period=10, failures=3),
        "readinessProbe": _probe("/ready", period=2, failures=3),
        # Keep answering while the endpoint is taken out of the Services: no refused requests in a rollout.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_SECONDS}}},
        "securityContext": CONTAINER_SECURITY_CONTEXT,
        "volumeMounts": [
            {"name": "model-cache", "mountPath": c.MODEL_CACHE_DIR},
            {"name": "tmp", "mountPath": c.TMP_DIR},
            *extra_mounts,
        ],
    }
    pod_spec: Body = {
        "automountServiceAccountToken": False,  # the server never talks to the API server
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": POD_SECURITY_CONTEXT,
        "containers": [container],
        "volumes": [
            {"name": "model-cache", "emptyDir": {"sizeLimit": "4Gi"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            *extra_volumes,
        ],
    }
    pod = spec.pod
    if pod.service_account_name:
        pod_spec["serviceAccountName"] = pod.service_account_name
    if pod.node_selector:
        pod_spec["nodeSelector"] = dict(pod.node_selector)
    if pod.tolerations:
        pod_spec["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in pod.tolerations]
    if pod.affinity:
        pod_spec["affinity"] = pod.affinity
    if pod.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s.name} for s in pod.image_pull_secrets]
    if pod.priority_class_name:
        pod_spec["priorityClassName"] = pod.priority_class_name
    labels = {**pod.labels, **common_labels(name), **track_labels(name, track),
              c.LABEL_MODEL_VERSION: spec.model.version}
    meta: Body = {"labels": labels}
    if pod.annotations:
        meta["annotations"] = dict(pod.annotations)
    return {"metadata": meta, "spec": pod_spec}


def build_deployment(md: Body, track: str = c.TRACK_STABLE, spec: ModelDeploymentSpec | None = None) -> Body:
    """The Deployment of one track; `spec` overrides the resource's (e.g. the stable model during a canary)."""
    spec = spec or parse_spec(md)
    meta = md["metadata"]
    name = meta["name"]
    rolling = spec.strategy.rolling_update
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(name, track),
            "namespace": meta["namespace"],
            "labels": {**common_labels(name), c.LABEL_TRACK: track},
            "annotations": {c.LABEL_MODEL_VERSION: spec.model.version},
            "ownerReferences": [owner_reference(md)],
        },
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": track_labels(name, track)},
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": rolling.max_surge if rolling else 1,
                    "maxUnavailable": rolling.max_unavailable if rolling else 0,
                },
            },
            "template": build_pod_template(md, spec, track),
        },
    }


def build_service(md: Body, track: str | None = None, suffix: str = "") -> Body:
    """A ClusterIP Service `NAME[-suffix]` selecting one track's pods, or every track's when `track` is None."""
    meta = md["metadata"]
    name = meta["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"{name}-{suffix}" if suffix else name,
            "namespace": meta["namespace"],
            "labels": common_labels(name),
            "ownerReferences": [owner_reference(md)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": track_labels(name, track) if track else selector_labels(name),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def build_httproute(md: Body, spec: ModelDeploymentSpec, stable_weight: int, new_weight: int) -> Body:
    """Gateway API HTTPRoute splitting traffic between the stable and canary Services by weight."""
    meta = md["metadata"]
    name = meta["name"]
    gw = spec.traffic.gateway
    assert gw is not None
    parent: Body = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gw.name}
    if gw.namespace:
        parent["namespace"] = gw.namespace
    if gw.section_name:
        parent["sectionName"] = gw.section_name
    route_spec: Body = {
        "parentRefs": [parent],
        "rules": [{
            "backendRefs": [
                {"name": f"{name}-{c.TRACK_STABLE}", "port": SERVICE_PORT, "weight": stable_weight},
                {"name": f"{name}-canary", "port": SERVICE_PORT, "weight": new_weight},
            ],
        }],
    }
    if spec.traffic.hostnames:
        route_spec["hostnames"] = list(spec.traffic.hostnames)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": common_labels(name),
            "ownerReferences": [owner_reference(md)],
        },
        "spec": route_spec,
    }


def build_children(md: Body, plan: Plan | None = None) -> list[Body]:
    """Every object the operator owns for this ModelDeployment, in apply order.

    Without a `plan` (no rollout under way) that is one Service and the stable Deployment.
    """
    spec = parse_spec(md)
    if plan is None:
        return [build_service(md), build_deployment(md, spec=spec)]
    stable = spec.model_copy(update={"model": plan.stable_model, "replicas": plan.stable_replicas})
    children = [build_service(md, plan.service_track), build_deployment(md, c.TRACK_STABLE, stable)]
    if plan.new_track and plan.new_model is not None and plan.new_replicas > 0:
        new = spec.model_copy(update={"model": plan.new_model, "replicas": plan.new_replicas})
        children.append(build_deployment(md, plan.new_track, new))
        if plan.new_track == "preview":
            children.append(build_service(md, "preview", suffix="preview"))
    if spec.traffic.gateway is not None:
        children += [build_service(md, c.TRACK_STABLE, suffix=c.TRACK_STABLE),
                     build_service(md, "canary", suffix="canary"),
                     build_httproute(md, spec, *plan.weights)]
    return children

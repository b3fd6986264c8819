"""The pure builders: what the operator asks the cluster for, checked without a cluster."""

from __future__ import annotations

from typing import Any

import pytest
from modeldeploy_api import constants as c
from modeldeploy_operator.builders import auto_workers, build_children, build_deployment, build_service, parse_spec

from .conftest import SHA, make_md


def container(dep: dict[str, Any]) -> dict[str, Any]:
    return dep["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def env_of(dep: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(dep)["env"]}


def test_deployment_runs_the_generic_server_with_the_model(md: dict[str, Any]) -> None:
    dep = build_deployment(md)
    ctr = container(dep)
    assert ctr["command"] == ["modeldeploy", "serve"]
    assert ctr["image"] == c.DEFAULT_IMAGE
    env = env_of(dep)
    assert env[c.ENV_MODEL_NAME] == "iris"
    assert env[c.ENV_MODEL_VERSION] == "1.0.0"
    assert env[c.ENV_MODEL_URI] == "https://models.example/iris.joblib"
    assert env[c.ENV_MODEL_SHA256] == SHA
    assert env[c.ENV_MODEL_FORMAT] == "sklearn"
    assert c.ENV_ALLOW_UNVERIFIED not in env
    assert env[c.ENV_PORT] == "8080" and ctr["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_probes_cover_start_liveness_and_readiness(md: dict[str, Any]) -> None:
    ctr = container(build_deployment(md))
    assert ctr["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert ctr["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    startup = ctr["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    # a large model may take minutes to download: the startup budget must allow it
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert ctr["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}  # drain before SIGTERM


def test_restricted_security_context_and_writable_volumes(md: dict[str, Any]) -> None:
    dep = build_deployment(md)
    pod = dep["spec"]["template"]["spec"]
    sc = container(dep)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    mounts = {m["mountPath"] for m in container(dep)["volumeMounts"]}
    assert mounts == {c.MODEL_CACHE_DIR, "/tmp"}
    assert {v["name"] for v in pod["volumes"]} == {"model-cache", "tmp"}
    assert env_of(dep)[c.ENV_CACHE_DIR] == c.MODEL_CACHE_DIR


def test_resources_default_when_omitted_and_pass_through_when_given(md: dict[str, Any]) -> None:
    assert container(build_deployment(md))["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    custom = make_md(resources={"requests": {"cpu": 2}, "limits": {"cpu": "2500m", "memory": "4Gi"}})
    assert container(build_deployment(custom))["resources"] == {
        "requests": {"cpu": "2"},
        "limits": {"cpu": "2500m", "memory": "4Gi"},
    }


@pytest.mark.parametrize(
    ("resources", "workers", "expected"),
    [
        (None, None, 1),
        ({"limits": {"cpu": "2500m", "memory": "1Gi"}}, None, 3),
        ({"requests": {"cpu": "2"}, "limits": {"memory": "1Gi"}}, None, 2),
        ({"limits": {"memory": "1Gi"}}, None, 1),
        ({"limits": {"cpu": "64", "memory": "1Gi"}}, None, 8),
        ({"limits": {"cpu": "4", "memory": "1Gi"}}, 2, 2),
    ],
)
def test_workers_follow_the_cpu_limit(resources: Any, workers: Any, expected: int) -> None:
    spec: dict[str, Any] = {}
    if resources:
        spec["resources"] = resources
    if workers:
        spec["server"] = {"workers": workers}
    md = make_md(**spec)
    assert auto_workers(parse_spec(md)) == expected
    assert env_of(build_deployment(md))[c.ENV_WORKERS] == str(expected)


def test_owner_reference_labels_and_selector(md: dict[str, Any]) -> None:
    for child in build_children(md):
        (ref,) = child["metadata"]["ownerReferences"]
        assert ref == {"apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment", "name": "iris",
                       "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}
        assert child["metadata"]["labels"][c.LABEL_MANAGED_BY] == "modeldeploy"
        assert child["metadata"]["namespace"] == "ml"
    dep, svc = build_deployment(md), build_service(md)
    # the selector must not contain the version: a Deployment's selector is immutable
    assert dep["spec"]["selector"] == {"matchLabels": {c.LABEL_MD: "iris", c.LABEL_TRACK: "stable"}}
    assert svc["spec"]["selector"] == {c.LABEL_MD: "iris"}
    assert dep["spec"]["template"]["metadata"]["labels"][c.LABEL_MODEL_VERSION] == "1.0.0"
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_version_change_changes_only_the_template(md: dict[str, Any]) -> None:
    new = make_md(model={"name": "iris", "version": "1.1.0", "uri": "https://models.example/iris-1.1.joblib",
                         "sha256": "b" * 64})
    old_dep, new_dep = build_deployment(md), build_deployment(new)
    assert old_dep["spec"]["selector"] == new_dep["spec"]["selector"]
    assert old_dep["spec"]["template"] != new_dep["spec"]["template"]
    assert env_of(new_dep)[c.ENV_MODEL_URI].endswith("iris-1.1.joblib")
    assert new_dep["metadata"]["annotations"][c.LABEL_MODEL_VERSION] == "1.1.0"
    # model servers must not lose capacity during a rollout by default
    assert new_dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_pod_options_pass_through() -> None:
    md = make_md(
        replicas=3,
        pod={
            "nodeSelector": {"pool": "cpu"},
            "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
            "serviceAccountName": "models",
            "imagePullSecrets": [{"name": "regcred"}],
            "labels": {"team": "risk"},
            "annotations": {"prometheus.io/scrape": "true"},
            "priorityClassName": "high",
        },
        server={"image": "registry.local/server:1", "env": [{"name": "OMP_NUM_THREADS", "value": "1"}]},
        strategy={"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 1}},
    )
    dep = build_deployment(md)
    pod = dep["spec"]["template"]
    assert dep["spec"]["replicas"] == 3
    assert pod["spec"]["nodeSelector"] == {"pool": "cpu"}
    assert pod["spec"]["tolerations"] == [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}]
    assert "podAntiAffinity" in pod["spec"]["affinity"]
    assert pod["spec"]["serviceAccountName"] == "models"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["priorityClassName"] == "high"
    assert pod["metadata"]["labels"]["team"] == "risk"
    assert pod["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    assert container(dep)["image"] == "registry.local/server:1"
    assert env_of(dep)["OMP_NUM_THREADS"] == "1"
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "50%", "maxUnavailable": 1}


def test_user_env_cannot_redirect_the_model() -> None:
    md = make_md(server={"env": [{"name": c.ENV_MODEL_URI, "value": "http://evil/model.pkl"},
                                 {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]})
    env = container(build_deployment(md))["env"]
    uris = [e["value"] for e in env if e["name"] == c.ENV_MODEL_URI]
    assert uris == ["https://models.example/iris.joblib"]
    assert {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in env


def test_user_labels_cannot_break_the_selector() -> None:
    md = make_md(pod={"labels": {c.LABEL_MD: "other", c.LABEL_TRACK: "canary"}})
    labels = build_deployment(md)["spec"]["template"]["metadata"]["labels"]
    assert labels[c.LABEL_MD] == "iris" and labels[c.LABEL_TRACK] == "stable"


def test_allow_unverified_is_passed_explicitly() -> None:
    md = make_md(model={"name": "m", "version": "1", "uri": "file:///m.joblib", "allowUnverified": True})
    env = env_of(build_deployment(md))
    assert env[c.ENV_ALLOW_UNVERIFIED] == "true" and c.ENV_MODEL_SHA256 not in env


# ---- request limits, model stores and auth (spec.server.limits, spec.storage, spec.auth) -------------------


def volumes_of(dep: dict[str, Any]) -> dict[str, Any]:
    return {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}


def mounts_of(dep: dict[str, Any]) -> dict[str, Any]:
    return {m["name"]: m for m in container(dep)["volumeMounts"]}


def test_request_limits_are_passed_only_when_set() -> None:
    assert c.ENV_MAX_BODY_BYTES not in env_of(build_deployment(make_md()))
    env = env_of(build_deployment(make_md(server={"limits": {"maxBodyBytes": 1 << 20, "maxInstances": 500}})))
    assert env[c.ENV_MAX_BODY_BYTES] == "1048576" and env[c.ENV_MAX_INSTANCES] == "500"


def test_no_auth_no_storage_adds_nothing(md: dict[str, Any]) -> None:
    dep = build_deployment(md)
    env = env_of(dep)
    assert not {k for k in env if k.startswith(("AWS_", "MODELDEPLOY_S3", "MODELDEPLOY_GCS", c.ENV_AUTH_DIR))}
    assert set(volumes_of(dep)) == {"model-cache", "tmp"}


def test_auth_secret_is_mounted_read_only_never_put_in_env() -> None:
    dep = build_deployment(make_md(auth={"secretRef": {"name": "iris-keys"}}))
    assert volumes_of(dep)["auth"] == {"name": "auth", "secret": {"secretName": "iris-keys", "defaultMode": 0o440}}
    assert mounts_of(dep)["auth"] == {"name": "auth", "mountPath": c.AUTH_DIR, "readOnly": True}
    env = container(dep)["env"]
    assert {"name": c.ENV_AUTH_DIR, "value": c.AUTH_DIR} in env
    assert "iris-keys" not in str(env)  # the keys reach the pod only as files, which the kubelet updates


S3_STORAGE = {"s3": {
    "endpoint": "https://minio.storage:9000", "region": "eu-west-1", "addressingStyle": "path",
    "credentialsSecretRef": {"name": "store-creds", "sessionTokenKey": "token"},
    "caBundleRef": {"configMapKeyRef": {"name": "corp-ca", "key": "bundle.pem"}},
}}


def s3_md(**spec: Any) -> dict[str, Any]:
    return make_md(model={"name": "iris", "version": "1.0.0", "uri": "s3://models/iris/1.0.0.joblib", "sha256": SHA},
                   **spec)


def test_s3_endpoint_credentials_and_ca_bundle() -> None:
    dep = build_deployment(s3_md(storage=S3_STORAGE))
    env = env_of(dep)
    assert env[c.ENV_MODEL_URI] == "s3://models/iris/1.0.0.joblib"
    assert env[c.ENV_S3_ENDPOINT] == "https://minio.storage:9000" and env[c.ENV_S3_REGION] == "eu-west-1"
    assert env[c.ENV_S3_ADDRESSING_STYLE] == "path"
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "store-creds", "key": "AWS_ACCESS_KEY_ID"}}
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "store-creds", "key": "AWS_SECRET_ACCESS_KEY"}}
    assert env["AWS_SESSION_TOKEN"] == {"secretKeyRef": {"name": "store-creds", "key": "token"}}
    assert env[c.ENV_S3_CA_BUNDLE] == f"{c.S3_CA_DIR}/ca.crt"
    assert volumes_of(dep)["s3-ca"]["configMap"] == {
        "name": "corp-ca", "items": [{"key": "bundle.pem", "path": "ca.crt"}]}
    assert mounts_of(dep)["s3-ca"] == {"name": "s3-ca", "mountPath": c.S3_CA_DIR, "readOnly": True}


def test_s3_ca_bundle_from_a_secret_and_default_credential_chain() -> None:
    storage = {"s3": {"caBundleRef": {"secretKeyRef": {"name": "ca", "key": "ca.pem"}}}}
    dep = build_deployment(s3_md(storage=storage))
    env = env_of(dep)
    assert "AWS_ACCESS_KEY_ID" not in env and c.ENV_S3_ENDPOINT not in env  # IRSA / pod identity
    assert volumes_of(dep)["s3-ca"]["secret"] == {"secretName": "ca", "items": [{"key": "ca.pem", "path": "ca.crt"}]}


def test_user_env_cannot_replace_store_credentials() -> None:
    dep = build_deployment(s3_md(storage=S3_STORAGE, server={"env": [{"name": "AWS_ACCESS_KEY_ID", "value": "x"}]}))
    ref = {"secretKeyRef": {"name": "store-creds", "key": "AWS_ACCESS_KEY_ID"}}
    assert [e for e in container(dep)["env"] if e["name"] == "AWS_ACCESS_KEY_ID"] == [
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": ref}]


def test_gcs_key_file_is_mounted_and_anonymous_is_explicit() -> None:
    model = {"name": "iris", "version": "1", "uri": "gs://models/iris.joblib", "sha256": SHA}
    storage = {"gcs": {"endpoint": "http://gcs.local:4443", "credentialsSecretRef": {"name": "sa", "key": "sa.json"}}}
    dep = build_deployment(make_md(model=model, storage=storage))
    env = env_of(dep)
    assert env[c.ENV_GCS_ENDPOINT] == "http://gcs.local:4443"
    assert env[c.ENV_GCS_CREDENTIALS] == f"{c.GCS_CREDENTIALS_DIR}/key.json"
    assert volumes_of(dep)["gcs-credentials"]["secret"]["items"] == [{"key": "sa.json", "path": "key.json"}]
    assert mounts_of(dep)["gcs-credentials"]["readOnly"] is True
    anon = env_of(build_deployment(make_md(model=model, storage={"gcs": {"anonymous": True}})))
    assert anon[c.ENV_GCS_CREDENTIALS] == c.GCS_ANONYMOUS and c.ENV_GCS_ENDPOINT not in anon


def test_pvc_model_mounts_the_claim_read_only() -> None:
    model = {"name": "iris", "version": "1", "uri": "pvc://model-store/iris/1.joblib", "sha256": SHA}
    dep = build_deployment(make_md(model=model))
    assert volumes_of(dep)["model-pvc"] == {
        "name": "model-pvc", "persistentVolumeClaim": {"claimName": "model-store", "readOnly": True}}
    assert mounts_of(dep)["model-pvc"] == {
        "name": "model-pvc", "mountPath": f"{c.PVC_ROOT}/model-store", "readOnly": True}
    # the server resolves the URI itself (PVC_ROOT/CLAIM/PATH), so it reports the URI as written
    assert env_of(dep)[c.ENV_MODEL_URI] == "pvc://model-store/iris/1.joblib"


def test_each_track_mounts_the_claim_of_its_own_version() -> None:
    md = make_md(model={"name": "iris", "version": "2", "uri": "pvc://new-claim/m.joblib", "sha256": SHA},
                 auth={"secretRef": {"name": "keys"}})
    spec = parse_spec(md)
    old_model = spec.model.model_copy(update={"version": "1", "uri": "pvc://old-claim/m.joblib"})
    stable = build_deployment(md, c.TRACK_STABLE, spec.model_copy(update={"model": old_model}))
    canary = build_deployment(md, "canary", spec)
    assert volumes_of(stable)["model-pvc"]["persistentVolumeClaim"]["claimName"] == "old-claim"
    assert volumes_of(canary)["model-pvc"]["persistentVolumeClaim"]["claimName"] == "new-claim"
    assert "auth" in volumes_of(stable) and "auth" in volumes_of(canary)  # both tracks demand credentials


@pytest.mark.parametrize("uri", [
    "s3://models/iris.joblib", "s3://my.bucket-1/a/b/c.onnx", "gs://models/iris.joblib", "gs://a_b.c/x",
    "pvc://store/iris.joblib", "pvc://store.v1/a/b.skops", "https://m.example/x", "/models/x", "file:///x",
])
def test_model_uri_schemes_accepted(uri: str) -> None:
    assert parse_spec(make_md(model={"name": "m", "version": "1", "uri": uri, "sha256": SHA})).model.uri == uri


@pytest.mark.parametrize("uri", [
    "s3://models", "s3://models/", "s3://UPPER/x", "s3://a/x", "gs://bucket", "pvc://store", "pvc:///x",
    "pvc://Store/x", "ftp://x/y", "hdfs://x/y", "relative/path",
])
def test_model_uri_schemes_rejected(uri: str) -> None:
    with pytest.raises(ValueError, match="uri"):
        parse_spec(make_md(model={"name": "m", "version": "1", "uri": uri, "sha256": SHA}))


def drift_md(reference: str, model_uri: str = "pvc://model-store/iris/1.joblib") -> dict[str, Any]:
    return make_md(model={"name": "iris", "version": "1", "uri": model_uri, "sha256": SHA},
                   monitoring={"drift": {"reference": {"uri": reference, "sha256": SHA}}})


def test_a_reference_profile_on_a_claim_is_mounted_read_only() -> None:
    dep = build_deployment(drift_md("pvc://profiles/iris/1.json"))
    assert volumes_of(dep)["reference-pvc"] == {
        "name": "reference-pvc", "persistentVolumeClaim": {"claimName": "profiles", "readOnly": True}}
    assert mounts_of(dep)["reference-pvc"] == {
        "name": "reference-pvc", "mountPath": f"{c.PVC_ROOT}/profiles", "readOnly": True}
    assert env_of(dep)[c.ENV_DRIFT_REFERENCE_URI] == "pvc://profiles/iris/1.json"
    same = build_deployment(drift_md("pvc://model-store/iris/1.profile.json"))
    assert "reference-pvc" not in volumes_of(same), "the model's claim is mounted once and serves both"
    assert [m["mountPath"] for m in mounts_of(same).values()].count(f"{c.PVC_ROOT}/model-store") == 1


@pytest.mark.parametrize("uri", ["s3://profiles/iris/1.json", "gs://profiles/iris.json", "pvc://p/iris.json",
                                 "https://p.example/iris.json", "/profiles/iris.json"])
def test_reference_uri_schemes_are_the_models(uri: str) -> None:
    drift = parse_spec(drift_md(uri, model_uri="https://m.example/iris.joblib")).monitoring.drift
    assert drift is not None and drift.reference.uri == uri


@pytest.mark.parametrize("uri", ["s3://profiles", "ftp://x/y", "relative/p.json", "pvc://Profiles/x"])
def test_reference_uri_schemes_rejected(uri: str) -> None:
    with pytest.raises(ValueError, match="uri"):
        parse_spec(drift_md(uri))

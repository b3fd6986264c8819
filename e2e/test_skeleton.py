"""The walking skeleton on the real control plane: ModelDeployment -> Deployment + Service -> a serving model.

Runs in order; each step builds on the previous one, as a user's session would.
"""

from __future__ import annotations

import json
import string
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from support import (  # noqa: F401  (fixtures)
    ROOT,
    ModelRegistry,
    OperatorProcess,
    assert_loopback,
    kubectl_json,
    operator_process,
    port_open,
    post_json,
    registry,
    wait_for,
)

NS = "skeleton"
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
MODELS: dict[str, tuple[str, str]] = {}  # version -> (uri, sha256), as the steps publish them


@pytest.fixture(scope="module")
def ns(cluster: Any, operator_process: OperatorProcess) -> Iterator[str]:
    cluster.kubectl("create", "namespace", NS)
    yield NS
    cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def sample(uri: str, sha256: str) -> str:
    return string.Template((ROOT / "examples" / "iris.yaml").read_text()).substitute(
        MODEL_URI=uri, MODEL_SHA256=sha256
    )


def md_status(cluster: Any) -> dict[str, Any]:
    return kubectl_json(cluster, "-n", NS, "get", "md", "iris").get("status") or {}  # type: ignore[no-any-return]


def server_pods(cluster: Any, version: str | None = None) -> list[dict[str, Any]]:
    selector = "modeldeploy.dev/modeldeployment=iris"
    if version:
        selector += f",modeldeploy.dev/model-version={version}"
    pods = kubectl_json(cluster, "-n", NS, "get", "pods", "-l", selector)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def predict(pod: dict[str, Any]) -> dict[str, Any]:
    ip = pod["status"]["podIP"]
    assert_loopback(ip)
    code, body = post_json(f"http://{ip}:8080/predict", {"features": IRIS_ROW})
    assert code == 200, body
    return body  # type: ignore[no-any-return]


INVALID = [
    ("replicas: 2", "replicas: -1", "spec.replicas"),
    ("    uri: ${MODEL_URI}\n", "", "spec.model.uri: Required value"),
    ("sha256: ${MODEL_SHA256}", "sha256: not-a-digest", "spec.model.sha256"),
    ("    version: \"1.0.0\"", "    version: \"1.0.0\"\n    format: pytorch", 'Unsupported value: "pytorch"'),
    ("    sha256: ${MODEL_SHA256}\n", "", "model.sha256 is required for sklearn pickles"),
    ("cpu: 250m, memory: 256Mi", "cpu: \"2\", memory: 256Mi", "requests.cpu must not exceed resources.limits.cpu"),
    ("limits: {cpu: \"1\", memory: 512Mi}", "limits: {cpu: \"1\"}", "resources.limits.memory is required"),
]


@pytest.mark.parametrize(("old", "new", "message"), INVALID, ids=[i[2][:40] for i in INVALID])
def test_invalid_model_deployments_are_rejected(cluster: Any, ns: str, old: str, new: str, message: str) -> None:
    text = (ROOT / "examples" / "iris.yaml").read_text()
    assert old in text
    manifest = string.Template(text.replace(old, new)).safe_substitute(
        MODEL_URI="http://127.0.0.1:1/m.joblib", MODEL_SHA256="a" * 64
    )
    result = cluster.kubectl("-n", ns, "apply", "-f", "-", input=manifest, check=False)
    assert result.returncode != 0, f"accepted an invalid ModelDeployment:\n{manifest}"
    assert message in result.stderr, result.stderr
    assert "iris" not in cluster.kubectl("-n", ns, "get", "md", "-o", "name").stdout


def test_sample_becomes_ready_and_kubectl_shows_it(cluster: Any, ns: str, registry: ModelRegistry) -> None:
    uri, digest = registry.add_iris("1.0.0")
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=sample(uri, digest))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "md/iris", "--timeout=180s")
    table = cluster.kubectl("-n", ns, "get", "modeldeployments").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "VERSION", "REPLICAS", "AVAILABLE", "PHASE", "TRAFFIC", "DRIFT",
                                "AGE"]
    assert table[1].split()[:8] == ["iris", "True", "1.0.0", "2", "2", "Succeeded", "1.0.0=100", "Unknown"]
    st = md_status(cluster)
    assert st["observedGeneration"] == kubectl_json(cluster, "-n", ns, "get", "md", "iris")["metadata"]["generation"]
    assert {c["type"]: c["status"] for c in st["conditions"]} == {"Ready": "True", "Reconciling": "False",
                                                                   "Stalled": "False"}
    assert st["url"] == f"http://iris.{ns}.svc.cluster.local"
    # the children exist, owned by the ModelDeployment
    dep = kubectl_json(cluster, "-n", ns, "get", "deployment", "iris")
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    svc = kubectl_json(cluster, "-n", ns, "get", "service", "iris")
    assert svc["spec"]["selector"] == {"modeldeploy.dev/modeldeployment": "iris"}
    events = cluster.kubectl("-n", ns, "get", "events", "--field-selector",
                             "involvedObject.kind=ModelDeployment").stdout
    assert "VersionAvailable" in events


def test_prediction_through_the_real_server(cluster: Any, ns: str) -> None:
    pods = server_pods(cluster)
    assert len(pods) == 2
    for pod in pods:
        body = predict(pod)
        assert body["model_name"] == "iris" and body["model_version"] == "1.0.0"
        assert body["prediction"] == 0  # setosa
        code, err = post_json(f"http://{pod['status']['podIP']}:8080/predict", {"features": [1.0, 2.0]})
        assert 400 <= code < 500 and "features" in err["error"], err


def test_version_change_rolls_out_and_status_tells(cluster: Any, ns: str, registry: ModelRegistry) -> None:
    uri, digest = MODELS["1.1.0"] = registry.add_iris("1.1.0", kind="forest")
    patch = f'{{"spec":{{"model":{{"version":"1.1.0","uri":"{uri}","sha256":"{digest}"}}}}}}'
    cluster.kubectl("-n", ns, "patch", "md", "iris", "--type=merge", "-p", patch)
    st = wait_for(
        lambda: (s := md_status(cluster)).get("currentVersion") == "1.1.0" and s,
        180, "version 1.1.0 to become current",
    )
    assert st["previousVersion"] == "1.0.0"
    assert st["desiredVersion"] == "1.1.0"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    pods = wait_for(lambda: len(p := server_pods(cluster)) == 2 and p, 60, "old pods to go")
    assert {predict(p)["model_version"] for p in pods} == {"1.1.0"}


def test_bad_digest_never_serves_and_the_old_version_keeps_serving(
    cluster: Any, ns: str, registry: ModelRegistry
) -> None:
    uri, _ = registry.add_iris("1.2.0")
    patch = f'{{"spec":{{"model":{{"version":"1.2.0","uri":"{uri}","sha256":"{"0" * 64}"}}}}}}'
    cluster.kubectl("-n", ns, "patch", "md", "iris", "--type=merge", "-p", patch)
    new = wait_for(lambda: server_pods(cluster, "1.2.0"), 60, "a pod of version 1.2.0")[0]
    ip = new["status"].get("podIP") or wait_for(
        lambda: kubectl_json(cluster, "-n", ns, "get", "pod", new["metadata"]["name"])["status"].get("podIP"),
        30, "the new pod's IP")
    assert_loopback(ip)
    def not_ready_reason() -> str | None:
        try:
            urllib.request.urlopen(f"http://{ip}:8080/ready", timeout=2)
        except urllib.error.HTTPError as e:
            body = e.read().decode()
            return body if e.code == 503 and "model_loading" not in body else None
        return None

    reason = wait_for(not_ready_reason, 60, "the server to refuse readiness with a reason")
    assert "sha256" in reason.lower() or "digest" in reason.lower(), reason
    st = md_status(cluster)
    assert st["currentVersion"] == "1.1.0"
    assert next(c for c in st["conditions"] if c["type"] == "Ready")["status"] == "False"
    old = server_pods(cluster, "1.1.0")
    assert len(old) == 2 and all(predict(p)["model_version"] == "1.1.0" for p in old)
    # a GitOps revert: back to the last good version, which becomes Ready again
    uri11, digest11 = MODELS["1.1.0"]
    revert = f'{{"spec":{{"model":{{"version":"1.1.0","uri":"{uri11}","sha256":"{digest11}"}}}}}}'
    cluster.kubectl("-n", ns, "patch", "md", "iris", "--type=merge", "-p", revert)
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "md/iris", "--timeout=120s")
    wait_for(lambda: not server_pods(cluster, "1.2.0"), 60, "the failed version's pods to go")


def test_kubectl_scale(cluster: Any, ns: str) -> None:
    cluster.kubectl("-n", ns, "scale", "md", "iris", "--replicas=3")
    wait_for(lambda: md_status(cluster).get("availableReplicas") == 3, 120, "3 available replicas")
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "md/iris", "--timeout=60s")
    scale = json.loads(cluster.kubectl(
        "get", "--raw", f"/apis/modeldeploy.dev/v1alpha1/namespaces/{ns}/modeldeployments/iris/scale").stdout)
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert scale["status"]["selector"] == "modeldeploy.dev/modeldeployment=iris,modeldeploy.dev/track=stable"
    assert len(server_pods(cluster)) == 3


def test_manual_edits_and_deletes_of_children_are_undone(cluster: Any, ns: str) -> None:
    cluster.kubectl("-n", ns, "patch", "deployment", "iris", "--type=merge", "-p", '{"spec":{"replicas":1}}')
    wait_for(lambda: kubectl_json(cluster, "-n", ns, "get", "deployment", "iris")["spec"]["replicas"] == 3,
             30, "the operator to restore replicas=3")
    uid = kubectl_json(cluster, "-n", ns, "get", "service", "iris")["metadata"]["uid"]
    cluster.kubectl("-n", ns, "delete", "service", "iris")
    wait_for(lambda: kubectl_json(cluster, "-n", ns, "get", "service", "iris")["metadata"]["uid"] != uid,
             30, "the Service to be recreated")
    cluster.kubectl("-n", ns, "delete", "deployment", "iris", "--wait=true")
    wait_for(lambda: kubectl_json(cluster, "-n", ns, "get", "deployment", "iris"), 30, "the Deployment to come back")
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "md/iris", "--timeout=120s")


def test_operator_killed_and_restarted_converges_without_duplicates(
    cluster: Any, ns: str, operator_process: OperatorProcess
) -> None:
    operator_process.kill()
    cluster.kubectl("-n", ns, "scale", "md", "iris", "--replicas=2")  # a change made while it is down
    operator_process.start()
    wait_for(lambda: md_status(cluster).get("replicas") == 2 and md_status(cluster).get("availableReplicas") == 2,
             120, "convergence to 2 replicas after restart")
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "md/iris", "--timeout=60s")
    owned = [o for kind in ("deployments", "services")
             for o in kubectl_json(cluster, "-n", ns, "get", kind)["items"]]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in owned) == [("Deployment", "iris"), ("Service", "iris")]
    managers = {m["manager"] for m in kubectl_json(cluster, "-n", ns, "get", "deployment", "iris",
                                                   "--show-managed-fields")["metadata"]["managedFields"]}
    assert "modeldeploy-operator" in managers


def test_deleting_the_model_deployment_removes_its_children(cluster: Any, ns: str) -> None:
    pods_before = server_pods(cluster)
    assert pods_before
    cluster.kubectl("-n", ns, "delete", "md", "iris", "--wait=true", "--timeout=60s")

    def gone() -> bool:
        return cluster.kubectl("-n", ns, "get", "deployments,services,pods", "-o", "name").stdout.strip() == ""

    wait_for(gone, 120, "garbage collection of the Deployment, Service and pods")
    for pod in pods_before:  # and the real server processes behind them have stopped
        ip = pod["status"]["podIP"]
        wait_for(lambda ip=ip: not port_open(ip, 8080), 30, f"the server on {ip}:8080 to stop")

"""Progressive delivery on the real control plane, with real server processes as the pods.

Traffic goes to the main Service's ready endpoints round-robin (what kube-proxy does), so the
canary's share is the replica ratio, and the operator judges it from the servers' own /metrics.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pytest
import yaml
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from support import (  # noqa: F401  (fixtures)
    ROOT,
    ModelRegistry,
    OperatorProcess,
    ServiceTraffic,
    kubectl_json,
    operator_process,
    post_json,
    registry,
    wait_for,
)

NS = "rollouts"
MODELS_LIB = ROOT / "e2e" / "models_lib"
sys.path.insert(0, str(MODELS_LIB))
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3], [4.9, 3.0, 1.4, 0.2]]


@pytest.fixture(scope="module")
def ns(cluster: Any, operator_process: OperatorProcess) -> Iterator[str]:
    cluster.kubectl("create", "namespace", NS)
    yield NS
    cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def manifest(name: str, uri: str, sha: str, version: str, strategy: dict[str, Any], replicas: int = 2,
             **spec: Any) -> str:
    body = {
        "apiVersion": "modeldeploy.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "model": {"name": "iris", "version": version, "uri": uri, "sha256": sha},
            "replicas": replicas,
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
            "strategy": strategy,
            "server": {"env": [{"name": "PYTHONPATH", "value": str(MODELS_LIB)}]},
            **spec,
        },
    }
    return yaml.safe_dump(body)


def set_model(cluster: Any, name: str, version: str, uri: str, sha: str) -> None:
    patch = {"spec": {"model": {"version": version, "uri": uri, "sha256": sha}}}
    cluster.kubectl("-n", NS, "patch", "md", name, "--type=merge", "-p", json.dumps(patch))


def status(cluster: Any, name: str) -> dict[str, Any]:
    return kubectl_json(cluster, "-n", NS, "get", "md", name).get("status") or {}  # type: ignore[no-any-return]


def rollout(cluster: Any, name: str) -> dict[str, Any]:
    return status(cluster, name).get("rollout") or {}  # type: ignore[no-any-return]


def events(cluster: Any, name: str) -> list[str]:
    items = kubectl_json(cluster, "-n", NS, "get", "events", "--field-selector",
                         f"involvedObject.kind=ModelDeployment,involvedObject.name={name}")["items"]
    return [e["reason"] for e in sorted(items, key=lambda e: e.get("firstTimestamp") or "")]


def flaky(registry: ModelRegistry, version: str) -> tuple[str, str]:
    from flaky_models import FlakyClassifier

    x, y = load_iris(return_X_y=True)
    model = FlakyClassifier(LogisticRegression(max_iter=500, random_state=0), limit=5.5).fit(x, y)
    path = registry.root / f"iris-flaky-{version}.joblib"
    joblib.dump(model, path)
    return f"{registry.base_url}/{path.name}", hashlib.sha256(path.read_bytes()).hexdigest()


CANARY = {"canary": {"steps": [{"weight": 25, "pause": "8s"}, {"weight": 50, "pause": "8s"}],
                     "analysis": {"interval": "2s", "minRequests": 5, "maxErrorRate": 0.05}}}


def test_canary_passes_its_analysis_and_promotes_through_all_steps(
    cluster: Any, ns: str, registry: ModelRegistry
) -> None:
    uri, sha = registry.add_iris("1.0.0")
    cluster.kubectl("apply", "-f", "-", input=manifest("canary", uri, sha, "1.0.0", CANARY))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "md/canary", "--timeout=180s")
    uri2, sha2 = registry.add_iris("2.0.0", kind="forest")
    seen: list[tuple[str, int | None, str | None]] = []
    with ServiceTraffic(cluster, ns, "canary", ROWS) as traffic:
        set_model(cluster, "canary", "2.0.0", uri2, sha2)

        def done() -> bool:
            ro = rollout(cluster, "canary")
            seen.append((ro.get("phase", ""), ro.get("step"), ro.get("traffic")))
            return ro.get("phase") == "Succeeded" and ro.get("stable", {}).get("version") == "2.0.0"

        wait_for(done, 240, "the canary to be promoted", interval=1)
    st = status(cluster, "canary")
    assert st["currentVersion"] == "2.0.0" and st["previousVersion"] == "1.0.0"
    steps = [s for p, s, _ in seen if p == "Progressing" and s is not None]
    assert steps == sorted(steps) and {0, 1} <= set(steps), seen  # in order, none skipped
    assert any(t and "2.0.0=" in t and "1.0.0=" in t for _, _, t in seen), seen  # a split was in force
    assert traffic.by_version.get("2.0.0", 0) > 0 and traffic.by_version.get("1.0.0", 0) > 0
    assert [e for e in events(cluster, "canary") if e in ("RolloutStarted", "StepStarted", "Promoted")] == [
        "RolloutStarted", "StepStarted", "StepStarted", "Promoted"]
    assert st["history"][0]["version"] == "2.0.0" and st["history"][0]["outcome"] == "Promoted"
    wait_for(lambda: not cluster.kubectl("-n", ns, "get", "deployment", "canary-canary", check=False).stdout,
             60, "the canary Deployment to be removed")


def test_canary_that_fails_on_part_of_its_inputs_is_rolled_back(
    cluster: Any, ns: str, registry: ModelRegistry
) -> None:
    uri, sha = flaky(registry, "3.0.0")
    with ServiceTraffic(cluster, ns, "canary", ROWS) as traffic:
        set_model(cluster, "canary", "3.0.0", uri, sha)
        ro = wait_for(lambda: (r := rollout(cluster, "canary")).get("phase") == "Degraded" and r, 180,
                      "the failing canary to be rolled back", interval=1)
    assert "errorRate" in ro["message"] and "2.0.0" in ro["message"], ro
    assert ro["lastAnalysis"]["outcome"] == "Failed" and ro["lastAnalysis"]["errorRate"] > 0.05
    assert traffic.by_code.get(500, 0) > 0  # the canary really failed requests
    st = status(cluster, "canary")
    stalled = next(c for c in st["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "AnalysisFailed"
    assert st["currentVersion"] == "2.0.0" and ro["traffic"] == "2.0.0=100"
    assert "AnalysisFailed" in events(cluster, "canary")
    wait_for(lambda: not cluster.kubectl("-n", ns, "get", "deployment", "canary-canary", check=False).stdout,
             60, "the canary to be scaled away")
    # the fix is a GitOps revert; it is Ready again at once
    set_model(cluster, "canary", "2.0.0", *_model_of(registry, "2.0.0"))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "md/canary", "--timeout=60s")
    assert rollout(cluster, "canary")["phase"] == "Succeeded"


def _model_of(registry: ModelRegistry, version: str) -> tuple[str, str]:
    path = registry.root / f"iris-{version}.joblib"
    return f"{registry.base_url}/{path.name}", hashlib.sha256(path.read_bytes()).hexdigest()


def test_operator_killed_mid_canary_resumes_the_same_step(
    cluster: Any, ns: str, registry: ModelRegistry, operator_process: OperatorProcess
) -> None:
    slow = {"canary": {"steps": [{"weight": 25, "pause": "20s"}, {"weight": 50, "pause": "5s"}],
                       "analysis": {"interval": "2s", "minRequests": 5}}}
    cluster.kubectl("-n", ns, "patch", "md", "canary", "--type=merge", "-p", json.dumps({"spec": {"strategy": slow}}))
    uri, sha = registry.add_iris("4.0.0")
    steps_before = events(cluster, "canary").count("StepStarted")
    with ServiceTraffic(cluster, ns, "canary", ROWS) as traffic:
        set_model(cluster, "canary", "4.0.0", uri, sha)
        first = wait_for(lambda: (r := rollout(cluster, "canary")).get("stepStartedAt") and r.get("step") == 0
                         and r, 120, "step 1 to start", interval=1)
        operator_process.kill()
        time.sleep(5)
        frozen = rollout(cluster, "canary")
        assert frozen["step"] == 0 and frozen["stepStartedAt"] == first["stepStartedAt"]
        operator_process.start()
        after = wait_for(lambda: (r := rollout(cluster, "canary")).get("checks", 0) > frozen.get("checks", 0) and r,
                         60, "the restarted operator to continue the step", interval=1)
        assert after["step"] == 0 and after["stepStartedAt"] == first["stepStartedAt"]  # not restarted
        wait_for(lambda: rollout(cluster, "canary").get("phase") == "Succeeded", 180, "promotion", interval=1)
    assert events(cluster, "canary").count("StepStarted") - steps_before == 2  # each step once: none repeated
    assert set(traffic.by_code) == {200}, traffic.by_code  # the data plane never noticed the operator's death
    assert traffic.failures <= max(3, 0.02 * sum(traffic.by_code.values())), traffic.failures


def test_blue_green_preview_first_then_switch_and_instant_rollback(
    cluster: Any, ns: str, registry: ModelRegistry
) -> None:
    uri, sha = _model_of(registry, "1.0.0")
    strategy = {"blueGreen": {"autoPromote": False, "scaleDownDelaySeconds": 120}}
    cluster.kubectl("apply", "-f", "-", input=manifest("bg", uri, sha, "1.0.0", strategy))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "md/bg", "--timeout=180s")
    uri2, sha2 = _model_of(registry, "2.0.0")
    set_model(cluster, "bg", "2.0.0", uri2, sha2)
    wait_for(lambda: rollout(cluster, "bg").get("phase") == "Paused", 120, "the preview to be ready", interval=1)
    svc = kubectl_json(cluster, "-n", ns, "get", "service", "bg")
    assert svc["spec"]["selector"]["modeldeploy.dev/track"] == "stable"
    preview = ServiceTraffic(cluster, ns, "bg-preview", ROWS)
    for url in preview.endpoints():  # the preview Service answers the new version first
        assert post_json(url + "/predict", {"features": ROWS[0]})[1]["model_version"] == "2.0.0"
    for url in ServiceTraffic(cluster, ns, "bg", ROWS).endpoints():
        assert post_json(url + "/predict", {"features": ROWS[0]})[1]["model_version"] == "1.0.0"
    cluster.kubectl("-n", ns, "annotate", "md", "bg", "modeldeploy.dev/promote=true")
    wait_for(lambda: kubectl_json(cluster, "-n", ns, "get", "service", "bg")["spec"]["selector"]
             .get("modeldeploy.dev/track") == "preview", 30, "the active Service to switch", interval=0.5)
    assert "modeldeploy.dev/promote" not in (kubectl_json(cluster, "-n", ns, "get", "md", "bg")["metadata"]
                                             .get("annotations") or {})
    wait_for(lambda: {post_json(u + "/predict", {"features": ROWS[0]})[1]["model_version"]
                      for u in ServiceTraffic(cluster, ns, "bg", ROWS).endpoints()} == {"2.0.0"},
             30, "the active Service's endpoints to serve 2.0.0")
    # instant rollback: the old pods are still up, the selector flips back without waiting for any pod
    stable_pods = ("-n", ns, "get", "pods", "-l", "modeldeploy.dev/modeldeployment=bg,modeldeploy.dev/track=stable")
    old_pods = {p["metadata"]["name"] for p in kubectl_json(cluster, *stable_pods)["items"]}
    t0 = time.monotonic()
    set_model(cluster, "bg", "1.0.0", uri, sha)
    wait_for(lambda: kubectl_json(cluster, "-n", ns, "get", "service", "bg")["spec"]["selector"]
             .get("modeldeploy.dev/track") == "stable", 30, "the rollback switch", interval=0.2)
    assert time.monotonic() - t0 < 15
    same = {p["metadata"]["name"] for p in kubectl_json(cluster, *stable_pods)["items"]}
    assert same == old_pods  # no pod had to start
    # the Event is posted after the children are applied, so it may trail the selector by a moment
    wait_for(lambda: "RolledBack" in events(cluster, "bg"), 15, "the RolledBack event", interval=0.2)


GATEWAY_API_VERSION = "v1.4.1"


def gateway_api_crds() -> Path:
    """The Gateway API CRDs, from the sigs.k8s.io/gateway-api module through the Go module proxy."""
    out = subprocess.run(["go", "mod", "download", "-json", f"sigs.k8s.io/gateway-api@{GATEWAY_API_VERSION}"],
                         check=True, capture_output=True, text=True, cwd=ROOT)
    return Path(json.loads(out.stdout)["Dir"]) / "config" / "crd" / "standard"


def test_httproute_weights_follow_the_steps(cluster: Any, ns: str, registry: ModelRegistry) -> None:
    crds = gateway_api_crds()
    for name in ("gatewayclasses", "gateways", "httproutes"):
        cluster.kubectl("apply", "--server-side", "-f", str(crds / f"gateway.networking.k8s.io_{name}.yaml"))
    wait_for(lambda: cluster.kubectl("wait", "--for=condition=Established", "crd/httproutes.gateway.networking.k8s.io",
                                     "--timeout=10s", check=False).returncode == 0, 60, "Gateway API CRDs")
    uri, sha = _model_of(registry, "1.0.0")
    strategy = {"canary": {"steps": [{"weight": 10, "pause": "4s"}, {"weight": 40, "pause": "4s"}],
                           "analysis": {"interval": "2s", "minRequests": 0}}}
    cluster.kubectl("apply", "-f", "-", input=manifest("gw", uri, sha, "1.0.0", strategy,
                                                         traffic={"gateway": {"name": "public"}}))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "md/gw", "--timeout=180s")
    set_model(cluster, "gw", "2.0.0", *_model_of(registry, "2.0.0"))
    weights: list[tuple[int, int]] = []

    def route_weights() -> bool:
        route = kubectl_json(cluster, "-n", ns, "get", "httproute", "gw")
        backends = route["spec"]["rules"][0]["backendRefs"]
        assert [b["name"] for b in backends] == ["gw-stable", "gw-canary"]
        pair = (backends[0]["weight"], backends[1]["weight"])
        if not weights or weights[-1] != pair:
            weights.append(pair)
        ro = rollout(cluster, "gw")  # not the Succeeded of 1.0.0 read right after the patch
        return ro.get("phase") == "Succeeded" and ro.get("stable", {}).get("version") == "2.0.0"

    wait_for(route_weights, 180, "the gateway canary to finish", interval=0.5)
    assert (90, 10) in weights and (60, 40) in weights, weights
    assert weights.index((90, 10)) < weights.index((60, 40))
    route = kubectl_json(cluster, "-n", ns, "get", "httproute", "gw")
    assert route["spec"]["parentRefs"][0]["name"] == "public"

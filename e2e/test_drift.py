"""Drift on the real control plane: two replicas' windows merged by the operator into one verdict.

Traffic goes round-robin to the Service's ready endpoints (real server processes on loopback), first
drawn from the training data, then shifted by 1.5 standard deviations on two features, then back.
The replicas also post their own alerts to a webhook named by a Secret.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import joblib
import numpy as np
import pytest
import yaml
from modeldeploy_drift import build_profile
from sklearn.datasets import load_iris
from support import (  # noqa: F401  (fixtures)
    ModelRegistry,
    OperatorProcess,
    ServiceTraffic,
    assert_loopback,
    kubectl_json,
    operator_process,
    registry,
    wait_for,
)

NS = "drift"
NAME = "drifty"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SHIFTED = (1, 2)


@pytest.fixture(scope="module")
def ns(cluster: Any, operator_process: OperatorProcess) -> Iterator[str]:
    cluster.kubectl("create", "namespace", NS)
    yield NS
    cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)


class Webhook:
    """A Slack-style webhook receiver on 127.0.0.1 that records the alerts' texts."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        texts = self.texts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                texts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["text"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/secret"


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


def training_rows(seed: int) -> list[list[float]]:
    """The training rows in a fixed random order: traffic from the reference distribution."""
    x = load_iris().data
    return [[float(v) for v in row] for row in x[np.random.default_rng(seed).permutation(len(x))]]


def shifted_rows(seed: int) -> list[list[float]]:
    x = load_iris().data
    rows = np.asarray(training_rows(seed))
    for j in SHIFTED:
        rows[:, j] += 1.5 * x[:, j].std()
    return [[round(float(v), 3) for v in row] for row in rows]


def publish_profile(registry: ModelRegistry, version: str, model_sha: str) -> tuple[str, str]:
    """`modeldeploy profile` of the training data (with the model's predictions), served by the registry."""
    model = joblib.load(registry.root / f"iris-{version}.joblib")
    x = load_iris().data
    profile = build_profile({n: x[:, i] for i, n in enumerate(FEATURES)}, model=model, feature_names=FEATURES,
                            model_sha256=model_sha)
    path = registry.root / f"iris-{version}-profile.json"
    path.write_text(profile.to_json())
    return f"{registry.base_url}/{path.name}", hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(uri: str, sha: str, profile_uri: str, profile_sha: str) -> str:
    body = {
        "apiVersion": "modeldeploy.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "model": {"name": "iris", "version": "1.0.0", "uri": uri, "sha256": sha},
            "replicas": 2,
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
            "monitoring": {"drift": {
                "reference": {"uri": profile_uri, "sha256": profile_sha},
                "windowSize": 200, "interval": "2s", "minSamples": 50, "alpha": 0.01,
                "alert": {"webhookSecretRef": {"name": "drift-webhook", "key": "url"}},
            }},
        },
    }
    return yaml.safe_dump(body)


def drift_column(cluster: Any) -> str:
    """The DRIFT column of `kubectl get md`, as a user sees it."""
    header, row = cluster.kubectl("-n", NS, "get", "md", NAME).stdout.splitlines()[:2]
    return str(row.split()[header.split().index("DRIFT")])


def status(cluster: Any) -> dict[str, Any]:
    return kubectl_json(cluster, "-n", NS, "get", "md", NAME).get("status") or {}  # type: ignore[no-any-return]


def events(cluster: Any) -> list[str]:
    items = kubectl_json(cluster, "-n", NS, "get", "events", "--field-selector",
                         f"involvedObject.kind=ModelDeployment,involvedObject.name={NAME}")["items"]
    return [e["reason"] for e in sorted(items, key=lambda e: e.get("firstTimestamp") or "")]


def pod_metrics(cluster: Any) -> list[str]:
    pods = kubectl_json(cluster, "-n", NS, "get", "pods", "-l", f"modeldeploy.dev/modeldeployment={NAME}")["items"]
    pages = []
    for pod in pods:
        ip = pod["status"]["podIP"]
        assert_loopback(ip)
        with urllib.request.urlopen(f"http://{ip}:8080/metrics", timeout=5) as response:
            pages.append(response.read().decode())
    return pages


def verdict(cluster: Any, wanted: str) -> dict[str, Any] | None:
    st = status(cluster)
    return st if drift_column(cluster) == wanted and (st.get("drift") or {}).get("status") == wanted else None


def test_drift_is_judged_over_both_replicas_and_resolves(
    cluster: Any, ns: str, registry: ModelRegistry, webhook: Webhook
) -> None:
    uri, sha = registry.add_iris("1.0.0")
    profile_uri, profile_sha = publish_profile(registry, "1.0.0", sha)
    cluster.kubectl("-n", ns, "create", "secret", "generic", "drift-webhook", f"--from-literal=url={webhook.url}")
    cluster.kubectl("apply", "-f", "-", input=manifest(uri, sha, profile_uri, profile_sha))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", f"md/{NAME}", "--timeout=180s")

    with ServiceTraffic(cluster, ns, NAME, training_rows(seed=0), rps=40) as calm:
        st = wait_for(lambda: verdict(cluster, "NoDrift"), 120, "NoDrift on unshifted traffic", interval=1)
    assert st["drift"]["details"]["replicas"] == 2  # both replicas' windows merged
    assert st["drift"]["details"]["windowRows"] >= 50
    condition = next(c for c in st["conditions"] if c["type"] == "Drifted")
    assert (condition["status"], condition["reason"]) == ("False", "NoDrift")
    assert calm.by_code.get(200, 0) > 0 and set(calm.by_code) == {200}

    with ServiceTraffic(cluster, ns, NAME, shifted_rows(seed=1), rps=40):
        st = wait_for(lambda: verdict(cluster, "Drifted"), 120, "Drifted on shifted traffic", interval=1)
        pages = wait_for(lambda: drifted_pods(cluster), 60, "a pod's modeldeploy_drift_dataset_drifted to be 1",
                         interval=1)
    drift = st["drift"]
    assert drift["details"]["replicas"] == 2
    flagged = {f["name"] for f in drift["details"]["topFeatures"] if f["drifted"]}
    assert flagged and flagged <= {FEATURES[j] for j in SHIFTED}, drift
    assert drift["message"].startswith("drift in ")
    condition = next(c for c in st["conditions"] if c["type"] == "Drifted")
    assert condition["status"] == "True" and condition["reason"] == "FeatureDrift"
    assert any(name in condition["message"] for name in flagged)
    assert "DriftDetected" in events(cluster)
    assert all('modeldeploy_predictions_total{label=' in page for page in pages)

    with ServiceTraffic(cluster, ns, NAME, training_rows(seed=2), rps=40):
        st = wait_for(lambda: verdict(cluster, "NoDrift"), 180, "recovery to NoDrift", interval=1)
        wait_for(lambda: "DriftResolved" in events(cluster), 30, "a DriftResolved event")
    assert st["drift"]["details"]["replicas"] == 2
    reasons = [r for r in events(cluster) if r.startswith("Drift")]
    assert reasons == ["DriftDetected", "DriftResolved"], reasons
    assert len(json.dumps(st["drift"])) < 3000  # the status stays small
    assert len(json.dumps(st)) < 16_000

    # Each replica alerted on its own verdict: detected, then resolved, with the model named.
    wait_for(lambda: any("Drift resolved" in t for t in webhook.texts), 60, "the replicas' resolution alerts")
    assert any(t.startswith(":warning: Drift detected for *iris* 1.0.0 on pod `drifty-") for t in webhook.texts)
    assert len(webhook.texts) <= 4, webhook.texts  # one per change per replica, not one per judgement


def drifted_pods(cluster: Any) -> list[str] | None:
    """The pods' /metrics pages once one of them says its window drifted."""
    pages = pod_metrics(cluster)
    return pages if any(_drifted_gauge(page) == 1.0 for page in pages) else None


def _drifted_gauge(page: str) -> float | None:
    for line in page.splitlines():
        if line.startswith("modeldeploy_drift_dataset_drifted{"):
            return float(line.rsplit(" ", 1)[1])
    return None

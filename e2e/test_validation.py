"""The validation gate on the real control plane: a Job scores the new version before any traffic."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import joblib
import pytest
import yaml
from modeldeploy_server.validate import csv_text
from sklearn.datasets import load_iris
from sklearn.dummy import DummyClassifier
from support import (  # noqa: F401  (fixtures)
    ModelRegistry,
    OperatorProcess,
    kubectl_json,
    operator_process,
    registry,
    wait_for,
)

NS = "validation"


@pytest.fixture(scope="module")
def ns(cluster: Any, operator_process: OperatorProcess) -> Iterator[str]:
    cluster.kubectl("create", "namespace", NS)
    yield NS
    cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def status(cluster: Any) -> dict[str, Any]:
    return kubectl_json(cluster, "-n", NS, "get", "md", "gated").get("status") or {}  # type: ignore[no-any-return]


def test_a_model_below_the_threshold_never_gets_traffic(cluster: Any, ns: str, registry: ModelRegistry) -> None:
    x, y = load_iris(return_X_y=True)
    data = registry.root / "iris-test.csv"
    data.write_text(csv_text(x, y, ["sl", "sw", "pl", "pw"], "species"))
    data_uri = f"{registry.base_url}/{data.name}"
    uri, sha = registry.add_iris("1.0.0")
    md = {
        "apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "gated", "namespace": ns},
        "spec": {
            "model": {"name": "iris", "version": "1.0.0", "uri": uri, "sha256": sha},
            "replicas": 1,
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
            "validation": {"dataUri": data_uri, "dataSha256": hashlib.sha256(data.read_bytes()).hexdigest(),
                           "target": "species", "metric": "accuracy", "threshold": 0.9},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(md))
    # the first version is validated too: no pod runs before the Job passed
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "md/gated", "--timeout=180s")
    first = status(cluster)["validations"][0]
    assert first["version"] == "1.0.0" and first["passed"] is True and first["score"] > 0.9

    bad = registry.root / "iris-dummy.joblib"
    joblib.dump(DummyClassifier(strategy="most_frequent").fit(x, y), bad)
    bad_sha = hashlib.sha256(bad.read_bytes()).hexdigest()
    patch = {"spec": {"model": {"version": "2.0.0", "uri": f"{registry.base_url}/{bad.name}", "sha256": bad_sha}}}
    cluster.kubectl("-n", ns, "patch", "md", "gated", "--type=merge", "-p", json.dumps(patch))
    st = wait_for(lambda: (s := status(cluster)).get("rollout", {}).get("phase") == "Degraded" and s, 180,
                  "the validation to fail", interval=1)
    record = st["validations"][0]
    assert record["version"] == "2.0.0" and record["passed"] is False
    assert record["score"] == pytest.approx(1 / 3, abs=1e-4)
    stalled = next(c for c in st["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "ValidationFailed" and "< 0.9" in stalled["message"]
    assert st["currentVersion"] == "1.0.0"
    versions = {p["metadata"]["labels"]["modeldeploy.dev/model-version"] for p in kubectl_json(
        cluster, "-n", ns, "get", "pods", "-l", "modeldeploy.dev/modeldeployment=gated")["items"]}
    assert versions == {"1.0.0"}  # no pod of the failed version ever ran

    # back to the good version: already validated by digest, so no new Job
    jobs_before = len(kubectl_json(cluster, "-n", ns, "get", "jobs")["items"])
    cluster.kubectl("-n", ns, "patch", "md", "gated", "--type=merge",
                    "-p", json.dumps({"spec": {"model": {"version": "1.0.0", "uri": uri, "sha256": sha}}}))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "md/gated", "--timeout=60s")
    assert len(kubectl_json(cluster, "-n", ns, "get", "jobs")["items"]) == jobs_before

"""A model in S3 on the real control plane: moto's S3 server on 127.0.0.1 with signature and policy checks on.

The pods get the store's credentials from a Secret (secretKeyRef env) and the prediction keys from a
mounted Secret. A new version with a wrong digest never serves: the old one keeps serving and the
resource says ModelLoadFailed with the server's own reason.
"""

from __future__ import annotations

import json
import string
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from support import (  # noqa: F401  (fixtures)
    ROOT,
    OperatorProcess,
    assert_loopback,
    kubectl_json,
    operator_process,
    wait_for,
)
from train_iris import train

NS = "sources"
BUCKET = "models"
API_KEY = "e2e-key-6f1d2c3b4a5968778695a4b3c2d1e0f9"
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
READ_POLICY = {"Version": "2012-10-17",
               "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}]}


@dataclass
class Store:
    endpoint: str
    access_key_id: str
    secret_access_key: str
    admin: Any  # boto3 S3 client, used before auth is switched on
    workdir: Path
    models: dict[str, tuple[str, str]] = field(default_factory=dict)  # version -> (uri, sha256)

    def publish(self, version: str) -> None:
        path, digest = train(version, self.workdir, "logreg")
        key = f"iris/{path.name}"
        self.admin.upload_file(str(path), BUCKET, key)
        self.models[version] = (f"s3://{BUCKET}/{key}", digest)


def moto_auth(endpoint: str, after: bytes) -> None:
    """Enforce signatures and policies from now on (b"0"), or never again (b"inf")."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=after, method="POST",
                                     headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert_loopback(host)
    endpoint = f"http://{host}:{port}"
    admin_kw = {"endpoint_url": endpoint, "region_name": "us-east-1",
                "aws_access_key_id": "admin", "aws_secret_access_key": "admin"}
    s3 = boto3.client("s3", **admin_kw)
    s3.create_bucket(Bucket=BUCKET)
    iam = boto3.client("iam", **admin_kw)
    iam.create_user(UserName="models-reader")
    key = iam.create_access_key(UserName="models-reader")["AccessKey"]
    iam.put_user_policy(UserName="models-reader", PolicyName="read", PolicyDocument=json.dumps(READ_POLICY))
    st = Store(endpoint, key["AccessKeyId"], key["SecretAccessKey"], s3, tmp_path_factory.mktemp("s3-models"))
    st.publish("1.0.0")
    st.publish("1.1.0")
    # Every later request (the pods') must be signed by a known key and allowed by its policy.
    moto_auth(endpoint, b"0")
    yield st
    moto_auth(endpoint, b"inf")
    server.stop()


@pytest.fixture(scope="module")
def ns(cluster: Any, operator_process: OperatorProcess, store: Store) -> Iterator[str]:
    cluster.kubectl("create", "namespace", NS)
    cluster.kubectl("-n", NS, "create", "secret", "generic", "model-store",
                    f"--from-literal=AWS_ACCESS_KEY_ID={store.access_key_id}",
                    f"--from-literal=AWS_SECRET_ACCESS_KEY={store.secret_access_key}")
    cluster.kubectl("-n", NS, "create", "secret", "generic", "iris-keys", f"--from-literal=client-a={API_KEY}")
    yield NS
    cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)


MANIFEST = string.Template("""
apiVersion: modeldeploy.dev/v1alpha1
kind: ModelDeployment
metadata: {name: iris}
spec:
  model: {name: iris, version: "$version", uri: "$uri", sha256: "$sha256"}
  replicas: 2
  resources:
    requests: {cpu: 100m, memory: 256Mi}
    limits: {cpu: "1", memory: 512Mi}
  storage:
    s3:
      endpoint: $endpoint
      region: us-east-1
      addressingStyle: path
      credentialsSecretRef: {name: model-store}
  auth:
    secretRef: {name: iris-keys}
""")


def status(cluster: Any) -> dict[str, Any]:
    return kubectl_json(cluster, "-n", NS, "get", "md", "iris").get("status") or {}  # type: ignore[no-any-return]


def ready_condition(cluster: Any) -> dict[str, Any]:
    return next((c for c in status(cluster).get("conditions") or [] if c["type"] == "Ready"), {})


def pods(cluster: Any, version: str) -> list[dict[str, Any]]:
    items = kubectl_json(cluster, "-n", NS, "get", "pods", "-l",
                         f"modeldeploy.dev/modeldeployment=iris,modeldeploy.dev/model-version={version}")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def predict(pod: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    ip = pod["status"]["podIP"]
    assert_loopback(ip)
    request = urllib.request.Request(f"http://{ip}:8080/predict", data=json.dumps({"features": IRIS_ROW}).encode(),
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_model_from_s3_becomes_ready_and_needs_a_key(cluster: Any, ns: str, store: Store) -> None:
    uri, digest = store.models["1.0.0"]
    cluster.kubectl("-n", ns, "apply", "-f", "-",
                    input=MANIFEST.substitute(version="1.0.0", uri=uri, sha256=digest, endpoint=store.endpoint))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "md/iris", "--timeout=180s")
    assert status(cluster)["currentVersion"] == "1.0.0"
    serving = pods(cluster, "1.0.0")
    assert len(serving) == 2
    for pod in serving:
        code, body = predict(pod, {})
        assert code == 401 and body["reason"] == "missing_credentials", body
        assert predict(pod, {"X-API-Key": "not-the-key"})[0] == 401
        code, body = predict(pod, {"Authorization": f"Bearer {API_KEY}"})
        assert code == 200 and body["model_version"] == "1.0.0", body
        with urllib.request.urlopen(f"http://{pod['status']['podIP']}:8080/ready", timeout=5) as r:
            assert r.status == 200  # probes need no key


def test_wrong_digest_keeps_the_old_version_and_says_model_load_failed(cluster: Any, ns: str, store: Store) -> None:
    uri, good = store.models["1.1.0"]
    patch = {"spec": {"model": {"version": "1.1.0", "uri": uri, "sha256": "0" * 64}}}
    cluster.kubectl("-n", ns, "patch", "md", "iris", "--type=merge", "-p", json.dumps(patch))
    cond = wait_for(lambda: (c := ready_condition(cluster)).get("reason") == "ModelLoadFailed" and c,
                    120, "Ready=False with reason ModelLoadFailed")
    assert cond["status"] == "False"
    assert "digest_mismatch" in cond["message"] and "1.0.0 keeps serving" in cond["message"], cond
    st = status(cluster)
    stalled = next(c for c in st["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "ModelLoadFailed")
    assert st["currentVersion"] == "1.0.0" and st["desiredVersion"] == "1.1.0"
    events = cluster.kubectl("-n", ns, "get", "events", "--field-selector",
                             "involvedObject.kind=ModelDeployment").stdout
    assert "ModelLoadFailed" in events
    old = pods(cluster, "1.0.0")
    assert len(old) == 2
    for pod in old:
        code, body = predict(pod, {"X-API-Key": API_KEY})
        assert code == 200 and body["model_version"] == "1.0.0", body
    # fixing the digest (a GitOps revert or the right sha256) rolls out and recovers
    cluster.kubectl("-n", ns, "patch", "md", "iris", "--type=merge", "-p",
                    json.dumps({"spec": {"model": {"sha256": good}}}))
    wait_for(lambda: status(cluster).get("currentVersion") == "1.1.0", 180, "version 1.1.0 to serve")
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "md/iris", "--timeout=60s")
    assert next(c for c in status(cluster)["conditions"] if c["type"] == "Stalled")["status"] == "False"

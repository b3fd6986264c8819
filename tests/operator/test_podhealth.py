"""ModelLoadFailed: the operator reads the not-ready new pods' /ready answer (no cluster, a fake HTTP fetch)."""

from __future__ import annotations

import json
from typing import Any

from modeldeploy_api import constants as c
from modeldeploy_operator import podhealth
from modeldeploy_operator.builders import parse_spec
from modeldeploy_operator.status import compute_status

from .conftest import make_md

T0 = "2026-01-01T00:00:00Z"
DIGEST_ERROR = {"error": "sha256 of s3://models/iris-2.joblib is 1f.., expected 00..; refusing to load it",
                "reason": "digest_mismatch"}


def pod(name: str, version: str, *, ready: bool = False, ip: str | None = "127.0.10.5",
        deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {c.LABEL_MD: "iris", c.LABEL_MODEL_VERSION: version}}
    if deleting:
        meta["deletionTimestamp"] = T0
    status: dict[str, Any] = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "status": status}


class Pods:
    """The one call podhealth makes on the cluster."""

    def __init__(self, *pods: dict[str, Any]) -> None:
        self.pods = list(pods)
        self.selectors: list[str] = []

    def list_objects(self, api_version: str, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        assert (api_version, kind, namespace) == ("v1", "Pod", "ml")
        self.selectors.append(selector)
        want = dict(kv.split("=") for kv in selector.split(","))
        return [p for p in self.pods if all(p["metadata"]["labels"].get(k) == v for k, v in want.items())]


def rolling_md(version: str = "2.0.0", current: str | None = "1.0.0", ready: str = "False") -> dict[str, Any]:
    md = make_md(model={"name": "iris", "version": version, "uri": "s3://models/iris-2.joblib", "sha256": "0" * 64})
    md["status"] = {"conditions": [{"type": "Ready", "status": ready, "reason": "RollingOut"}]}
    if current:
        md["status"]["currentVersion"] = current
    return md


def answers(table: dict[str, tuple[int, dict[str, Any] | None]]) -> podhealth.Fetch:
    def fetch(url: str) -> tuple[int, bytes]:
        code, body = table[url]
        return code, json.dumps(body).encode() if body is not None else b"<html>"
    return fetch


def test_parse_ready() -> None:
    assert podhealth.parse_ready(503, json.dumps(DIGEST_ERROR).encode()) == ("digest_mismatch", DIGEST_ERROR["error"])
    assert podhealth.parse_ready(503, b'{"error": "loading", "reason": "model_loading"}') is None
    assert podhealth.parse_ready(503, b'{"error": "w", "reason": "workers_loading"}') is None
    assert podhealth.parse_ready(200, b'{"status": "ready"}') is None
    assert podhealth.parse_ready(503, b"Service Unavailable") is None  # not our server (a proxy?)
    assert podhealth.parse_ready(503, b"[1]") is None


def test_failure_of_the_new_version_is_found_and_explained() -> None:
    cluster = Pods(pod("iris-old", "1.0.0", ready=True, ip="127.0.10.4"), pod("iris-new", "2.0.0"))
    md = rolling_md()
    fetch = answers({"http://127.0.10.5:8080/ready": (503, DIGEST_ERROR)})
    failure = podhealth.load_failure(cluster, md, parse_spec(md), fetch)  # type: ignore[arg-type]
    assert failure is not None
    assert cluster.selectors == [f"{c.LABEL_MD}=iris,{c.LABEL_MODEL_VERSION}=2.0.0"]
    assert (failure.pod, failure.version, failure.reason, failure.serving) == (
        "iris-new", "2.0.0", "digest_mismatch", "1.0.0")
    reason, message = failure.error()
    assert reason == "ModelLoadFailed"
    assert "iris-new" in message and "refusing to load" in message and "1.0.0 keeps serving" in message

    status = compute_status(md, None, T0, failure.error())
    failure.annotate(status)
    conds = {cnd["type"]: cnd for cnd in status["conditions"]}
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "ModelLoadFailed")
    assert "refusing to load" in conds["Ready"]["message"]
    assert (conds["Stalled"]["status"], conds["Stalled"]["reason"]) == ("True", "ModelLoadFailed")
    assert conds["Reconciling"]["status"] == "False"


def test_loading_pending_ready_and_deleted_pods_are_not_failures() -> None:
    md = rolling_md()
    cluster = Pods(pod("loading", "2.0.0", ip="127.0.10.6"), pod("pending", "2.0.0", ip=None),
                   pod("ready", "2.0.0", ready=True, ip="127.0.10.7"), pod("going", "2.0.0", deleting=True))
    fetch = answers({"http://127.0.10.6:8080/ready": (503, {"error": "loading", "reason": "model_loading"})})
    assert podhealth.load_failure(cluster, md, parse_spec(md), fetch) is None  # type: ignore[arg-type]


def test_unreachable_pods_are_skipped() -> None:
    md = rolling_md()

    def refused(url: str) -> tuple[int, bytes]:
        raise ConnectionRefusedError(url)

    cluster = Pods(pod("starting", "2.0.0"))
    assert podhealth.load_failure(cluster, md, parse_spec(md), refused) is None  # type: ignore[arg-type]


def test_no_pod_list_once_the_desired_version_serves() -> None:
    md = rolling_md(version="2.0.0", current="2.0.0", ready="True")
    cluster = Pods(pod("iris-new", "2.0.0"))
    assert podhealth.load_failure(cluster, md, parse_spec(md), answers({})) is None  # type: ignore[arg-type]
    assert cluster.selectors == []


def test_first_version_failing_names_no_serving_version() -> None:
    md = rolling_md(current=None)
    cluster = Pods(pod("iris-new", "2.0.0"))
    fetch = answers({"http://127.0.10.5:8080/ready": (503, {"error": "access to s3://m/k denied",
                                                            "reason": "access_denied"})})
    failure = podhealth.load_failure(cluster, md, parse_spec(md), fetch)  # type: ignore[arg-type]
    assert failure is not None and "keeps serving" not in failure.describe()
    assert failure.describe().startswith("version 2.0.0 cannot load on pod iris-new (access_denied)")

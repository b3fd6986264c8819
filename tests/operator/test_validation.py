"""The validation gate: a Job must score the new version above the bar before any traffic."""

from __future__ import annotations

import json
from typing import Any

from modeldeploy_api import constants as c
from modeldeploy_operator.builders import parse_spec
from modeldeploy_operator.reconcile import gated_spec, hold_gate
from modeldeploy_operator.rollout import TrackState, plan
from modeldeploy_operator.validation import Gate, build_job, evaluate, job_name, remember

from .conftest import make_md
from .test_rollout import T0, model

VALIDATION = {"dataUri": "https://data/test.csv", "target": "species", "metric": "accuracy", "threshold": 0.9}


def md_with(version: str = "2.0.0", **extra: Any) -> dict[str, Any]:
    md = make_md(validation=VALIDATION, **extra)
    md["spec"]["model"] = model(version)
    md["status"] = {"rollout": {"phase": "Succeeded", "stable": {"version": "1.0.0", "uri": "https://m/1.0.0.joblib",
                                                                   "format": "sklearn", "sha256": "1" * 64}}}
    return md


def finished_job(passed: bool, score: float) -> tuple[dict[str, Any], dict[str, Any]]:
    done = {"type": "Complete" if passed else "Failed", "status": "True",
            "reason": "" if passed else "BackoffLimitExceeded"}
    job = {"metadata": {"name": "j"}, "status": {"conditions": [done]}}
    message = json.dumps({"metric": "accuracy", "score": score, "threshold": 0.9, "passed": passed,
                          "message": f"accuracy {score} {'>=' if passed else '<'} 0.9 on 150 rows"})
    pod = {"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 0 if passed else 1,
                                                                      "message": message}}}]}}
    return job, pod


def test_job_runs_the_validate_command_with_the_server_image_and_restrictions() -> None:
    md = md_with()
    spec = parse_spec(md)
    job = build_job(md, spec, spec.model)
    ctr = job["spec"]["template"]["spec"]["containers"][0]
    assert ctr["command"][:2] == ["modeldeploy", "validate"]
    args = ctr["command"]
    assert args[args.index("--model") + 1] == "https://m/2.0.0.joblib" and args[args.index("--sha256") + 1] == "2" * 64
    assert args[args.index("--min") + 1] == "0.9" and "--termination-log" in args
    assert ctr["image"] == spec.server.image and ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["metadata"]["name"] == job_name(md, spec, spec.model)
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert "modeldeploy.dev/modeldeployment" not in labels  # the Service must never select the Job's pod
    rmse = md_with()
    rmse["spec"]["validation"] = {**VALIDATION, "metric": "rmse", "threshold": 3.5}
    s2 = parse_spec(rmse)
    assert "--max" in build_job(rmse, s2, s2.model)["spec"]["template"]["spec"]["containers"][0]["command"]


def test_gate_starts_a_job_then_holds_traffic_on_the_stable_version() -> None:
    md = md_with()
    spec = parse_spec(md)
    gate = evaluate(md, spec, spec.model, None, None, "now")
    assert gate.state == "Running" and gate.job is not None
    held = gated_spec(md, spec, gate)
    assert held.model.version == "1.0.0"
    tracks = {"stable": TrackState("1.0.0", 1, 1, True)}
    step = plan(md, held, tracks, T0)
    hold_gate(md, step, gate)
    assert step.stable_model.version == "1.0.0" and step.new_track is None
    assert step.rollout["phase"] == "Progressing" and "validating 2.0.0" in step.rollout["message"]


def test_a_failed_validation_blocks_with_the_score() -> None:
    md = md_with()
    spec = parse_spec(md)
    job, pod = finished_job(False, 0.62)
    gate = evaluate(md, spec, spec.model, job, pod, "now")
    assert gate.state == "Failed" and gate.record and gate.record["score"] == 0.62
    step = plan(md, gated_spec(md, spec, gate), {"stable": TrackState("1.0.0", 1, 1, True)}, T0)
    hold_gate(md, step, gate)
    assert step.rollout["phase"] == "Degraded" and step.rollout["reason"] == "ValidationFailed"
    assert "0.62" in step.rollout["message"] and step.stable_model.version == "1.0.0"


def test_a_pass_lets_the_rollout_start_and_is_remembered() -> None:
    md = md_with()
    spec = parse_spec(md)
    job, pod = finished_job(True, 0.97)
    gate = evaluate(md, spec, spec.model, job, pod, "now")
    assert gate.state == "Passed" and gate.record and gate.record["passed"] is True
    assert gated_spec(md, spec, gate) is spec
    md["status"]["validations"] = remember([], gate.record)
    again = evaluate(md, spec, spec.model, None, None, "later")  # no Job needed: the digest already passed
    assert again.state == "Passed" and again.job is None
    md["metadata"]["annotations"] = {"modeldeploy.dev/revalidate": "true"}
    assert evaluate(md, spec, spec.model, None, None, "later").state == "Running"


def test_first_deploy_has_no_pods_and_nothing_stable_until_validated() -> None:
    md = md_with()
    md["status"] = {}
    spec = parse_spec(md)
    gate = Gate("Running", "validating 2.0.0")
    held = gated_spec(md, spec, gate)
    assert held.replicas == 0
    step = plan(md, held, {"stable": TrackState("2.0.0", 0, 0, True)}, T0)
    hold_gate(md, step, gate)
    assert "stable" not in step.rollout and step.history == []


def test_records_are_bounded_and_deduplicated() -> None:
    rec = {"version": "1", "sha256": "a", "metric": "accuracy", "threshold": 0.9, "passed": True}
    records: list[dict[str, Any]] = []
    for i in range(15):
        records = remember(records, {**rec, "version": str(i)})
    records = remember(records, {**rec, "version": "14", "passed": False})
    assert len(records) == 10 and records[0]["passed"] is False
    assert [r["version"] for r in records].count("14") == 1


def test_the_job_reaches_the_model_store_but_gets_no_api_keys() -> None:
    md = md_with(storage={"s3": {"endpoint": "http://127.0.0.1:9000", "credentialsSecretRef": {"name": "store"}}},
                 auth={"secretRef": {"name": "api-keys"}})
    md["spec"]["model"]["uri"] = "s3://models/iris-2.0.0.joblib"
    spec = parse_spec(md)
    pod = build_job(md, spec, spec.model)["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["MODELDEPLOY_S3_ENDPOINT"]["value"] == "http://127.0.0.1:9000"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "store"
    assert "auth" not in {v["name"] for v in pod["volumes"]}


def test_a_test_set_on_a_claim_of_its_own_is_mounted_read_only_once() -> None:
    md = md_with()
    md["spec"]["model"]["uri"] = "pvc://models/iris-2.0.0.joblib"
    md["spec"]["validation"] = {**VALIDATION, "dataUri": "pvc://datasets/iris/test.csv"}
    spec = parse_spec(md)
    pod = build_job(md, spec, spec.model)["spec"]["template"]["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
              for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"model-pvc": "models", "data-pvc": "datasets"}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["data-pvc"] == {"name": "data-pvc", "mountPath": f"{c.PVC_ROOT}/datasets", "readOnly": True}
    assert "--data" in (args := pod["containers"][0]["command"]) and args[args.index("--data") + 1].startswith("pvc://")
    md["spec"]["validation"]["dataUri"] = "pvc://models/iris/test.csv"  # on the model's claim: mounted once
    spec = parse_spec(md)
    pod = build_job(md, spec, spec.model)["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"] if "persistentVolumeClaim" in v] == ["model-pvc"]

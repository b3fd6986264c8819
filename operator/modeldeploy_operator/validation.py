"""The validation gate, pure: a new version gets traffic only after a Job scored it above the bar.

Results are kept in `status.validations` by model digest, so a GitOps revert to a version that
already passed is not validated again (unless `modeldeploy.dev/revalidate=true` asks for it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from modeldeploy_api import constants as c
from modeldeploy_api.models import ModelDeploymentSpec, ModelSpec

from .builders import (
    CONTAINER_SECURITY_CONTEXT,
    POD_SECURITY_CONTEXT,
    Body,
    _resources,
    add_claims,
    owner_reference,
    store_access,
)

ANNOTATION_REVALIDATE = f"{c.GROUP}/revalidate"
LOWER_IS_BETTER = frozenset({"rmse", "mae"})
RECORD_LIMIT = 10


@dataclass(frozen=True)
class Gate:
    state: str  # NotRequired | Running | Passed | Failed
    message: str = ""
    record: Body | None = None  # a result to add to status.validations
    job: Body | None = None  # the Job to create (Running, none yet)


def _key(spec: ModelDeploymentSpec, model: ModelSpec) -> str:
    v = spec.validation
    assert v is not None
    blob = json.dumps([model.uri, model.sha256, v.data_uri, v.data_sha256, v.target, v.metric, v.threshold])
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def job_name(md: Body, spec: ModelDeploymentSpec, model: ModelSpec) -> str:
    return f"{md['metadata']['name'][:40]}-validate-{_key(spec, model)}"


def find_record(records: list[Body], spec: ModelDeploymentSpec, model: ModelSpec) -> Body | None:
    v = spec.validation
    assert v is not None
    for r in records:
        if (r.get("version"), r.get("sha256"), r.get("metric"), r.get("threshold")) == (
            model.version, model.sha256, v.metric, v.threshold
        ):
            return r
    return None


def build_job(md: Body, spec: ModelDeploymentSpec, model: ModelSpec) -> Body:
    v = spec.validation
    assert v is not None
    args = ["--model", model.uri, "--format", model.format, "--data", v.data_uri, "--target", v.target,
            "--metric", v.metric, "--max" if v.metric in LOWER_IS_BETTER else "--min", repr(v.threshold),
            "--cache-dir", c.MODEL_CACHE_DIR, "--termination-log", "/dev/termination-log"]
    if model.sha256:
        args += ["--sha256", model.sha256]
    elif model.allow_unverified:
        args.append("--allow-unverified")
    if v.data_sha256:
        args += ["--data-sha256", v.data_sha256]
    name = md["metadata"]["name"]
    store_env, store_volumes, store_mounts = store_access(spec)  # s3://, gs://, pvc:// models
    add_claims(store_volumes, store_mounts, ("data-pvc", v.data_uri))  # the test set may be on a claim of its own
    env = store_env + [{"name": e.name, **({"value": e.value} if e.value is not None else {}),
                        **({"valueFrom": e.value_from} if e.value_from is not None else {})} for e in spec.server.env]
    # Not the server pods' labels: a Service selecting the model's pods must never pick the Job's pod.
    labels = {c.LABEL_NAME: "modeldeploy-validation", c.LABEL_INSTANCE: name, c.LABEL_MANAGED_BY: c.MANAGED_BY,
              c.LABEL_COMPONENT: "validation", f"{c.GROUP}/validation-for": name,
              c.LABEL_MODEL_VERSION: model.version}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(md, spec, model),
            "namespace": md["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(md)],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": v.timeout_seconds,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": POD_SECURITY_CONTEXT,
                    "containers": [{
                        "name": "validate",
                        "image": spec.server.image,
                        "imagePullPolicy": spec.server.image_pull_policy,
                        "command": ["modeldeploy", "validate", *args],
                        "env": env,
                        "resources": _resources(spec),
                        "securityContext": CONTAINER_SECURITY_CONTEXT,
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                        "volumeMounts": [{"name": "model-cache", "mountPath": c.MODEL_CACHE_DIR},
                                         {"name": "tmp", "mountPath": c.TMP_DIR}, *store_mounts],
                    }],
                    "volumes": [{"name": "model-cache", "emptyDir": {"sizeLimit": "4Gi"}},
                                {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}, *store_volumes],
                },
            },
        },
    }


def _terminated(pod: Body | None) -> Body:
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        term = (status.get("state") or {}).get("terminated")
        if term:
            return dict(term)
    return {}


def read_result(job: Body, pod: Body | None) -> tuple[bool, Body] | None:
    """(passed, details) once the Job has finished; None while it runs."""
    conditions = {cnd.get("type"): cnd for cnd in (job.get("status") or {}).get("conditions") or []
                  if cnd.get("status") == "True"}
    if "Complete" not in conditions and "Failed" not in conditions:
        return None
    term = _terminated(pod)
    details: Body = {}
    try:
        details = json.loads(term.get("message") or "{}")
    except ValueError:
        details = {}
    if not details:
        failed = conditions.get("Failed") or {}
        details = {"message": f"validation Job failed: {failed.get('reason', '')} {failed.get('message', '')} "
                              f"(exit code {term.get('exitCode', '?')})".strip()}
    return "Complete" in conditions and bool(details.get("passed", "Complete" in conditions)), details


def evaluate(md: Body, spec: ModelDeploymentSpec, model: ModelSpec, job: Body | None, pod: Body | None,
             now: str) -> Gate:
    """Where the gate stands for `model` (the version the spec wants)."""
    if spec.validation is None:
        return Gate("NotRequired")
    records: list[Body] = (md.get("status") or {}).get("validations") or []
    revalidate = ((md["metadata"].get("annotations") or {}).get(ANNOTATION_REVALIDATE) == "true")
    known = None if revalidate else find_record(records, spec, model)
    if known is not None:
        return Gate("Passed" if known.get("passed") else "Failed", str(known.get("message", "")))
    if job is None:
        return Gate("Running", f"validating {model.version}: starting Job {job_name(md, spec, model)}",
                    job=build_job(md, spec, model))
    result = read_result(job, pod)
    if result is None:
        return Gate("Running", f"validating {model.version}: Job {job['metadata']['name']} is running")
    passed, details = result
    record: Body = {"version": model.version, "sha256": model.sha256, "metric": spec.validation.metric,
              "threshold": spec.validation.threshold, "passed": passed, "at": now,
              "message": str(details.get("message") or ("passed" if passed else "failed"))[:500]}
    if isinstance(details.get("score"), int | float):
        record["score"] = float(details["score"])
    return Gate("Passed" if passed else "Failed", record["message"], record=record)


def remember(records: list[Body], record: Body) -> list[Body]:
    """Newest first, one entry per (version, digest, metric, threshold), bounded."""
    same = ("version", "sha256", "metric", "threshold")
    rest = [r for r in records if tuple(r.get(k) for k in same) != tuple(record.get(k) for k in same)]
    return [record, *rest][:RECORD_LIMIT]


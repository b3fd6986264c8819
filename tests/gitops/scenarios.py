"""ModelDeployments whose status comes from the real operator code (compute_status), one per state."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modeldeploy_api import constants as c
from modeldeploy_operator.status import compute_status

Body = dict[str, Any]
T0, T1 = "2026-11-24T10:00:00Z", "2026-11-24T10:05:00Z"


def model_deployment(version: str = "1.0.0", replicas: int = 2, generation: int = 1) -> Body:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": "iris", "namespace": "ml", "uid": "uid-1", "generation": generation},
        "spec": {
            "model": {"name": "iris", "version": version, "uri": f"https://models.example/iris-{version}.joblib",
                      "sha256": "a" * 64},
            "replicas": replicas,
        },
    }


def deployment(version: str = "1.0.0", *, replicas: int = 2, updated: int | None = None,
               available: int | None = None, total: int | None = None,
               conditions: list[Body] | None = None) -> Body:
    updated = replicas if updated is None else updated
    available = replicas if available is None else available
    return {
        "metadata": {"generation": 1, "annotations": {c.LABEL_MODEL_VERSION: version}},
        "status": {"observedGeneration": 1, "replicas": replicas if total is None else total,
                   "updatedReplicas": updated, "availableReplicas": available, "readyReplicas": available,
                   "conditions": conditions or []},
    }


def with_status(md: Body, dep: Body | None, error: tuple[str, str] | None = None, now: str = T0) -> Body:
    md = copy.deepcopy(md)
    md["status"] = compute_status(md, dep, now, error)
    return md


def _new_version(version: str, generation: int) -> Body:
    """The resource after a GitOps commit changed the model version: version 1.0.0 was serving."""
    md = with_status(model_deployment(), deployment())
    md["metadata"]["generation"] = generation
    md["spec"]["model"]["version"] = version
    md["spec"]["model"]["uri"] = f"https://models.example/iris-{version}.joblib"
    return md


def no_deployment_yet() -> Body:
    return with_status(model_deployment(), None)


def ready() -> Body:
    return with_status(model_deployment(), deployment())


def scaled_to_zero() -> Body:
    return with_status(model_deployment(replicas=0), deployment(replicas=0))


def rolling_out() -> Body:
    return with_status(_new_version("1.1.0", 2), deployment("1.1.0", updated=1, available=2, total=3), now=T1)


def generation_not_observed() -> Body:
    return _new_version("1.1.0", 2)  # the operator has not written status for generation 2 yet


def progress_deadline_exceeded() -> Body:
    stuck = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
              "message": 'ReplicaSet "iris-7d9" has timed out progressing.'}]
    return with_status(_new_version("1.2.0", 2), deployment("1.2.0", updated=1, available=2, total=3,
                                                            conditions=stuck), now=T1)


def replica_failure() -> Body:
    failing = [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "message": 'pods "iris-7d9-" is forbidden: exceeded quota'}]
    return with_status(model_deployment(), deployment(updated=0, available=0, total=0, conditions=failing))


def apply_forbidden() -> Body:
    return with_status(model_deployment(), None, ("ApplyFailed", "403: deployments.apps is forbidden"))


@dataclass(frozen=True)
class Scenario:
    build: Callable[[], Body]
    kstatus: str  # what kstatus (Flux) must say
    argocd: str  # what deploy/argocd/health.lua must say


SCENARIOS: dict[str, Scenario] = {
    "no-deployment-yet": Scenario(no_deployment_yet, "InProgress", "Progressing"),
    "ready": Scenario(ready, "Current", "Healthy"),
    "scaled-to-zero": Scenario(scaled_to_zero, "Current", "Healthy"),
    "rolling-out": Scenario(rolling_out, "InProgress", "Progressing"),
    "generation-not-observed": Scenario(generation_not_observed, "InProgress", "Progressing"),
    "progress-deadline-exceeded": Scenario(progress_deadline_exceeded, "Failed", "Degraded"),
    "replica-failure": Scenario(replica_failure, "Failed", "Degraded"),
    "apply-forbidden": Scenario(apply_forbidden, "Failed", "Degraded"),
}

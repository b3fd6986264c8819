"""compute_status: from what the cluster shows to an honest `status` (kstatus conventions)."""

from __future__ import annotations

from typing import Any

from modeldeploy_api import constants as c
from modeldeploy_operator.patches import merge_patch
from modeldeploy_operator.reconcile import transitions
from modeldeploy_operator.status import compute_status, condition

from .conftest import make_md

T0, T1 = "2026-11-24T10:00:00Z", "2026-11-24T10:05:00Z"


def deployment(version: str = "1.0.0", *, generation: int = 1, observed: int = 1, replicas: int = 1,
               updated: int = 1, available: int = 1, ready: int | None = None,
               conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation, "annotations": {c.LABEL_MODEL_VERSION: version}},
        "status": {"observedGeneration": observed, "replicas": replicas, "updatedReplicas": updated,
                   "availableReplicas": available, "readyReplicas": available if ready is None else ready,
                   "conditions": conditions or []},
    }


def cond(status: dict[str, Any], ctype: str) -> tuple[str, str]:
    found = condition(status, ctype)
    assert found is not None, ctype
    return found["status"], found["reason"]


def test_no_deployment_yet_is_reconciling_not_ready() -> None:
    st = compute_status(make_md(), None, T0)
    assert cond(st, "Ready") == ("False", "Progressing")
    assert cond(st, "Reconciling")[0] == "True"
    assert cond(st, "Stalled") == ("False", "NotStalled")
    assert "currentVersion" not in st
    assert st["observedGeneration"] == 1
    assert st["selector"] == f"{c.LABEL_MD}=iris,{c.LABEL_TRACK}=stable"
    assert st["url"] == "http://iris.ml.svc.cluster.local"
    assert st["drift"]["status"] == "Unknown"


def test_available_deployment_makes_it_ready_and_current() -> None:
    st = compute_status(make_md(), deployment(), T0)
    assert cond(st, "Ready") == ("True", "Available")
    assert cond(st, "Reconciling") == ("False", "Reconciled")
    assert st["currentVersion"] == "1.0.0" and "previousVersion" not in st
    assert (st["replicas"], st["readyReplicas"], st["availableReplicas"]) == (1, 1, 1)


def test_stale_deployment_generation_is_not_done() -> None:
    st = compute_status(make_md(), deployment(generation=2, observed=1), T0)
    assert cond(st, "Ready")[0] == "False"


def test_version_change_keeps_old_current_until_all_replicas_run_the_new_one() -> None:
    md = make_md(replicas=2)
    md["status"] = compute_status(md, deployment(replicas=2, updated=2, available=2), T0)
    md["spec"]["model"]["version"] = "1.1.0"
    md["metadata"]["generation"] = 2
    # mid-rollout: 3 pods (1 surge), 1 updated
    mid = compute_status(md, deployment("1.1.0", generation=2, observed=2, replicas=3, updated=1, available=2), T1)
    assert mid["currentVersion"] == "1.0.0" and mid["desiredVersion"] == "1.1.0"
    assert cond(mid, "Ready") == ("False", "RollingOut")
    assert cond(mid, "Reconciling") == ("True", "RollingOut")
    assert "1/2 updated" in condition(mid, "Reconciling")["message"]  # type: ignore[index]
    md["status"] = mid
    done = compute_status(md, deployment("1.1.0", generation=2, observed=2, replicas=2, updated=2, available=2), T1)
    assert done["currentVersion"] == "1.1.0" and done["previousVersion"] == "1.0.0"
    assert cond(done, "Ready") == ("True", "Available")
    events = transitions(mid, done)
    assert ("Normal", "VersionAvailable") in [(e[0], e[1]) for e in events]


def test_old_replicas_still_running_is_not_complete() -> None:
    st = compute_status(make_md(replicas=2), deployment(replicas=3, updated=2, available=3), T0)
    assert cond(st, "Ready")[0] == "False"


def test_progress_deadline_is_stalled_with_reason() -> None:
    dep = deployment(updated=1, available=0, conditions=[
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
         "message": 'ReplicaSet "iris-abc" has timed out progressing.'}])
    st = compute_status(make_md(), dep, T0)
    assert cond(st, "Stalled") == ("True", "ProgressDeadlineExceeded")
    assert cond(st, "Reconciling")[0] == "False"
    assert cond(st, "Ready") == ("False", "ProgressDeadlineExceeded")
    assert "timed out" in condition(st, "Stalled")["message"]  # type: ignore[index]
    assert [e[:2] for e in transitions({}, st)] == [("Warning", "ProgressDeadlineExceeded")]


def test_apply_error_is_stalled() -> None:
    st = compute_status(make_md(), None, T0, error=("ApplyFailed", "422: Deployment is invalid"))
    assert cond(st, "Stalled") == ("True", "ApplyFailed")
    assert condition(st, "Stalled")["message"] == "422: Deployment is invalid"  # type: ignore[index]


def test_scaled_to_zero_is_ready() -> None:
    st = compute_status(make_md(replicas=0), deployment(replicas=0, updated=0, available=0), T0)
    assert cond(st, "Ready") == ("True", "ScaledToZero")


def test_transition_times_only_move_on_change() -> None:
    md = make_md()
    first = compute_status(md, None, T0)
    md["status"] = first
    again = compute_status(md, None, T1)
    assert not merge_patch(first, again)  # what the reconcile writes: nothing
    assert condition(again, "Ready")["lastTransitionTime"] == T0  # type: ignore[index]
    ready = compute_status(md, deployment(), T1)
    assert condition(ready, "Ready")["lastTransitionTime"] == T1  # type: ignore[index]
    assert merge_patch(first, ready)


def test_foreign_conditions_and_drift_are_kept() -> None:
    md = make_md()
    md["status"] = {"conditions": [{"type": "Drifted", "status": "True", "reason": "FeatureDrift"}],
                    "drift": {"status": "Drifted"}}
    st = compute_status(md, deployment(), T0)
    assert cond(st, "Drifted") == ("True", "FeatureDrift")
    assert st["drift"] == {"status": "Drifted"}

"""Pure status computation: the ModelDeployment and what the cluster shows in, `status` out (kstatus conventions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from modeldeploy_api import constants as c

from .builders import Body, parse_spec, selector_string, service_url

if TYPE_CHECKING:
    from .rollout import Plan

READY, RECONCILING, STALLED = "Ready", "Reconciling", "Stalled"


@dataclass(frozen=True)
class Rollout:
    """What the observed Deployment says about the desired version."""

    complete: bool
    available: bool
    stalled_reason: str | None
    message: str


def _deployment_condition(dep: Body, ctype: str) -> Body:
    for cond in (dep.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return {}


def assess_rollout(desired_replicas: int, desired_version: str, dep: Body | None) -> Rollout:
    if dep is None:
        return Rollout(False, False, None, "Deployment not created yet")
    st = dep.get("status") or {}
    version = ((dep.get("metadata") or {}).get("annotations") or {}).get(c.LABEL_MODEL_VERSION)
    generation = (dep.get("metadata") or {}).get("generation", 0)
    observed = st.get("observedGeneration", 0) >= generation and version == desired_version
    updated = st.get("updatedReplicas", 0) or 0
    total = st.get("replicas", 0) or 0
    available = st.get("availableReplicas", 0) or 0
    ready = st.get("readyReplicas", 0) or 0
    progressing = _deployment_condition(dep, "Progressing")
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return Rollout(
            False,
            available >= desired_replicas,
            "ProgressDeadlineExceeded",
            f"version {desired_version} made no progress: {ready}/{desired_replicas} replicas ready "
            f"({progressing.get('message', '')})",
        )
    complete = observed and updated >= desired_replicas and total == updated and available >= desired_replicas
    if complete:
        return Rollout(True, True, None, f"{available}/{desired_replicas} replicas serving version {desired_version}")
    failure = _deployment_condition(dep, "ReplicaFailure")
    if failure.get("status") == "True":
        return Rollout(False, False, "ReplicaFailure", failure.get("message", "pods cannot be created"))
    return Rollout(
        False,
        available >= desired_replicas and desired_replicas > 0,
        None,
        f"rolling out version {desired_version}: {updated}/{desired_replicas} updated, "
        f"{available} available",
    )


def _condition(
    previous: list[Body], ctype: str, status: bool, reason: str, message: str, generation: int, now: str
) -> Body:
    value = "True" if status else "False"
    old = next((p for p in previous if p.get("type") == ctype), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == value else None
    return {
        "type": ctype,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or now,
        "observedGeneration": generation,
    }


STALLED_PHASES = {"Degraded": "AnalysisFailed", "Aborted": "RolloutAborted"}


def compute_status(md: Body, deployment: Body | None, now: str, error: tuple[str, str] | None = None,
                   plan: Plan | None = None) -> Body:
    """The whole `status` for `md` given its observed stable Deployment and the rollout `plan`.

    `error` is (reason, message) of a failure to apply the children; it makes the resource Stalled.
    """
    meta = md["metadata"]
    previous: Body = md.get("status") or {}
    prev_conditions: list[Body] = previous.get("conditions") or []
    generation = int(meta.get("generation", 0))
    spec = parse_spec(md)
    desired = spec.model.version
    # The stable Deployment runs the plan's stable version (during a canary: the old one).
    stable_version = plan.stable_model.version if plan else desired
    stable_replicas = plan.stable_replicas if plan else spec.replicas
    rollout = assess_rollout(stable_replicas, stable_version, deployment)
    phase = plan.rollout.get("phase") if plan else None
    settled = rollout.complete and phase in (None, "Succeeded") and stable_version == desired

    current = previous.get("currentVersion")
    prev_version = previous.get("previousVersion")
    if settled and current != desired:
        prev_version, current = current, desired

    stalled_reason = error[0] if error else rollout.stalled_reason
    stalled_message = error[1] if error else rollout.message
    if plan and not error and phase in STALLED_PHASES:
        stalled_reason = str(plan.rollout.get("reason") or STALLED_PHASES[phase])
        stalled_message = str(plan.rollout.get("message", ""))
    reconciling = not settled and stalled_reason is None
    message = rollout.message
    if plan and phase not in (None, "Succeeded"):
        message = str(plan.rollout.get("message") or message)
    if settled:
        ready_reason = "ScaledToZero" if spec.replicas == 0 else "Available"
    elif stalled_reason:
        ready_reason = stalled_reason
    elif phase == "Paused":
        ready_reason = "Paused"
    else:
        ready_reason = "RollingOut" if current and current != desired else "Progressing"
    rollout = Rollout(settled, rollout.available, stalled_reason, message)

    conditions = [
        _condition(prev_conditions, READY, rollout.complete, ready_reason, rollout.message, generation, now),
        _condition(
            prev_conditions,
            RECONCILING,
            reconciling,
            ready_reason if reconciling else "Reconciled",
            rollout.message if reconciling else "",
            generation,
            now,
        ),
        _condition(
            prev_conditions,
            STALLED,
            stalled_reason is not None,
            stalled_reason or "NotStalled",
            stalled_message if stalled_reason else "",
            generation,
            now,
        ),
    ]
    # Conditions other operators' features own (e.g. Drifted) are carried over untouched.
    conditions += [p for p in prev_conditions if p.get("type") not in (READY, RECONCILING, STALLED)]

    dep_status: Body = (deployment or {}).get("status") or {}
    status: Body = {
        "observedGeneration": generation,
        "conditions": conditions,
        "desiredVersion": desired,
        "replicas": dep_status.get("replicas", 0) or 0,
        "readyReplicas": dep_status.get("readyReplicas", 0) or 0,
        "updatedReplicas": dep_status.get("updatedReplicas", 0) or 0,
        "availableReplicas": dep_status.get("availableReplicas", 0) or 0,
        "selector": selector_string(meta["name"]),
        "url": service_url(meta["name"], meta["namespace"]),
        "drift": previous.get("drift") or {"status": "Unknown", "message": "drift monitoring not configured"},
    }
    if current:
        status["currentVersion"] = current
    if prev_version:
        status["previousVersion"] = prev_version
    if plan:
        weights = plan.rollout.get("weights") or {}
        status["rollout"] = {**plan.rollout, "traffic": ",".join(f"{v}={w}" for v, w in weights.items())}
        status["history"] = plan.history
    return status


def condition(status: Body, ctype: str) -> Body | None:
    return next((cnd for cnd in status.get("conditions") or [] if cnd.get("type") == ctype), None)


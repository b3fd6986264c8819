"""One idempotent reconcile: apply the desired children, observe them, write status. Called from every trigger."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import defaultdict
from collections.abc import Callable

from kubernetes.client.exceptions import ApiException
from modeldeploy_api import constants as c
from modeldeploy_api.models import ModelDeploymentSpec
from pydantic import ValidationError

from . import drift, podhealth
from .apply import Body, Cluster
from .builders import build_children, deployment_name, parse_spec
from .durations import parse_duration, ts
from .patches import merge_patch
from .rollout import Plan, TrackState, model_ref, plan, ref_model
from .scrape import scrape_tracks
from .status import READY, STALLED, compute_status, condition
from .validation import ANNOTATION_REVALIDATE, Gate, evaluate, job_name, remember

log = logging.getLogger(__name__)

# Triggers (the resource's own events, its children's events, the resync loop) may overlap;
# one lock per ModelDeployment keeps their status writes in order.
_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)


def now_rfc3339() -> str:
    return ts(dt.datetime.now(dt.UTC))


def _api_error(exc: ApiException) -> tuple[str, str]:
    import json

    try:
        message = json.loads(exc.body or "{}").get("message") or exc.reason
    except ValueError:
        message = exc.reason
    return "ApplyFailed", f"{exc.status}: {message}"


Notify = Callable[[Body, str, str, str], None]  # (resource, "Normal"|"Warning", reason, message)


TRACKS = (c.TRACK_STABLE, "canary", "preview")
PRUNABLE = (("apps/v1", "Deployment"), ("v1", "Service"), ("gateway.networking.k8s.io/v1", "HTTPRoute"))


def track_state(dep: Body) -> TrackState:
    meta, spec, st = dep.get("metadata") or {}, dep.get("spec") or {}, dep.get("status") or {}
    want = int(spec.get("replicas", 1))
    updated, total = st.get("updatedReplicas", 0) or 0, st.get("replicas", 0) or 0
    available = st.get("availableReplicas", 0) or 0
    current = (st.get("observedGeneration", 0) or 0) >= (meta.get("generation", 0) or 0)
    return TrackState(
        version=(meta.get("annotations") or {}).get(c.LABEL_MODEL_VERSION),
        replicas=want,
        available=available,
        complete=current and updated >= want and total == updated and available >= want,
    )


def reconcile(cluster: Cluster, md: Body, notify: Notify | None = None) -> float | None:
    """Bring the cluster in line with `md`. Returns when to look again (seconds) while a rollout is timed."""
    meta = md["metadata"]
    ns, name = meta["namespace"], meta["name"]
    if meta.get("deletionTimestamp"):
        return None
    with _locks[(ns, name)]:
        fresh = cluster.get_model_deployment(ns, name)
        if fresh is None or fresh["metadata"].get("uid") != meta.get("uid"):
            return None  # deleted (or replaced) meanwhile: garbage collection handles the children
        md = fresh
        old = md.get("status") or {}
        now = dt.datetime.now(dt.UTC)
        error: tuple[str, str] | None = None
        try:
            spec = parse_spec(md)
        except ValidationError as exc:  # the API server's schema should make this unreachable
            _write(cluster, md, old, compute_status(md, None, ts(now), ("InvalidSpec", str(exc)[:500])), notify)
            return None
        deployments = {t: d for t in TRACKS if (d := cluster.get("apps/v1", "Deployment", ns,
                                                                  deployment_name(name, t)))}
        tracks = {t: track_state(d) for t, d in deployments.items()}
        gate = _validation_gate(cluster, md, spec, ts(now))
        plan_spec = gated_spec(md, spec, gate)
        step = plan(md, plan_spec, tracks, now)
        if step.needs_samples:
            samples = scrape_tracks(cluster, ns, name, [c.TRACK_STABLE, "canary"], spec.server.port)
            step = plan(md, plan_spec, tracks, now, samples)
        hold_gate(md, step, gate)
        try:
            if gate.job is not None:
                cluster.apply(gate.job)
            desired = build_children(md, step)
            for child in desired:
                cluster.apply(child)
            _prune(cluster, ns, name, desired)
        except ApiException as exc:
            if exc.status in (400, 403, 404, 422):
                error = _api_error(exc)  # a human must act: Stalled, retried by the resync loop
            else:
                raise
        if step.consume_annotations:
            cluster.remove_annotations(ns, name, step.consume_annotations)
        stable = cluster.get("apps/v1", "Deployment", ns, name)
        failure = podhealth.load_failure(cluster, md, spec) if error is None else None
        if failure is not None:  # the new version's servers say why they are not ready
            error = failure.error()
        status = compute_status(md, stable, ts(now), error, step)
        if failure is not None:
            failure.annotate(status)
        validations = old.get("validations") or []
        if gate.record is not None:
            validations = remember(validations, gate.record)
            step.events.append(("Normal" if gate.state == "Passed" else "Warning",
                                "ValidationPassed" if gate.state == "Passed" else "ValidationFailed", gate.message))
        if validations:
            status["validations"] = validations
        requeue = _drift(cluster, md, spec, step, status, old, now)
        for etype, reason, message in step.events:
            _event(md, etype, reason, message, notify)
        _write(cluster, md, old, status, notify)
        return min((t for t in (step.requeue_seconds, requeue) if t is not None), default=None)


def _validation_gate(cluster: Cluster, md: Body, spec: ModelDeploymentSpec, now: str) -> Gate:
    """Run (or read) the validation Job for a version that is not yet the stable one."""
    stable = ((md.get("status") or {}).get("rollout") or {}).get("stable")
    if spec.validation is None or stable == model_ref(spec.model):
        return Gate("NotRequired")
    ns = md["metadata"]["namespace"]
    name = job_name(md, spec, spec.model)
    job = cluster.get("batch/v1", "Job", ns, name)
    pods = cluster.list_objects("v1", "Pod", ns, f"job-name={name}") if job else []
    return evaluate(md, spec, spec.model, job, pods[0] if pods else None, now)


def gated_spec(md: Body, spec: ModelDeploymentSpec, gate: Gate) -> ModelDeploymentSpec:
    """While the gate is closed, plan as if the spec still asked for the stable version (or for no pods)."""
    if gate.state not in ("Running", "Failed"):
        return spec
    stable = ((md.get("status") or {}).get("rollout") or {}).get("stable")
    if stable:
        return spec.model_copy(update={"model": ref_model(stable, spec.model.name)})
    return spec.model_copy(update={"replicas": 0})


def hold_gate(md: Body, step: Plan, gate: Gate) -> None:
    """Say in the rollout status that (and why) the new version is held back."""
    if gate.state not in ("Running", "Failed"):
        return
    old = (md.get("status") or {}).get("rollout") or {}
    if not old.get("stable"):
        step.rollout.pop("stable", None)  # nothing validated has ever run: nothing is stable yet
        step.history = list((md.get("status") or {}).get("history") or [])
    if gate.state == "Running":
        step.rollout.update(phase="Progressing", message=gate.message)
        step.requeue_seconds = 3
    else:
        step.rollout.update(phase="Degraded", reason="ValidationFailed",
                            message=f"validation of {md['spec']['model']['version']} failed: {gate.message}")
    if gate.record is not None and ANNOTATION_REVALIDATE in (md["metadata"].get("annotations") or {}):
        step.consume_annotations = (*step.consume_annotations, ANNOTATION_REVALIDATE)


def _drift(cluster: Cluster, md: Body, spec: ModelDeploymentSpec, step: Plan, status: Body, old: Body,
           now: dt.datetime) -> float | None:
    """Judge drift over all stable replicas when it is due; keep the last verdict otherwise."""
    conf = spec.monitoring.drift
    conditions = [cnd for cnd in status["conditions"] if cnd.get("type") != drift.DRIFTED]
    if conf is None:
        status["drift"] = {"status": "Unknown", "message": "drift monitoring not configured"}
        status["conditions"] = conditions
        return None
    previous = old.get("drift") or {}
    interval = parse_duration(conf.interval)
    if not drift.due(conf, previous, now):
        status["drift"] = previous  # the last verdict and its Drifted condition stay as they are
        return interval
    entry, _ = drift.collect(cluster, md, conf, spec.server.port, step.stable_model.version, now)
    status["drift"] = entry
    before = next((c for c in old.get("conditions") or [] if c.get("type") == drift.DRIFTED), None)
    generation = int(md["metadata"].get("generation", 0))
    after = drift.drifted_condition(entry, old.get("conditions") or [], ts(now), generation)
    status["conditions"] = [*conditions, after]
    event = drift.transition_event(before, after, entry)
    if event:
        step.events.append(event)
    return interval


def _prune(cluster: Cluster, ns: str, name: str, desired: list[Body]) -> None:
    """Delete children this ModelDeployment no longer wants (a finished canary, a preview Service...)."""
    keep = {(o["kind"], o["metadata"]["name"]) for o in desired}
    for api_version, kind in PRUNABLE:
        try:
            selector = f"{c.LABEL_MD}={name},{c.LABEL_MANAGED_BY}={c.MANAGED_BY}"
            items = cluster.list_objects(api_version, kind, ns, selector)
        except ApiException as exc:
            if exc.status == 404:  # e.g. Gateway API not installed
                continue
            raise
        for item in items:
            if (kind, item["metadata"]["name"]) not in keep:
                cluster.delete(api_version, kind, ns, item["metadata"]["name"])


def _event(md: Body, etype: str, reason: str, message: str, notify: Notify | None) -> None:
    meta = md["metadata"]
    log.log(logging.WARNING if etype == "Warning" else logging.INFO, "%s/%s %s: %s",
            meta["namespace"], meta["name"], reason, message)
    if notify:
        notify(md, etype, reason, message)


def _write(cluster: Cluster, md: Body, old: Body, status: Body, notify: Notify | None) -> None:
    if not merge_patch(old, status):
        return
    meta = md["metadata"]
    cluster.patch_status(meta["namespace"], meta["name"], old, status)
    for etype, reason, message in transitions(old, status):
        _event(md, etype, reason, message, notify)


def transitions(old: Body, new: Body) -> list[tuple[str, str, str]]:
    """Events worth posting: only what changed state, never a repeat."""
    out: list[tuple[str, str, str]] = []
    if new.get("currentVersion") and new.get("currentVersion") != old.get("currentVersion"):
        out.append(("Normal", "VersionAvailable",
                    f"version {new['currentVersion']} is serving on all replicas "
                    f"(previous: {new.get('previousVersion') or 'none'})"))
    was_ready, ready = condition(old, READY) or {}, condition(new, READY) or {}
    first_sight = not was_ready
    changed = (was_ready.get("status"), was_ready.get("reason")) != (ready.get("status"), ready.get("reason"))
    if ready and changed and not (first_sight and ready["status"] != "True"):  # no "not ready" on creation
        out.append(("Normal", "Ready" if ready["status"] == "True" else "NotReady",
                    f"{ready['reason']}: {ready['message']}"))
    was_stalled, stalled = condition(old, STALLED) or {}, condition(new, STALLED) or {}
    if stalled.get("status") == "True" and (was_stalled.get("status"), was_stalled.get("reason")) != (
        "True", stalled["reason"]
    ):
        out.append(("Warning", stalled["reason"], stalled["message"]))
    elif stalled.get("status") == "False" and was_stalled.get("status") == "True":
        out.append(("Normal", "Recovered", f"no longer stalled ({was_stalled.get('reason')})"))
    return out


def owner_of(child: Body) -> tuple[str, str] | None:
    meta = child.get("metadata") or {}
    name = (meta.get("labels") or {}).get(c.LABEL_MD)
    return (meta["namespace"], name) if name else None

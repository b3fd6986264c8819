"""The rollout state machine, pure: spec + persisted `status.rollout` + observations + now -> a Plan.

All state lives in `status.rollout`, so an operator killed mid-step resumes the same step.
Tracks: `stable` (Deployment NAME) always exists; `canary` (NAME-canary) or `preview` (NAME-preview)
only while a new version is being judged.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from modeldeploy_api import constants as c
from modeldeploy_api.models import ModelDeploymentSpec, ModelSpec

from .analysis import Sample, Verdict, judge
from .durations import parse_duration, parse_ts, ts

Body = dict[str, Any]
ANNOTATION_ABORT = f"{c.GROUP}/abort"
ANNOTATION_PROMOTE = f"{c.GROUP}/promote"
HISTORY_LIMIT = 10
ACTIVE_PHASES = frozenset({"Progressing", "Paused", "Promoting"})


@dataclass(frozen=True)
class TrackState:
    """What the Deployment of one track shows."""

    version: str | None
    replicas: int
    available: int
    complete: bool  # the Deployment runs `version` on all of its replicas


@dataclass
class Plan:
    rollout: Body
    history: list[Body]
    stable_model: ModelSpec
    stable_replicas: int
    new_track: str | None = None  # "canary" | "preview"
    new_model: ModelSpec | None = None
    new_replicas: int = 0
    service_track: str | None = None  # what the main Service selects; None: every track (replica ratio)
    weights: tuple[int, int] = (100, 0)  # stable, new: what HTTPRoute backends get
    events: list[tuple[str, str, str]] = field(default_factory=list)
    requeue_seconds: float | None = None
    consume_annotations: tuple[str, ...] = ()
    needs_samples: bool = False  # the caller should scrape metrics and plan again


def model_ref(model: ModelSpec) -> Body:
    ref: Body = {"version": model.version, "uri": model.uri, "format": model.format}
    if model.sha256:
        ref["sha256"] = model.sha256
    if model.allow_unverified:
        ref["allowUnverified"] = True
    return ref


def ref_model(ref: Body, name: str) -> ModelSpec:
    return ModelSpec.model_validate({"name": name, **ref})


def _resolve(value: int | str, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(total * float(value[:-1]) / 100)
    return int(value)


def canary_replicas(replicas: int, weight: int, max_surge: int | str) -> tuple[int, int]:
    """(stable, canary) pods for a weight: canary >= 1, total <= replicas + surge."""
    if weight >= 100:
        return 0, max(1, replicas)
    canary = max(1, math.ceil(replicas * weight / 100))
    surge = _resolve(max_surge, replicas)
    stable = max(1, min(replicas, replicas + surge - canary))
    return stable, canary


def _history(history: list[Body], ref: Body, outcome: str, now: dt.datetime) -> list[Body]:
    entry = {**ref, "at": ts(now), "outcome": outcome}
    return [entry, *history][:HISTORY_LIMIT]


def plan(md: Body, spec: ModelDeploymentSpec, tracks: dict[str, TrackState], now: dt.datetime,
         samples: dict[str, Sample] | None = None) -> Plan:
    """The next step of the rollout; `samples` are the tracks' current metrics, when scraped."""
    status: Body = md.get("status") or {}
    ro: Body = dict(status.get("rollout") or {})
    history: list[Body] = list(status.get("history") or [])
    annotations: Body = md["metadata"].get("annotations") or {}
    desired = model_ref(spec.model)
    R = spec.replicas
    strategy = spec.strategy

    stable_ref: Body | None = ro.get("stable")
    stable_track = tracks.get(c.TRACK_STABLE)
    if stable_ref is None:
        # First sight: whatever runs now (a Deployment from before) or the spec is the stable version.
        stable_ref = desired
    kind = "Canary" if strategy.canary else "BlueGreen" if strategy.blue_green else "RollingUpdate"

    def finish(p: Plan) -> Plan:
        p.rollout.setdefault("strategy", kind)
        return p

    # ---- RollingUpdate: the stable Deployment itself rolls to the spec's model.
    if kind == "RollingUpdate" or (stable_ref == desired and not ro.get("new")):
        done = bool(stable_track and stable_track.complete and stable_track.version == desired["version"])
        if done and ro.get("stable") != desired:
            if ro.get("stable"):
                history = _history(history, ro["stable"], "Superseded", now)
            history = _history(history, desired, "Deployed", now)
        rollout = {"strategy": kind, "phase": "Succeeded" if done else "Progressing",
                   "stable": desired if done else stable_ref, "weights": {desired["version"]: 100}}
        if ro.get("new") and kind != "RollingUpdate":
            rollout["message"] = f"rolled back to {desired['version']}"
        service = c.TRACK_STABLE if kind == "BlueGreen" else None
        return finish(Plan(rollout, history, spec.model, R, service_track=service))

    new_track = "canary" if kind == "Canary" else "preview"
    stable_model = ref_model(stable_ref, spec.model.name)
    events: list[tuple[str, str, str]] = []
    consume: list[str] = []

    # ---- the spec points back at the stable version: roll back at once.
    if desired == stable_ref:
        if ro.get("new"):
            events.append(("Normal", "RolledBack", f"back to {stable_ref['version']}; "
                                                   f"{ro['new']['version']} removed"))
            if ro.get("phase") in ACTIVE_PHASES:
                history = _history(history, ro["new"], "RolledBack", now)
        rollout = {"strategy": kind, "phase": "Succeeded", "stable": stable_ref,
                   "weights": {stable_ref["version"]: 100}, "message": f"serving {stable_ref['version']}"}
        return finish(Plan(rollout, history, stable_model, R, events=events,
                           service_track=c.TRACK_STABLE if kind == "BlueGreen" else None))

    # ---- a new version: start (or restart, if the spec moved on mid-rollout).
    if ro.get("new") != desired:
        if ro.get("new") and ro.get("phase") in ACTIVE_PHASES:
            history = _history(history, ro["new"], "Superseded", now)
        ro = {"strategy": kind, "phase": "Progressing", "stable": stable_ref, "new": desired, "step": 0,
              "startedAt": ts(now), "checks": 0, "failures": 0}
        events.append(("Normal", "RolloutStarted",
                       f"{kind.lower()} of {desired['version']} started (stable: {stable_ref['version']})"))

    phase = ro.get("phase", "Progressing")

    # ---- a human says stop.
    if annotations.get(ANNOTATION_ABORT) == "true" and phase in ACTIVE_PHASES:
        consume.append(ANNOTATION_ABORT)
        phase = "Aborted"
        ro.update(phase=phase, message=f"aborted by {ANNOTATION_ABORT}; traffic is back on {stable_ref['version']}")
        history = _history(history, desired, "Aborted", now)
        events.append(("Warning", "RolloutAborted", ro["message"]))

    if phase in ("Aborted", "Degraded"):
        ro["weights"] = {stable_ref["version"]: 100}
        return finish(Plan(ro, history, stable_model, R, new_track, spec.model, 0, events=events,
                           service_track=c.TRACK_STABLE if kind == "BlueGreen" else None,
                           consume_annotations=tuple(consume)))

    if annotations.get(ANNOTATION_PROMOTE) == "true" and phase in ("Progressing", "Paused"):
        consume.append(ANNOTATION_PROMOTE)
        events.append(("Normal", "PromotedManually", f"{ANNOTATION_PROMOTE}: promoting {desired['version']}"))
        phase = "Promoting"
        ro["promotedAt"] = ts(now)

    p = (_canary if kind == "Canary" else _blue_green)(spec, ro, phase, stable_model, tracks, now, samples, events)
    if p.rollout.get("phase") == "Succeeded":
        history = _history(_history(history, stable_ref, "Superseded", now), desired, "Promoted", now)
    p.history = history
    p.consume_annotations = tuple(consume)
    return finish(p)


def ready(state: TrackState | None, ref: Body, replicas: int) -> bool:
    """The track runs `ref` on at least `replicas` available pods, with no old pods left."""
    return bool(state and state.version == ref["version"] and state.complete and state.available >= replicas)


def _promote(spec: ModelDeploymentSpec, ro: Body, stable_model: ModelSpec, tracks: dict[str, TrackState],
             new_track: str, new_replicas: int, events: list[tuple[str, str, str]], service_track: str | None,
             now: dt.datetime) -> Plan:
    """Roll the stable Deployment to the new version while the new track still serves; then drop the new track."""
    desired = ro["new"]
    stable = tracks.get(c.TRACK_STABLE)
    R = spec.replicas
    if ready(stable, desired, R):
        events.append(("Normal", "Promoted", f"{desired['version']} is stable on {R} replicas"))
        done = {"strategy": ro.get("strategy"), "phase": "Succeeded", "stable": desired,
                "weights": {desired["version"]: 100}, "message": f"promoted {desired['version']}"}
        return Plan(done, [], spec.model, R, new_track, spec.model, 0, events=events,
                    service_track=c.TRACK_STABLE if new_track == "preview" else None)
    ro.update(phase="Promoting", message=f"rolling the stable Deployment to {desired['version']}")
    return Plan(ro, [], spec.model, R, new_track, spec.model, new_replicas, events=events,
                service_track=service_track, weights=(0, 100) if new_track == "preview" else (50, 50),
                requeue_seconds=5)


def _canary(spec: ModelDeploymentSpec, ro: Body, phase: str, stable_model: ModelSpec,
            tracks: dict[str, TrackState], now: dt.datetime,
            samples: dict[str, Sample] | None, events: list[tuple[str, str, str]]) -> Plan:
    canary = spec.strategy.canary
    assert canary is not None
    R, steps = spec.replicas, canary.steps
    desired, stable_ref = ro["new"], ro["stable"]
    step = int(ro.get("step", 0))
    if phase == "Promoting" or step >= len(steps):
        ro["weights"] = {desired["version"]: 100}
        keep = canary_replicas(R, steps[-1].weight, canary.max_surge)[1]
        return _promote(spec, ro, stable_model, tracks, "canary", keep, events, None, now)

    weight = steps[step].weight
    stable_n, canary_n = canary_replicas(R, weight, canary.max_surge)
    gateway = spec.traffic.gateway is not None
    effective = weight if gateway else round(100 * canary_n / (canary_n + stable_n))
    ro["weights"] = {stable_ref["version"]: 100 - effective, desired["version"]: effective}
    ro["trafficPrecision"] = ("exact (Gateway API HTTPRoute weights)" if gateway else
                              f"replica ratio: {canary_n} of {canary_n + stable_n} pods = {effective}% "
                              f"for a requested {weight}%")
    base = Plan(ro, [], stable_model, stable_n, "canary", spec.model, canary_n,
                weights=(100 - weight, weight), requeue_seconds=5)
    base.events = events
    if not ready(tracks.get("canary"), desired, canary_n):
        ro.update(phase="Progressing", message=f"step {step + 1}/{len(steps)}: waiting for {canary_n} canary pod(s) "
                                               f"of {desired['version']} to be ready")
        return base

    analysis = canary.analysis
    if not ro.get("stepStartedAt"):
        if samples is None:
            base.needs_samples = True
            return base
        ro.update(stepStartedAt=ts(now), lastCheckAt=ts(now),
                  baseline={t: s.to_dict() for t, s in samples.items()})
        events.append(("Normal", "StepStarted", f"step {step + 1}/{len(steps)}: {weight}% to {desired['version']}"))
    started = parse_ts(ro["stepStartedAt"]) or now
    last_check = parse_ts(ro.get("lastCheckAt")) or started
    interval = parse_duration(analysis.interval)

    if (now - last_check).total_seconds() >= interval:
        if samples is None:
            base.needs_samples = True
            return base
        baseline = ro.get("baseline") or {}
        delta = {t: s - Sample.from_dict(baseline.get(t)) for t, s in samples.items()}
        verdict: Verdict = judge(analysis, delta.get("canary", Sample()), delta.get(c.TRACK_STABLE))
        ro["lastCheckAt"] = ts(now)
        ro["checks"] = int(ro.get("checks", 0)) + 1
        ro["lastAnalysis"] = verdict.to_status(ts(now))
        if verdict.outcome == "Failed":
            ro["failures"] = int(ro.get("failures", 0)) + 1
            if ro["failures"] > analysis.failure_limit:
                ro.update(phase="Degraded", weights={stable_ref["version"]: 100},
                          message=f"analysis failed at step {step + 1}: {verdict.message}; "
                                  f"traffic is back on {stable_ref['version']}")
                events.append(("Warning", "AnalysisFailed", ro["message"]))
                return Plan(ro, [], stable_model, R, "canary", spec.model, 0, events=events)
        elif verdict.outcome == "Passed":
            ro["passedChecks"] = int(ro.get("passedChecks", 0)) + 1

    pause = steps[step].pause
    elapsed = (now - started).total_seconds()
    judged = analysis.min_requests == 0 or int(ro.get("passedChecks", 0)) > 0
    if pause is None:
        ro.update(phase="Paused", message=f"step {step + 1}/{len(steps)} at {weight}%: waiting for "
                                          f"{ANNOTATION_PROMOTE}=true")
        base.requeue_seconds = interval
        return base
    if elapsed >= parse_duration(pause) and judged:
        ro.update(step=step + 1, passedChecks=0)
        ro.pop("stepStartedAt", None)
        ro.pop("baseline", None)
        if step + 1 >= len(steps):
            events.append(("Normal", "AnalysisPassed", f"all {len(steps)} steps passed; promoting "
                                                       f"{desired['version']}"))
            return _canary(spec, ro, "Promoting", stable_model, tracks, now, samples, events)
        return _canary(spec, ro, "Progressing", stable_model, tracks, now, samples, events)
    wait = max(0.0, parse_duration(pause) - elapsed)
    ro.update(phase="Progressing", message=f"step {step + 1}/{len(steps)} at {weight}%: "
              + (f"{int(wait)}s left" if not judged or wait > 0 else "waiting for enough traffic to judge"))
    base.requeue_seconds = max(1.0, min(interval, wait or interval))
    return base


def _blue_green(spec: ModelDeploymentSpec, ro: Body, phase: str, stable_model: ModelSpec,
                tracks: dict[str, TrackState], now: dt.datetime,
                samples: dict[str, Sample] | None, events: list[tuple[str, str, str]]) -> Plan:
    bg = spec.strategy.blue_green
    assert bg is not None
    R = spec.replicas
    desired, stable_ref = ro["new"], ro["stable"]
    switched = parse_ts(ro.get("switchedAt"))
    if switched is None and not ready(tracks.get("preview"), desired, R):
        ro.update(phase="Progressing", weights={stable_ref["version"]: 100},
                  message=f"waiting for the preview of {desired['version']} to be ready")
        return Plan(ro, [], stable_model, R, "preview", spec.model, R, service_track=c.TRACK_STABLE,
                    weights=(100, 0), events=events, requeue_seconds=5)
    if switched is None:
        ready_since = parse_ts(ro.get("previewReadyAt")) or now
        ro.setdefault("previewReadyAt", ts(now))
        waited = (now - ready_since).total_seconds()
        if phase != "Promoting" and (not bg.auto_promote or waited < bg.auto_promotion_seconds):
            ro.update(phase="Paused", weights={stable_ref["version"]: 100},
                      message=f"preview of {desired['version']} is ready behind the preview Service; "
                              + (f"switching in {int(bg.auto_promotion_seconds - waited)}s" if bg.auto_promote
                                 else f"waiting for {ANNOTATION_PROMOTE}=true"))
            return Plan(ro, [], stable_model, R, "preview", spec.model, R, service_track=c.TRACK_STABLE,
                        weights=(100, 0), events=events,
                        requeue_seconds=max(1.0, bg.auto_promotion_seconds - waited) if bg.auto_promote else None)
        ro["switchedAt"] = ts(now)
        switched = now
        events.append(("Normal", "Switched", f"active Service now selects {desired['version']}; "
                       f"{stable_ref['version']} stays scaled for {bg.scale_down_delay_seconds}s"))
    ro["weights"] = {desired["version"]: 100}
    held = (now - switched).total_seconds()
    if held < bg.scale_down_delay_seconds:
        ro.update(phase="Promoting", message=f"serving {desired['version']}; {stable_ref['version']} kept for "
                                             f"instant rollback for {int(bg.scale_down_delay_seconds - held)}s")
        return Plan(ro, [], stable_model, R, "preview", spec.model, R, service_track="preview", weights=(0, 100),
                    events=events, requeue_seconds=max(1.0, bg.scale_down_delay_seconds - held))
    return _promote(spec, ro, stable_model, tracks, "preview", R, events, "preview", now)

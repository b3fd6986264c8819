"""Drift across replicas: merge every serving pod's window counts into ONE verdict for `status.drift`.

Each replica sees part of the traffic; its bin counts merge exactly (raw windows never leave the pod),
so the verdict does not flap between replicas' views, and pods that are gone simply stop contributing.
The servers need no API access for this: the operator reads them.

`status.drift` follows the CRD's schema: `status` (the printer column), a one-line `message`, and the
bounded verdict (`DriftReport.to_status_dict` plus `replicas`) under `details`, the one free-form field
(anything else would be pruned by the API server).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.request
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final

from modeldeploy_api import constants as c
from modeldeploy_api.models import DriftSpec
from modeldeploy_drift import DriftConfig, DriftReport, Profile, StateError, WindowState, evaluate

from .apply import Body, Cluster
from .builders import selector_string
from .durations import parse_duration
from .scrape import TIMEOUT_SECONDS, pod_metrics_url

log = logging.getLogger(__name__)
DRIFTED = "Drifted"
_profiles: dict[str, Profile] = {}  # by digest: profiles are immutable, fetched once per operator


@dataclass(frozen=True)
class PodDrift:
    """What one server pod reports: its profile's digest and its window counts."""

    pod: str
    digest: str
    version: str | None
    state: dict[str, Any]


def details(entry: Body | None) -> Body:
    """The verdict's fields of a `status.drift` entry (older, flat entries too)."""
    entry = entry or {}
    inner = entry.get("details")
    return inner if isinstance(inner, dict) else entry


def due(spec: DriftSpec, previous: Body | None, now: dt.datetime) -> bool:
    checked = details(previous).get("checkedAt")
    if not checked:
        return True
    last = dt.datetime.fromisoformat(str(checked).replace("Z", "+00:00"))
    return (now - last).total_seconds() >= parse_duration(spec.interval)


def merged_report(spec: DriftSpec, profiles: dict[str, Profile], pods: list[PodDrift], version: str,
                  now: dt.datetime) -> tuple[DriftReport, list[str]]:
    """Pure: the verdict over the pods of `version` on the profile most of them use, and the pods merged.

    Pods of another model version (a canary) or another profile (mid-rollout of a new reference), and
    states that do not load, are left out.
    """
    config = DriftConfig(alpha=spec.alpha, correction=spec.correction, min_samples=spec.min_samples)
    current = [p for p in pods if p.version == version and p.digest in profiles]
    if not current:
        return DriftReport.unknown("no serving pod of this version reported drift state", checked_at=now), []
    digest = Counter(p.digest for p in current).most_common(1)[0][0]
    profile = profiles[digest]
    states: list[WindowState] = []
    merged: list[str] = []
    for p in current:
        if p.digest != digest:
            continue
        try:
            states.append(WindowState.from_dict(p.state, profile))
        except StateError as exc:
            log.warning("drift state of pod %s left out: %s", p.pod, exc)
            continue
        merged.append(p.pod)
    if not states:
        return DriftReport.unknown("no pod reported a readable drift state", checked_at=now), []
    return evaluate(profile, WindowState.merge(states), config, model_version=version, checked_at=now), merged


def status_entry(report: DriftReport, pods: int) -> Body:
    """`status.drift`: the status, a one-line message and the bounded verdict under `details`."""
    inner = report.to_status_dict(top_k=5)
    inner["replicas"] = pods
    state = inner.pop("status")
    return {"status": state, "message": summary(state, inner), "details": inner}


def summary(state: str, inner: Body) -> str:
    rows, pods = inner.get("windowRows", 0), inner.get("replicas", 0)
    scope = f"{rows} rows from {pods} replica{'s' if pods != 1 else ''}"
    if state == "Drifted":
        return f"drift in {_drifted_names(inner) or 'the inputs'} (p={inner.get('pValue')}) over {scope}"
    if state == "NoDrift":
        return f"no drift over {scope}"
    return str(inner.get("reason") or scope)


def _drifted_names(inner: Body) -> str:
    return ", ".join(str(f["name"]) for f in inner.get("topFeatures") or [] if f.get("drifted"))


KEPT: Final = "; not renewed: "


def drifted_condition(entry: Body, previous: list[Body], now: str, generation: int) -> Body:
    """The Drifted condition: True/False by the last conclusive verdict.

    A check without a verdict (too few rows, no reachable pod) is no evidence either way: a
    condition that was True or False keeps its status, reason and transition time and says why it
    was not renewed; only a deployment that never had a verdict is Unknown.
    """
    state = entry.get("status", "Unknown")
    inner = details(entry)
    old = next((p for p in previous if p.get("type") == DRIFTED), None)
    why = str(inner.get("reason") or entry.get("message") or f"{inner.get('windowRows', 0)} rows in the window")
    if state in ("Drifted", "NoDrift"):
        value = "True" if state == "Drifted" else "False"
        reason = "FeatureDrift" if value == "True" else "NoDrift"
        message = (f"drift in {_drifted_names(inner)} (p={inner.get('pValue')})" if value == "True"
                   else f"{inner.get('windowRows', 0)} rows in the window")
    elif old is not None and old.get("status") in ("True", "False"):
        value, reason = old["status"], str(old.get("reason"))
        message = str(old.get("message", "")).split(KEPT)[0] + KEPT + why
    else:
        value, reason, message = "Unknown", "InsufficientData" if state == "Insufficient" else "Unknown", why
    since = old.get("lastTransitionTime") if old and old.get("status") == value else None
    return {"type": DRIFTED, "status": value, "reason": reason, "message": message,
            "lastTransitionTime": since or now, "observedGeneration": generation}


def transition_event(before: Body | None, after: Body, entry: Body) -> tuple[str, str, str] | None:
    """An Event when the Drifted condition turns True (detected) or from True to False (resolved)."""
    was, now = (before or {}).get("status"), after.get("status")
    if now == was:
        return None
    inner = details(entry)
    if now == "True":
        names = _drifted_names(inner)
        return "Warning", "DriftDetected", f"drift detected in {names or 'the inputs'} (p={inner.get('pValue')})"
    if was == "True" and now == "False":
        return "Normal", "DriftResolved", f"no drift in the last {inner.get('windowRows')} rows"
    return None


# ---- I/O ------------------------------------------------------------------------------------------

def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
        return json.loads(response.read())


def collect(cluster: Cluster, md: Body, spec: DriftSpec, port: int, version: str,
            now: dt.datetime) -> tuple[Body, int]:
    """Read the ready pods' window counts, merge those of `version` and judge: the new `status.drift`, pods merged."""
    meta = md["metadata"]
    pods: list[PodDrift] = []
    for pod in cluster.list_objects("v1", "Pod", meta["namespace"], selector_string(meta["name"])):
        base = pod_metrics_url(pod, port)
        if base is None:
            continue
        base = base.removesuffix("/metrics")
        try:
            body = _get_json(base + c.DRIFT_STATE_PATH)
            digest = str(body["profileDigest"])
            if digest not in _profiles:
                profile = Profile.from_dict(_get_json(base + c.DRIFT_PROFILE_PATH))
                if profile.digest() != digest:
                    raise ValueError(f"profile digest {profile.digest()} is not the state's {digest}")
                _profiles[digest] = profile
            pods.append(PodDrift(pod["metadata"]["name"], digest, body.get("modelVersion"), body["state"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s/%s: no drift state from %s: %s", meta["namespace"], meta["name"], base, exc)
    if pods:
        report, merged = merged_report(spec, _profiles, pods, version, now)
    else:
        report, merged = DriftReport.unknown("no serving pod reported drift state yet", checked_at=now), []
    return status_entry(report, len(merged)), len(merged)

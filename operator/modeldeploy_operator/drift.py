"""Drift across replicas: merge every serving pod's window counts into ONE verdict for `status.drift`.

Each replica sees part of the traffic; its bin counts merge exactly (raw windows never leave the pod),
so the verdict does not flap between replicas' views, and pods that are gone simply stop contributing.
The servers need no API access for this: the operator reads them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.request
from dataclasses import dataclass
from typing import Any

from modeldeploy_api import constants as c
from modeldeploy_api.models import DriftSpec
from modeldeploy_drift import DriftConfig, DriftReport, Profile, WindowState, evaluate

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


def due(spec: DriftSpec, previous: Body | None, now: dt.datetime) -> bool:
    checked = (previous or {}).get("checkedAt")
    if not checked:
        return True
    last = dt.datetime.fromisoformat(str(checked).replace("Z", "+00:00"))
    return (now - last).total_seconds() >= parse_duration(spec.interval)


def merged_report(spec: DriftSpec, profile: Profile, pods: list[PodDrift], version: str,
                  now: dt.datetime) -> DriftReport:
    """Pure: the dataset-level verdict over all pods of `version` that use `profile`."""
    config = DriftConfig(alpha=spec.alpha, correction=spec.correction, min_samples=spec.min_samples)
    digest = profile.digest()
    states = [WindowState.from_dict(p.state, profile) for p in pods if p.digest == digest and p.version == version]
    if not states:
        return DriftReport.unknown("no serving pod of this version reported drift state", checked_at=now)
    return evaluate(profile, WindowState.merge(states), config, model_version=version, checked_at=now)


def status_entry(report: DriftReport, pods: int) -> Body:
    entry = report.to_status_dict(top_k=5)
    entry["replicas"] = pods
    return entry


def drifted_condition(entry: Body, previous: list[Body], now: str, generation: int) -> Body:
    state = entry.get("status", "Unknown")
    value = {"Drifted": "True", "NoDrift": "False"}.get(state, "Unknown")
    reason = {"Drifted": "FeatureDrift", "NoDrift": "NoDrift", "Insufficient": "InsufficientData"}.get(state, "Unknown")
    top = [f["name"] for f in entry.get("topFeatures") or [] if f.get("drifted")]
    message = (f"drift in {', '.join(top)} (p={entry.get('pValue')})" if value == "True"
               else str(entry.get("reason") or f"{entry.get('windowRows', 0)} rows in the window"))
    old = next((p for p in previous if p.get("type") == DRIFTED), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == value else None
    return {"type": DRIFTED, "status": value, "reason": reason, "message": message,
            "lastTransitionTime": since or now, "observedGeneration": generation}


def transition_event(old: Body | None, new: Body) -> tuple[str, str, str] | None:
    before, after = (old or {}).get("status"), new.get("status")
    if after == before:
        return None
    if after == "Drifted":
        names = ", ".join(f["name"] for f in new.get("topFeatures") or [] if f.get("drifted"))
        return "Warning", "DriftDetected", f"drift detected in {names or 'the inputs'} (p={new.get('pValue')})"
    if before == "Drifted":
        return "Normal", "DriftResolved", f"no drift in the last {new.get('windowRows')} rows"
    return None


# ---- I/O ------------------------------------------------------------------------------------------

def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
        return json.loads(response.read())


def collect(cluster: Cluster, md: Body, spec: DriftSpec, port: int, version: str,
            now: dt.datetime) -> tuple[Body, int]:
    """Read the stable pods' window counts, merge them and judge: the new `status.drift` and the pod count."""
    meta = md["metadata"]
    pods: list[PodDrift] = []
    profile: Profile | None = None
    for pod in cluster.list_objects("v1", "Pod", meta["namespace"], selector_string(meta["name"])):
        base = pod_metrics_url(pod, port)
        if base is None:
            continue
        base = base.removesuffix("/metrics")
        try:
            body = _get_json(base + c.DRIFT_STATE_PATH)
            digest = str(body["profileDigest"])
            if digest not in _profiles:
                _profiles[digest] = Profile.from_dict(_get_json(base + c.DRIFT_PROFILE_PATH))
            pods.append(PodDrift(pod["metadata"]["name"], digest, body.get("modelVersion"), body["state"]))
            profile = profile or _profiles[digest]
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s/%s: no drift state from %s: %s", meta["namespace"], meta["name"], base, exc)
    if profile is None:
        report = DriftReport.unknown("no serving pod reported drift state yet", checked_at=now)
    else:
        report = merged_report(spec, profile, pods, version, now)
    return status_entry(report, len(pods)), len(pods)

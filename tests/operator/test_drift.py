"""Drift across replicas: merging pods' windows, who is left out, status.drift, the Drifted condition, events."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from modeldeploy_api.models import DriftSpec
from modeldeploy_drift import DriftConfig, Profile, WindowState, build_profile, evaluate
from modeldeploy_operator import drift
from modeldeploy_operator.drift import PodDrift

NOW = dt.datetime(2026, 11, 24, 10, 0, 0, tzinfo=dt.UTC)
SPEC = DriftSpec.model_validate({"reference": {"uri": "https://models.example/p.json"}, "windowSize": 200,
                                 "interval": "30s", "minSamples": 50, "alpha": 0.05})
NAMES = ("a", "b", "c")


@pytest.fixture(scope="module")
def profile() -> Profile:
    rng = np.random.default_rng(0)
    return build_profile({n: rng.normal(size=5000) for n in NAMES})


def rows(n: int, seed: int, shift: float = 0.0) -> np.ndarray[Any, Any]:
    x = np.random.default_rng(seed).normal(size=(n, len(NAMES)))
    x[:, 1] += shift
    return x


def pod(name: str, profile: Profile, data: np.ndarray[Any, Any], version: str = "v1",
        window: int = 200) -> tuple[PodDrift, WindowState]:
    """A pod's /drift/state answer (collapsed, as the server sends it) and its window."""
    state = WindowState(profile, window_size=window)
    state.observe(data)
    body = json.loads(json.dumps(state.to_dict(collapse=True)))
    return PodDrift(name, profile.digest(), version, body), state


@pytest.mark.parametrize("shift", [0.0, 0.5], ids=["calm", "shifted"])
def test_two_pods_merged_judge_like_one_pod_that_saw_everything(profile: Profile, shift: float) -> None:
    first, second = rows(90, seed=1, shift=shift), rows(110, seed=2, shift=shift)
    a, _ = pod("a", profile, first)
    b, _ = pod("b", profile, second)
    one = WindowState(profile, window_size=400)
    one.observe(np.vstack([first, second]))
    report, merged = drift.merged_report(SPEC, {profile.digest(): profile}, [a, b], "v1", NOW)
    alone = evaluate(profile, one, DriftConfig(alpha=0.05, min_samples=50), model_version="v1", checked_at=NOW)
    assert merged == ["a", "b"]
    assert report == alone
    assert report.window_rows == 200
    assert report.status.value == ("Drifted" if shift else "NoDrift")


def test_pods_of_another_version_or_profile_are_left_out(profile: Profile) -> None:
    other = build_profile({n: np.random.default_rng(5).normal(size=5000) for n in NAMES})
    profiles = {profile.digest(): profile, other.digest(): other}
    calm = [pod(n, profile, rows(100, seed=i))[0] for i, n in enumerate(("a", "b"))]
    canary = pod("canary", profile, rows(100, seed=3, shift=3.0), version="v2")[0]
    stale = pod("old-profile", other, rows(100, seed=4, shift=3.0))[0]
    broken = PodDrift("broken", profile.digest(), "v1", {**calm[0].state, "cells": [1, 2, 3]})
    unknown = PodDrift("unknown", "feedfacefeedface", "v1", calm[0].state)  # its profile could not be read
    report, merged = drift.merged_report(SPEC, profiles, [*calm, canary, stale, broken, unknown], "v1", NOW)
    assert merged == ["a", "b"]
    assert report.status.value == "NoDrift" and report.window_rows == 200
    entry = drift.status_entry(report, len(merged))
    assert entry["details"]["replicas"] == 2

    none, merged = drift.merged_report(SPEC, profiles, [canary], "v1", NOW)
    assert none.status.value == "Unknown" and merged == []


def test_status_entry_fits_the_crd_and_stays_small() -> None:
    rng = np.random.default_rng(7)
    wide = build_profile({f"feature_{i:03d}_" + "x" * 80: rng.normal(size=2000) for i in range(100)})
    data = rng.normal(size=(300, 100))
    data[:, :30] += 1.0
    state = WindowState(wide, window_size=300)
    state.observe(data)
    entry = drift.status_entry(evaluate(wide, state, DriftConfig(min_samples=50), checked_at=NOW), 3)
    assert set(entry) == {"status", "message", "details"}  # the CRD's fields: nothing gets pruned
    assert entry["status"] == "Drifted" and entry["message"].startswith("drift in feature_")
    assert entry["message"].endswith("over 300 rows from 3 replicas")
    inner = entry["details"]
    assert inner["replicas"] == 3 and inner["featuresDrifted"] >= 25 and len(inner["topFeatures"]) == 5
    assert len(json.dumps(entry)) < 3000


def entry_of(status: str, **fields: Any) -> dict[str, Any]:
    inner = {"checkedAt": "2026-11-24T10:00:00Z", "windowRows": 400, "replicas": 2, **fields}
    return {"status": status, "message": "m", "details": inner}


DRIFTED = entry_of("Drifted", pValue=1e-06,
                   topFeatures=[{"name": "b", "drifted": True}, {"name": "a", "drifted": False}])
CALM = entry_of("NoDrift", pValue=0.4)
SHORT = entry_of("Insufficient", reason="12 rows in the window, at least 50 needed")


UNREACHABLE = {"status": "Unknown", "message": "no ready pod answered"}


def conditions_through(*entries: dict[str, Any]) -> list[dict[str, Any]]:
    """The Drifted condition after each check, each check seeing the one before."""
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(entries):
        out.append(drift.drifted_condition(entry, out[-1:], f"t{i}", 3))
    return out


def events_through(*entries: dict[str, Any]) -> list[tuple[str, str, str] | None]:
    conds = conditions_through(*entries)
    return [drift.transition_event(([None, *conds])[i], conds[i], e) for i, e in enumerate(entries)]


DETECTED = ("Warning", "DriftDetected", "drift detected in b (p=1e-06)")
RESOLVED = ("Normal", "DriftResolved", "no drift in the last 400 rows")


@pytest.mark.parametrize(
    ("checks", "events"),
    [
        ((CALM, DRIFTED), [None, DETECTED]),
        ((DRIFTED,), [DETECTED]),
        ((DRIFTED, CALM), [DETECTED, RESOLVED]),
        ((DRIFTED, DRIFTED), [DETECTED, None]),
        ((SHORT, CALM), [None, None]),
        ((SHORT, DRIFTED), [None, DETECTED]),
        # no verdict is no evidence: the drift is neither resolved by a quiet window nor detected again after it
        ((DRIFTED, SHORT, UNREACHABLE, DRIFTED), [DETECTED, None, None, None]),
        ((DRIFTED, SHORT, CALM), [DETECTED, None, RESOLVED]),
        ((CALM, SHORT, CALM), [None, None, None]),
    ],
    ids=["detected", "detected-first", "resolved", "unchanged", "insufficient-to-calm", "insufficient-to-drifted",
         "drift-survives-quiet-windows", "resolved-after-a-quiet-window", "calm-stays-calm"],
)
def test_transition_events(checks: tuple[dict[str, Any], ...], events: list[tuple[str, str, str] | None]) -> None:
    assert events_through(*checks) == events


def test_drifted_condition() -> None:
    first = drift.drifted_condition(DRIFTED, [], "t1", 3)
    assert first == {"type": "Drifted", "status": "True", "reason": "FeatureDrift", "message": "drift in b (p=1e-06)",
                     "lastTransitionTime": "t1", "observedGeneration": 3}
    assert drift.drifted_condition(DRIFTED, [first], "t2", 3)["lastTransitionTime"] == "t1"  # still drifted
    calm = drift.drifted_condition(CALM, [first], "t3", 3)
    assert (calm["status"], calm["reason"], calm["lastTransitionTime"]) == ("False", "NoDrift", "t3")
    assert calm["message"] == "400 rows in the window"


def test_a_check_without_a_verdict_keeps_the_last_one_and_says_why() -> None:
    _, short, unreachable = conditions_through(DRIFTED, SHORT, UNREACHABLE)
    assert (short["status"], short["reason"], short["lastTransitionTime"]) == ("True", "FeatureDrift", "t0")
    assert short["message"] == "drift in b (p=1e-06); not renewed: 12 rows in the window, at least 50 needed"
    assert unreachable["message"] == "drift in b (p=1e-06); not renewed: no ready pod answered"  # no pile-up
    never = conditions_through(SHORT, UNREACHABLE)
    assert [(c["status"], c["reason"]) for c in never] == [("Unknown", "InsufficientData"), ("Unknown", "Unknown")]
    assert never[0]["message"] == SHORT["details"]["reason"]


def test_due_reads_the_last_check() -> None:
    assert drift.due(SPEC, None, NOW)
    assert drift.due(SPEC, {"status": "Unknown", "message": "drift monitoring not configured"}, NOW)
    assert not drift.due(SPEC, entry_of("NoDrift"), NOW + dt.timedelta(seconds=29))
    assert drift.due(SPEC, entry_of("NoDrift"), NOW + dt.timedelta(seconds=30))
    assert not drift.due(SPEC, {"status": "NoDrift", "checkedAt": "2026-11-24T10:00:00Z"}, NOW)  # flat


# -- collect: real HTTP on loopback addresses, one per pod ----------------------------------------


class FakePods:
    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods = pods

    def list_objects(self, api_version: str, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        assert (kind, namespace) == ("Pod", "ml")
        assert selector == "modeldeploy.dev/modeldeployment=iris,modeldeploy.dev/track=stable"
        return self.pods


def serve_pod(ip: str, port: int, answers: dict[str, Any]) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answers[self.path]).encode() if self.path in answers else b"{}"
            self.send_response(200 if self.path in answers else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((ip, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def pod_servers(profile: Profile) -> Iterator[tuple[FakePods, int]]:
    probe = http.server.ThreadingHTTPServer(("127.0.0.2", 0), http.server.BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()
    servers = []
    pods = []
    for i, (version, shift) in enumerate([("v1", 1.0), ("v1", 1.0), ("v2", 0.0)]):
        ip = f"127.0.0.{i + 2}"
        state = pod(f"p{i}", profile, rows(100, seed=i, shift=shift))[0].state
        answers = {"/drift/state": {"profileDigest": profile.digest(), "modelVersion": version, "state": state},
                   "/drift/profile": profile.to_dict()}
        servers.append(serve_pod(ip, port, answers))
        pods.append({"metadata": {"name": f"p{i}"},
                     "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}})
    pods.append({"metadata": {"name": "starting"}, "status": {"podIP": "127.0.0.9", "conditions": []}})  # not ready
    try:
        yield FakePods(pods), port
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_collect_reads_every_ready_pod_and_merges_the_stable_ones(pod_servers: tuple[FakePods, int]) -> None:
    cluster, port = pod_servers
    md = {"metadata": {"name": "iris", "namespace": "ml"}}
    drift._profiles.clear()
    entry, merged = drift.collect(cluster, md, SPEC, port, "v1", NOW)  # type: ignore[arg-type]
    assert merged == 2 and entry["details"]["replicas"] == 2
    assert entry["status"] == "Drifted" and entry["details"]["windowRows"] == 200
    assert entry["details"]["checkedAt"] == "2026-11-24T10:00:00Z"
    assert len(drift._profiles) == 1  # fetched once

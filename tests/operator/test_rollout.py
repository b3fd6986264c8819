"""The rollout state machine as pure functions: a simulated cluster converges instantly, time is ours."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from modeldeploy_operator.analysis import Sample
from modeldeploy_operator.builders import build_children, parse_spec
from modeldeploy_operator.rollout import (
    ANNOTATION_ABORT,
    ANNOTATION_PROMOTE,
    Plan,
    TrackState,
    canary_replicas,
    parse_duration,
    plan,
)
from modeldeploy_operator.status import compute_status, condition

from .conftest import make_md

T0 = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
CANARY = {"canary": {"steps": [{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "2m"}],
                     "analysis": {"interval": "15s", "minRequests": 10, "maxErrorRate": 0.05}}}
BLUE_GREEN = {"blueGreen": {"autoPromote": True, "scaleDownDelaySeconds": 30}}


def model(version: str) -> dict[str, Any]:
    return {"name": "iris", "version": version, "uri": f"https://m/{version}.joblib", "sha256": version[0] * 64}


class Sim:
    """A ModelDeployment, an ideal cluster that runs whatever the last plan asked for, and a clock."""

    def __init__(self, strategy: dict[str, Any], replicas: int = 4, **spec: Any) -> None:
        self.md = make_md(replicas=replicas, strategy=strategy, **spec)
        self.md["spec"]["model"] = model("1.0.0")
        self.now = T0
        self.tracks: dict[str, TrackState] = {}
        self.counters: dict[str, Sample] = {"stable": Sample(), "canary": Sample()}
        self.events: list[tuple[str, str, str]] = []
        self.last: Plan | None = None
        assert self.tick().rollout["phase"] == "Progressing"  # nothing runs yet
        self.tick()

    def tick(self, seconds: float = 0, *, converge: bool = True) -> Plan:
        self.now += dt.timedelta(seconds=seconds)
        spec = parse_spec(self.md)
        p = plan(self.md, spec, self.tracks, self.now)
        if p.needs_samples:
            p = plan(self.md, spec, self.tracks, self.now, dict(self.counters))
        assert not p.needs_samples
        status = compute_status(self.md, self._stable_deployment(), "t", None, p)
        self.md["status"] = status
        for key in p.consume_annotations:
            del self.md["metadata"]["annotations"][key]
        self.events += p.events
        if converge:
            self.tracks = {"stable": TrackState(p.stable_model.version, p.stable_replicas, p.stable_replicas, True)}
            if p.new_track and p.new_replicas > 0 and p.new_model:
                self.tracks[p.new_track] = TrackState(p.new_model.version, p.new_replicas, p.new_replicas, True)
        self.last = p
        return p

    def _stable_deployment(self) -> dict[str, Any] | None:
        st = self.tracks.get("stable")
        if st is None:
            return None
        return {"metadata": {"generation": 1, "annotations": {"modeldeploy.dev/model-version": st.version}},
                "status": {"observedGeneration": 1, "replicas": st.replicas, "updatedReplicas": st.replicas,
                           "availableReplicas": st.available, "readyReplicas": st.available}}

    def set_version(self, version: str) -> None:
        self.md["spec"]["model"] = model(version)
        self.md["metadata"]["generation"] += 1

    def traffic(self, track: str, requests: int, errors: int = 0, labels: dict[str, float] | None = None) -> None:
        self.counters[track] = self.counters[track] + Sample(
            requests=requests, errors=errors, buckets={"0.01": requests, "+Inf": requests},
            predictions=labels or {"0": requests})

    @property
    def rollout(self) -> dict[str, Any]:
        return self.md["status"]["rollout"]  # type: ignore[no-any-return]

    def reasons(self) -> list[str]:
        return [e[1] for e in self.events]


def test_first_deploy_goes_straight_to_stable() -> None:
    sim = Sim(CANARY)
    assert sim.rollout["phase"] == "Succeeded" and sim.rollout["stable"]["version"] == "1.0.0"
    assert sim.md["status"]["currentVersion"] == "1.0.0"
    assert sim.last and sim.last.new_track is None


@pytest.mark.parametrize(("replicas", "weight", "expected"),
                         [(4, 10, (4, 1)), (4, 50, (3, 2)), (10, 10, (10, 1)), (1, 10, (1, 1)), (4, 100, (0, 4))])
def test_canary_replicas_floor_and_surge_bound(replicas: int, weight: int, expected: tuple[int, int]) -> None:
    stable, canary = canary_replicas(replicas, weight, "25%")
    assert (stable, canary) == expected
    assert stable + canary <= replicas + max(1, -(-replicas * 25 // 100))


def test_canary_walks_all_steps_and_promotes() -> None:
    sim = Sim(CANARY)
    sim.set_version("2.0.0")
    p = sim.tick()
    assert sim.rollout["phase"] == "Progressing" and sim.rollout["new"]["version"] == "2.0.0"
    assert (p.stable_model.version, p.new_model and p.new_model.version) == ("1.0.0", "2.0.0")
    assert (p.stable_replicas, p.new_replicas) == (4, 1)
    assert "RolloutStarted" in sim.reasons()
    st = sim.md["status"]
    assert st["currentVersion"] == "1.0.0" and condition(st, "Reconciling")["status"] == "True"  # type: ignore[index]
    sim.tick()  # canary ready: the step starts, baseline taken
    assert sim.rollout["stepStartedAt"] and sim.rollout["traffic"] == "1.0.0=80,2.0.0=20"
    assert "replica ratio: 1 of 5 pods = 20% for a requested 10%" in sim.rollout["trafficPrecision"]
    sim.traffic("canary", 50)
    sim.tick(20)
    assert sim.rollout["lastAnalysis"]["outcome"] == "Passed" and sim.rollout["step"] == 0
    sim.tick(45)  # pause of 1m is over
    assert sim.rollout["step"] == 1
    assert sim.last and sim.last.new_replicas == 2
    sim.tick()
    sim.traffic("canary", 30)
    sim.tick(20)
    sim.tick(110)
    assert sim.rollout["phase"] == "Promoting"
    assert sim.last and sim.last.stable_model.version == "2.0.0"  # the stable Deployment rolls to 2.0.0
    sim.tick()
    assert sim.rollout["phase"] == "Succeeded" and sim.rollout["stable"]["version"] == "2.0.0"
    assert sim.last and sim.last.new_replicas == 0
    st = sim.md["status"]
    assert st["currentVersion"] == "2.0.0" and st["previousVersion"] == "1.0.0"
    assert condition(st, "Ready")["status"] == "True"  # type: ignore[index]
    assert [(h["version"], h["outcome"]) for h in st["history"][:2]] == [("2.0.0", "Promoted"), ("1.0.0", "Superseded")]
    assert {"StepStarted", "AnalysisPassed", "Promoted"} <= set(sim.reasons())


def test_failing_canary_rolls_back_with_the_reason() -> None:
    sim = Sim(CANARY)
    sim.set_version("2.0.0")
    sim.tick()
    sim.tick()
    sim.traffic("canary", 40, errors=10)
    sim.tick(20)
    assert sim.rollout["phase"] == "Degraded"
    assert "errorRate 0.250 > 0.05" in sim.rollout["message"]
    assert sim.last and sim.last.new_replicas == 0 and sim.last.stable_model.version == "1.0.0"
    assert sim.rollout["traffic"] == "1.0.0=100"
    st = sim.md["status"]
    assert condition(st, "Stalled")["reason"] == "AnalysisFailed"  # type: ignore[index]
    assert ("Warning", "AnalysisFailed") in [(e[0], e[1]) for e in sim.events]
    # it stays rolled back (no retry loop) until the spec changes: here a GitOps revert
    sim.tick(600)
    assert sim.rollout["phase"] == "Degraded"
    sim.set_version("1.0.0")
    sim.tick()
    assert sim.rollout["phase"] == "Succeeded" and condition(sim.md["status"], "Stalled")["status"] == "False"  # type: ignore[index]


def test_too_little_traffic_does_not_pass_a_step() -> None:
    sim = Sim(CANARY)
    sim.set_version("2.0.0")
    sim.tick()
    sim.tick()
    sim.traffic("canary", 3)
    sim.tick(20)
    sim.tick(60)
    assert sim.rollout["step"] == 0 and sim.rollout["lastAnalysis"]["outcome"] == "Inconclusive"


def test_restart_resumes_the_same_step() -> None:
    sim = Sim(CANARY)
    sim.set_version("2.0.0")
    sim.tick()
    sim.tick()
    started = sim.rollout["stepStartedAt"]
    sim.traffic("canary", 50)
    sim.tick(20)
    # a new operator process: nothing in memory, the status is all it has
    fresh = Sim(CANARY)
    fresh.md, fresh.tracks, fresh.counters, fresh.now = sim.md, sim.tracks, sim.counters, sim.now
    fresh.tick(5)
    assert fresh.rollout["step"] == 0 and fresh.rollout["stepStartedAt"] == started
    fresh.tick(40)
    assert fresh.rollout["step"] == 1


def test_abort_and_promote_annotations_are_consumed() -> None:
    sim = Sim(CANARY)
    sim.set_version("2.0.0")
    sim.tick()
    sim.md["metadata"]["annotations"] = {ANNOTATION_PROMOTE: "true"}
    sim.tick()
    assert sim.rollout["phase"] == "Promoting" and ANNOTATION_PROMOTE not in sim.md["metadata"]["annotations"]
    sim.tick()
    assert sim.rollout["phase"] == "Succeeded"
    sim.set_version("3.0.0")
    sim.tick()
    sim.md["metadata"]["annotations"] = {ANNOTATION_ABORT: "true"}
    sim.tick()
    assert sim.rollout["phase"] == "Aborted" and sim.last and sim.last.new_replicas == 0
    assert condition(sim.md["status"], "Stalled")["reason"] == "RolloutAborted"  # type: ignore[index]
    assert sim.md["status"]["history"][0]["outcome"] == "Aborted"


def test_new_version_mid_rollout_restarts_at_step_one() -> None:
    sim = Sim(CANARY)
    sim.set_version("2.0.0")
    sim.tick()
    sim.tick()
    sim.traffic("canary", 50)
    sim.tick(20)
    sim.tick(45)
    assert sim.rollout["step"] == 1
    sim.set_version("2.1.0")
    sim.tick()
    assert sim.rollout["step"] == 0 and sim.rollout["new"]["version"] == "2.1.0"
    assert sim.md["status"]["history"][0] == {**sim.md["status"]["history"][0], "version": "2.0.0",
                                              "outcome": "Superseded"}


def test_step_without_pause_waits_for_promotion() -> None:
    sim = Sim({"canary": {"steps": [{"weight": 25}], "analysis": {"minRequests": 0}}})
    sim.set_version("2.0.0")
    sim.tick()
    sim.tick(3600)
    assert sim.rollout["phase"] == "Paused"
    assert condition(sim.md["status"], "Ready")["reason"] == "Paused"  # type: ignore[index]


def test_blue_green_preview_switch_delay_and_instant_rollback() -> None:
    sim = Sim(BLUE_GREEN, replicas=2)
    sim.set_version("2.0.0")
    p = sim.tick(converge=False)
    assert p.new_track == "preview" and p.new_replicas == 2 and p.service_track == "stable"
    kinds = {(o["kind"], o["metadata"]["name"]) for o in build_children(sim.md, p)}
    assert ("Service", "iris-preview") in kinds and ("Deployment", "iris-preview") in kinds
    sim.tick()  # preview pods come up
    p = sim.tick()
    assert p.service_track == "preview" and sim.rollout["switchedAt"]
    assert p.stable_model.version == "1.0.0" and p.stable_replicas == 2  # old version kept for rollback
    assert "Switched" in sim.reasons()
    # instant rollback within scaleDownDelaySeconds: the active Service goes back at once
    sim.set_version("1.0.0")
    p = sim.tick()
    assert p.service_track == "stable" and sim.rollout["phase"] == "Succeeded"
    assert "RolledBack" in sim.reasons()


def test_blue_green_completes_after_the_delay() -> None:
    sim = Sim(BLUE_GREEN, replicas=2)
    sim.set_version("2.0.0")
    sim.tick()
    sim.tick()
    sim.tick(31)
    assert sim.rollout["phase"] == "Promoting" and sim.last and sim.last.stable_model.version == "2.0.0"
    assert sim.last.service_track == "preview"  # until the stable Deployment runs 2.0.0
    p = sim.tick()
    assert sim.rollout["phase"] == "Succeeded" and p.service_track == "stable" and p.new_replicas == 0


def test_gateway_weights_follow_the_steps() -> None:
    sim = Sim(CANARY, traffic={"gateway": {"name": "public", "namespace": "infra"}})
    sim.set_version("2.0.0")
    sim.tick()
    p = sim.tick()
    route = next(o for o in build_children(sim.md, p) if o["kind"] == "HTTPRoute")
    assert [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]] == [90, 10]
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                            "name": "public", "namespace": "infra"}]
    assert sim.rollout["trafficPrecision"].startswith("exact")


def test_durations() -> None:
    assert parse_duration("1h30m") == 5400 and parse_duration("15s") == 15 and parse_duration("250ms") == 0.25

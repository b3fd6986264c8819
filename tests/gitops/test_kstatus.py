"""Flux (kstatus) reads the conditions the operator writes correctly, with no extra configuration."""

from __future__ import annotations

import pytest

from . import scenarios
from .kstatus import compute
from .scenarios import SCENARIOS


@pytest.mark.parametrize("name", SCENARIOS)
def test_operator_status_maps_to_the_expected_kstatus(name: str) -> None:
    scenario = SCENARIOS[name]
    assert compute(scenario.build()).status == scenario.kstatus


@pytest.mark.parametrize("name", SCENARIOS)
def test_reconciling_and_stalled_are_never_both_true(name: str) -> None:
    """kstatus takes the first of Reconciling=True / Stalled=True in list order: both at once would be
    read differently by different tools."""
    conditions = SCENARIOS[name].build()["status"]["conditions"]
    true = {c["type"] for c in conditions if c["status"] == "True"}
    assert not {"Reconciling", "Stalled"} <= true, conditions


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_condition_records_the_generation_it_describes(name: str) -> None:
    md = SCENARIOS[name].build()
    status = md["status"]
    assert {c["observedGeneration"] for c in status["conditions"]} == {status["observedGeneration"]}


def test_ready_is_current_with_kstatus_message() -> None:
    assert compute(scenarios.ready()).message == "Resource is Ready"


def test_rollout_in_progress_carries_the_operators_reason_and_message() -> None:
    result = compute(scenarios.rolling_out())
    assert (result.status, result.reason) == ("InProgress", "RollingOut")
    assert "1/2 updated" in result.message


def test_a_new_generation_is_in_progress_until_the_operator_observes_it() -> None:
    md = scenarios.generation_not_observed()
    assert md["status"]["conditions"][0]["status"] == "True"  # the old Ready=True is still there...
    result = compute(md)
    assert (result.status, result.reason) == ("InProgress", "LatestGenerationNotObserved")  # ...and ignored


def test_stalled_is_failed_with_the_stalled_message() -> None:
    result = compute(scenarios.apply_forbidden())
    assert (result.status, result.reason, result.message) == (
        "Failed", "ApplyFailed", "403: deployments.apps is forbidden")


def test_recovery_after_stalled_is_current_again() -> None:
    md = scenarios.progress_deadline_exceeded()
    healed = scenarios.with_status(md, scenarios.deployment("1.2.0"), now=scenarios.T1)
    assert compute(healed).status == "Current"


# The helper itself, on the rules it mirrors (so a wrong helper cannot make the tests above pass).
def test_helper_deletion_is_terminating() -> None:
    md = scenarios.ready()
    md["metadata"]["deletionTimestamp"] = scenarios.T1
    assert compute(md).status == "Terminating"


def test_helper_ready_false_alone_is_in_progress_and_no_conditions_is_current() -> None:
    md = scenarios.model_deployment()
    md["status"] = {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "False",
                                                             "reason": "Waiting", "message": "wait"}]}
    assert compute(md).status == "InProgress"
    md["status"] = {"observedGeneration": 1}
    assert compute(md).status == "Current"


def test_helper_no_status_at_all_is_current() -> None:
    """kstatus fails open before the first status write (kubernetes-sigs/cli-utils#632): a Flux health
    check right after creation may pass before the operator has looked. docs/gitops.md says so."""
    assert compute(scenarios.model_deployment()).status == "Current"

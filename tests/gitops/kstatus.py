"""kstatus' rules for a custom resource, as Flux and `kstatus`-based tools apply them (a test helper).

Mirrors sigs.k8s.io/cli-utils pkg/kstatus/status (v0.37): Compute = checkGenericProperties
(deletionTimestamp -> Terminating; status.observedGeneration present and != metadata.generation ->
InProgress; the first of Reconciling=True -> InProgress or Stalled=True -> Failed), then, for types
with no built-in rules, checkReadyCondition (Ready True -> Current, False/Unknown -> InProgress), and
otherwise Current ("the absence of any known conditions means the resource is current").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["InProgress", "Failed", "Current", "Terminating"]


@dataclass(frozen=True)
class Result:
    status: Status
    message: str
    reason: str = ""


def compute(obj: dict[str, Any]) -> Result:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return Result("Terminating", "Resource scheduled for deletion")
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        kind = obj.get("kind", "")
        return Result("InProgress", f"{kind} generation is {generation}, but latest observed generation is "
                      f"{observed}", "LatestGenerationNotObserved")
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    for cond in conditions:
        if cond.get("type") == "Reconciling" and cond.get("status") == "True":
            return Result("InProgress", cond.get("message", ""), cond.get("reason", ""))
        if cond.get("type") == "Stalled" and cond.get("status") == "True":
            return Result("Failed", cond.get("message", ""), cond.get("reason", ""))
    for cond in conditions:
        if cond.get("type") != "Ready":
            continue
        if cond.get("status") == "True":
            return Result("Current", "Resource is Ready")
        if cond.get("status") in ("False", "Unknown"):
            return Result("InProgress", cond.get("message", ""), cond.get("reason", ""))
    return Result("Current", "Resource is current")

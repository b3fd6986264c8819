"""deploy/argocd/health.lua run by a real Lua 5.1 interpreter (Argo CD runs gopher-lua, Lua 5.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa.lua51 import LuaRuntime

from .scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "deploy" / "argocd"
SCRIPT = (ARGOCD / "health.lua").read_text()
CASES: list[dict[str, Any]] = yaml.safe_load((ARGOCD / "health_test.yaml").read_text())["tests"]
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def run_health(obj: dict[str, Any]) -> dict[str, str]:
    """Like Argo CD: `obj` is a global table, the chunk returns {status, message}; no os/io libraries."""
    lua = LuaRuntime(register_eval=False, register_builtins=False)
    g = lua.globals()
    for unsafe in ("os", "io", "dofile", "loadfile", "require", "package", "debug"):
        g[unsafe] = None
    g.obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT)
    out = {key: result[key] for key in ("status", "message")}
    assert set(dict(result.items())) <= {"status", "message"}, dict(result.items())
    return out


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_health_check_on_argocd_testdata(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((ARGOCD / case["inputPath"]).read_text())
    assert run_health(obj) == case["healthStatus"]


def test_every_testdata_file_is_used_and_every_status_is_covered() -> None:
    used = {c["inputPath"] for c in CASES}
    assert used == {f"testdata/{p.name}" for p in (ARGOCD / "testdata").glob("*.yaml")}
    assert {c["healthStatus"]["status"] for c in CASES} == {"Healthy", "Progressing", "Degraded", "Suspended"}


@pytest.mark.parametrize("name", SCENARIOS)
def test_health_check_on_statuses_written_by_the_operator(name: str) -> None:
    """The Lua and the operator's compute_status agree, and with kstatus (tests/gitops/test_kstatus.py)."""
    scenario = SCENARIOS[name]
    md = scenario.build()
    health = run_health(md)
    assert health["status"] == scenario.argocd
    assert health["status"] in ARGO_STATUSES
    assert health["message"], health


def test_message_comes_from_the_relevant_condition() -> None:
    md = SCENARIOS["progress-deadline-exceeded"].build()
    stalled = next(c for c in md["status"]["conditions"] if c["type"] == "Stalled")
    assert run_health(md)["message"] == stalled["message"]


def test_partial_conditions_still_give_a_message() -> None:
    """Conditions without reason/message (another writer, an older operator) never yield an empty message."""
    md: dict[str, Any] = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [
        {"type": "Ready", "status": "True"}]}}
    assert run_health(md) == {"status": "Healthy", "message": "Ready"}
    md["status"]["conditions"] = [{"type": "Stalled", "status": "True", "reason": "ApplyFailed"}]
    assert run_health(md) == {"status": "Degraded", "message": "ApplyFailed"}


def test_docs_carry_the_same_script() -> None:
    docs = (ROOT / "docs" / "gitops.md").read_text()
    indented = "".join(f"    {line}" if line.strip() else "\n" for line in SCRIPT.splitlines(keepends=True))
    assert indented in docs, "docs/gitops.md must embed deploy/argocd/health.lua verbatim (indented 4)"
    assert "resource.customizations.health.modeldeploy.dev_ModelDeployment: |" in docs

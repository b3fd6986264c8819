"""The Grafana dashboard queries only metrics that really exist: the server's (read from a running app's
/metrics) and the ones kube-state-metrics derives from the custom resource with our config."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
import yaml
from modeldeploy_api.models import RolloutStatus
from modeldeploy_server.app import create_app
from modeldeploy_server.settings import ServerSettings

from tests.charts.conftest import helm_bin  # noqa: F401  (fixture)
from tests.fixtures import models
from tests.server.conftest import serve_http, wait_ready

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "charts" / "modeldeploy" / "dashboards"
DASHBOARD = DASHBOARDS / "modeldeploy.json"
KSM_CONFIG = DASHBOARDS / "kube-state-metrics.yaml"
NAME = re.compile(r"\b((?:modeldeploy|kube_modeldeployment)_[a-z0-9_]+)\b")
# Metrics of the drift monitoring work (per-feature drift, predicted labels), which lands separately.
DRIFT_WORK = ("modeldeploy_drift_", "modeldeploy_predictions_total")
VARIABLES = {"datasource", "namespace", "model", "__rate_interval"}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every variable query."""
    out = [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]
    variables = dashboard()["templating"]["list"]
    out += [(f"variable {v['name']}", v["definition"]) for v in variables if v["type"] == "query"]
    return out


def referenced(expr: str) -> set[str]:
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(NAME.findall(without_strings))


def series_names(exposition: str) -> set[str]:
    """Every series name the families in a /metrics page can have (from their TYPE lines)."""
    out: set[str] = set()
    for line in exposition.splitlines():
        if not line.startswith("# TYPE "):
            continue
        _, _, name, kind = line.split()
        base = name.removesuffix("_total")
        if kind == "counter":
            out.add(f"{base}_total")
        elif kind == "histogram":
            out |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "summary":
            out |= {name, f"{name}_sum", f"{name}_count"}
        else:
            out.add(name)
    return out


@pytest.fixture(scope="module")
def server_metrics(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Names on /metrics of the real app serving a model, with authentication on, after a few requests."""
    tmp = tmp_path_factory.mktemp("dashboard")
    model, rows = models.iris_logreg()
    saved = models.save_joblib(model, rows, tmp / "iris.joblib")
    (tmp / "keys").mkdir()
    (tmp / "keys" / "k").write_text("dashboard-key-0000000000000000")
    settings = ServerSettings(model_name="iris", model_version="1", model_uri=str(saved.path),
                              model_sha256=saved.sha256, auth_dir=str(tmp / "keys"), cache_dir=str(tmp))
    with serve_http(create_app(settings)) as url:
        wait_ready(url)
        headers = {"X-API-Key": "dashboard-key-0000000000000000"}
        httpx.post(f"{url}/predict", json={"features": rows[0].tolist()}, headers=headers).raise_for_status()
        httpx.post(f"{url}/predict/batch", json={"instances": rows[:3].tolist()}, headers=headers).raise_for_status()
        assert httpx.post(f"{url}/predict", json={"features": [1.0]}, headers=headers).status_code == 400
        assert httpx.post(f"{url}/predict", json={"features": rows[0].tolist()}).status_code == 401
        text = httpx.get(f"{url}/metrics").text
    return series_names(text)


def ksm_names() -> set[str]:
    config = yaml.safe_load(KSM_CONFIG.read_text())
    return {f"{r['metricNamePrefix']}_{m['name']}" for r in config["spec"]["resources"] for m in r["metrics"]}


def test_every_queried_metric_is_exported(server_metrics: set[str]) -> None:
    exported = server_metrics | ksm_names()
    assert {"modeldeploy_requests_total", "modeldeploy_request_duration_seconds_bucket",
            "modeldeploy_auth_failures_total"} <= exported  # the collection itself works
    drift_in_this_build = any(n.startswith("modeldeploy_drift_") for n in server_metrics)
    unknown = []
    for where, expr in expressions():
        names = referenced(expr)
        assert names, f"{where}: no modeldeploy metric in {expr!r}"
        for name in names - exported:
            if name.startswith(DRIFT_WORK) and not drift_in_this_build:
                continue  # drift monitoring is not in this build yet: checked once it is
            unknown.append(f"{where}: {name}")
    assert not unknown, f"panels query metrics nobody exports: {unknown}"


def test_drift_and_prediction_panels_are_checked_when_the_server_has_them(server_metrics: set[str]) -> None:
    queried = {n for _, e in expressions() for n in referenced(e)}
    drift = {n for n in queried if n.startswith("modeldeploy_drift_")}
    assert drift and "modeldeploy_predictions_total" in queried  # drift scores per feature; labels
    if not any(n.startswith("modeldeploy_drift_") for n in server_metrics):
        pytest.skip("this build exports no drift metrics yet")
    assert drift <= server_metrics


def test_a_misspelt_metric_would_be_caught(server_metrics: set[str]) -> None:
    assert referenced('rate(modeldeploy_request_total{model_name="modeldeploy_requests_total"}[5m])') == {
        "modeldeploy_request_total"}
    assert "modeldeploy_request_total" not in server_metrics | ksm_names()


def test_dashboard_structure() -> None:
    d = dashboard()
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    titles = {p["title"] for p in panels()}
    assert {"Requests per second", "Latency percentiles", "Error ratio", "Drift score per feature",
            "Rollout phase"} <= titles
    for p in panels():
        grid = p["gridPos"]
        assert grid["x"] + grid["w"] <= 24, p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
    names = {v["name"] for v in d["templating"]["list"]}
    for where, expr in expressions():
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), where
        assert set(re.findall(r"\$(\w+)", expr)) <= names | VARIABLES, where


def test_kube_state_metrics_config_follows_the_api() -> None:
    config = yaml.safe_load(KSM_CONFIG.read_text())
    assert config["kind"] == "CustomResourceStateMetrics"
    [resource] = config["spec"]["resources"]
    assert resource["groupVersionKind"] == {"group": "modeldeploy.dev", "version": "v1alpha1",
                                            "kind": "ModelDeployment"}
    phase = next(m for m in resource["metrics"] if m["name"] == "rollout_phase")["each"]["stateSet"]
    assert phase["path"] == ["status", "rollout", "phase"]
    phases = get_args(get_args(RolloutStatus.model_fields["phase"].annotation)[0])
    assert phase["list"] == list(phases)


def test_chart_ships_the_same_dashboard(helm_bin: Path) -> None:  # noqa: F811
    import subprocess

    args = [str(helm_bin), "template", "r", str(ROOT / "charts" / "modeldeploy")]
    off = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    assert "grafana_dashboard" not in off  # off by default
    on = subprocess.run([*args, "--set", "monitoring.grafanaDashboard.enabled=true"],
                        capture_output=True, text=True, check=True).stdout
    cm = next(o for o in yaml.safe_load_all(on) if o and o["kind"] == "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["modeldeploy.json"]) == dashboard()

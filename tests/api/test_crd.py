"""The CRD is generated from the pydantic models; the committed copies must match and be structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from modeldeploy_api.crd import CRD_FILE, build_crd, render_crd_yaml
from modeldeploy_cli.main import main as cli

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = [ROOT / "crds" / CRD_FILE]
CHART_CRD = ROOT / "charts" / "modeldeploy" / "crds" / CRD_FILE
if CHART_CRD.parent.parent.is_dir():
    COMMITTED.append(CHART_CRD)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_crd_is_generated(path: Path) -> None:
    assert path.is_file(), f"{path} missing: run `modeldeploy crd -o {path.parent.relative_to(ROOT)}`"
    assert path.read_text() == render_crd_yaml(), (
        f"{path.relative_to(ROOT)} is out of date: run `modeldeploy crd -o {path.parent.relative_to(ROOT)}`"
    )


def test_cli_check_detects_a_stale_copy(tmp_path: Path) -> None:
    assert cli(["crd", "-o", str(tmp_path)]) == 0
    assert cli(["crd", "--check", "-o", str(tmp_path)]) == 0
    (tmp_path / CRD_FILE).write_text(render_crd_yaml().replace("minimum: 0", "minimum: 1"))
    assert cli(["crd", "--check", "-o", str(tmp_path)]) == 1


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, sub in (node.get("properties") or {}).items():
            out += _walk(sub, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                out += _walk(node[key], f"{path}[{key}]")
    return out


def schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def test_schema_is_structural() -> None:
    for path, node in _walk(schema()):
        special = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        assert "type" in node or special, f"{path} has no type"
        assert "$ref" not in node and "title" not in node, path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), f"{path}: anyOf only for int-or-string"
        assert node.get("default", 0) is not None, f"{path}: null default"
        for flag in ("exclusiveMinimum", "exclusiveMaximum"):  # OpenAPI v3.0: booleans
            assert isinstance(node.get(flag, True), bool), f"{path}.{flag} must be a boolean"


def test_api_names_and_subresources() -> None:
    crd = build_crd()["spec"]
    assert crd["group"] == "modeldeploy.dev" and crd["scope"] == "Namespaced"
    assert crd["names"]["plural"] == "modeldeployments"
    assert crd["names"]["shortNames"] == ["md"] and crd["names"]["categories"] == ["ml"]
    version = crd["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Version"] == ".status.currentVersion"
    assert columns["Drift"] == ".status.drift.status"
    assert {"Replicas", "Age"} <= columns.keys()


def test_defaults_and_rules_reach_the_api_server() -> None:
    spec = schema()["properties"]["spec"]
    assert spec["required"] == ["model"]
    props = spec["properties"]
    assert props["replicas"]["default"] == 1 and props["replicas"]["minimum"] == 0
    assert props["resources"]["default"]["limits"]["memory"] == "1Gi"
    assert props["server"]["default"] == {} and props["server"]["properties"]["port"]["default"] == 8080
    model = props["model"]
    assert model["properties"]["format"]["enum"] == ["sklearn", "skops", "onnx"]
    assert model["properties"]["sha256"]["pattern"] == "^[a-f0-9]{64}$"
    rules = [r["rule"] for r in model["x-kubernetes-validations"]]
    assert any("has(self.sha256)" in r for r in rules)
    resource_rules = [r["rule"] for r in props["resources"]["x-kubernetes-validations"]]
    assert any("'memory' in self.limits" in r for r in resource_rules)
    status = schema()["properties"]["status"]["properties"]
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert yaml.safe_load(render_crd_yaml())["metadata"]["name"] == "modeldeployments.modeldeploy.dev"

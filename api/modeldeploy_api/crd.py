"""Generates the ModelDeployment CRD from the pydantic models: the only way the CRD YAML is written."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from . import constants as c
from .models import ModelDeploymentSpec, ModelDeploymentStatus

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# Keys pydantic emits that have no place in a structural schema.
_DROP = {"title", "$defs", "discriminator"}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Version", "type": "string", "jsonPath": ".status.currentVersion"},
    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
    {"name": "Available", "type": "integer", "jsonPath": ".status.availableReplicas"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.rollout.phase"},
    {"name": "Traffic", "type": "string", "jsonPath": ".status.rollout.traffic"},
    {"name": "Drift", "type": "string", "jsonPath": ".status.drift.status"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Reason",
        "type": "string",
        "priority": 1,
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
    },
    {"name": "URL", "type": "string", "priority": 1, "jsonPath": ".status.url"},
]


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline $refs and turn pydantic's JSON Schema into a Kubernetes structural schema."""
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").split("/")[-1]])
        node = {**target, **node}  # field-level description/default win over the model's
    node = {k: v for k, v in node.items() if k not in _DROP}

    if node.get("x-kubernetes-int-or-string"):
        return _int_or_string(node)

    any_of = node.get("anyOf")
    if isinstance(any_of, list):
        non_null = [s for s in any_of if s.get("type") != "null"]
        if len(non_null) == 1 and len(non_null) < len(any_of):  # Optional[X] -> X
            node.pop("anyOf")
            inner = _resolve(non_null[0], defs)
            node = {**inner, **{k: v for k, v in node.items() if k != "default" or v is not None}}
            if node.get("default", 0) is None:
                node.pop("default")
            return _finish(node, defs)
    if node.get("default", 0) is None:
        node.pop("default")
    return _finish(node, defs)


def _int_or_string(node: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf", "type")}
    out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


def _finish(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    # JSON Schema 2020 (pydantic) says exclusiveMinimum: 0; OpenAPI v3.0 says minimum: 0 + exclusiveMinimum: true.
    for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(node.get(flag), int | float) and not isinstance(node.get(flag), bool):
            node[bound] = node.pop(flag)
            node[flag] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    if node.get("x-kubernetes-preserve-unknown-fields"):
        node.pop("additionalProperties", None)
        node.setdefault("type", "object")
    for key in ("properties",):
        if key in node:
            node[key] = {k: _resolve(v, defs) for k, v in node[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = _resolve(node[key], defs)
    if "anyOf" in node:
        node["anyOf"] = _resolve(node["anyOf"], defs)
    if "properties" in node:
        node["type"] = "object"
    if node.get("type") == "object" and "properties" in node and "additionalProperties" in node:
        node.pop("additionalProperties")  # pydantic's extra policy; the API server prunes unknown fields
    return node


def _quantities(schema: dict[str, Any]) -> None:
    """Quantity maps get controller-gen's int-or-string shape with the quantity pattern, bounded size."""
    for key in ("requests", "limits"):
        field = schema["properties"][key]
        field["maxProperties"] = 16
        field["additionalProperties"]["pattern"] = QUANTITY_PATTERN


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _resolve(raw, defs)  # type: ignore[no-any-return]


def spec_schema() -> dict[str, Any]:
    spec = openapi_schema(ModelDeploymentSpec)
    _quantities(spec["properties"]["resources"])
    env = spec["properties"]["server"]["properties"]["env"]
    env["x-kubernetes-list-type"] = "map"
    env["x-kubernetes-list-map-keys"] = ["name"]
    env["maxItems"] = 100
    return spec


def status_schema() -> dict[str, Any]:
    status = openapi_schema(ModelDeploymentStatus)
    conditions = status["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    conditions.pop("default", None)
    return status


def build_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{c.PLURAL}.{c.GROUP}",
            "labels": {c.LABEL_NAME: "modeldeploy", c.LABEL_MANAGED_BY: c.MANAGED_BY},
        },
        "spec": {
            "group": c.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": c.KIND,
                "listKind": f"{c.KIND}List",
                "plural": c.PLURAL,
                "singular": c.SINGULAR,
                "shortNames": list(c.SHORT_NAMES),
                "categories": list(c.CATEGORIES),
            },
            "versions": [
                {
                    "name": c.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A trained model served by the generic modeldeploy server, "
                            "rolled out and watched for drift.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


HEADER = "# Generated by `modeldeploy crd` from api/modeldeploy_api/models.py. Do not edit by hand.\n"

CRD_FILE = f"{c.PLURAL}.{c.GROUP}.yaml"


def render_crd_yaml() -> str:
    return HEADER + str(yaml.safe_dump(build_crd(), sort_keys=False, width=120))


def write_crd(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CRD_FILE
    path.write_text(render_crd_yaml())
    return path

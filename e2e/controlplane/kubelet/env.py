"""Container environment like the real kubelet builds it: envFrom, env, valueFrom, $(VAR) expansion."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

Obj = dict[str, Any]
# (kind "configmap"|"secret", namespace, name) -> the object, or None if it does not exist
Lookup = Callable[[str, str, str], Obj | None]


class ConfigError(Exception):
    """The container cannot be configured (missing ConfigMap/Secret key...): CreateContainerConfigError."""


def expand(text: str, mapping: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion (third_party/forked/golang/expansion): `$$` escapes `$`,
    unknown or unterminated references are left as they are."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    n = len(text)
    while cursor < n:
        if text[cursor] == "$" and cursor + 1 < n:
            out.append(text[checkpoint:cursor])
            nxt = text[cursor + 1]
            if nxt == "$":
                out.append("$")
                advance = 1
            elif nxt == "(":
                close = text.find(")", cursor + 2)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    name = text[cursor + 2 : close]
                    out.append(mapping.get(name, f"$({name})"))
                    advance = close - cursor
            else:
                out.append("$" + nxt)
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


_QTY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[a-zA-Z]*)$")
_SUFFIX = {
    "": Decimal(1), "m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9, "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}


def quantity(text: str | int | float) -> Decimal:
    """Parse a Kubernetes resource quantity ("500m", "1Gi", "1e3") into a Decimal."""
    s = str(text).strip()
    m = _QTY.match(s)
    if not m:
        raise ValueError(f"bad quantity {text!r}")
    number, suffix = m.groups()
    if suffix[:1] in ("e", "E") and suffix[1:].lstrip("+-").isdigit():
        return Decimal(number) * (Decimal(10) ** int(suffix[1:]))
    if suffix not in _SUFFIX:
        raise ValueError(f"bad quantity suffix in {text!r}")
    return Decimal(number) * _SUFFIX[suffix]


def _resource_value(ref: Obj, pod: Obj, node_allocatable: Mapping[str, str]) -> str:
    cname = ref.get("containerName")
    containers = pod["spec"].get("containers", []) + pod["spec"].get("initContainers", [])
    container = next((c for c in containers if c["name"] == cname), None) if cname else None
    if container is None and cname:
        raise ConfigError(f"resourceFieldRef: no container {cname!r}")
    resource = ref["resource"]  # e.g. limits.cpu / requests.memory
    kind, _, name = resource.partition(".")
    resources = (container or {}).get("resources", {})
    raw = resources.get(kind, {}).get(name)
    if raw is None and kind == "limits":
        raw = node_allocatable.get(name)
    if raw is None:
        raw = "0"
    divisor = quantity(ref.get("divisor") or "1")
    if divisor == 0:
        divisor = Decimal(1)
    return str(math.ceil(quantity(raw) / divisor))


def field_value(path: str, pod: Obj, pod_ip: str, host_ip: str) -> str:
    """Value of a downward-API fieldRef (metadata.*, spec.nodeName, status.podIP...)."""
    meta = pod["metadata"]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple: dict[str, str] = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
    }
    if path in simple:
        return simple[path]
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def _key_ref(kind: str, ref: Obj, namespace: str, lookup: Lookup) -> str | None:
    obj = lookup(kind, namespace, ref["name"])
    optional = bool(ref.get("optional"))
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{ref["name"]}" not found')
    key = ref["key"]
    if kind == "secret":
        data = obj.get("data") or {}
        if key in data:
            return base64.b64decode(data[key]).decode("utf-8", "replace")
    else:
        if key in (obj.get("data") or {}):
            return str(obj["data"][key])
        if key in (obj.get("binaryData") or {}):
            return base64.b64decode(obj["binaryData"][key]).decode("utf-8", "replace")
    if optional:
        return None
    raise ConfigError(f'couldn\'t find key {key} in {kind.capitalize()} {namespace}/{ref["name"]}')


_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def container_env(
    pod: Obj,
    container: Obj,
    *,
    pod_ip: str,
    host_ip: str,
    lookup: Lookup,
    service_env: Mapping[str, str],
    forced: Mapping[str, str],
    node_allocatable: Mapping[str, str],
) -> dict[str, str]:
    """The environment of `container`: service_env < envFrom < env, then `forced` on top.

    `forced` (POD_IP, MODELDEPLOY_HOST...) is visible to $(VAR) references and always wins:
    it stands in for the pod's own network namespace.
    """
    ns = pod["metadata"]["namespace"]
    tmp: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = src.get(key)
            if not ref:
                continue
            obj = lookup(kind, ns, ref["name"])
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind} "{ref["name"]}" not found')
            items: dict[str, str] = {}
            if kind == "secret":
                for k, v in (obj.get("data") or {}).items():
                    items[k] = base64.b64decode(v).decode("utf-8", "replace")
            else:
                items.update({k: str(v) for k, v in (obj.get("data") or {}).items()})
            for k, v in items.items():
                if _ENV_NAME.match(prefix + k):
                    tmp[prefix + k] = v

    def mapping() -> dict[str, str]:
        return {**service_env, **tmp, **forced}

    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var or var.get("value"):
            tmp[name] = expand(var.get("value", ""), mapping())
            continue
        vf = var["valueFrom"]
        value: str | None
        if "fieldRef" in vf:
            value = field_value(vf["fieldRef"]["fieldPath"], pod, pod_ip, host_ip)
        elif "resourceFieldRef" in vf:
            value = _resource_value(vf["resourceFieldRef"], pod, node_allocatable)
        elif "configMapKeyRef" in vf:
            value = _key_ref("configmap", vf["configMapKeyRef"], ns, lookup)
        elif "secretKeyRef" in vf:
            value = _key_ref("secret", vf["secretKeyRef"], ns, lookup)
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(vf)}")
        if value is not None:
            tmp[name] = value
    return {**service_env, **tmp, **forced}


def command_line(container: Obj, env: Mapping[str, str]) -> list[str]:
    """command + args with $(VAR) expanded. Images are not available: the command must be given."""
    command = [expand(c, env) for c in container.get("command") or []]
    args = [expand(a, env) for a in container.get("args") or []]
    argv = command + args
    if not argv:
        raise ConfigError(
            "container has neither command nor args; the loopback kubelet runs no images, "
            "so the command must be spelled out in the pod spec"
        )
    return argv

"""Pod volumes as host directories (emptyDir, configMap, secret, downwardAPI, projected, hostPath)."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .env import ConfigError, Lookup, field_value

Obj = dict[str, Any]
# (namespace, serviceaccount, audience|None, expirationSeconds, pod) -> token
TokenSource = Callable[[str, str, str | None, int, Obj], str]


class VolumeError(Exception):
    """A volume cannot be set up (yet): the pod stays ContainerCreating and is retried."""


@dataclass(frozen=True)
class Mount:
    """One bind mount inside the container's private mount namespace."""

    source: Path
    target: str
    read_only: bool


def _write_files(directory: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """Atomically (re)populate `directory` with relative path -> (content, mode)."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for rel, (data, mode) in files.items():
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise ConfigError(f"invalid volume item path {rel!r}")
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        p.chmod(mode)
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)


def _kv_items(
    data: dict[str, bytes], items: list[Obj] | None, default_mode: int, what: str, optional: bool
) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {k: (v, default_mode) for k, v in data.items()}
    out = {}
    for it in items:
        if it["key"] not in data:
            if optional:
                continue
            raise VolumeError(f"{what}: key {it['key']!r} not found")
        out[it["path"]] = (data[it["key"]], int(it.get("mode", default_mode)))
    return out


def _configmap_data(obj: Obj) -> dict[str, bytes]:
    data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _secret_data(obj: Obj) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}


class VolumeManager:
    """Builds a pod's volumes under `root/<pod uid>/` and resolves volumeMounts to bind mounts."""

    def __init__(self, root: Path, lookup: Lookup, token: TokenSource) -> None:
        self.root = root
        self.lookup = lookup
        self.token = token

    def pod_dir(self, uid: str) -> Path:
        return self.root / uid

    def cleanup(self, uid: str) -> None:
        shutil.rmtree(self.pod_dir(uid), ignore_errors=True)

    def setup(self, pod: Obj, pod_ip: str, host_ip: str) -> dict[str, tuple[Path, bool]]:
        """Create every volume of the pod; returns name -> (host path, always read-only)."""
        uid = pod["metadata"]["uid"]
        ns = pod["metadata"]["namespace"]
        base = self.pod_dir(uid)
        out: dict[str, tuple[Path, bool]] = {}
        for vol in pod["spec"].get("volumes") or []:
            name = vol["name"]
            target = base / name
            if "emptyDir" in vol:
                target.mkdir(parents=True, exist_ok=True)
                target.chmod(0o777)
            elif "hostPath" in vol:
                hp = vol["hostPath"]
                path = Path(hp["path"])
                kind = hp.get("type", "")
                if kind == "DirectoryOrCreate":
                    path.mkdir(parents=True, exist_ok=True)
                elif kind == "FileOrCreate" and not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
                elif kind and kind not in ("DirectoryOrCreate", "FileOrCreate") and not path.exists():
                    raise VolumeError(f"hostPath {path} does not exist")
                target = path
            elif "configMap" in vol:
                src = vol["configMap"]
                obj = self.lookup("configmap", ns, src["name"])
                mode = int(src.get("defaultMode", 0o644))
                if obj is None:
                    if not src.get("optional"):
                        raise VolumeError(f'configmap "{src["name"]}" not found')
                    files: dict[str, tuple[bytes, int]] = {}
                else:
                    files = _kv_items(_configmap_data(obj), src.get("items"), mode,
                                      f"configmap {src['name']}", bool(src.get("optional")))
                _write_files(target, files)
            elif "secret" in vol:
                src = vol["secret"]
                obj = self.lookup("secret", ns, src["secretName"])
                mode = int(src.get("defaultMode", 0o644))
                if obj is None:
                    if not src.get("optional"):
                        raise VolumeError(f'secret "{src["secretName"]}" not found')
                    files = {}
                else:
                    files = _kv_items(_secret_data(obj), src.get("items"), mode,
                                      f"secret {src['secretName']}", bool(src.get("optional")))
                _write_files(target, files)
            elif "downwardAPI" in vol:
                src = vol["downwardAPI"]
                mode = int(src.get("defaultMode", 0o644))
                _write_files(target, self._downward(src.get("items") or [], pod, pod_ip, host_ip, mode))
            elif "projected" in vol:
                src = vol["projected"]
                _write_files(target, self._projected(src, pod, pod_ip, host_ip))
            else:
                kinds = sorted(k for k in vol if k != "name")
                raise VolumeError(
                    f"volume {name!r}: type {kinds} is not supported by the loopback kubelet"
                )
            # configMap, secret, downwardAPI and projected volumes are read-only, as in Kubernetes.
            out[name] = (target, not ("emptyDir" in vol or "hostPath" in vol))
        return out

    def _downward(
        self, items: list[Obj], pod: Obj, pod_ip: str, host_ip: str, mode: int
    ) -> dict[str, tuple[bytes, int]]:
        files = {}
        for it in items:
            if "fieldRef" in it:
                value = field_value(it["fieldRef"]["fieldPath"], pod, pod_ip, host_ip)
            else:
                raise VolumeError(f"downwardAPI item {it.get('path')}: only fieldRef is supported")
            files[it["path"]] = (value.encode(), int(it.get("mode", mode)))
        return files

    def _projected(
        self, src: Obj, pod: Obj, pod_ip: str, host_ip: str
    ) -> dict[str, tuple[bytes, int]]:
        ns = pod["metadata"]["namespace"]
        mode = int(src.get("defaultMode", 0o644))
        files: dict[str, tuple[bytes, int]] = {}
        for s in src.get("sources") or []:
            if "serviceAccountToken" in s:
                t = s["serviceAccountToken"]
                sa = pod["spec"].get("serviceAccountName") or "default"
                token = self.token(ns, sa, t.get("audience"), int(t.get("expirationSeconds", 3600)), pod)
                files[t["path"]] = (token.encode(), mode)
            elif "configMap" in s:
                c = s["configMap"]
                obj = self.lookup("configmap", ns, c["name"])
                if obj is None:
                    if c.get("optional"):
                        continue
                    raise VolumeError(f'configmap "{c["name"]}" not found')
                files.update(_kv_items(_configmap_data(obj), c.get("items"), mode,
                                       f"configmap {c['name']}", bool(c.get("optional"))))
            elif "secret" in s:
                c = s["secret"]
                obj = self.lookup("secret", ns, c["name"])
                if obj is None:
                    if c.get("optional"):
                        continue
                    raise VolumeError(f'secret "{c["name"]}" not found')
                files.update(_kv_items(_secret_data(obj), c.get("items"), mode,
                                       f"secret {c['name']}", bool(c.get("optional"))))
            elif "downwardAPI" in s:
                files.update(self._downward(s["downwardAPI"].get("items") or [], pod, pod_ip,
                                            host_ip, mode))
            else:
                raise VolumeError(f"projected source {sorted(s)} is not supported")
        return files

    @staticmethod
    def mounts(container: Obj, volumes: dict[str, tuple[Path, bool]]) -> list[Mount]:
        """The container's volumeMounts as bind mounts (subPath resolved, created if missing)."""
        out = []
        for vm in container.get("volumeMounts") or []:
            name = vm["name"]
            if name not in volumes:
                raise ConfigError(f"volumeMount {name!r}: no such volume in the pod")
            source, always_ro = volumes[name]
            sub = vm.get("subPath") or ""
            if sub:
                if sub.startswith("/") or ".." in Path(sub).parts:
                    raise ConfigError(f"invalid subPath {sub!r}")
                source = source / sub
                if not source.exists():
                    source.mkdir(parents=True)
            out.append(Mount(source=source, target=vm["mountPath"],
                             read_only=always_ro or bool(vm.get("readOnly"))))
        return out


def ensure_mountpoint(target: str, source_is_dir: bool) -> None:
    """Bind mounts need an existing target: create a missing one on the host (left in place)."""
    p = Path(target)
    if p.exists() or p.is_symlink():
        return
    if source_is_dir:
        os.makedirs(p, exist_ok=True)
    else:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()

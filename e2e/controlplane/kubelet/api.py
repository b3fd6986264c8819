"""The kubelet's API calls, through the `kubernetes` client, on plain dicts (no model classes)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

Obj = dict[str, Any]
log = logging.getLogger("kubelet.api")

TIMEOUT = 15.0
AGGREGATE_WINDOW = 600.0  # seconds
FIELD_MANAGER = "loopback-kubelet"


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(resp: Any) -> Any:
    return json.loads(resp.data)


class Api:
    """Pods of one node, their status, and what pods refer to (secrets, configmaps, tokens)."""

    def __init__(self, kubeconfig: Path, node: str) -> None:
        cfg = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), client_configuration=cfg
        )
        cfg.proxy = None  # loopback only: never route API traffic through an env proxy
        self.client = client.ApiClient(configuration=cfg)
        self.client.user_agent = f"{FIELD_MANAGER}/{node}"
        # Any: the generated client is typed with model classes; we send and read plain dicts.
        self.core: Any = client.CoreV1Api(self.client)
        self.node = node
        self.server = urlparse(cfg.host)
        self._events: queue.Queue[Obj | None] = queue.Queue(maxsize=1000)
        self._event_thread = threading.Thread(target=self._send_events, daemon=True,
                                              name="events")
        self._event_thread.start()

    # ------------------------------------------------------------------ pods

    def list_pods(self) -> tuple[list[Obj], str]:
        resp = self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.node}",
            _preload_content=False,
            _request_timeout=TIMEOUT,
        )
        data = _json(resp)
        return data.get("items") or [], data["metadata"]["resourceVersion"]

    def watch_pods(self, resource_version: str, timeout: int) -> Iterator[tuple[str, Obj]]:
        """Yield (type, object) from a pod watch; raises Gone on 410 (re-list)."""
        resp = self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.node}",
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=resource_version,
            timeout_seconds=timeout,
            _preload_content=False,
            _request_timeout=(TIMEOUT, timeout + 30),
        )
        try:
            for line in iter_resp_lines(resp):  # type: ignore[no-untyped-call]
                if not line.strip():
                    continue
                ev = json.loads(line)
                if ev["type"] == "ERROR":
                    status = ev.get("object") or {}
                    if status.get("code") == 410:
                        raise Gone(status.get("message", "410 Gone"))
                    raise ApiException(status=status.get("code"), reason=status.get("message"))
                yield ev["type"], ev["object"]
        finally:
            resp.close()
            resp.release_conn()

    def patch_status(self, namespace: str, name: str, status: Obj) -> Obj | None:
        """JSON-merge-patch the pod's status (lists are replaced whole); None if the pod is gone."""
        try:
            resp = self.core.patch_namespaced_pod_status(
                name,
                namespace,
                {"status": status},
                field_manager=FIELD_MANAGER,
                _content_type="application/merge-patch+json",
                _preload_content=False,
                _request_timeout=TIMEOUT,
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        result: Obj = _json(resp)
        return result

    def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        """Delete with grace 0, only if it is still the same pod (uid precondition)."""
        try:
            self.core.delete_namespaced_pod(
                name,
                namespace,
                grace_period_seconds=0,
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": uid}},
                _preload_content=False,
                _request_timeout=TIMEOUT,
            )
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    # ------------------------------------------------------------------ referenced objects

    def lookup(self, kind: str, namespace: str, name: str) -> Obj | None:
        """A ConfigMap or Secret as a dict, None if it does not exist."""
        fn = (
            self.core.read_namespaced_secret
            if kind == "secret"
            else self.core.read_namespaced_config_map
        )
        try:
            resp = fn(name, namespace, _preload_content=False, _request_timeout=TIMEOUT)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        result: Obj = _json(resp)
        return result

    def token(
        self, namespace: str, service_account: str, audience: str | None, seconds: int, pod: Obj
    ) -> str:
        """A TokenRequest bound to the pod (what projected serviceAccountToken volumes hold)."""
        spec: Obj = {
            "expirationSeconds": max(seconds, 600),
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": pod["metadata"]["name"],
                "uid": pod["metadata"]["uid"],
            },
        }
        if audience:
            spec["audiences"] = [audience]
        resp = self.core.create_namespaced_service_account_token(
            service_account,
            namespace,
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
            _preload_content=False,
            _request_timeout=TIMEOUT,
        )
        token: str = _json(resp)["status"]["token"]
        return token

    # ------------------------------------------------------------------ events

    def event(self, pod: Obj, kind: str, reason: str, message: str,
              container: str | None = None) -> None:
        """Record a core/v1 Event about the pod, in the background (best effort)."""
        meta = pod["metadata"]
        ts = now_rfc3339()
        involved: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
        }
        if container:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        ev = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": involved,
            "reason": reason,
            "message": message[:1024],
            "type": kind,
            "source": {"component": "kubelet", "host": self.node},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }
        with contextlib.suppress(queue.Full):
            self._events.put_nowait(ev)

    def _send_events(self) -> None:
        # Like the kubelet's event correlator: a repeat of the same event (same object, reason,
        # message) within AGGREGATE_WINDOW bumps `count` of the existing Event instead of
        # creating a new one, so a probe failing every second does not flood etcd.
        seen: dict[tuple[str, ...], tuple[str, int, float]] = {}
        while True:
            ev = self._events.get()
            if ev is None:
                return
            inv = ev["involvedObject"]
            key = (inv["uid"], inv.get("fieldPath", ""), ev["reason"], ev["message"])
            ns = ev["metadata"]["namespace"]
            now = time.monotonic()
            try:
                prev = seen.get(key)
                if prev and now - prev[2] < AGGREGATE_WINDOW:
                    name, count, first = prev
                    self.core.patch_namespaced_event(
                        name, ns, {"count": count + 1, "lastTimestamp": ev["lastTimestamp"]},
                        _content_type="application/merge-patch+json",
                        _preload_content=False, _request_timeout=TIMEOUT,
                    )
                    seen[key] = (name, count + 1, first)
                    continue
                resp = self.core.create_namespaced_event(
                    ns, ev, _preload_content=False, _request_timeout=TIMEOUT
                )
                seen[key] = (_json(resp)["metadata"]["name"], 1, now)
                if len(seen) > 5000:
                    cutoff = now - AGGREGATE_WINDOW
                    seen = {k: v for k, v in seen.items() if v[2] >= cutoff}
            except (ApiException, urllib3.exceptions.HTTPError, ValueError, KeyError) as e:
                seen.pop(key, None)
                log.debug("event not recorded: %s", e)

    def close(self) -> None:
        self._events.put(None)
        self._event_thread.join(timeout=2)

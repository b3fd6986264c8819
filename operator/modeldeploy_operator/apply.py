"""The thin layer that talks to the API server: server-side apply of children, reads, status writes."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from modeldeploy_api import constants as c

from .patches import merge_patch

Body = dict[str, Any]

_PLURALS = {
    ("apps/v1", "Deployment"): "deployments",
    ("v1", "Service"): "services",
    ("v1", "Pod"): "pods",
    ("batch/v1", "Job"): "jobs",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes",
}


def _path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    plural = _PLURALS.get((api_version, kind)) or kind.lower() + "s"
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


class Cluster:
    """What the operator does to the cluster, in one place: easy to read, easy to audit for RBAC."""

    def __init__(self, api: client.ApiClient | None = None) -> None:
        self.api = api or client.ApiClient()

    def _call(self, method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None,
              content_type: str = "application/json") -> Body:
        """One authenticated request. JSON bodies are encoded by the client; an apply patch goes as JSON text,
        which is valid YAML."""
        url_method, url, headers, _, _ = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        payload = json.dumps(body) if body is not None and content_type.endswith("+yaml") else body
        response = self.api.call_api(url_method, url, header_params=headers, body=payload)
        response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)
        return json.loads(response.data or b"{}")  # type: ignore[no-any-return]

    def apply(self, obj: Body) -> Body:
        """Server-side apply with our field manager; `force` takes back fields someone else edited."""
        meta = obj["metadata"]
        return self._call(
            "PATCH",
            _path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]),
            body=obj,
            query=[("fieldManager", c.FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Body | None:
        try:
            return self._call("GET", _path(api_version, kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_objects(self, api_version: str, kind: str, namespace: str, selector: str) -> list[Body]:
        result = self._call("GET", _path(api_version, kind, namespace), query=[("labelSelector", selector)])
        return list(result.get("items") or [])

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        try:
            self._call("DELETE", _path(api_version, kind, namespace, name),
                       body={"propagationPolicy": "Background"})
        except ApiException as exc:
            if exc.status != 404:
                raise

    def remove_annotations(self, namespace: str, name: str, keys: tuple[str, ...]) -> None:
        """Consume one-shot annotations (abort/promote): metadata only, never the spec."""
        self._call("PATCH", _path(c.API_VERSION, c.KIND, namespace, name),
                   body={"metadata": {"annotations": dict.fromkeys(keys)}},
                   content_type="application/merge-patch+json")

    def get_model_deployment(self, namespace: str, name: str) -> Body | None:
        return self.get(c.API_VERSION, c.KIND, namespace, name)

    def list_model_deployments(self, namespace: str | None = None) -> list[Body]:
        path = f"/apis/{c.API_VERSION}/namespaces/{namespace}/{c.PLURAL}" if namespace else (
            f"/apis/{c.API_VERSION}/{c.PLURAL}")
        result = self._call("GET", path)
        return list(result.get("items") or [])

    def patch_status(self, namespace: str, name: str, old: Body, new: Body) -> Body:
        """Write `new` over `old` as a merge patch: changed keys only, vanished keys set to null."""
        return self._call(
            "PATCH",
            _path(c.API_VERSION, c.KIND, namespace, name) + "/status",
            body={"status": merge_patch(old, new)},
            content_type="application/merge-patch+json",
        )

    def post_event(self, obj: Body, etype: str, reason: str, message: str, now: str) -> None:
        """A core/v1 Event on `obj` (what `kubectl describe` and `kubectl get events` show)."""
        meta = obj["metadata"]
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", c.API_VERSION),
                "kind": obj.get("kind", c.KIND),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": etype,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": c.FIELD_MANAGER},
            "reportingComponent": c.FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._call("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=event)

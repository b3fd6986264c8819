"""Why the new version's pods are not ready, from their own /ready answer: a model that cannot load is ModelLoadFailed.

The server answers /ready with 503 and `{"error": ..., "reason": ...}`; while the model loads the
reason is `model_loading`, after a failed load it names the failure for good (digest_mismatch,
access_denied, model_not_found...). The pod stays up (liveness passes), so without this the
resource would only say "rolling out" until the Deployment's progress deadline.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from modeldeploy_api import constants as c
from modeldeploy_api.models import ModelDeploymentSpec

from .apply import Body, Cluster

log = logging.getLogger(__name__)

REASON = "ModelLoadFailed"
TIMEOUT_SECONDS = 2.0
MESSAGE_LIMIT = 900
# /ready reasons that mean "not yet" rather than "never".
STILL_LOADING = frozenset({"model_loading", "workers_loading"})

Fetch = Callable[[str], tuple[int, bytes]]


@dataclass(frozen=True)
class LoadFailure:
    pod: str
    version: str
    reason: str
    """The server's machine-readable reason (digest_mismatch, access_denied...)."""
    message: str
    serving: str | None
    """The version still serving, if any."""

    def describe(self) -> str:
        text = f"version {self.version} cannot load on pod {self.pod} ({self.reason}): {self.message}"
        if self.serving and self.serving != self.version:
            text += f"; version {self.serving} keeps serving"
        return text[:MESSAGE_LIMIT]

    def error(self) -> tuple[str, str]:
        """(reason, message) for compute_status: the resource is Stalled until the spec changes."""
        return REASON, self.describe()

    def annotate(self, status: Body) -> None:
        """Put the server's message into the Ready condition too (compute_status keeps the rollout's there)."""
        for cnd in status.get("conditions") or []:
            if cnd.get("type") == "Ready" and cnd.get("status") != "True":
                cnd["message"] = self.describe()


def parse_ready(code: int, body: bytes) -> tuple[str, str] | None:
    """(reason, message) when a /ready answer says loading failed; None when ready or still loading."""
    if code != 503:
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    reason = str(payload.get("reason") or "")
    if not reason or reason in STILL_LOADING:
        return None
    return reason, str(payload.get("error") or reason)


def fetch_ready(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def ready_url(pod: Body, port: int) -> str | None:
    """The /ready URL of a running pod that is not ready (None for ready, pending or deleted pods)."""
    status = pod.get("status") or {}
    ip = status.get("podIP")
    ready = any(cnd.get("type") == "Ready" and cnd.get("status") == "True" for cnd in status.get("conditions") or [])
    if not ip or ready or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}/ready"


def needs_check(md: Body, spec: ModelDeploymentSpec) -> bool:
    """Skip the pod list when the resource already serves the desired version everywhere."""
    status = md.get("status") or {}
    ready: Body = next((cnd for cnd in status.get("conditions") or [] if cnd.get("type") == "Ready"), {})
    return not (ready.get("status") == "True" and status.get("currentVersion") == spec.model.version)


def load_failure(cluster: Cluster, md: Body, spec: ModelDeploymentSpec,
                 fetch: Fetch = fetch_ready) -> LoadFailure | None:
    """The first not-ready pod of the desired version whose server says its model failed to load."""
    if not needs_check(md, spec):
        return None
    meta = md["metadata"]
    version = spec.model.version
    selector = f"{c.LABEL_MD}={meta['name']},{c.LABEL_MODEL_VERSION}={version}"
    for pod in cluster.list_objects("v1", "Pod", meta["namespace"], selector):
        url = ready_url(pod, spec.server.port)
        if url is None:
            continue
        try:
            found = parse_ready(*fetch(url))
        except OSError as exc:  # the pod may be starting or going away
            log.debug("%s/%s: could not read %s: %s", meta["namespace"], meta["name"], url, exc)
            continue
        if found is not None:
            serving = (md.get("status") or {}).get("currentVersion")
            return LoadFailure(pod["metadata"]["name"], version, found[0], found[1], serving)
    return None

"""One idempotent reconcile: apply the desired children, observe them, write status. Called from every trigger."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import defaultdict
from collections.abc import Callable

from kubernetes.client.exceptions import ApiException
from modeldeploy_api import constants as c
from pydantic import ValidationError

from .apply import Body, Cluster
from .builders import build_children
from .status import READY, STALLED, compute_status, condition, status_changed

log = logging.getLogger(__name__)

# Triggers (the resource's own events, its children's events, the resync loop) may overlap;
# one lock per ModelDeployment keeps their status writes in order.
_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _api_error(exc: ApiException) -> tuple[str, str]:
    import json

    try:
        message = json.loads(exc.body or "{}").get("message") or exc.reason
    except ValueError:
        message = exc.reason
    return "ApplyFailed", f"{exc.status}: {message}"


Notify = Callable[[Body, str, str, str], None]  # (resource, "Normal"|"Warning", reason, message)


def reconcile(cluster: Cluster, md: Body, notify: Notify | None = None) -> Body | None:
    """Bring the cluster in line with `md`; returns the status written (None when nothing changed)."""
    meta = md["metadata"]
    ns, name = meta["namespace"], meta["name"]
    if meta.get("deletionTimestamp"):
        return None
    with _locks[(ns, name)]:
        fresh = cluster.get_model_deployment(ns, name)
        if fresh is None or fresh["metadata"].get("uid") != meta.get("uid"):
            return None  # deleted (or replaced) meanwhile: garbage collection handles the children
        md = fresh
        error: tuple[str, str] | None = None
        try:
            for child in build_children(md):
                cluster.apply(child)
        except ValidationError as exc:  # the API server's schema should make this unreachable
            error = ("InvalidSpec", str(exc).splitlines()[0])
        except ApiException as exc:
            if exc.status in (400, 403, 422):
                error = _api_error(exc)  # a human must act: Stalled, retried by the resync loop
            else:
                raise
        deployment = cluster.get("apps/v1", "Deployment", ns, name)
        status = compute_status(md, deployment, now_rfc3339(), error)
        old = md.get("status") or {}
        if not status_changed(old, status):
            return None
        cluster.patch_status(ns, name, status)
        for etype, reason, message in transitions(old, status):
            log.log(logging.WARNING if etype == "Warning" else logging.INFO, "%s/%s %s: %s", ns, name, reason, message)
            if notify:
                notify(md, etype, reason, message)
        return status


def transitions(old: Body, new: Body) -> list[tuple[str, str, str]]:
    """Events worth posting: only what changed state, never a repeat."""
    out: list[tuple[str, str, str]] = []
    if new.get("currentVersion") and new.get("currentVersion") != old.get("currentVersion"):
        out.append(("Normal", "VersionAvailable",
                    f"version {new['currentVersion']} is serving on all replicas "
                    f"(previous: {new.get('previousVersion') or 'none'})"))
    was_ready, ready = condition(old, READY) or {}, condition(new, READY) or {}
    first_sight = not was_ready
    changed = (was_ready.get("status"), was_ready.get("reason")) != (ready.get("status"), ready.get("reason"))
    if ready and changed and not (first_sight and ready["status"] != "True"):  # no "not ready" on creation
        out.append(("Normal", "Ready" if ready["status"] == "True" else "NotReady",
                    f"{ready['reason']}: {ready['message']}"))
    was_stalled, stalled = condition(old, STALLED) or {}, condition(new, STALLED) or {}
    if stalled.get("status") == "True" and (was_stalled.get("status"), was_stalled.get("reason")) != (
        "True", stalled["reason"]
    ):
        out.append(("Warning", stalled["reason"], stalled["message"]))
    elif stalled.get("status") == "False" and was_stalled.get("status") == "True":
        out.append(("Normal", "Recovered", f"no longer stalled ({was_stalled.get('reason')})"))
    return out


def owner_of(child: Body) -> tuple[str, str] | None:
    meta = child.get("metadata") or {}
    name = (meta.get("labels") or {}).get(c.LABEL_MD)
    return (meta["namespace"], name) if name else None

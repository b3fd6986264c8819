"""Kopf wiring: every trigger calls the one reconcile. No logic lives here."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from modeldeploy_api import constants as c

from .apply import Body, Cluster
from .reconcile import now_rfc3339, owner_of, reconcile

CHILD_LABELS = {c.LABEL_MANAGED_BY: c.MANAGED_BY}


def notifier(cluster: Cluster) -> Any:
    def notify(md: Body, etype: str, reason: str, message: str) -> None:
        try:
            cluster.post_event(md, etype, reason, message, now_rfc3339())
        except ApiException as exc:  # an Event is worth less than the reconcile that produced it
            if "NamespaceTerminating" in str(exc.body):
                return  # the namespace is going away with the resource
            logging.getLogger(__name__).warning("could not post event %s: %s %s", reason, exc.status, exc.reason)
        except Exception:
            logging.getLogger(__name__).exception("could not post event %s", reason)

    return notify


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # We post our own Events on state changes; Kopf posts only its own errors.
    settings.posting.level = logging.ERROR
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.execution.max_workers = 8
    # Least-privilege RBAC grants no cluster-wide CRD/Namespace reads: do not try to scan them.
    settings.scanning.disabled = True


@kopf.on.event(c.GROUP, c.VERSION, c.PLURAL)
def model_deployment_event(event: kopf.RawEvent, body: kopf.Body, memo: Any, **_: Any) -> None:
    if event.get("type") == "DELETED":
        return  # children go with it through their owner references
    meta = body["metadata"]
    memo.watch.saw(meta["namespace"], meta["name"], str(meta.get("resourceVersion", "")))
    memo.requeue.after(meta["namespace"], meta["name"], reconcile(memo.cluster, dict(body), notifier(memo.cluster)))


@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS)
@kopf.on.event("", "v1", "services", labels=CHILD_LABELS)
def child_event(body: kopf.Body, memo: Any, **_: Any) -> None:
    """A child changed, was edited by hand or deleted: re-assert it and refresh the owner's status."""
    owner = owner_of(dict(body))  # kopf.Body is a read-only view
    if owner is None:
        return
    md = memo.cluster.get_model_deployment(*owner)
    if md is not None:
        memo.requeue.after(*owner, reconcile(memo.cluster, md, notifier(memo.cluster)))


@kopf.on.probe(id="watch")
def watch_is_alive(memo: Any, **_: Any) -> dict[str, Any]:
    """Liveness: fails (HTTP 500 from Kopf's endpoint) when the watch stopped delivering changes."""
    stale = memo.watch.stale()
    if stale:
        raise kopf.PermanentError(f"the watch did not deliver changes of {', '.join(stale[:5])}")
    return {"stale": 0}

"""Runs the operator: Kopf's watch loop plus a periodic resync that retries anything that failed."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from typing import Any

import kopf
from kubernetes import config

from .apply import Cluster
from .handlers import notifier
from .reconcile import reconcile
from .requeue import Requeue
from .watchdog import WatchMonitor

log = logging.getLogger(__name__)


def add_operator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", "-n", action="append", default=[],
                        help="Watch only this namespace (repeatable). Default: all namespaces.")
    parser.add_argument("--liveness", default="http://0.0.0.0:8081/healthz",
                        help="Kopf liveness endpoint URL (empty to disable).")
    parser.add_argument("--resync-seconds", type=float, default=60.0,
                        help="Every so often reconcile every ModelDeployment (retries failures).")
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.add_argument("--log-json", action="store_true", help="Structured JSON logs.")


def _load_kube_config() -> None:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]


async def resync_loop(cluster: Cluster, requeue: Requeue, watch: WatchMonitor, namespaces: list[str],
                      interval: float) -> None:
    """Every `interval`: reconcile everything (retries failures). Every second: whatever a rollout asked for."""
    notify = notifier(cluster)
    scopes: list[str | None] = list(namespaces) or [None]
    last_full = time.monotonic()

    async def one(md: dict[str, Any]) -> None:
        meta = md["metadata"]
        requeue.after(meta["namespace"], meta["name"], await asyncio.to_thread(reconcile, cluster, md, notify))

    while True:
        await asyncio.sleep(1.0)
        try:
            for ns, name in requeue.pop_due():
                md = await asyncio.to_thread(cluster.get_model_deployment, ns, name)
                if md is not None:
                    await one(md)
            if time.monotonic() - last_full >= interval:
                last_full = time.monotonic()
                listed = []
                for scope in scopes:
                    items = await asyncio.to_thread(cluster.list_model_deployments, scope)
                    listed += [(m["metadata"]["namespace"], m["metadata"]["name"],
                                str(m["metadata"].get("resourceVersion", ""))) for m in items]
                    for md in items:
                        await one(md)
                watch.listed(listed)
        except Exception:
            log.exception("resync failed; retrying")


async def _run(args: argparse.Namespace) -> None:
    from . import handlers  # noqa: F401  (registers the Kopf handlers)

    _load_kube_config()
    cluster = Cluster()
    requeue = Requeue()
    watch = WatchMonitor()
    stop = asyncio.Event()
    operator = kopf.operator(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=True,
        liveness_endpoint=args.liveness or None,
        memo=kopf.Memo(cluster=cluster, requeue=requeue, watch=watch),
        stop_flag=stop,
    )
    resync = asyncio.create_task(resync_loop(cluster, requeue, watch, args.namespace, args.resync_seconds))
    try:
        await operator
    finally:
        resync.cancel()


def run_operator(args: argparse.Namespace) -> int:
    # Kopf configures the root logger (one handler); a second basicConfig would print every line twice.
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON if args.log_json else kopf.LogFormat.FULL)
    asyncio.run(_run(args))
    return 0

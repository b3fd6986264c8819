"""Reads the servers' own /metrics, per track: the inputs of canary analysis (I/O; parsing is in analysis.py)."""

from __future__ import annotations

import logging
import urllib.request

from .analysis import Sample, parse_metrics
from .apply import Body, Cluster
from .builders import selector_string

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 3.0


def pod_metrics_url(pod: Body, port: int) -> str | None:
    ip = (pod.get("status") or {}).get("podIP")
    ready = any(cnd.get("type") == "Ready" and cnd.get("status") == "True"
                for cnd in (pod.get("status") or {}).get("conditions") or [])
    if not ip or not ready or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}/metrics"


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
        return str(response.read().decode())


def scrape_tracks(cluster: Cluster, namespace: str, name: str, tracks: list[str], port: int) -> dict[str, Sample]:
    """Sum of each track's ready pods' counters. A pod that does not answer is left out (and logged)."""
    out: dict[str, Sample] = {}
    for track in tracks:
        total = Sample()
        for pod in cluster.list_objects("v1", "Pod", namespace, selector_string(name, track)):
            url = pod_metrics_url(pod, port)
            if url is None:
                continue
            try:
                total = total + parse_metrics(fetch(url))
            except (OSError, ValueError) as exc:
                log.warning("%s/%s: could not read %s: %s", namespace, name, url, exc)
        out[track] = total
    return out

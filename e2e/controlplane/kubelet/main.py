"""Kubelet: watches the pods bound to its node and gives each one a PodWorker; owns shared state."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from .. import procs
from .api import Api, Gone
from .ipam import Ipam
from .pod import PodWorker
from .volumes import VolumeManager

Obj = dict[str, Any]
log = logging.getLogger("kubelet")


class _Stop(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT to leave the watch."""


class StateStore:
    """workdir/state.json: pod IPs and the processes we started, to clean up after a crash."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self.data: Obj = json.loads(path.read_text())
        except (OSError, ValueError):
            self.data = {}
        self.data.setdefault("pods", {})

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)

    def set_pod(self, uid: str, key: str, ip: str) -> None:
        with self._lock:
            entry = self.data["pods"].setdefault(uid, {"processes": {}})
            entry.update(key=key, ip=ip)
            self._save()

    def set_process(self, uid: str, container: str, pid: int, start_time: int | None) -> None:
        with self._lock:
            entry = self.data["pods"].setdefault(uid, {"processes": {}})
            entry["processes"][container] = [pid, start_time]
            self._save()

    def clear_process(self, uid: str, container: str) -> None:
        with self._lock:
            entry = self.data["pods"].get(uid)
            if entry and entry["processes"].pop(container, None) is not None:
                self._save()

    def drop_pod(self, uid: str) -> None:
        with self._lock:
            if self.data["pods"].pop(uid, None) is not None:
                self._save()

    def kill_orphans(self) -> int:
        """Kill processes a previous kubelet started (pid + start time must still match)."""
        groups = []
        with self._lock:
            for entry in self.data["pods"].values():
                for pid, start in entry.get("processes", {}).values():
                    if procs.alive(pid, start):
                        groups.append((pid, None))
                entry["processes"] = {}
            self._save()
        procs.stop_groups(groups, grace=3)
        return len(groups)


class Kubelet:
    """The loopback kubelet of one node (see controlplane/README.md)."""

    def __init__(
        self,
        kubeconfig: Path,
        node: str,
        pod_cidr: str,
        workdir: Path,
        node_ip: str = "127.0.0.1",
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        shutdown_grace: float = 5.0,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.node = node
        self.node_ip = node_ip
        self.api = Api(kubeconfig, node)
        self.ipam = Ipam(pod_cidr)
        self.state = StateStore(workdir / "state.json")
        self.volumes = VolumeManager(workdir / "volumes", self.api.lookup, self.api.token)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.shutdown_grace = shutdown_grace
        self.cluster_id = os.environ.get(procs.MARKER_ENV, "")
        # Not resolved: the venv's bin/ (where `modeldeploy` lives), not the base interpreter's.
        self.python_bin = str(Path(sys.executable).parent)
        host = self.api.server.hostname or "127.0.0.1"
        port = str(self.api.server.port or 443)
        # In-cluster clients (KUBERNETES_SERVICE_HOST/PORT) reach the apiserver directly: there
        # is no kube-proxy, and the apiserver's certificate covers 127.0.0.1.
        self.service_env = {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
        }
        self.node_allocatable: dict[str, str] = {}
        self.workers: dict[str, PodWorker] = {}
        self.finished: set[str] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ workers

    def worker_done(self, worker: PodWorker) -> None:
        with self._lock:
            if self.workers.get(worker.uid) is worker:
                del self.workers[worker.uid]
            self.finished.add(worker.uid)

    def dispatch(self, kind: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            worker = self.workers.get(uid)
            if kind == "DELETED":
                if worker:
                    worker.removed()
                return
            if worker:
                worker.update(pod)
                return
            if uid in self.finished:
                return
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
        worker.start()

    def reconcile(self, pods: list[Obj]) -> None:
        """After a (re-)list: update every listed pod, and stop workers of pods that vanished."""
        seen = {p["metadata"]["uid"] for p in pods}
        with self._lock:
            gone = [w for uid, w in self.workers.items() if uid not in seen]
        for w in gone:
            w.removed()
        for p in pods:
            self.dispatch("MODIFIED", p)

    # ------------------------------------------------------------------ main loop

    def run(self) -> None:
        ready_file = self.workdir / "ready"
        ready_file.unlink(missing_ok=True)
        killed = self.state.kill_orphans()
        if killed:
            log.info("killed %d orphaned container process group(s) of a previous kubelet", killed)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            self._watch_loop(ready_file)
        except _Stop:
            log.info("stopping: killing all containers")
        finally:
            ready_file.unlink(missing_ok=True)
            self._shutdown()

    def _on_signal(self, signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise _Stop()

    def _load_node(self) -> None:
        try:
            resp = self.api.core.read_node(self.node, _preload_content=False, _request_timeout=10)
            node = json.loads(resp.data)
            self.node_allocatable = dict((node.get("status") or {}).get("allocatable") or {})
        except (ApiException, urllib3.exceptions.HTTPError) as e:
            log.warning("could not read node %s: %s", self.node, e)

    def _watch_loop(self, ready_file: Path) -> None:
        rv: str | None = None
        failures = 0
        while True:
            try:
                if rv is None:
                    if not self.node_allocatable:
                        self._load_node()
                    pods, rv = self.api.list_pods()
                    self.reconcile(pods)
                    if not ready_file.exists():
                        ready_file.write_text(str(os.getpid()))
                        log.info("synced %d pod(s) of node %s; watching", len(pods), self.node)
                for kind, obj in self.api.watch_pods(rv, timeout=300):
                    rv = obj.get("metadata", {}).get("resourceVersion") or rv
                    if kind != "BOOKMARK":
                        self.dispatch(kind, obj)
                failures = 0
            except Gone as e:
                log.info("watch expired (%s); listing again", e)
                rv = None
            except Exception as e:  # anything else: keep the pods running, list again later
                failures += 1
                delay = min(0.2 * 2**failures, 5.0)
                if isinstance(e, (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError)):
                    log.warning("pod watch failed (%s); retrying in %.1fs", e, delay)
                else:
                    log.exception("unexpected error in the pod watch; retrying in %.1fs", delay)
                time.sleep(delay)
                if failures > 3:
                    rv = None  # start over with a fresh list

    def _shutdown(self) -> None:
        with self._lock:
            workers = list(self.workers.values())
        for w in workers:
            w.shutdown()
        deadline = time.monotonic() + self.shutdown_grace + 8
        for w in workers:
            w.join(timeout=max(0.1, deadline - time.monotonic()))
        self.api.close()
        log.info("stopped")

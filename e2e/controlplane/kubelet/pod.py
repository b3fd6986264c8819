"""PodWorker: one thread per pod that runs its containers, probes them and reports pod status."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import urllib3
from kubernetes.client.exceptions import ApiException

from .. import procs
from . import runtime
from .api import now_rfc3339
from .env import ConfigError, command_line, container_env
from .probes import ProbeState, Result, run_handler
from .volumes import Mount, VolumeError, VolumeManager

if TYPE_CHECKING:
    from .main import Kubelet

Obj = dict[str, Any]
log = logging.getLogger("kubelet.pod")

RETRY = 2.0  # seconds between retries of failed setup steps
API_ERRORS = (ApiException, urllib3.exceptions.HTTPError, OSError)


@dataclass
class Container:
    """One container of the pod and the bookkeeping of its current and previous runs."""

    spec: Obj
    init: bool
    restart_count: int = 0
    runs: int = 0
    proc: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    started_mono: float = 0.0
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    terminated: Obj | None = None
    last_state: Obj | None = None
    done: bool = False  # terminated for good (no restart will follow)
    next_start: float = 0.0
    backoff: float = 0.0
    probes: dict[str, ProbeState] = field(default_factory=dict)
    started: bool = False
    ready: bool = False
    kill_deadline: float | None = None
    kill_note: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def sidecar(self) -> bool:
        return self.init and self.spec.get("restartPolicy") == "Always"

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def succeeded(self) -> bool:
        return self.done and (self.terminated or {}).get("exitCode") == 0


class PodWorker(threading.Thread):
    """Owns the processes of one pod (by uid) from its first sighting until it is deleted."""

    def __init__(self, kubelet: Kubelet, pod: Obj) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.kubelet = kubelet
        self.pod = pod
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.key = f"{self.namespace}/{self.pod_name}"
        self.q: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.ip = ""
        self.volumes: dict[str, tuple[Path, bool]] | None = None
        self.volume_retry = 0.0
        self.volume_error = ""
        self.start_time = ""
        self.terminal = False
        self._removed = False
        self._shutdown = False
        self._completing = False  # all regular containers are done: sidecars stop for good
        self._published: Obj | None = None
        self._publish_retry: float | None = None
        self._cond_times: dict[str, tuple[str, str]] = {}
        spec = pod["spec"]
        self.init_containers = [Container(c, init=True) for c in spec.get("initContainers") or []]
        self.containers = [Container(c, init=False) for c in spec.get("containers") or []]

    # ------------------------------------------------------------------ messages from outside

    def update(self, pod: Obj) -> None:
        self.q.put(("update", pod))

    def removed(self) -> None:
        """The pod object is gone from the API (force-deleted): stop at once."""
        self.q.put(("removed",))

    def shutdown(self) -> None:
        """The kubelet is stopping: kill the containers, leave the API alone."""
        self.q.put(("shutdown",))

    # ------------------------------------------------------------------ helpers

    @property
    def all_containers(self) -> list[Container]:
        return self.init_containers + self.containers

    @property
    def log_dir(self) -> Path:
        return self.kubelet.workdir / "pods" / f"{self.namespace}_{self.pod_name}"

    @property
    def restart_policy(self) -> str:
        return str(self.pod["spec"].get("restartPolicy") or "Always")

    @property
    def grace_period(self) -> float:
        g = self.pod["metadata"].get("deletionGracePeriodSeconds")
        if g is None:
            g = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        return float(g if g is not None else 30)

    def event(self, kind: str, reason: str, message: str, c: Container | None = None) -> None:
        self.kubelet.api.event(self.pod, kind, reason, message, c.name if c else None)

    # ------------------------------------------------------------------ thread body

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("%s: pod worker crashed; killing its processes", self.key)
            self._kill_all(grace=1.0)
        finally:
            self.kubelet.worker_done(self)

    def _run(self) -> None:
        phase = (self.pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            self.terminal = True  # finished before we saw it (e.g. kubelet restart): keep as is
        elif not self.pod["metadata"].get("deletionTimestamp"):
            self._adopt_status()
            if self.pod["spec"].get("hostNetwork"):
                self.ip = self.kubelet.node_ip
            else:
                prefer = (self.pod.get("status") or {}).get("podIP")
                self.ip = self.kubelet.ipam.allocate(self.uid, prefer)
            self.kubelet.state.set_pod(self.uid, self.key, self.ip)
            self.start_time = (self.pod.get("status") or {}).get("startTime") or now_rfc3339()
            log.info("%s: pod IP %s", self.key, self.ip)
        while True:
            self._drain(self._next_wakeup())
            if self._shutdown:
                self._kill_all(grace=min(self.grace_period, self.kubelet.shutdown_grace))
                return
            if self._removed:
                self._kill_all(grace=min(self.grace_period, 2.0))
                self._cleanup()
                return
            if self.pod["metadata"].get("deletionTimestamp"):
                self._terminate()
                return
            if not self.terminal:
                self._sync()
            self._publish()

    def _adopt_status(self) -> None:
        """Continue restart counts from a previous kubelet (its processes were killed)."""
        status = self.pod.get("status") or {}
        by_name = {
            s["name"]: s
            for s in (status.get("containerStatuses") or [])
            + (status.get("initContainerStatuses") or [])
        }
        for c in self.all_containers:
            s = by_name.get(c.name)
            if not s:
                continue
            c.restart_count = int(s.get("restartCount") or 0)
            state = s.get("state") or {}
            if "running" in state or "terminated" in state or s.get("lastState"):
                c.runs = 1  # the next start is a restart
            if "running" in state:
                c.last_state = {"terminated": {
                    "exitCode": 137, "reason": "Unknown",
                    "message": "the loopback kubelet restarted",
                    "startedAt": state["running"].get("startedAt"), "finishedAt": now_rfc3339(),
                }}
            elif "terminated" in state and c.init and state["terminated"].get("exitCode") == 0:
                c.done, c.state, c.terminated = True, "terminated", state["terminated"]

    def _drain(self, wake_at: float) -> None:
        timeout = max(0.0, wake_at - time.monotonic())
        try:
            msg = self.q.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self._handle(msg)
            try:
                msg = self.q.get_nowait()
            except queue.Empty:
                return

    def _handle(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "update":
            self._set_pod(msg[1])
        elif kind == "removed":
            self._removed = True
        elif kind == "shutdown":
            self._shutdown = True
        elif kind == "exit":
            self._on_exit(msg[1], msg[2])

    def _set_pod(self, pod: Obj) -> None:
        """Take a newer version of the pod (events queued before our own patch are older)."""
        try:
            older = int(pod["metadata"]["resourceVersion"]) < int(
                self.pod["metadata"]["resourceVersion"])
        except (KeyError, ValueError):
            older = False
        if not older:
            self.pod = pod

    def _next_wakeup(self) -> float:
        now = time.monotonic()
        times = [now + 60.0]
        if self._publish_retry is not None:
            times.append(self._publish_retry)
        if self.volumes is None and not self.terminal:
            times.append(self.volume_retry)
        for c in self.all_containers:
            if c.running:
                times.extend(p.next_at for p in c.probes.values())
                if c.kill_deadline is not None:
                    times.append(c.kill_deadline)
            elif not c.done and not self.terminal:
                times.append(c.next_start)
        return min(times)

    # ------------------------------------------------------------------ sync

    def _sync(self) -> None:
        now = time.monotonic()
        if self.volumes is None:
            if now < self.volume_retry:
                return
            try:
                self.volumes = self.kubelet.volumes.setup(self.pod, self.ip, self.kubelet.node_ip)
            except (VolumeError, ConfigError, *API_ERRORS) as e:
                msg = f"MountVolume.SetUp failed: {e}"
                if msg != self.volume_error:
                    self.event("Warning", "FailedMount", msg)
                    log.warning("%s: %s", self.key, msg)
                self.volume_error = msg
                self.volume_retry = now + RETRY
                for c in self.all_containers:
                    c.message = msg
                return
        for c in self.all_containers:
            if c.running and c.kill_deadline is not None and now >= c.kill_deadline:
                assert c.proc is not None
                procs.signal_group(c.proc.pid, signal.SIGKILL)
                c.kill_deadline = None
        if not self._sync_init(now):
            return
        for c in self.containers:
            if not c.running and not c.done and now >= c.next_start:
                self._start(c)
        if self.containers and all(c.done for c in self.containers) and not self._completing:
            # Every regular container finished for good: sidecars are stopped, the pod completes.
            self._completing = True
            for sc in self.init_containers:
                if sc.sidecar and sc.running:
                    self._kill(sc, f"Stopping sidecar container {sc.name}")
        for c in self.all_containers:
            if c.running:
                self._probe(c)

    def _sync_init(self, now: float) -> bool:
        """Run init containers in order; True once all are done (sidecars: started)."""
        for c in self.init_containers:
            if c.sidecar:
                if c.done:  # stopped because the pod completes
                    continue
                if not c.running and now >= c.next_start:
                    self._start(c)
                if c.running:
                    self._probe(c)
                if not (c.running and c.started):
                    return False
                continue
            if c.succeeded:
                continue
            if c.done:  # failed for good (restartPolicy Never)
                return False
            if not c.running and now >= c.next_start:
                self._start(c)
            return False
        return True

    def _start(self, c: Container) -> None:
        spec = c.spec
        try:
            c.env = self._env(c)
            argv = command_line(spec, c.env)
            assert self.volumes is not None
            mounts = VolumeManager.mounts(spec, self.volumes)
        except (ConfigError, *API_ERRORS) as e:
            if c.reason != "CreateContainerConfigError" or c.message != str(e):
                self.event("Warning", "Failed", f"Error: {e}", c)
                log.warning("%s: container %s: %s", self.key, c.name, e)
            c.state, c.reason, c.message = "waiting", "CreateContainerConfigError", str(e)
            c.next_start = time.monotonic() + RETRY
            return
        if c.runs > 0:
            c.restart_count += 1
        c.runs += 1
        exe = argv[0]
        if "/" not in exe and shutil.which(exe, path=c.env.get("PATH")) is None:
            msg = f'exec: "{exe}": executable file not found in $PATH'
            self.event("Warning", "Failed", f"Error: {msg}", c)
            ts = now_rfc3339()
            self._record_exit(c, {"exitCode": 128, "reason": "StartError", "message": msg,
                                  "startedAt": ts, "finishedAt": ts})
            return
        log_path = self.log_dir / f"{c.name}.log"
        # terminationMessagePath: a fresh per-run file bind-mounted where the container expects it
        term_file = self._termination_file(c)
        term_file.parent.mkdir(parents=True, exist_ok=True)
        term_file.write_bytes(b"")
        mounts = [*mounts, Mount(source=term_file, target=spec.get("terminationMessagePath") or
                                 "/dev/termination-log", read_only=False)]
        if log_path.exists() and log_path.stat().st_size > 0:
            log_path.replace(self.log_dir / f"{c.name}.previous.log")
        sc = spec.get("securityContext") or {}
        try:
            proc = runtime.launch(
                argv,
                c.env,
                mounts,
                read_only_root=bool(sc.get("readOnlyRootFilesystem")),
                working_dir=spec.get("workingDir") or "/",
                log=log_path,
            )
        except OSError as e:
            ts = now_rfc3339()
            self._record_exit(c, {"exitCode": 128, "reason": "StartError", "message": str(e),
                                  "startedAt": ts, "finishedAt": ts})
            return
        now = time.monotonic()
        c.proc = proc
        c.state, c.reason, c.message = "running", "", ""
        c.terminated = None
        c.started_at = now_rfc3339()
        c.started_mono = now
        c.kill_deadline = None
        c.probes = {}
        for kind in ("startup", "readiness", "liveness"):
            p = spec.get(f"{kind}Probe")
            if p:
                c.probes[kind] = ProbeState(kind, p, now + float(p.get("initialDelaySeconds") or 0))
        if "liveness" in c.probes:
            c.probes["liveness"].passing = True
        c.started = "startup" not in c.probes
        c.ready = c.started and "readiness" not in c.probes
        self.kubelet.state.set_process(self.uid, c.name, proc.pid, procs.proc_start_time(proc.pid))
        threading.Thread(target=self._wait_proc, args=(c, proc), daemon=True,
                         name=f"wait-{self.key}/{c.name}").start()
        log.info("%s: started %s (pid %d): %s", self.key, c.name, proc.pid, argv)
        self.event("Normal", "Started", f"Started container {c.name}", c)

    def _wait_proc(self, c: Container, proc: subprocess.Popen[bytes]) -> None:
        # Wait without reaping first: while the main process is a zombie its pid (= the process
        # group id) cannot be reused, so killing the group's leftovers hits nobody else. Like a
        # container's pid 1, the main process takes the rest of the container with it.
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        procs.signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        self.q.put(("exit", c, proc))

    def _env(self, c: Container) -> dict[str, str]:
        k = self.kubelet
        forced = {
            "POD_IP": self.ip,
            "MODELDEPLOY_HOST": self.ip,
            procs.MARKER_ENV: k.cluster_id,
        }
        base = {
            "HOSTNAME": self.pod["spec"].get("hostname") or self.pod_name,
            "HOME": "/root",
            **k.service_env,
        }
        env = container_env(
            self.pod,
            c.spec,
            pod_ip=self.ip,
            host_ip=k.node_ip,
            lookup=k.api.lookup,
            service_env=base,
            forced=forced,
            node_allocatable=k.node_allocatable,
        )
        # The image is not available: commands resolve through the interpreter's bin (the
        # project venv) first, then the pod's own PATH or the usual system directories.
        rest = env.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        env["PATH"] = os.pathsep.join([k.python_bin, rest])
        return env

    def _probe(self, c: Container) -> None:
        now = time.monotonic()
        if c.kill_deadline is not None:
            return  # being killed
        order = ["startup"] if not c.started else ["liveness", "readiness"]
        for kind in order:
            p = c.probes.get(kind)
            if p is None or now < p.next_at:
                continue
            res = run_handler(p.spec, c.spec, self.ip, c.proc.pid if c.proc else None,
                              c.env, p.timeout)
            was_passing = p.passing
            p.record(res, time.monotonic())
            if not res.ok:
                if p.failures == 1:  # log the first of a series, the events count the rest
                    log.info("%s: %s probe of %s failed: %s", self.key, kind, c.name, res.message)
                self.event("Warning", "Unhealthy",
                           f"{kind.capitalize()} probe failed: {res.message}", c)
            if p.passing != was_passing:
                log.info("%s: %s probe of %s now %s", self.key, kind, c.name,
                         "passing" if p.passing else "failing")
            if kind == "startup":
                if p.passing:
                    c.started = True
                    c.ready = "readiness" not in c.probes
                elif p.failed:
                    self._kill(c, f"Container {c.name} failed startup probe, will be restarted",
                               p.spec)
            elif kind == "liveness" and p.failed:
                self._kill(c, f"Container {c.name} failed liveness probe, will be restarted",
                           p.spec)
                return
            elif kind == "readiness":
                c.ready = p.passing

    def _kill(self, c: Container, note: str, probe: Obj | None = None) -> None:
        if c.proc is None:
            return
        grace = (probe or {}).get("terminationGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        log.info("%s: %s", self.key, note)
        self.event("Normal", "Killing", note, c)
        c.ready = False
        c.kill_note = note
        procs.signal_group(c.proc.pid, signal.SIGTERM)
        c.kill_deadline = time.monotonic() + float(grace or 0)

    # ------------------------------------------------------------------ exits and restarts

    def _on_exit(self, c: Container, proc: subprocess.Popen[bytes]) -> None:
        if c.proc is not proc:
            return
        rc = proc.returncode
        code = rc if rc >= 0 else 128 + (-rc)
        term: Obj = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": c.started_at,
            "finishedAt": now_rfc3339(),
            "containerID": self._container_id(c),
        }
        if rc < 0:
            term["signal"] = -rc
        message = self._termination_message(c, code)
        if message:
            term["message"] = message
        self.kubelet.state.clear_process(self.uid, c.name)
        c.proc = None
        log.info("%s: container %s exited with %d", self.key, c.name, code)
        self._record_exit(c, term)

    def _termination_file(self, c: Container) -> Path:
        return self.log_dir / f"{c.name}.termination-log"

    def _termination_message(self, c: Container, code: int) -> str:
        """What the container wrote to its terminationMessagePath (4 KiB at most, as the kubelet reads it),
        else for FallbackToLogsOnError and a failure the tail of its log."""
        with contextlib.suppress(OSError):
            text = self._termination_file(c).read_bytes()[:4096].decode(errors="replace")
            if text:
                return text
        if code != 0 and c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            with contextlib.suppress(OSError):
                tail = (self.log_dir / f"{c.name}.log").read_bytes()[-2048:].decode(errors="replace")
                return "\n".join(tail.splitlines()[-80:])
        return ""

    def _record_exit(self, c: Container, term: Obj) -> None:
        c.ready = False
        c.started = False
        c.kill_deadline = None
        c.probes = {}
        code = term["exitCode"]
        if c.sidecar:
            policy = "Always"
        elif c.init:
            policy = "Never" if self.restart_policy == "Never" else "OnFailure"
        else:
            policy = self.restart_policy
        restart = policy == "Always" or (policy == "OnFailure" and code != 0)
        if (self._shutdown or self._removed or self._completing
                or self.pod["metadata"].get("deletionTimestamp")):
            restart = False
        if not restart:
            c.state, c.terminated, c.done = "terminated", term, True
            return
        # Restart with exponential back-off; a run that lasted long enough resets it.
        ran = time.monotonic() - c.started_mono if c.started_mono else 0.0
        k = self.kubelet
        if ran >= max(10.0, 2 * k.backoff_max):
            c.backoff = 0.0
        delay = c.backoff
        c.backoff = k.backoff_initial if c.backoff == 0 else min(c.backoff * 2, k.backoff_max)
        c.last_state = {"terminated": term}
        c.terminated = None
        c.state = "waiting"
        c.next_start = time.monotonic() + delay
        if delay > 0:
            c.reason = "CrashLoopBackOff"
            c.message = (f"back-off {delay:g}s restarting failed container={c.name} "
                         f"pod={self.pod_name}_{self.namespace}({self.uid})")
            self.event("Warning", "BackOff", f"Back-off restarting failed container {c.name} "
                       f"in pod {self.pod_name}_{self.namespace}({self.uid})", c)
        else:
            c.reason, c.message = "ContainerCreating", ""

    # ------------------------------------------------------------------ termination

    def _running(self) -> list[Container]:
        return [c for c in self.all_containers if c.running and c.proc is not None]

    def _kill_all(self, grace: float) -> None:
        """SIGTERM every container's process group, SIGKILL whatever is left after `grace`."""
        running = self._running()
        for c in running:
            assert c.proc is not None
            procs.signal_group(c.proc.pid, signal.SIGTERM)
        self._await_exits(running, time.monotonic() + grace)
        for c in self._running():
            assert c.proc is not None
            procs.signal_group(c.proc.pid, signal.SIGKILL)
        self._await_exits(self._running(), time.monotonic() + 5)

    def _await_exits(self, containers: list[Container], deadline: float) -> None:
        while any(c.running for c in containers):
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                return
            try:
                msg = self.q.get(timeout=timeout)
            except queue.Empty:
                return
            if msg[0] == "exit":
                self._on_exit(msg[1], msg[2])
            elif msg[0] == "update":
                self._set_pod(msg[1])

    def _terminate(self) -> None:
        """Graceful deletion: preStop hooks, SIGTERM, wait the grace period, SIGKILL, delete."""
        grace = self.grace_period
        deadline = time.monotonic() + grace
        running = self._running()
        for c in running:
            self.event("Normal", "Killing", f"Stopping container {c.name}", c)
        for c in running:
            pre = (c.spec.get("lifecycle") or {}).get("preStop")
            if pre and c.proc is not None:
                left = deadline - time.monotonic()
                if left > 0:
                    res: Result = run_handler(pre, c.spec, self.ip, c.proc.pid, c.env, left)
                    if not res.ok:
                        self.event("Warning", "FailedPreStopHook", res.message, c)
        self._kill_all(grace=max(0.0, deadline - time.monotonic()))
        for c in self.all_containers:
            if c.state == "waiting":
                c.state, c.done = "terminated", True
                c.terminated = {"exitCode": 0, "reason": "ContainerStatusUnknown",
                                "message": "The container was never started",
                                "startedAt": None, "finishedAt": now_rfc3339()}
        ever_ran = any(c.runs for c in self.all_containers)
        self.terminal = True
        if ever_ran:
            self._publish(final=True)
        with contextlib.suppress(*API_ERRORS):
            self.kubelet.api.delete_pod(self.namespace, self.pod_name, self.uid)
        log.info("%s: terminated and deleted", self.key)
        self._cleanup()

    def _cleanup(self) -> None:
        self.kubelet.ipam.release(self.uid)
        self.kubelet.volumes.cleanup(self.uid)
        self.kubelet.state.drop_pod(self.uid)

    # ------------------------------------------------------------------ status

    def _container_id(self, c: Container) -> str:
        return f"loopback://{self.uid[:8]}-{c.name}-{c.runs}"

    def _container_status(self, c: Container) -> Obj:
        state: Obj
        if c.running:
            state = {"running": {"startedAt": c.started_at}}
        elif c.state == "terminated" and c.terminated is not None:
            state = {"terminated": c.terminated}
        else:
            waiting: Obj = {"reason": c.reason or "ContainerCreating"}
            if c.message:
                waiting["message"] = c.message
            state = {"waiting": waiting}
        out: Obj = {
            "name": c.name,
            "image": c.spec.get("image") or "",
            "imageID": "",
            "ready": bool(c.ready and c.running) or (c.init and not c.sidecar and c.succeeded),
            "started": bool(c.started and c.running),
            "restartCount": c.restart_count,
            "state": state,
            "lastState": c.last_state or {},
        }
        if c.runs:
            out["containerID"] = self._container_id(c)
        return out

    def _phase(self) -> str:
        if self.terminal and self._published is None:
            return str((self.pod.get("status") or {}).get("phase") or "Pending")
        init_failed = any(c.done and not c.succeeded for c in self.init_containers
                          if not c.sidecar)
        if init_failed and self.restart_policy == "Never":
            return "Failed"
        if not all(c.succeeded or (c.sidecar and (c.running or c.done))
                   for c in self.init_containers):
            return "Failed" if self.terminal else "Pending"
        running = stopped = succeeded = waiting = 0
        for c in self.containers:
            if c.running:
                running += 1
            elif c.state == "terminated":
                stopped += 1
                succeeded += c.succeeded
            elif c.last_state:
                stopped += 1
            else:
                waiting += 1
        if self.terminal and running == 0:
            return "Succeeded" if succeeded == len(self.containers) else "Failed"
        if waiting > 0:
            return "Pending"
        if running > 0:
            return "Running"
        if stopped == len(self.containers):
            if any(c.sidecar and c.running for c in self.init_containers):
                return "Running"  # completes once the sidecars are stopped
            if self.restart_policy == "Always":
                return "Running"
            if succeeded == stopped:
                return "Succeeded"
            if self.restart_policy == "Never":
                return "Failed"
            return "Running"
        return "Pending"

    def _condition(self, ctype: str, ok: bool, reason: str = "", message: str = "") -> Obj:
        status = "True" if ok else "False"
        prev = self._cond_times.get(ctype)
        if prev is None or prev[0] != status:
            prev = (status, now_rfc3339())
            self._cond_times[ctype] = prev
        cond: Obj = {"type": ctype, "status": status, "lastProbeTime": None,
                     "lastTransitionTime": prev[1]}
        if not ok and reason:
            cond["reason"] = reason
            if message:
                cond["message"] = message
        return cond

    def _status(self) -> Obj:
        phase = self._phase()
        done_phase = phase in ("Succeeded", "Failed")
        inits_done = all(c.succeeded or c.sidecar for c in self.init_containers)
        unready = [c.name for c in self.containers if not (c.ready and c.running)]
        containers_ready = not unready and not done_phase
        current = {c["type"]: c for c in (self.pod.get("status") or {}).get("conditions") or []}
        gates = [g["conditionType"] for g in self.pod["spec"].get("readinessGates") or []]
        gates_ok = all(current.get(g, {}).get("status") == "True" for g in gates)
        if done_phase:
            reason, message = "PodCompleted", ""
        else:
            reason = "ContainersNotReady"
            message = f"containers with unready status: [{' '.join(unready)}]"
        conds = [
            self._condition("PodReadyToStartContainers", bool(self.ip) and not done_phase),
            self._condition("Initialized", inits_done, "ContainersNotInitialized",
                            "containers with incomplete status: ["
                            + " ".join(c.name for c in self.init_containers if not c.succeeded)
                            + "]"),
            self._condition("Ready", containers_ready and gates_ok,
                            reason if not containers_ready else "ReadinessGatesNotReady",
                            message if not containers_ready else "readiness gates not ready"),
            self._condition("ContainersReady", containers_ready, reason, message),
        ]
        mine = {c["type"] for c in conds}
        conds += [c for t, c in current.items() if t not in mine]
        status: Obj = {
            "phase": phase,
            "conditions": conds,
            "hostIP": self.kubelet.node_ip,
            "hostIPs": [{"ip": self.kubelet.node_ip}],
            "startTime": self.start_time or None,
            "containerStatuses": [self._container_status(c) for c in self.containers],
        }
        if self.ip:
            status["podIP"] = self.ip
            status["podIPs"] = [{"ip": self.ip}]
        if self.init_containers:
            status["initContainerStatuses"] = [
                self._container_status(c) for c in self.init_containers
            ]
        return status

    def _publish(self, final: bool = False) -> None:
        if self.terminal and self._published is None and not final:
            return  # a pod that finished before we saw it: its status is already final
        status = self._status()
        if status == self._published:
            return
        try:
            result = self.kubelet.api.patch_status(self.namespace, self.pod_name, status)
        except API_ERRORS as e:
            log.warning("%s: status update failed (will retry): %s", self.key, e)
            self._publish_retry = time.monotonic() + 1.0
            return
        self._publish_retry = None
        self._published = status
        if result is None:
            self._removed = True
        elif not final:
            # Keep conditions owned by others (PodScheduled, readiness gates...) current.
            self.pod = result

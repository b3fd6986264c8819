"""LocalCluster: etcd, kube-apiserver, controller-manager, scheduler, kwok and the loopback kubelet."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import shutil
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from . import network, pki, procs

NODE_NAME = "loopback-node"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
STATE_FILE = "cluster.json"
KWOK_STAGES = Path(__file__).with_name("kwok-stages.yaml")
E2E_DIR = Path(__file__).resolve().parent.parent  # puts `controlplane` on the kubelet's path

# Start order; stop runs in reverse (the kubelet first, so pods get their SIGTERM first).
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kubelet",
)

T = TypeVar("T")


class ClusterError(RuntimeError):
    """The local control plane failed to start or answer; the message names the log to read."""


class KubectlError(subprocess.CalledProcessError):
    """A kubectl call failed; str() includes its stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


class _PortClash(ClusterError):
    """A component lost the race for a port picked by procs.free_port (retried)."""


class Cluster:
    """A reachable cluster: a kubeconfig, kubectl from `bin_dir`, and a few waiting helpers."""

    def __init__(self, kubeconfig: Path, bin_dir: Path) -> None:
        self._kubeconfig = Path(kubeconfig)
        self.bin_dir = Path(bin_dir)

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (group system:masters, CA embedded, TLS verified)."""
        return self._kubeconfig

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG and PATH with bin_dir (kubectl & co.) first."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = os.pathsep.join([str(self.bin_dir), env.get("PATH", os.defpath)])
        return env

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raises KubectlError (with stderr) if check fails."""
        argv = [str(self.bin_dir / "kubectl"), *args]
        res = subprocess.run(
            argv, env=self.env, input=input, capture_output=True, text=True, timeout=timeout
        )
        if check and res.returncode != 0:
            raise KubectlError(res.returncode, argv, res.stdout, res.stderr)
        return res

    def kubectl_json(self, *args: str, timeout: float = 120.0) -> Any:
        """Run `kubectl ARGS -o json` and return the parsed output."""
        return json.loads(self.kubectl(*args, "-o", "json", timeout=timeout).stdout)

    def apply(self, manifest: str | Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
        """`kubectl apply -f -` of a YAML string, an object or a list of objects; returns stdout."""
        if isinstance(manifest, str):
            text = manifest
        else:
            docs = [manifest] if isinstance(manifest, Mapping) else list(manifest)
            text = yaml.safe_dump_all([dict(d) for d in docs])
        return self.kubectl("apply", "-f", "-", input=text).stdout

    def create_namespace(self, name: str, timeout: float = 60.0) -> str:
        """Create a namespace and wait until its `default` ServiceAccount exists (pods need it)."""
        self.kubectl("create", "namespace", name)
        wait_until(
            lambda: self.kubectl("get", "serviceaccount", "default", "-n", name, check=False)
            .returncode
            == 0,
            timeout,
            f"ServiceAccount {name}/default to exist",
        )
        return name

    def diagnostics(self, lines: int = 30) -> str:
        """Human-readable state for a failed test (overridden by LocalCluster with log tails)."""
        res = self.kubectl("get", "nodes,pods", "-A", "-o", "wide", check=False, timeout=20)
        return res.stdout + res.stderr


def _node_conditions() -> list[dict[str, str]]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    conds = [
        ("Ready", "True", "KubeletReady", "loopback kubelet is posting ready status"),
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "no PID pressure"),
    ]
    return [
        {"type": t, "status": st, "reason": r, "message": m,
         "lastHeartbeatTime": now, "lastTransitionTime": now}
        for t, st, r, m in conds
    ]


def _k8s_version(bin_dir: Path) -> str:
    """The version the binaries were built as, from build.sh's cache key (k8s-vX.Y.Z_...)."""
    name = Path(bin_dir).name
    if name.startswith("k8s-"):
        return name[len("k8s-"):].split("_")[0]
    return "v0.0.0"


def wait_until(
    predicate: Callable[[], T | bool | None],
    timeout: float,
    what: str,
    interval: float = 0.2,
    hint: Callable[[], str] | None = None,
) -> T:
    """Poll `predicate` until it returns something truthy; ClusterError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            extra = f"\n{hint()}" if hint else ""
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


class LocalCluster(Cluster):
    """A throw-away control plane in `workdir`, every address on loopback, binaries from `bin_dir`.

    Layout of `workdir`: cluster.json (state), kubeconfig (admin), pki/, kubeconfigs/, etcd/,
    logs/<component>.log, kubelet/ (pods/<ns>_<pod>/<container>.log, kubelet state).
    """

    def __init__(self, workdir: Path, bin_dir: Path, node_name: str = NODE_NAME) -> None:
        workdir = Path(workdir).resolve()
        super().__init__(workdir / "kubeconfig", bin_dir)
        self.workdir = workdir
        self.node_name = node_name
        self.id = ""
        self.network: network.Network | None = None
        self.ports: dict[str, int] = {}
        self.started_in: float | None = None
        # seconds since start() when each startup wait was satisfied
        self.timings: dict[str, float] = {}
        self._t0 = time.monotonic()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._pids: dict[str, tuple[int, int | None]] = {}
        self._lock_fd: int | None = None
        self._pki: pki.Pki | None = None
        # Processes of a cluster meant to outlive this process (start(watchdog=False), attach())
        # are started detached: not our children, so nothing here has to wait for them.
        self._detached = False

    # ---------------------------------------------------------------- public API

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def kubelet_dir(self) -> Path:
        return self.workdir / "kubelet"

    def log_file(self, component: str) -> Path:
        """Log file of a component (one of COMPONENTS, or "watchdog")."""
        return self.logs_dir / f"{component}.log"

    def log_files(self) -> dict[str, Path]:
        return {c: self.log_file(c) for c in COMPONENTS if self.log_file(c).exists()}

    def pod_log(self, namespace: str, pod: str, container: str, previous: bool = False) -> Path:
        """stdout+stderr of a pod's container (`previous`: the run before the last restart)."""
        suffix = ".previous.log" if previous else ".log"
        return self.kubelet_dir / "pods" / f"{namespace}_{pod}" / f"{container}{suffix}"

    @property
    def api_server(self) -> str:
        return f"https://127.0.0.1:{self.ports['kube-apiserver']}"

    @property
    def pod_cidr(self) -> str:
        assert self.network is not None, "cluster not started"
        return self.network.pod_cidr

    @property
    def service_cidr(self) -> str:
        assert self.network is not None, "cluster not started"
        return self.network.service_cidr

    def start(self, timeout: float = 120.0, watchdog: bool = True) -> None:
        """Start everything and wait until a pod could be scheduled and run.

        `watchdog`: also start a small process that stops the cluster if this process dies
        without calling stop() (kill -9, crash). Turn it off for a cluster meant to outlive
        its starter (`python -m controlplane up`).
        """
        if self._procs or self._pids:
            raise ClusterError(f"cluster in {self.workdir} already started")
        self._refuse_if_running()
        self._detached = not watchdog
        t0 = self._t0 = time.monotonic()
        for attempt in range(3):
            try:
                self._start_once(timeout, watchdog)
                break
            except _PortClash:
                self.stop()
                if attempt == 2:
                    raise
            except BaseException:
                self.stop()
                raise
        self.started_in = time.monotonic() - t0
        self._save_state()

    def stop(self) -> None:
        """Stop every process of the cluster (kubelet and its pods first). Idempotent."""
        if not self._pids and not self.id:
            self._load_state_quietly()
        # The watchdog first, so it does not race us.
        watchdog = self._pids.pop("watchdog", None)
        if watchdog and watchdog[0] != os.getpid() and procs.alive(*watchdog):
            procs.stop_groups([(watchdog[0], self._procs.get("watchdog"))], grace=2)
        kubelet = self._pids.get("kubelet")
        if kubelet and procs.alive(*kubelet):
            # The kubelet stops its pods on SIGTERM (each within its grace period, capped).
            procs.stop_groups([(kubelet[0], self._procs.get("kubelet"))], grace=20)
        # One by one in reverse start order: clients before the apiserver, the apiserver before
        # etcd (an apiserver that lost etcd takes long to shut down). ~2s in all.
        for name, (pid, start) in reversed(list(self._pids.items())):
            if name != "kubelet" and procs.alive(pid, start):
                procs.stop_groups([(pid, self._procs.get(name))], grace=8)
        if self.id:
            procs.sweep(self.id)
        for p in self._procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=1)
        self._procs.clear()
        self._pids.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        state = self.workdir / STATE_FILE
        if state.exists():
            data = json.loads(state.read_text())
            data["processes"] = {}
            data["stopped"] = True
            state.write_text(json.dumps(data, indent=2))

    def restart_kubelet(self, timeout: float = 60.0) -> None:
        """Crash the kubelet (SIGKILL: its pods keep running, orphaned) and start a new one.

        The new kubelet kills the orphans it finds in its state file and runs the pods again
        (restartCount + 1), keeping their IPs.
        """
        old = self._pids.get("kubelet")
        if old and procs.alive(*old):
            procs.signal_group(old[0], signal.SIGKILL)
            proc = self._procs.get("kubelet")
            if proc is not None:
                proc.wait(timeout=10)
            wait_until(lambda: not procs.alive(*old), 10, "the old kubelet to die")
        assert self.network is not None
        if self._lock_fd is None:
            self._lock_fd = network.relock(self.network.block)
        self._procs.pop("kubelet", None)
        self._spawn("kubelet", self._kubelet_argv(), pass_fds=[self._lock_fd])
        self._save_state()
        pid = str(self._pids["kubelet"][0])
        ready = self.kubelet_dir / "ready"
        self._wait(
            time.monotonic() + timeout,
            "the restarted kubelet to sync",
            ["kubelet"],
            lambda: ready.exists() and ready.read_text() == pid,
        )

    def running(self) -> dict[str, bool]:
        """Liveness of each recorded process, by component name."""
        return {name: procs.alive(pid, start) for name, (pid, start) in self._pids.items()}

    def diagnostics(self, lines: int = 30) -> str:
        """Process liveness, nodes/pods and the tail of every component log."""
        parts = [f"cluster {self.id} in {self.workdir}; processes: {self.running()}"]
        if self.running().get("kube-apiserver"):
            parts.append(super().diagnostics(lines))
        for _name, path in self.log_files().items():
            parts.append(f"----- {path} (last {lines} lines) -----\n{procs.tail(path, lines)}")
        return "\n".join(parts)

    @classmethod
    def attach(cls, workdir: Path) -> LocalCluster:
        """A handle on a cluster started earlier in `workdir` (e.g. by `python -m controlplane up`)."""
        state_path = Path(workdir) / STATE_FILE
        if not state_path.exists():
            raise ClusterError(f"no cluster state in {state_path}")
        data = json.loads(state_path.read_text())
        c = cls(Path(workdir), Path(data["bin_dir"]), data["node_name"])
        c._apply_state(data)
        c._detached = True
        return c

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- state

    def _state(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "bin_dir": str(self.bin_dir),
            "node_name": self.node_name,
            "network": self.network.to_json() if self.network else None,
            "ports": self.ports,
            "processes": {n: {"pid": p, "start_time": s} for n, (p, s) in self._pids.items()},
            "kubeconfig": str(self.kubeconfig),
            "started_in": self.started_in,
            "timings": self.timings,
            "stopped": False,
        }

    def _save_state(self) -> None:
        path = self.workdir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state(), indent=2))
        tmp.replace(path)

    def _apply_state(self, data: dict[str, Any]) -> None:
        self.id = data["id"]
        self.network = network.Network.from_json(data["network"]) if data["network"] else None
        self.ports = dict(data["ports"])
        self.started_in = data.get("started_in")
        self._pids = {
            n: (int(v["pid"]), v.get("start_time")) for n, v in data["processes"].items()
        }

    def _load_state_quietly(self) -> None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            self._apply_state(json.loads((self.workdir / STATE_FILE).read_text()))

    def _refuse_if_running(self) -> None:
        path = self.workdir / STATE_FILE
        if not path.exists():
            return
        other = LocalCluster.attach(self.workdir)
        live = [n for n, ok in other.running().items() if ok]
        if live:
            raise ClusterError(
                f"a cluster is already running in {self.workdir} ({', '.join(live)}); "
                f"stop it first: python -m controlplane down --dir {self.workdir}"
            )

    # ---------------------------------------------------------------- start

    def _start_once(self, timeout: float, watchdog: bool) -> None:
        deadline = time.monotonic() + timeout
        self.workdir.mkdir(parents=True, exist_ok=True)
        # A fresh cluster: nothing of an earlier one in this workdir may come back (its etcd
        # data, pods, keys). Logs are kept and appended to.
        for sub in ("etcd", "kubelet", "certs", "pki", "kubeconfigs", "kwok"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)
        self.logs_dir.mkdir(exist_ok=True)
        self.id = uuid.uuid4().hex
        self.network, self._lock_fd = network.reserve()
        self.ports = {
            name: procs.free_port()
            for name in (
                "etcd",
                "etcd-peer",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
            )
        }
        self._pki = pki.generate(
            self.workdir / "pki",
            ips=["127.0.0.1", self.network.first_service_ip],
            users=[
                pki.TokenUser("modeldeploy-admin", "uid-admin", ("system:masters",)),
                # system:masters + one identity for all controllers: with
                # --use-service-account-credentials the controller-manager mints a token per
                # controller, one after the other, which costs ~5s of every start.
                pki.TokenUser("system:kube-controller-manager", "uid-kcm", ("system:masters",)),
                pki.TokenUser("system:kube-scheduler", "uid-scheduler"),
                pki.TokenUser("kwok-controller", "uid-kwok", ("system:masters",)),
                pki.TokenUser(
                    f"system:node:{self.node_name}", "uid-kubelet", ("system:nodes",)
                ),
            ],
        )
        self._write_kubeconfigs()
        if watchdog:
            self._spawn(
                "watchdog",
                [sys.executable, "-m", "controlplane.watchdog", "--owner", str(os.getpid()),
                 "--dir", str(self.workdir)],
            )
        self._spawn("etcd", self._etcd_argv())
        self._spawn("kube-apiserver", self._apiserver_argv())
        self._save_state()
        self._wait_apiserver(deadline)
        self._bootstrap()
        self._spawn("kube-controller-manager", self._kcm_argv())
        self._spawn("kube-scheduler", self._scheduler_argv())
        self._spawn("kwok", self._kwok_argv(), extra_env={"KWOK_WORKDIR": str(self.workdir / "kwok")})
        assert self._lock_fd is not None
        self._spawn("kubelet", self._kubelet_argv(), pass_fds=[self._lock_fd])
        self._save_state()
        self._wait_ready(deadline)

    def _spawn(
        self,
        name: str,
        argv: list[str],
        extra_env: Mapping[str, str] | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        env = dict(os.environ)
        env.pop("KUBECONFIG", None)
        env[procs.MARKER_ENV] = self.id
        env["PYTHONPATH"] = os.pathsep.join(
            [str(E2E_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        env.update(extra_env or {})
        log = self.log_file(name)
        with log.open("ab") as f:
            f.write(f"===== {time.strftime('%H:%M:%S')} starting {' '.join(argv)}\n".encode())
        if self._detached:
            pid = procs.spawn_detached(argv, log, env, cwd=self.workdir, pass_fds=pass_fds)
        else:
            p = procs.spawn(argv, log, env, cwd=self.workdir, pass_fds=pass_fds)
            self._procs[name] = p
            pid = p.pid
        self._pids[name] = (pid, procs.proc_start_time(pid))

    def _check_alive(self) -> None:
        for name, (pid, start) in self._pids.items():
            p = self._procs.get(name)
            if (p.poll() is None) if p is not None else procs.alive(pid, start):
                continue
            log = self.log_file(name)
            text = procs.tail(log, 40)
            err = _PortClash if "address already in use" in text else ClusterError
            code = f" with code {p.returncode}" if p is not None else ""
            raise err(f"{name} exited{code} during startup; read {log}:\n{text}")

    def _hint(self, *components: str) -> Callable[[], str]:
        def hint() -> str:
            return "\n".join(
                f"----- {self.log_file(c)} -----\n{procs.tail(self.log_file(c), 25)}"
                for c in components
            )

        return hint

    def _wait(
        self, deadline: float, what: str, components: Sequence[str], fn: Callable[[], Any]
    ) -> Any:
        def check() -> Any:
            self._check_alive()
            return fn()

        logs = ", ".join(str(self.log_file(c)) for c in components)
        result = wait_until(
            check,
            max(1.0, deadline - time.monotonic()),
            f"{what} (read {logs})",
            hint=self._hint(*components),
        )
        self.timings[what] = round(time.monotonic() - self._t0, 2)
        return result

    # ---------------------------------------------------------------- API access

    def _ssl(self) -> ssl.SSLContext:
        assert self._pki is not None
        return ssl.create_default_context(cafile=str(self._pki.ca_cert))

    def _request(
        self, method: str, path: str, body: Any = None, port_name: str = "kube-apiserver"
    ) -> tuple[int, Any]:
        assert self._pki is not None
        if port_name == "kube-apiserver":
            ctx = self._ssl()
            headers = {"Authorization": f"Bearer {self._pki.tokens['modeldeploy-admin']}"}
        else:
            # controller-manager/scheduler serve /healthz with a self-signed cert of their own.
            ctx = ssl._create_unverified_context()
            headers = {}
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.ports[port_name], context=ctx, timeout=5
        )
        try:
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException):
            return 0, None
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode("utf-8", "replace")

    def _wait_apiserver(self, deadline: float) -> None:
        self._wait(
            deadline,
            "kube-apiserver /readyz",
            ["kube-apiserver", "etcd"],
            lambda: self._request("GET", "/readyz")[0] == 200,
        )

    def _create(self, path: str, obj: dict[str, Any]) -> None:
        status, body = self._request("POST", path, obj)
        if status not in (201, 409):
            raise ClusterError(
                f"creating {obj['kind']} {obj['metadata']['name']} failed ({status}): {body}; "
                f"read {self.log_file('kube-apiserver')}"
            )

    def _bootstrap(self) -> None:
        """RBAC for the kubelet identity, and the one (fake-heartbeat, real-pods) node."""
        self._create(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "modeldeploy:loopback-kubelet"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:node",
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "User",
                        "name": f"system:node:{self.node_name}",
                    }
                ],
            },
        )
        assert self.network is not None
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        resources = {"cpu": "64", "memory": "256Gi", "pods": "500", "ephemeral-storage": "1Ti"}
        self._create(
            "/api/v1/nodes",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": self.node_name,
                    "labels": {
                        "kubernetes.io/hostname": self.node_name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": arch,
                        "type": "kwok",
                        "modeldeploy.dev/loopback-node": "true",
                    },
                    "annotations": {
                        "kwok.x-k8s.io/node": "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                },
                "spec": {"podCIDR": self.network.pod_cidr, "podCIDRs": [self.network.pod_cidr]},
                # Created Ready (kwok's node-initialize stage then skips it and only heartbeats):
                # a node created without conditions gets the not-ready taint, and the node
                # lifecycle controller takes a monitor period (~5s) to lift it again.
                "status": {
                    "phase": "Running",
                    "conditions": _node_conditions(),
                    "nodeInfo": {
                        "architecture": arch,
                        "operatingSystem": "linux",
                        "kubeletVersion": _k8s_version(self.bin_dir),
                        "kubeProxyVersion": "",
                        "containerRuntimeVersion": "loopback://modeldeploy",
                        "kernelVersion": platform.release(),
                        "osImage": "loopback kubelet (controlplane.kubelet)",
                        "bootID": "", "machineID": "", "systemUUID": "",
                    },
                    "addresses": [
                        {"type": "InternalIP", "address": self.network.node_ip},
                        {"type": "Hostname", "address": self.node_name},
                    ],
                    "capacity": resources,
                    "allocatable": resources,
                },
            },
        )

    def _node_ready(self) -> bool:
        status, node = self._request("GET", f"/api/v1/nodes/{self.node_name}")
        if status != 200:
            return False
        conds = node.get("status", {}).get("conditions") or []
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
        taints = [
            t for t in node.get("spec", {}).get("taints") or []
            if t["key"].startswith("node.kubernetes.io/")
        ]
        return ready and not taints

    def _healthz(self, component: str) -> Callable[[], bool]:
        return lambda: self._request("GET", "/healthz", port_name=component)[0] == 200

    def _wait_ready(self, deadline: float) -> None:
        self._wait(
            deadline,
            f"node {self.node_name} Ready without taints",
            ["kwok", "kube-controller-manager"],
            self._node_ready,
        )
        self._wait(
            deadline,
            "ServiceAccount default/default",
            ["kube-controller-manager"],
            lambda: self._request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0]
            == 200,
        )
        for comp in ("kube-controller-manager", "kube-scheduler"):
            self._wait(deadline, f"{comp} /healthz", [comp], self._healthz(comp))
        self._wait(
            deadline,
            "the loopback kubelet to sync",
            ["kubelet"],
            lambda: (self.kubelet_dir / "ready").exists(),
        )

    # ---------------------------------------------------------------- component configs

    def _write_kubeconfig(self, path: Path, user: str) -> None:
        assert self._pki is not None
        import base64

        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "modeldeploy-local",
                    "cluster": {
                        "server": self.api_server,
                        "certificate-authority-data": base64.b64encode(
                            self._pki.ca_cert.read_bytes()
                        ).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": self._pki.tokens[user]}}],
            "contexts": [
                {
                    "name": "modeldeploy-local",
                    "context": {"cluster": "modeldeploy-local", "user": user,
                                "namespace": "default"},
                }
            ],
            "current-context": "modeldeploy-local",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        path.chmod(0o600)

    def _component_kubeconfig(self, name: str) -> Path:
        return self.workdir / "kubeconfigs" / f"{name}.kubeconfig"

    def _write_kubeconfigs(self) -> None:
        self._write_kubeconfig(self.kubeconfig, "modeldeploy-admin")
        for name, user in (
            ("kube-controller-manager", "system:kube-controller-manager"),
            ("kube-scheduler", "system:kube-scheduler"),
            ("kwok", "kwok-controller"),
            ("kubelet", f"system:node:{self.node_name}"),
        ):
            self._write_kubeconfig(self._component_kubeconfig(name), user)

    def _bin(self, name: str) -> str:
        path = self.bin_dir / name
        if not os.access(path, os.X_OK):
            raise ClusterError(f"{path} missing; build it with e2e/controlplane/build.sh")
        return str(path)

    def _etcd_argv(self) -> list[str]:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        return [
            self._bin("etcd"),
            "--name=default",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync=true",  # throw-away data; fsync is most of etcd's latency
            "--snapshot-count=10000",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        assert self._pki is not None and self.network is not None
        p = self._pki
        return [
            self._bin("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['kube-apiserver']}",
            f"--cert-dir={self.workdir / 'certs' / 'kube-apiserver'}",
            f"--tls-cert-file={p.apiserver_cert}",
            f"--tls-private-key-file={p.apiserver_key}",
            f"--client-ca-file={p.ca_cert}",
            f"--token-auth-file={p.token_file}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={p.sa_pub}",
            f"--service-account-signing-key-file={p.sa_key}",
            f"--service-cluster-ip-range={self.network.service_cidr}",
            "--kubelet-preferred-address-types=InternalIP",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ]

    def _kcm_argv(self) -> list[str]:
        assert self._pki is not None
        kc = self._component_kubeconfig("kube-controller-manager")
        return [
            self._bin("kube-controller-manager"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['kube-controller-manager']}",
            f"--cert-dir={self.workdir / 'certs' / 'kube-controller-manager'}",
            "--leader-elect=false",
            "--use-service-account-credentials=false",
            f"--service-account-private-key-file={self._pki.sa_key}",
            f"--root-ca-file={self._pki.ca_cert}",
            f"--cluster-signing-cert-file={self._pki.ca_cert}",
            f"--cluster-signing-key-file={self._pki.ca_key}",
            "--controllers=*",
            "--profiling=false",
            "--v=1",
        ]

    def _scheduler_argv(self) -> list[str]:
        kc = self._component_kubeconfig("kube-scheduler")
        return [
            self._bin("kube-scheduler"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['kube-scheduler']}",
            f"--cert-dir={self.workdir / 'certs' / 'kube-scheduler'}",
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ]

    def _kwok_argv(self) -> list[str]:
        assert self.network is not None
        return [
            self._bin("kwok"),
            f"--kubeconfig={self._component_kubeconfig('kwok')}",
            f"--config={KWOK_STAGES}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--node-ip={self.network.node_ip}",
            f"--cidr={self.network.pod_cidr}",
            "--node-port=0",  # no kwok server: nothing to proxy logs/exec/port-forward to
            "--node-lease-duration-seconds=40",
        ]

    def _kubelet_argv(self) -> list[str]:
        assert self.network is not None
        return [
            sys.executable,
            "-m",
            "controlplane.kubelet",
            f"--kubeconfig={self._component_kubeconfig('kubelet')}",
            f"--node={self.node_name}",
            f"--pod-cidr={self.network.pod_cidr}",
            f"--workdir={self.kubelet_dir}",
        ]

"""What the e2e scenarios share: a model file server on loopback, the real operator process, waiting."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from rbac import operator_kubeconfig  # noqa: E402
from train_iris import train  # noqa: E402

T = TypeVar("T")
MODELDEPLOY = str(Path(sys.executable).parent / "modeldeploy")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # a transient API error is just another "not yet"
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ModelRegistry:
    """Model files over real HTTP on 127.0.0.1, as an artifact store would serve them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add_iris(self, version: str, kind: str = "logreg") -> tuple[str, str]:
        path, digest = train(version, self.root, kind)
        return f"{self.base_url}/{path.name}", digest

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class OperatorProcess:
    """The real `modeldeploy operator`, as a separate process that tests can kill and restart."""

    def __init__(self, env: dict[str, str], log_path: Path, *extra: str) -> None:
        self.env, self.log_path, self.extra = env, log_path, extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.health_port = free_port()

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [MODELDEPLOY, "operator", "--liveness", f"http://127.0.0.1:{self.health_port}/healthz",
                 "--resync-seconds", "10", *self.extra],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_for(self.healthy, 60, f"operator liveness endpoint (log: {self.log_path})")

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"operator exited; see {self.log_path}:\n{self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as when a node dies."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def kubectl_json(cluster: Any, *args: str) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def post_json(url: str, body: Any, timeout: float = 5) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def port_open(ip: str, port: int) -> bool:
    assert_loopback(ip)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((ip, port)) == 0


def assert_loopback(ip: str) -> None:
    assert ip.startswith("127."), f"{ip} is outside 127.0.0.0/8: tests must never send traffic there"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelRegistry]:
    reg = ModelRegistry(tmp_path_factory.mktemp("models"))
    yield reg
    reg.close()


@pytest.fixture(scope="module")
def operator_process(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    wait_for(lambda: cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modeldeploy.dev",
                                     "--timeout=10s", check=False).returncode == 0, 60, "the CRD to be established")
    # The operator runs with the Helm chart's ServiceAccount token: every scenario proves its RBAC suffices.
    workdir = tmp_path_factory.mktemp("operator")
    env = {**cluster.env, "KUBECONFIG": str(operator_kubeconfig(cluster, workdir))}
    op = OperatorProcess(env, workdir / "operator.log")
    op.start()
    yield op
    op.stop()
    print(f"operator log: {op.log_path}")


class ServiceTraffic:
    """Requests spread over a Service's ready endpoints, as kube-proxy would: what a canary is judged on.

    Endpoints come from the Service's EndpointSlices (loopback pod IPs here), refreshed every second.
    Counts answers by model version and status code.
    """

    def __init__(self, cluster: Any, namespace: str, service: str, rows: list[list[float]], rps: float = 20,
                 path: str = "/predict") -> None:
        self.cluster, self.ns, self.service, self.rows, self.rps, self.path = (
            cluster, namespace, service, rows, rps, path)
        self.by_version: dict[str, int] = {}
        self.by_code: dict[int, int] = {}
        self.failures = 0  # connection errors: a pod that went away before the endpoints said so
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._endpoints: list[str] = []

    def endpoints(self) -> list[str]:
        slices = kubectl_json(self.cluster, "-n", self.ns, "get", "endpointslices",
                              "-l", f"kubernetes.io/service-name={self.service}")["items"]
        out = []
        for sl in slices:
            port = next((p["port"] for p in sl.get("ports") or [] if p.get("name") == "http"), 8080)
            for ep in sl.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready"):
                    for ip in ep["addresses"]:
                        assert_loopback(ip)
                        out.append(f"http://{ip}:{port}")
        return out

    def _refresh(self) -> None:
        while not self._stop.wait(0.5):
            with contextlib.suppress(Exception):  # keep the last good list; the API may be briefly busy
                self._endpoints = self.endpoints()

    def _send(self) -> None:
        i = 0
        while not self._stop.wait(1.0 / self.rps):
            targets = self._endpoints
            if not targets:
                continue
            url = targets[i % len(targets)] + self.path
            row = self.rows[i % len(self.rows)]
            i += 1
            try:
                code, body = post_json(url, {"features": row}, timeout=5)
            except OSError:
                self.failures += 1
                continue
            self.by_code[code] = self.by_code.get(code, 0) + 1
            if code == 200:
                v = body.get("model_version", "?")
                self.by_version[v] = self.by_version.get(v, 0) + 1

    def __enter__(self) -> ServiceTraffic:
        self._endpoints = self.endpoints()
        self._threads = [threading.Thread(target=self._refresh, daemon=True),
                         threading.Thread(target=self._send, daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

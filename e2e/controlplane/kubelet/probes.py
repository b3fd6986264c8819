"""Container probes and handlers (httpGet, tcpSocket, exec, sleep), loopback targets only."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass
class Result:
    ok: bool
    message: str = ""


def _port(port: Any, container: Obj) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"named port {port!r} not found in container {container['name']}")


def _loopback_host(host: str | None, pod_ip: str) -> str:
    host = host or pod_ip
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        # This machine must never send traffic outside 127.0.0.0/8.
        raise ValueError(f"probe host {host!r} is not a loopback address; refused")
    return host


def http_get(spec: Obj, container: Obj, pod_ip: str, timeout: float) -> Result:
    host = _loopback_host(spec.get("host"), pod_ip)
    port = _port(spec["port"], container)
    path = spec.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    headers = {"User-Agent": "kube-probe/1.34", "Accept": "*/*"}
    for h in spec.get("httpHeaders") or []:
        headers[h["name"]] = h["value"]
    conn: http.client.HTTPConnection
    if spec.get("scheme", "HTTP").upper() == "HTTPS":
        conn = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl._create_unverified_context()
        )  # the kubelet does not verify probe certificates either
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read(1024)
    except (OSError, http.client.HTTPException) as e:
        return Result(False, f"Get \"http://{host}:{port}{path}\": {e}")
    finally:
        conn.close()
    if 200 <= resp.status < 400:
        return Result(True)
    return Result(
        False,
        f"HTTP probe failed with statuscode: {resp.status} "
        f"{body.decode('utf-8', 'replace')[:200]!r}",
    )


def tcp_socket(spec: Obj, container: Obj, pod_ip: str, timeout: float) -> Result:
    host = _loopback_host(spec.get("host"), pod_ip)
    port = _port(spec["port"], container)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return Result(True)
    except OSError as e:
        return Result(False, f"dial tcp {host}:{port}: {e}")


def exec_in(pid: int | None, command: list[str], env: Mapping[str, str], timeout: float) -> Result:
    """Run `command` in the mount namespace of container process `pid`, with its env."""
    if not command:
        return Result(False, "exec: empty command")
    argv = list(command)
    if pid:
        argv = ["nsenter", f"--target={pid}", "--mount", "--", *argv]
    try:
        res = subprocess.run(
            argv, env=dict(env), capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return Result(False, f"command timed out after {timeout}s")
    except OSError as e:
        return Result(False, str(e))
    if res.returncode == 0:
        return Result(True)
    out = (res.stdout + res.stderr).decode("utf-8", "replace").strip()[:300]
    return Result(False, f"command {command!r} exited with {res.returncode}: {out}")


def run_handler(
    spec: Obj,
    container: Obj,
    pod_ip: str,
    pid: int | None,
    env: Mapping[str, str],
    timeout: float,
) -> Result:
    """Run a probe or lifecycle handler (httpGet / tcpSocket / exec / sleep / grpc)."""
    try:
        if "httpGet" in spec:
            return http_get(spec["httpGet"], container, pod_ip, timeout)
        if "tcpSocket" in spec:
            return tcp_socket(spec["tcpSocket"], container, pod_ip, timeout)
        if "exec" in spec:
            return exec_in(pid, spec["exec"].get("command") or [], env, timeout)
        if "sleep" in spec:
            time.sleep(min(float(spec["sleep"].get("seconds", 0)), timeout))
            return Result(True)
        if "grpc" in spec:
            return Result(False, "grpc probes are not supported by the loopback kubelet")
    except ValueError as e:
        return Result(False, str(e))
    return Result(False, f"unsupported handler {sorted(spec)}")


@dataclass
class ProbeState:
    """Threshold bookkeeping of one probe of one container run."""

    kind: str  # startup | readiness | liveness
    spec: Obj
    next_at: float  # monotonic time of the next run
    successes: int = 0
    failures: int = 0
    # The probe's verdict with the thresholds applied: it turns True after successThreshold
    # consecutive successes and False after failureThreshold consecutive failures.
    passing: bool = False
    last: Result = field(default_factory=lambda: Result(False, "not probed yet"))

    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds") or 10)

    @property
    def timeout(self) -> float:
        return float(self.spec.get("timeoutSeconds") or 1)

    @property
    def success_threshold(self) -> int:
        return int(self.spec.get("successThreshold") or 1)

    @property
    def failure_threshold(self) -> int:
        return int(self.spec.get("failureThreshold") or 3)

    def record(self, result: Result, now: float) -> None:
        self.last = result
        self.next_at = now + self.period
        if result.ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.success_threshold:
                self.passing = True
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= self.failure_threshold:
                self.passing = False

    @property
    def failed(self) -> bool:
        """The probe reached its failureThreshold."""
        return self.failures >= self.failure_threshold

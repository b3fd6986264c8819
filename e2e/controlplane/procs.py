"""Process plumbing shared by the cluster and the kubelet: spawn, stop process groups, sweep, ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

# Every process the control plane starts (and every pod process) carries this variable; its value
# is the cluster id. `sweep` finds leftovers by it even when all bookkeeping was lost.
MARKER_ENV = "MODELDEPLOY_CONTROLPLANE_ID"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a text file (empty string if it does not exist)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def spawn(
    argv: Sequence[str],
    log: Path,
    env: Mapping[str, str],
    cwd: Path | None = None,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session (process group), stdout+stderr appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )


# Starts the real process in its own session, prints its pid and exits at once: the process is
# re-parented to init (which reaps it), so it is nobody's child in the starting process.
_DAEMONIZE = r"""
import os, subprocess, sys
log_fd, fds = int(sys.argv[1]), [int(x) for x in sys.argv[2].split(",") if x]
p = subprocess.Popen(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=log_fd,
                     stderr=subprocess.STDOUT, start_new_session=True, pass_fds=fds)
print(p.pid, flush=True)
os._exit(0)
"""


def spawn_detached(
    argv: Sequence[str],
    log: Path,
    env: Mapping[str, str],
    cwd: Path | None = None,
    pass_fds: Sequence[int] = (),
) -> int:
    """Like `spawn`, for processes meant to outlive the caller: returns the pid, not a child."""
    import sys

    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        fd = out.fileno()
        helper = [sys.executable, "-I", "-S", "-c", _DAEMONIZE, str(fd),
                  ",".join(map(str, pass_fds)), *argv]
        res = subprocess.run(
            helper, stdin=subprocess.DEVNULL, capture_output=True, env=dict(env), cwd=cwd,
            pass_fds=(fd, *pass_fds), timeout=30, check=False,
        )
    if res.returncode != 0 or not res.stdout.strip().isdigit():
        raise OSError(f"could not start {argv[0]}: {res.stderr.decode(errors='replace')}")
    return int(res.stdout)


def proc_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (identifies a pid across reuse), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def alive(pid: int, start_time: int | None = None) -> bool:
    """True if `pid` exists, is not a zombie, and (if given) started at `start_time`."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    rest = stat[stat.rindex(")") + 2 :].split()
    if rest[0] in ("Z", "X"):
        return False
    return start_time is None or int(rest[19]) == start_time


def signal_group(pgid: int, sig: int) -> None:
    """Send `sig` to a process group, ignoring groups that are already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_groups(
    procs: Iterable[tuple[int, subprocess.Popen[bytes] | None]], grace: float
) -> None:
    """SIGTERM each (pgid, popen) group, wait up to `grace` seconds in total, then SIGKILL."""
    items = list(procs)
    for pgid, _ in items:
        signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for pgid, popen in items:
        while time.monotonic() < deadline and _group_alive(pgid, popen):
            time.sleep(0.05)
        if _group_alive(pgid, popen):
            signal_group(pgid, signal.SIGKILL)
        if popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=5)


def _group_alive(pgid: int, popen: subprocess.Popen[bytes] | None) -> bool:
    if popen is not None and popen.poll() is None:
        return True
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # The group exists; it counts as alive unless every member is a zombie.
    return any(alive(pid) for pid in _group_members(pgid))


def _group_members(pgid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            rest = stat[stat.rindex(")") + 2 :].split()
            if int(rest[2]) == pgid:
                out.append(int(entry))
    return out


def marked_pids(cluster_id: str) -> list[int]:
    """Pids of live processes whose environment carries MARKER_ENV=<cluster_id>."""
    needle = f"{MARKER_ENV}={cluster_id}".encode()
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and alive(int(entry)):
            out.append(int(entry))
    return out


def sweep(cluster_id: str, grace: float = 2.0) -> list[int]:
    """Terminate every leftover process of the cluster (see MARKER_ENV); returns the pids hit."""
    pids = marked_pids(cluster_id)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return pids

"""Worker processes: readiness across them (pid files in a shared dir) and CPUs to share."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

from modeldeploy_server.errors import ModelNotReady


class WorkerGroup:
    """The worker processes of one server; ready only when `expected` of them have loaded.

    With several uvicorn workers a readiness probe reaches one of them at random, and each
    loads the model on its own: without this, a pod would be Ready while a worker still
    answers 503. A worker that died leaves a stale file, ignored since its pid is gone.
    """

    def __init__(self, directory: str | Path, expected: int) -> None:
        self.directory = Path(directory)
        self.expected = expected
        self._mine = self.directory / str(os.getpid())

    def mark_ready(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._mine.touch()

    def mark_gone(self) -> None:
        self._mine.unlink(missing_ok=True)

    def ready_count(self) -> int:
        count = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in self.directory.iterdir():
                if entry.name.isdigit() and _alive(int(entry.name)):
                    count += 1
        return count

    def check(self) -> None:
        """Raise ModelNotReady unless every worker has loaded the model."""
        ready = self.ready_count()
        if ready < self.expected:
            raise ModelNotReady(
                f"{ready} of {self.expected} worker processes have loaded the model",
                reason="workers_loading",
            )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota (a pod's limit).

    A container sees every core of its node, so thread pools sized by the core count would
    oversubscribe a pod limited to a few CPUs and be throttled.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _cgroup_quota(root: Path) -> float | None:
    """The CPU quota in CPUs (cgroup v2 `cpu.max`, else v1 `cpu.cfs_quota_us`), None if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 else quota_us / period_us

"""Readiness across worker processes: each loaded worker leaves a pid file in a shared directory."""

from __future__ import annotations

import contextlib
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

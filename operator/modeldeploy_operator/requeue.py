"""When to look at a ModelDeployment again: timed rollout steps do not wait for the next event."""

from __future__ import annotations

import threading
import time


class Requeue:
    """Thread-safe (Kopf runs sync handlers in threads) map of (namespace, name) -> monotonic deadline."""

    def __init__(self) -> None:
        self._due: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def after(self, namespace: str, name: str, seconds: float | None) -> None:
        if seconds is None:
            return
        deadline = time.monotonic() + max(0.5, seconds)
        with self._lock:
            key = (namespace, name)
            self._due[key] = min(deadline, self._due.get(key, deadline))

    def pop_due(self, now: float | None = None) -> list[tuple[str, str]]:
        now = time.monotonic() if now is None else now
        with self._lock:
            due = [k for k, t in self._due.items() if t <= now]
            for k in due:
                del self._due[k]
        return due

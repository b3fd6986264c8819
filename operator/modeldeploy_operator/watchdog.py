"""Is the watch alive? Compares what the periodic list sees with what the watch delivered.

A watch can go quiet without an error (a half-open connection, a stuck stream). The resync loop
lists every ModelDeployment anyway; a resourceVersion that two lists in a row show but the watch
never delivered means the watch is stale, and the liveness probe fails so that the pod restarts.
"""

from __future__ import annotations

import threading

Key = tuple[str, str]


class WatchMonitor:
    def __init__(self) -> None:
        self._seen: dict[Key, str] = {}
        self._pending: dict[Key, str] = {}
        self._stale: set[Key] = set()
        self._lock = threading.Lock()

    def saw(self, namespace: str, name: str, resource_version: str) -> None:
        """The watch delivered this version of the object."""
        with self._lock:
            key = (namespace, name)
            self._seen[key] = resource_version
            if self._pending.get(key) == resource_version:
                del self._pending[key]
            self._stale.discard(key)

    def listed(self, items: list[tuple[str, str, str]]) -> None:
        """A full list saw these (namespace, name, resourceVersion)."""
        with self._lock:
            keys = set()
            for namespace, name, rv in items:
                key = (namespace, name)
                keys.add(key)
                if self._seen.get(key) == rv:
                    self._pending.pop(key, None)
                    self._stale.discard(key)
                elif self._pending.get(key) == rv:
                    self._stale.add(key)  # unchanged since the last list, still never delivered
                else:
                    self._pending[key] = rv
            for gone in set(self._pending) - keys:
                del self._pending[gone]
            self._stale &= keys
            for gone in set(self._seen) - keys:
                del self._seen[gone]

    def stale(self) -> list[str]:
        with self._lock:
            return sorted(f"{ns}/{name}" for ns, name in self._stale)

"""Pod IP allocation from the node's loopback pod CIDR (each pod gets its own 127.x.y.z)."""

from __future__ import annotations

import ipaddress
import threading


class Ipam:
    """Hands out addresses round-robin (a freed IP is not reused at once), one per pod uid."""

    def __init__(self, cidr: str) -> None:
        self.net = ipaddress.ip_network(cidr)
        if not self.net.is_loopback:
            raise ValueError(f"pod CIDR {cidr} is not inside 127.0.0.0/8")
        self._by_uid: dict[str, str] = {}
        self._next = int(self.net.network_address) + 1
        self._lock = threading.Lock()

    def __contains__(self, ip: str) -> bool:
        try:
            return ipaddress.ip_address(ip) in self.net
        except ValueError:
            return False

    def allocate(self, uid: str, prefer: str | None = None) -> str:
        with self._lock:
            if uid in self._by_uid:
                return self._by_uid[uid]
            used = set(self._by_uid.values())
            if prefer and prefer in self and prefer not in used:
                self._by_uid[uid] = prefer
                return prefer
            first = int(self.net.network_address) + 1
            last = int(self.net.broadcast_address) - 1
            for _ in range(last - first + 1):
                candidate = self._next
                self._next = first if self._next >= last else self._next + 1
                ip = str(ipaddress.ip_address(candidate))
                if ip.endswith((".0", ".255")) or ip in used:
                    continue
                self._by_uid[uid] = ip
                return ip
            raise RuntimeError(f"pod CIDR {self.net} exhausted")

    def release(self, uid: str) -> None:
        with self._lock:
            self._by_uid.pop(uid, None)

"""Loopback address plan of a local cluster: a per-cluster pod CIDR and service CIDR in 127.0.0.0/8."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

NODE_IP = "127.0.0.1"
# Clusters get blocks 127.<i>.0.0/16 (pods) and 127.<i+1>.0.0/16 (services), i = 10, 12, ... 248.
FIRST_BLOCK = 10
LAST_BLOCK = 248
LOCK_DIR = Path(tempfile.gettempdir()) / "modeldeploy-controlplane" / "locks"


@dataclass(frozen=True)
class Network:
    """The loopback layout of one cluster (all of it inside 127.0.0.0/8)."""

    block: int
    node_ip: str
    pod_cidr: str
    service_cidr: str

    @property
    def first_service_ip(self) -> str:
        """The ClusterIP of the `kubernetes` Service (first host of the service CIDR)."""
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Network:
        return cls(**data)

    @classmethod
    def for_block(cls, block: int) -> Network:
        return cls(
            block=block,
            node_ip=NODE_IP,
            pod_cidr=f"127.{block}.0.0/16",
            service_cidr=f"127.{block + 1}.0.0/16",
        )


def _listening_ipv4() -> set[ipaddress.IPv4Address]:
    """Local IPv4 addresses with a listening TCP socket (from /proc/net/tcp)."""
    out: set[ipaddress.IPv4Address] = set()
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) > 3 and parts[3] == "0A":  # TCP_LISTEN
            hex_ip = parts[1].split(":")[0]
            out.add(ipaddress.IPv4Address(bytes.fromhex(hex_ip)[::-1]))
    return out


def _lock_path(block: int) -> Path:
    return LOCK_DIR / f"block-{block}.lock"


def relock(block: int, timeout: float = 5.0) -> int:
    """Take the lock of a known block again (e.g. for a restarted kubelet); returns the fd."""
    import time

    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(_lock_path(block), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise RuntimeError(f"loopback block {block} is locked by another process") from None
            time.sleep(0.1)


def reserve() -> tuple[Network, int]:
    """Pick a free block and lock it; returns the network and the lock fd.

    The lock is an flock on a file in LOCK_DIR: it is held for as long as any process has the fd
    open (the cluster hands it to the kubelet, which lives as long as the pods do), and is released
    by the kernel when the last holder exits, so a crashed cluster never leaks its block.
    """
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    listening = _listening_ipv4()
    for block in range(FIRST_BLOCK, LAST_BLOCK + 1, 2):
        net = Network.for_block(block)
        fd = os.open(_lock_path(block), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        nets = [ipaddress.ip_network(net.pod_cidr), ipaddress.ip_network(net.service_cidr)]
        if any(ip in n for ip in listening for n in nets):
            # Someone (not a locked cluster) listens in this range: stay clear of it.
            os.close(fd)
            continue
        return net, fd
    raise RuntimeError(f"no free loopback block left (locks in {LOCK_DIR})")

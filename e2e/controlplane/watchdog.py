"""Stops a LocalCluster when the process that started it dies without stopping it (kill -9, crash)."""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
from pathlib import Path

from .cluster import LocalCluster


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m controlplane.watchdog")
    ap.add_argument("--owner", type=int, required=True, help="pid whose death stops the cluster")
    ap.add_argument("--dir", type=Path, required=True, help="cluster workdir")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # a clean stop() ends us this way
    try:
        fd = os.pidfd_open(args.owner)
    except ProcessLookupError:
        fd = None
    if fd is not None:
        select.select([fd], [], [])  # readable once the owner has exited; no polling
    print(f"watchdog: owner {args.owner} is gone, stopping the cluster in {args.dir}", flush=True)
    LocalCluster.attach(args.dir).stop()
    print("watchdog: cluster stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

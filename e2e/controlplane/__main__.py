"""`python -m controlplane up|down|status --dir DIR`: a local cluster that outlives the command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .binaries import ensure_binaries
from .cluster import ClusterError, LocalCluster

DEFAULT_DIR = Path(__file__).resolve().parents[2] / ".local" / "cluster"  # same as `make up`


def _up(args: argparse.Namespace) -> int:
    bin_dir = args.bin_dir or ensure_binaries(progress=lambda s: print(s, file=sys.stderr))
    cluster = LocalCluster(args.dir, bin_dir)
    try:
        cluster.start(timeout=args.timeout, watchdog=False)
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"cluster up in {cluster.started_in:.1f}s: {cluster.api_server}", file=sys.stderr)
    print(f"  pod CIDR {cluster.pod_cidr}, service CIDR {cluster.service_cidr}, "
          f"node {cluster.node_name}", file=sys.stderr)
    print(f"  logs: {cluster.logs_dir}; pod logs: {cluster.kubelet_dir / 'pods'}", file=sys.stderr)
    print(f"  stop: python -m controlplane down --dir {cluster.workdir}", file=sys.stderr)
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    print(f'export PATH="{bin_dir}:$PATH"')
    return 0


def _down(args: argparse.Namespace) -> int:
    try:
        cluster = LocalCluster.attach(args.dir)
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    cluster.stop()
    print(f"cluster in {cluster.workdir} stopped", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    try:
        cluster = LocalCluster.attach(args.dir)
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    running = cluster.running()
    info = {
        "workdir": str(cluster.workdir),
        "kubeconfig": str(cluster.kubeconfig),
        "api_server": cluster.api_server if cluster.ports else None,
        "pod_cidr": cluster.network.pod_cidr if cluster.network else None,
        "service_cidr": cluster.network.service_cidr if cluster.network else None,
        "processes": running,
    }
    print(json.dumps(info, indent=2))
    return 0 if running and all(running.values()) else 3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m controlplane", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("up", "down", "status"):
        p = sub.add_parser(name)
        p.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                       help=f"cluster workdir (default {DEFAULT_DIR})")
        if name == "up":
            p.add_argument("--bin-dir", type=Path, default=None,
                           help="prebuilt binaries (default: run build.sh)")
            p.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args(argv)
    return {"up": _up, "down": _down, "status": _status}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

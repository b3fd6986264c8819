"""`python -m controlplane.kubelet`: run the loopback kubelet of one node."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .main import Kubelet


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m controlplane.kubelet", description=__doc__)
    ap.add_argument("--kubeconfig", type=Path, required=True)
    ap.add_argument("--node", required=True, help="name of the node whose pods to run")
    ap.add_argument("--pod-cidr", required=True, help="loopback CIDR for pod IPs, e.g. 127.10.0.0/16")
    ap.add_argument("--workdir", type=Path, required=True,
                    help="state, volumes and pods/<ns>_<pod>/<container>.log")
    ap.add_argument("--node-ip", default="127.0.0.1")
    ap.add_argument("--backoff-initial", type=float, default=1.0,
                    help="first CrashLoopBackOff delay in seconds (the real kubelet: 10)")
    ap.add_argument("--backoff-max", type=float, default=30.0,
                    help="CrashLoopBackOff cap in seconds (the real kubelet: 300)")
    ap.add_argument("--shutdown-grace", type=float, default=5.0,
                    help="cap on pods' grace period when the kubelet itself stops")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s",
        stream=sys.stdout,
    )
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    Kubelet(
        kubeconfig=args.kubeconfig,
        node=args.node,
        pod_cidr=args.pod_cidr,
        workdir=args.workdir,
        node_ip=args.node_ip,
        backoff_initial=args.backoff_initial,
        backoff_max=args.backoff_max,
        shutdown_grace=args.shutdown_grace,
    ).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

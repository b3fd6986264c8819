"""Local Kubernetes control plane on loopback for e2e tests and the demo (see README.md)."""

from .cluster import Cluster, ClusterError, KubectlError, LocalCluster, wait_until

__all__ = ["Cluster", "ClusterError", "KubectlError", "LocalCluster", "wait_until"]

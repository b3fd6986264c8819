"""Loopback kubelet: runs the pods bound to the fake node as real local processes on 127.x IPs."""

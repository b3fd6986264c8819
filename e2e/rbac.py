"""The operator's identity from the Helm chart, for e2e runs: its RBAC installed, a kubeconfig with its token.

An operator started with `operator_kubeconfig(cluster, tmp)` as KUBECONFIG can do exactly what the chart
grants, so every e2e scenario run that way also proves the chart's RBAC is sufficient.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "modeldeploy"
RELEASE = "modeldeploy"
NAMESPACE = "modeldeploy-system"


def helm(cluster: Any, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the pinned helm (built next to kubectl by build.sh) against `cluster`."""
    argv = [str(Path(cluster.bin_dir) / "helm"), *args]
    res = subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def values_args(values: dict[str, Any]) -> list[str]:
    return [a for key, value in values.items() for a in ("--set-json", f"{key}={json.dumps(value)}")]


def ensure_namespace(cluster: Any, name: str, labels: dict[str, str] | None = None) -> None:
    obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


def install_rbac(cluster: Any, *, release: str = RELEASE, namespace: str = NAMESPACE,
                 watch_namespaces: Sequence[str] = ()) -> str:
    """`helm template` the chart with operator.enabled=false and apply it: ServiceAccounts and RBAC only.

    Returns the operator ServiceAccount's name (in `namespace`).
    """
    for ns in (namespace, *watch_namespaces):
        ensure_namespace(cluster, ns)
    values: dict[str, Any] = {"operator.enabled": False, "watchNamespaces": list(watch_namespaces)}
    manifest = helm(cluster, "template", release, str(CHART), "-n", namespace, *values_args(values)).stdout
    cluster.kubectl("apply", "-f", "-", input=manifest)
    (account,) = [d["metadata"]["name"] for d in yaml.safe_load_all(manifest) if d and d["kind"] == "ServiceAccount"
                  and d["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"]
    return str(account)


def token_kubeconfig(cluster: Any, service_account: str, namespace: str, path: Path,
                     duration: str = "12h") -> Path:
    """A kubeconfig for `cluster`'s API server authenticating as the ServiceAccount (a bound token)."""
    token = cluster.kubectl("create", "token", service_account, "-n", namespace,
                            f"--duration={duration}").stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    server = next(c for c in admin["clusters"] if c["name"] == context["cluster"])["cluster"]
    user = f"system:serviceaccount:{namespace}:{service_account}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": server}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "cluster", "user": user, "namespace": namespace}}],
        "current-context": "operator",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def operator_kubeconfig(cluster: Any, tmp_dir: Path, *, release: str = RELEASE, namespace: str = NAMESPACE,
                        watch_namespaces: Sequence[str] = ()) -> Path:
    """Install the chart's RBAC (idempotent) and write `tmp_dir`/operator.kubeconfig with the operator
    ServiceAccount's token. Run `modeldeploy operator` with KUBECONFIG set to it (and, for a namespaced
    install, `--namespace X` for each of `watch_namespaces`)."""
    service_account = install_rbac(cluster, release=release, namespace=namespace, watch_namespaces=watch_namespaces)
    return token_kubeconfig(cluster, service_account, namespace, Path(tmp_dir) / f"{release}-operator.kubeconfig")

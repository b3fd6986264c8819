"""The Helm chart on the real control plane: install, the operator pod reconciling a model to Ready with
only the chart's RBAC, what that RBAC allows (`kubectl auth can-i --list`), uninstall, and a namespaced
install whose Role alone suffices. Runs in order, like a user's session.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rbac
import yaml
from rbac import CHART, ensure_namespace, helm, operator_kubeconfig, values_args
from support import (  # noqa: F401  (fixtures)
    ROOT,
    ModelRegistry,
    OperatorProcess,
    kubectl_json,
    registry,
    wait_for,
)

# A release of its own: rbac.py's default identity (release "modeldeploy") may be in use by other modules'
# operators for the whole session, and this module uninstalls what it installs.
RELEASE, NAMESPACE = "md-helm", "md-helm-system"
OPERATOR_SA = "md-helm-modeldeploy-operator"
MODELS_NS = "helm-models"
SCOPED_RELEASE, TEAM_A, TEAM_B = "scoped", "helm-team-a", "helm-team-b"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"}

# resource -> verbs, as `kubectl auth can-i --list` prints them (charts/modeldeploy/templates/_helpers.tpl)
NEEDED = {
    "modeldeployments.modeldeploy.dev": ["get", "list", "watch", "patch"],
    "modeldeployments.modeldeploy.dev/status": ["patch"],
    "deployments.apps": ["get", "list", "watch", "create", "patch", "delete"],
    "services": ["list", "watch", "create", "patch", "delete"],
    "pods": ["list"],
    "httproutes.gateway.networking.k8s.io": ["list", "create", "patch", "delete"],
    "jobs.batch": ["get", "create", "patch"],
    "events": ["create"],
}
# what every authenticated identity may do (system:basic-user): ask the API server about itself
SELF_REVIEWS = {
    "selfsubjectreviews.authentication.k8s.io": ["create"],
    "selfsubjectaccessreviews.authorization.k8s.io": ["create"],
    "selfsubjectrulesreviews.authorization.k8s.io": ["create"],
}
# Kopf asks to watch CRDs (and, namespaced, to list/watch Namespaces), retries, then falls back to what it
# was started with (docs/install.md); nothing else may be refused
KOPF_FALLBACKS = ('resource "customresourcedefinitions"', 'resource "namespaces"',
                  "Not enough permissions to watch for resources", "Not enough permissions to list namespaces",
                  "Not enough permissions to watch for namespaces")


def sample(registry: ModelRegistry, version: str = "1.0.0") -> str:
    uri, digest = registry.add_iris(version)
    text = (ROOT / "examples" / "iris.yaml").read_text().replace("replicas: 2", "replicas: 1")
    return string.Template(text).substitute(MODEL_URI=uri, MODEL_SHA256=digest)


def can_i_list(cluster: Any, user: str, namespace: str) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """`kubectl auth can-i --list` parsed: {resource: verbs}, [(non-resource URL, verbs)]."""
    out = cluster.kubectl("auth", "can-i", "--list", f"--as={user}", "-n", namespace).stdout.splitlines()
    header = out[0]
    starts = [header.index(h) for h in ("Resources", "Non-Resource URLs", "Resource Names", "Verbs")]
    resources: dict[str, list[str]] = {}
    urls: list[tuple[str, str]] = []
    for line in out[1:]:
        resource = line[starts[0]:starts[1]].strip()
        url = line[starts[1]:starts[2]].strip()
        names = line[starts[2]:starts[3]].strip()
        verbs = line[starts[3]:].strip()
        assert names == "[]", f"a rule limited to resource names: {line}"
        if resource:
            assert url == "[]", line
            assert resource not in resources, f"{resource} listed twice: {out}"
            resources[resource] = verbs.strip("[]").split()
        else:
            urls.append((url, verbs))
    return resources, urls


def refused_lines(log: str) -> list[str]:
    """Log lines about a refused request, other than Kopf's documented fallbacks and the API server's
    refusal to create anything (an Event) in a namespace being deleted, which no RBAC can grant."""
    return [line for line in log.splitlines() if re.search(r"\b403\b|forbidden", line, re.IGNORECASE)
            and not any(f in line for f in KOPF_FALLBACKS) and "NamespaceTerminating" not in line]


def operator_pod(cluster: Any) -> dict[str, Any]:
    pods = kubectl_json(cluster, "-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/component=operator")
    live = [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 1, [p["metadata"]["name"] for p in live]
    return live[0]  # type: ignore[no-any-return]


def operator_log(cluster: Any) -> str | None:
    """The operator container's output (the loopback kubelet writes it to a file; no `kubectl logs`)."""
    if not hasattr(cluster, "pod_log"):
        return None
    path: Path = cluster.pod_log(NAMESPACE, operator_pod(cluster)["metadata"]["name"], "operator")
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="module")
def release(cluster: Any) -> Iterator[str]:
    ensure_namespace(cluster, NAMESPACE, RESTRICTED)
    values = {
        # every pod shares the host's network on the loopback kubelet: bind the liveness port to the pod IP
        "operator.liveness.bindAddress": "$(POD_IP)",
        "operator.extraArgs": ["--resync-seconds", "10"],
    }
    helm(cluster, "install", RELEASE, str(CHART), "-n", NAMESPACE, *values_args(values), "--wait", "--timeout", "180s")
    yield RELEASE
    helm(cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", check=False)
    for ns in (MODELS_NS, TEAM_A, TEAM_B):
        cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def test_install_runs_the_operator_restricted_with_its_own_identity(cluster: Any, release: str) -> None:
    status = json.loads(helm(cluster, "status", release, "-n", NAMESPACE, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    pod = operator_pod(cluster)  # admitted by the namespace's `restricted` Pod Security level
    assert pod["spec"]["serviceAccountName"] == OPERATOR_SA
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])
    ctr = pod["spec"]["containers"][0]
    mounts = {m["mountPath"] for m in ctr["volumeMounts"]}
    assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounts  # the token, from automount
    assert ctr["args"][:2] == ["--liveness", "http://$(POD_IP):8081/healthz"]
    server_sa = kubectl_json(cluster, "-n", NAMESPACE, "get", "serviceaccount", "modeldeploy-server")
    assert server_sa["automountServiceAccountToken"] is False
    bindings = kubectl_json(cluster, "get", "clusterrolebindings,rolebindings", "-A")["items"]
    bound = [s["name"] for b in bindings for s in b.get("subjects") or [] if s.get("namespace") == NAMESPACE]
    assert bound == [OPERATOR_SA]  # and nothing at all for the model servers
    # helm installed the CRD from the chart's crds/
    cluster.kubectl("get", "crd", "modeldeployments.modeldeploy.dev")


def test_operator_pod_reconciles_a_model_to_ready(cluster: Any, release: str, registry: ModelRegistry) -> None:
    ensure_namespace(cluster, MODELS_NS, RESTRICTED)  # the model server pods are `restricted` too
    cluster.kubectl("-n", MODELS_NS, "apply", "-f", "-", input=sample(registry))
    cluster.kubectl("-n", MODELS_NS, "wait", "--for=condition=Ready", "md/iris", "--timeout=180s")
    md = kubectl_json(cluster, "-n", MODELS_NS, "get", "md", "iris")
    conditions = {c["type"]: c["status"] for c in md["status"]["conditions"]}
    assert conditions == {"Ready": "True", "Reconciling": "False", "Stalled": "False"}
    dep = kubectl_json(cluster, "-n", MODELS_NS, "get", "deployment", "iris", "--show-managed-fields")
    assert "modeldeploy-operator" in {m["manager"] for m in dep["metadata"]["managedFields"]}
    events = cluster.kubectl("-n", MODELS_NS, "get", "events", "--field-selector",
                             "involvedObject.kind=ModelDeployment").stdout
    assert "VersionAvailable" in events  # events: create
    log = operator_log(cluster)
    if log is not None:
        assert log.strip(), "no operator output"
        assert refused_lines(log) == [], "the operator was refused something it needs"


def test_can_i_list_shows_nothing_beyond_what_is_needed(cluster: Any, release: str) -> None:
    user = f"system:serviceaccount:{NAMESPACE}:{OPERATOR_SA}"
    for ns in (MODELS_NS, "default"):
        resources, urls = can_i_list(cluster, user, ns)
        assert resources == {**NEEDED, **SELF_REVIEWS}, resources
        for resource, verbs in resources.items():
            assert "*" not in resource and "*" not in verbs, (resource, verbs)
        assert not [r for r in resources if r.startswith("secrets") or r.startswith("configmaps")]
        assert {verbs for _, verbs in urls} <= {"[get]"}, urls  # discovery and health URLs, read-only
    for verb, resource in [("get", "secrets"), ("list", "secrets"), ("create", "pods"), ("get", "pods"),
                           ("delete", "modeldeployments.modeldeploy.dev"),
                           ("update", "modeldeployments.modeldeploy.dev/status"),
                           ("update", "deployments.apps"), ("create", "clusterrolebindings"),
                           ("list", "customresourcedefinitions"), ("create", "events.events.k8s.io"),
                           ("create", "serviceaccounts/token")]:
        answer = cluster.kubectl("auth", "can-i", verb, resource, f"--as={user}", "-n", MODELS_NS, check=False)
        assert answer.stdout.strip() == "no", f"can {verb} {resource}"
    server = f"system:serviceaccount:{NAMESPACE}:modeldeploy-server"
    resources, _ = can_i_list(cluster, server, MODELS_NS)
    assert resources == SELF_REVIEWS  # the model servers' account can do nothing


def test_token_kubeconfig_authenticates_as_the_operator(cluster: Any, release: str, tmp_path: Path) -> None:
    """rbac.operator_kubeconfig's default identity: what other e2e modules run their operators with."""
    path = operator_kubeconfig(cluster, tmp_path)
    assert path.stat().st_mode & 0o077 == 0
    who = json.loads(cluster.kubectl("--kubeconfig", str(path), "auth", "whoami", "-o", "json").stdout)
    user = f"system:serviceaccount:{rbac.NAMESPACE}:modeldeploy-operator"
    assert who["status"]["userInfo"]["username"] == user
    assert can_i_list(cluster, user, MODELS_NS)[0] == {**NEEDED, **SELF_REVIEWS}
    assert "modeldeployment.modeldeploy.dev/iris" in cluster.kubectl(
        "--kubeconfig", str(path), "get", "md", "-A", "-o", "name").stdout.split()
    denied = cluster.kubectl("--kubeconfig", str(path), "get", "secrets", "-n", MODELS_NS, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr


def test_uninstall_keeps_the_crd_and_the_models(cluster: Any, release: str) -> None:
    helm(cluster, "uninstall", release, "-n", NAMESPACE, "--wait")
    wait_for(lambda: not kubectl_json(cluster, "-n", NAMESPACE, "get", "pods")["items"], 60, "the operator to stop")
    assert cluster.kubectl("get", "clusterrole", OPERATOR_SA, check=False).returncode != 0
    cluster.kubectl("get", "crd", "modeldeployments.modeldeploy.dev")  # Helm never deletes crds/
    assert kubectl_json(cluster, "-n", MODELS_NS, "get", "md", "iris")["metadata"]["name"] == "iris"


def test_namespaced_install_needs_only_its_roles(
    cluster: Any, release: str, registry: ModelRegistry, tmp_path: Path
) -> None:
    """With watchNamespaces the operator runs on Roles alone (no cluster-wide permission at all)."""
    path = operator_kubeconfig(cluster, tmp_path, release=SCOPED_RELEASE, watch_namespaces=[TEAM_A])
    user = f"system:serviceaccount:{rbac.NAMESPACE}:{SCOPED_RELEASE}-modeldeploy-operator"
    resources, _ = can_i_list(cluster, user, TEAM_A)
    assert resources == {**NEEDED, **SELF_REVIEWS}
    ensure_namespace(cluster, TEAM_B)
    resources, _ = can_i_list(cluster, user, TEAM_B)
    assert resources == SELF_REVIEWS
    env = {**cluster.env, "KUBECONFIG": str(path)}
    op = OperatorProcess(env, tmp_path / "operator.log", "--namespace", TEAM_A)
    op.start()
    try:
        cluster.kubectl("-n", TEAM_A, "apply", "-f", "-", input=sample(registry, "1.0.1"))
        cluster.kubectl("-n", TEAM_A, "wait", "--for=condition=Ready", "md/iris", "--timeout=180s")
    finally:
        op.stop()
    log = op.log_path.read_text(errors="replace")
    assert refused_lines(log) == [], log
    roles = yaml.safe_load_all(cluster.kubectl("get", "clusterroles", "-l",
                                               f"app.kubernetes.io/instance={SCOPED_RELEASE}", "-o", "yaml").stdout)
    assert [r for doc in roles if doc for r in doc.get("items") or []] == []

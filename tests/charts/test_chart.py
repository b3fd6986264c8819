"""charts/modeldeploy rendered by the real helm: lint, objects, least-privilege RBAC, values schema."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from modeldeploy_api import constants as c
from modeldeploy_operator.builders import build_deployment, build_service

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modeldeploy"
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
RELEASE, NAMESPACE = "md", "modeldeploy-system"
OPERATOR = "md-modeldeploy-operator"

Obj = dict[str, Any]
Render = Callable[..., list[Obj]]

# What the operator does today (operator/modeldeploy_operator/apply.py: apply, get, list_objects, delete,
# remove_annotations, patch_status, post_event; Kopf's watches). Proven sufficient by e2e/test_helm.py;
# every addition needs a reason in charts/modeldeploy/templates/_helpers.tpl.
EXPECTED_RULES = [
    {"apiGroups": ["modeldeploy.dev"], "resources": ["modeldeployments"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["modeldeploy.dev"], "resources": ["modeldeployments/status"], "verbs": ["patch"]},
    {"apiGroups": ["apps"], "resources": ["deployments"],
     "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["list", "watch", "create", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"],
     "verbs": ["list", "create", "patch", "delete"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "create", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]


def helm(helm_bin: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([str(helm_bin), *args], capture_output=True, text=True, timeout=120)
    if check and res.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({res.returncode}):\n{res.stderr}")
    return res


def set_args(values: dict[str, Any]) -> list[str]:
    return [a for key, value in values.items() for a in ("--set-json", f"{key}={json.dumps(value)}")]


@pytest.fixture(scope="session")
def render(helm_bin: Path) -> Render:
    def run(**values: Any) -> list[Obj]:
        out = helm(helm_bin, "template", RELEASE, str(CHART), "-n", NAMESPACE, *set_args(values)).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    return run


def only(objs: list[Obj], kind: str, name: str | None = None, namespace: str | None = None) -> Obj:
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
             and (namespace is None or o["metadata"].get("namespace") == namespace)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in {[(o['kind'], o['metadata']['name']) for o in objs]}"
    return found[0]


def kinds(objs: list[Obj]) -> list[tuple[str, str, str | None]]:
    return sorted((o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in objs)


def operator_container(objs: list[Obj]) -> Obj:
    pod = only(objs, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return pod["containers"][0]  # type: ignore[no-any-return]


# ---------------------------------------------------------------- lint


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["team-a", "team-b"], "networkPolicy.enabled": True,
                                         "monitoring.podMonitor.enabled": True,
                                         "monitoring.serviceMonitor.enabled": True}], ids=["defaults", "all-on"])
def test_helm_lint_strict(helm_bin: Path, values: dict[str, Any]) -> None:
    res = helm(helm_bin, "lint", "--strict", str(CHART), *set_args(values))
    assert "1 chart(s) linted, 0 chart(s) failed" in res.stdout, res.stdout


# ---------------------------------------------------------------- default values


def test_default_objects(render: Render) -> None:
    assert kinds(render()) == [
        ("ClusterRole", OPERATOR, None),
        ("ClusterRoleBinding", OPERATOR, None),
        ("Deployment", OPERATOR, NAMESPACE),
        ("ServiceAccount", OPERATOR, NAMESPACE),
        ("ServiceAccount", "modeldeploy-server", NAMESPACE),
    ]


def test_operator_deployment(render: Render) -> None:
    dep = only(render(), "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}  # two standalone Kopf operators must never overlap
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == OPERATOR
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                      "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
    ctr = operator_container([dep])
    assert ctr["image"] == f"ghcr.io/modeldeploy/operator:{APP_VERSION}"
    assert ctr["imagePullPolicy"] == "IfNotPresent"
    assert ctr["command"] == ["modeldeploy", "operator"]
    assert ctr["args"] == ["--liveness", "http://0.0.0.0:8081/healthz"]
    assert ctr["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert set(ctr["resources"]) == {"requests", "limits"}
    assert set(ctr["resources"]["requests"]) == set(ctr["resources"]["limits"]) == {"cpu", "memory"}
    # the probes hit Kopf's liveness endpoint, the one the args configure
    assert ctr["ports"] == [{"name": "healthz", "containerPort": 8081, "protocol": "TCP"}]
    for probe in ("livenessProbe", "startupProbe"):
        assert ctr[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}, probe
    # a read-only root needs a writable /tmp
    assert {"name": "tmp", "mountPath": "/tmp"} in ctr["volumeMounts"]


def test_selector_is_a_stable_subset_of_the_pod_labels(render: Render) -> None:
    dep = only(render(), "Deployment")
    selector = dep["spec"]["selector"]["matchLabels"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert not {"helm.sh/chart", "app.kubernetes.io/version"} & set(selector)  # selectors are immutable


def test_every_object_has_the_standard_labels(render: Render) -> None:
    objs = render(watchNamespaces=["a"], **{"networkPolicy.enabled": True, "monitoring.podMonitor.enabled": True,
                                            "monitoring.serviceMonitor.enabled": True})
    for obj in objs:
        labels = obj["metadata"]["labels"]
        assert labels["helm.sh/chart"] == f"modeldeploy-{yaml.safe_load((CHART / 'Chart.yaml').read_text())['version']}"
        assert labels["app.kubernetes.io/name"] == "modeldeploy"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/version"] == APP_VERSION
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/part-of"] == "modeldeploy"


def test_service_accounts(render: Render) -> None:
    objs = render()
    assert only(objs, "ServiceAccount", OPERATOR)["automountServiceAccountToken"] is True
    server = only(objs, "ServiceAccount", "modeldeploy-server")
    assert server["automountServiceAccountToken"] is False
    subjects = [s for o in objs if o["kind"] in ("ClusterRoleBinding", "RoleBinding") for s in o["subjects"]]
    assert subjects == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]


def test_cluster_role_rules_are_exactly_what_the_operator_uses(render: Render) -> None:
    objs = render()
    role = only(objs, "ClusterRole")
    assert role["rules"] == EXPECTED_RULES
    binding = only(objs, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": OPERATOR}


def assert_least_privilege(rules: list[Obj]) -> None:
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert not any("*" in item for item in rule[key]), rule
        assert not {"secrets", "configmaps", "serviceaccounts", "pods/exec", "pods/proxy", "services/proxy"} & set(
            rule["resources"]), rule
        assert not {"deletecollection", "update", "escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
        if "pods" in rule["resources"]:
            assert rule["verbs"] == ["list"], rule  # reads pod IPs for canary analysis, nothing else
        assert "nonResourceURLs" not in rule and "resourceNames" not in rule


def test_no_wildcards_no_secrets_in_any_mode(render: Render) -> None:
    for values in ({}, {"watchNamespaces": ["a", "b"]}):
        roles = [o for o in render(**values) if o["kind"] in ("ClusterRole", "Role")]
        assert roles
        for role in roles:
            assert_least_privilege(role["rules"])


def test_no_secret_objects_and_crd_only_with_include_crds(helm_bin: Path, render: Render) -> None:
    objs = render(**{"networkPolicy.enabled": True, "monitoring.podMonitor.enabled": True})
    assert not [o for o in objs if o["kind"] == "Secret"]
    out = helm(helm_bin, "template", RELEASE, str(CHART), "--include-crds").stdout
    crds = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "CustomResourceDefinition"]
    assert [d["metadata"]["name"] for d in crds] == [f"{c.PLURAL}.{c.GROUP}"]


# ---------------------------------------------------------------- watchNamespaces


def test_watch_namespaces_gives_namespaced_roles_and_arguments(render: Render) -> None:
    objs = render(watchNamespaces=["team-a", "team-b"])
    assert not [o for o in objs if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for ns in ("team-a", "team-b"):
        assert only(objs, "Role", OPERATOR, ns)["rules"] == EXPECTED_RULES
        binding = only(objs, "RoleBinding", OPERATOR, ns)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": OPERATOR}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]
        assert only(objs, "ServiceAccount", "modeldeploy-server", ns)["automountServiceAccountToken"] is False
    assert operator_container(objs)["args"] == [
        "--liveness", "http://0.0.0.0:8081/healthz", "--namespace", "team-a", "--namespace", "team-b"]
    # the operator's own ServiceAccount stays in the release namespace
    only(objs, "ServiceAccount", OPERATOR, NAMESPACE)


def test_operator_disabled_keeps_identity_and_rbac(render: Render) -> None:
    objs = render(**{"operator.enabled": False})
    assert {k for k, _, _ in kinds(objs)} == {"ClusterRole", "ClusterRoleBinding", "ServiceAccount"}


def test_extra_args_liveness_address_and_image_values(render: Render) -> None:
    ctr = operator_container(render(**{"operator.extraArgs": ["--resync-seconds", "30"],
                                       "operator.liveness": {"bindAddress": "$(POD_IP)", "port": 9000},
                                       "image.tag": "dev", "image.pullPolicy": "Never"}))
    assert ctr["args"] == ["--liveness", "http://$(POD_IP):9000/healthz", "--resync-seconds", "30"]
    assert ctr["ports"][0]["containerPort"] == 9000
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in ctr["env"]
    assert (ctr["image"], ctr["imagePullPolicy"]) == ("ghcr.io/modeldeploy/operator:dev", "Never")


# ---------------------------------------------------------------- monitoring and network policy


def sample_children() -> tuple[Obj, Obj]:
    md = {"apiVersion": c.API_VERSION, "kind": c.KIND,
          "metadata": {"name": "iris", "namespace": "team-a", "uid": "u1", "generation": 1},
          "spec": {"model": {"name": "iris", "version": "1.0.0", "uri": "https://m.example/iris.joblib",
                             "sha256": "a" * 64}}}
    return build_deployment(md), build_service(md)


def test_monitors_select_what_the_operator_creates(render: Render) -> None:
    objs = render(**{"monitoring.podMonitor.enabled": True, "monitoring.serviceMonitor.enabled": True})
    deployment, service = sample_children()
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    container_ports = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    pm = only(objs, "PodMonitor")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert pm["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pm["spec"]["namespaceSelector"] == {"any": True}
    assert [(e["port"], e["path"]) for e in pm["spec"]["podMetricsEndpoints"]] == [("http", "/metrics")]
    assert "http" in container_ports
    sm = only(objs, "ServiceMonitor")
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [(e["port"], e["path"]) for e in sm["spec"]["endpoints"]] == [("http", "/metrics")]
    assert "http" in {p["name"] for p in service["spec"]["ports"]}
    # the operator's own pods are not scraped: they have no metrics
    operator_labels = only(render(), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not pm["spec"]["selector"]["matchLabels"].items() <= operator_labels.items()


def test_monitoring_and_network_policy_are_off_by_default(render: Render) -> None:
    assert not [o for o in render() if o["kind"] in ("PodMonitor", "ServiceMonitor", "NetworkPolicy")]


def test_monitors_follow_watch_namespaces(render: Render) -> None:
    pm = only(render(watchNamespaces=["team-a"], **{"monitoring.podMonitor.enabled": True}), "PodMonitor")
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}


def test_network_policies(render: Render) -> None:
    objs = render(watchNamespaces=["team-a", "team-b"],
                  **{"networkPolicy.enabled": True, "networkPolicy.apiServer.cidrs": ["10.0.0.1/32"]})
    deployment, _ = sample_children()
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    op = only(objs, "NetworkPolicy", OPERATOR, NAMESPACE)
    operator_pod_labels = only(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert op["spec"]["podSelector"]["matchLabels"].items() <= operator_pod_labels.items()
    assert sorted(op["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert op["spec"]["ingress"] == [{"ports": [{"port": "healthz", "protocol": "TCP"}]}]
    api, servers = op["spec"]["egress"]
    assert api == {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}],
                   "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]}
    assert servers["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert servers["to"][0]["namespaceSelector"] == {}
    assert servers["to"][0]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    for ns in ("team-a", "team-b"):
        np = only(objs, "NetworkPolicy", "md-modeldeploy-servers", ns)
        assert np["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        assert np["spec"]["policyTypes"] == ["Ingress"]
        assert np["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]


def test_network_policy_server_ingress_sources(render: Render) -> None:
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}
    objs = render(**{"networkPolicy.enabled": True, "networkPolicy.serverIngressFrom": [peer]})
    np = only(objs, "NetworkPolicy", "md-modeldeploy-servers", NAMESPACE)
    operator_peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
                     "podSelector": {"matchLabels": only(objs, "Deployment")["spec"]["selector"]["matchLabels"]}}
    assert np["spec"]["ingress"][0]["from"] == [peer, operator_peer]  # the operator scrapes /metrics
    assert "to" not in only(objs, "NetworkPolicy", OPERATOR)["spec"]["egress"][0]  # no CIDRs: any address


# ---------------------------------------------------------------- values.schema.json

BAD_VALUES = [
    ({"operator.replicas": -1}, "/operator/replicas", "minimum"),
    ({"operator.replicas": 2}, "/operator/replicas", "maximum"),
    ({"operator.replicas": "one"}, "/operator/replicas", "want integer"),
    ({"image.pullPolicy": "Sometimes"}, "/image/pullPolicy", "IfNotPresent"),
    ({"replicaCount": 1}, "additional properties 'replicaCount' not allowed", ""),
    ({"watchNamespaces": "team-a"}, "/watchNamespaces", "want array"),
    ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0", "does not match pattern"),
    ({"operator.enabled": "yes"}, "/operator/enabled", "want boolean"),
    ({"networkPolicy.apiServer.ports": [0]}, "/networkPolicy/apiServer/ports/0", "minimum"),
    ({"monitoring.podMonitor.interval": "soon"}, "/monitoring/podMonitor/interval", "does not match pattern"),
    ({"operator.resources": {"request": {}}}, "additional properties 'request' not allowed", ""),
]


@pytest.mark.parametrize(("values", "where", "what"), BAD_VALUES, ids=[w for _, w, _ in BAD_VALUES])
def test_schema_rejects_bad_values_readably(helm_bin: Path, values: dict[str, Any], where: str, what: str) -> None:
    res = helm(helm_bin, "template", RELEASE, str(CHART), *set_args(values), check=False)
    assert res.returncode != 0, f"accepted {values}"
    assert "values don't meet the specifications of the schema" in res.stderr, res.stderr
    assert where in res.stderr and what in res.stderr, res.stderr


def test_schema_accepts_the_documented_values(helm_bin: Path) -> None:
    """Every key in values.yaml validates (the schema is not stricter than the defaults)."""
    helm(helm_bin, "template", RELEASE, str(CHART), "-f", str(CHART / "values.yaml"))

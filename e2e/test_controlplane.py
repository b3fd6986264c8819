"""The local control plane itself: versions, loopback-only addressing, and pods run for real."""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from controlplane import Cluster, LocalCluster, wait_until

NS = "controlplane-test"
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
HTTP_SERVER = ["python3", "-m", "http.server", "8000", "--bind", "$(POD_IP)", "--directory", "/"]


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    cluster.kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=true", timeout=120)
    cluster.create_namespace(NS)
    yield NS
    cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def get(cluster: Cluster, *args: str) -> Any:
    return cluster.kubectl_json("-n", NS, "get", *args)


def pods(cluster: Cluster, selector: str) -> list[dict[str, Any]]:
    return list(get(cluster, "pods", "-l", selector)["items"])


def http_status(ip: str, port: int, path: str = "/") -> int | None:
    """GET without any proxy (http.client ignores *_PROXY), loopback targets only."""
    assert ipaddress.ip_address(ip) in LOOPBACK, f"{ip} is not loopback"
    conn = http.client.HTTPConnection(ip, port, timeout=3)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def processes_with_env(entry: str) -> list[int]:
    """Pids whose environment has `entry` (e.g. POD_IP=127.10.0.3): the pod's processes."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.encode() in environ:
            out.append(int(pid))
    return out


def deployment(name: str, replicas: int, readiness_path: str = "/") -> str:
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          replicas: {replicas}
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              terminationGracePeriodSeconds: 5
              containers:
              - name: web
                image: python:3.11-slim
                command: {json.dumps(HTTP_SERVER)}
                ports: [{{name: http, containerPort: 8000}}]
                readinessProbe:
                  httpGet: {{path: "{readiness_path}", port: http}}
                  periodSeconds: 1
                  failureThreshold: 2
        ---
        apiVersion: v1
        kind: Service
        metadata: {{name: {name}}}
        spec:
          selector: {{app: {name}}}
          ports: [{{name: http, port: 80, targetPort: http}}]
        """)


def test_apiserver_is_the_pinned_version_on_loopback(cluster: Cluster) -> None:
    version = cluster.kubectl_json("version")
    assert version["serverVersion"]["gitVersion"] == "v1.34.4"
    server = cluster.kubectl("config", "view", "--minify", "-o",
                             "jsonpath={.clusters[0].cluster.server}").stdout
    assert server.startswith("https://127.0.0.1:"), server


def test_node_is_ready_and_all_its_addresses_are_loopback(cluster: Cluster) -> None:
    nodes = cluster.kubectl_json("get", "nodes")["items"]
    assert len(nodes) == 1
    node = nodes[0]
    conds = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conds["Ready"] == "True"
    ips = [a["address"] for a in node["status"]["addresses"] if a["type"] != "Hostname"]
    assert ips and all(ipaddress.ip_address(ip) in LOOPBACK for ip in ips), ips
    assert all(ipaddress.IPv4Network(c).subnet_of(LOOPBACK) for c in node["spec"]["podCIDRs"])
    # No kubelet API port: the apiserver has nothing to proxy logs/exec/port-forward to.
    assert node["status"].get("daemonEndpoints", {}).get("kubeletEndpoint", {}).get("Port", 0) == 0
    # The `kubernetes` Service lives in the (loopback) service CIDR too.
    cluster_ip = cluster.kubectl_json("get", "service", "kubernetes")["spec"]["clusterIP"]
    assert ipaddress.ip_address(cluster_ip) in LOOPBACK


def test_deployment_becomes_available_and_every_pod_serves_on_its_own_loopback_ip(
    cluster: Cluster, ns: str
) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=deployment("web", 2))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Available", "deployment/web",
                    "--timeout=90s", timeout=120)
    running = pods(cluster, "app=web")
    assert len(running) == 2
    ips = [p["status"]["podIP"] for p in running]
    assert len(set(ips)) == 2, ips
    for pod, ip in zip(running, ips, strict=True):
        assert ipaddress.ip_address(ip) in LOOPBACK
        if isinstance(cluster, LocalCluster):
            assert ipaddress.ip_address(ip) in ipaddress.ip_network(cluster.pod_cidr)
        assert pod["status"]["hostIP"] == "127.0.0.1"
        assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"
        assert http_status(ip, 8000) == 200
        # The pod's status is written by the loopback kubelet only; kwok never fakes pods.
        managers = {m["manager"] for m in pod["metadata"].get("managedFields", [])}
        assert not any("kwok" in m for m in managers), managers


def test_service_is_loopback_and_its_endpointslices_list_the_pod_ips(
    cluster: Cluster, ns: str
) -> None:
    svc = get(cluster, "service", "web")
    cluster_ip = ipaddress.ip_address(svc["spec"]["clusterIP"])
    assert cluster_ip in LOOPBACK
    if isinstance(cluster, LocalCluster):
        assert cluster_ip in ipaddress.ip_network(cluster.service_cidr)
    ips = {p["status"]["podIP"] for p in pods(cluster, "app=web")}

    def slice_ips() -> set[str]:
        slices = get(cluster, "endpointslices", "-l", "kubernetes.io/service-name=web")["items"]
        return {
            a
            for s in slices
            for e in s.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready")
            for a in e["addresses"]
        }

    wait_until(lambda: slice_ips() == ips, 60, f"EndpointSlices of web to list {sorted(ips)}",
               hint=lambda: f"slices list {sorted(slice_ips())}")


def test_deleting_the_deployment_kills_its_processes_and_removes_its_pods(
    cluster: Cluster, ns: str
) -> None:
    ips = [p["status"]["podIP"] for p in pods(cluster, "app=web")]
    assert ips and all(processes_with_env(f"POD_IP={ip}") for ip in ips)
    cluster.kubectl("-n", ns, "delete", "deployment", "web")  # pods go by garbage collection
    wait_until(lambda: not pods(cluster, "app=web"), 60, "the pods of web to be deleted")
    for ip in ips:
        assert processes_with_env(f"POD_IP={ip}") == [], f"processes of {ip} survived"
        assert http_status(ip, 8000) is None
    cluster.kubectl("-n", ns, "delete", "service", "web")


def test_failing_readiness_keeps_pod_unready_and_deployment_unavailable(
    cluster: Cluster, ns: str
) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=deployment("unready", 1, "/missing"))

    def running_pod() -> dict[str, Any] | None:
        found = pods(cluster, "app=unready")
        if found and found[0]["status"].get("phase") == "Running":
            return found[0]
        return None

    pod = wait_until(running_pod, 60, "the unready pod to be Running")
    ip = pod["status"]["podIP"]
    wait_until(lambda: http_status(ip, 8000, "/missing") == 404, 30, "the server to answer 404")
    # Several probe periods later it is still not Ready, and so not available.
    wait_until(
        lambda: any(e["reason"] == "Unhealthy" and e.get("count", 1) >= 3
                    for e in get(cluster, "events", "--field-selector",
                                 f"involvedObject.name={pod['metadata']['name']}")["items"]),
        30,
        "3 failed readiness probes",
    )
    pod = pods(cluster, "app=unready")[0]
    conds = {c["type"]: c for c in pod["status"]["conditions"]}
    assert conds["Ready"]["status"] == "False"
    assert conds["ContainersReady"]["status"] == "False"
    assert pod["status"]["containerStatuses"][0]["ready"] is False
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    dep = get(cluster, "deployment", "unready")
    available = {c["type"]: c["status"] for c in dep["status"].get("conditions", [])}
    assert available.get("Available") == "False"
    assert not dep["status"].get("availableReplicas")
    cluster.kubectl("-n", ns, "delete", "deployment/unready", "service/unready")


def test_crashing_container_is_restarted_with_backoff(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: crasher}
        spec:
          containers:
          - name: main
            image: busybox
            command: [sh, -c, "echo crashing; exit 3"]
        """))

    def restarted() -> dict[str, Any] | None:
        st = (get(cluster, "pod", "crasher")["status"].get("containerStatuses") or [{}])[0]
        return st if st.get("restartCount", 0) >= 2 else None

    st = wait_until(restarted, 60, "crasher to be restarted twice")
    assert st["lastState"]["terminated"]["exitCode"] == 3
    assert st["lastState"]["terminated"]["reason"] == "Error"
    wait_until(
        lambda: (get(cluster, "pod", "crasher")["status"]["containerStatuses"][0]["state"]
                 .get("waiting", {}).get("reason")) == "CrashLoopBackOff",
        60,
        "crasher to be in CrashLoopBackOff",
    )
    if isinstance(cluster, LocalCluster):
        assert "crashing" in cluster.pod_log(ns, "crasher", "main").read_text()
    cluster.kubectl("-n", ns, "delete", "pod", "crasher", "--wait=true", timeout=60)


def test_liveness_failure_restarts_the_container(cluster: Cluster, ns: str) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: unlively}}
        spec:
          terminationGracePeriodSeconds: 3
          containers:
          - name: web
            image: python:3.11-slim
            command: {json.dumps(HTTP_SERVER)}
            startupProbe: {{tcpSocket: {{port: 8000}}, periodSeconds: 1, failureThreshold: 30}}
            livenessProbe: {{httpGet: {{path: /nope, port: 8000}}, periodSeconds: 1,
                            failureThreshold: 2}}
        """))

    def restarted() -> dict[str, Any] | None:
        st = (get(cluster, "pod", "unlively")["status"].get("containerStatuses") or [{}])[0]
        return st if st.get("restartCount", 0) >= 1 else None

    st = wait_until(restarted, 60, "unlively to be restarted by its liveness probe")
    # http.server dies of the SIGTERM: 128 + 15
    assert st["lastState"]["terminated"]["exitCode"] == 143
    cluster.kubectl("-n", ns, "delete", "pod", "unlively", "--wait=true", timeout=60)


def test_env_expansion_volumes_and_read_only_root(cluster: Cluster, ns: str) -> None:
    script = (
        # $(GREETING) is expanded by the kubelet before sh runs; $COMBINED etc. by sh
        'echo $(GREETING) $COMBINED "$LITERAL_REF" $PASSWORD $MY_NS $MODELDEPLOY_HOST;'
        "cat /etc/conf/app.conf; echo;"
        "cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo;"
        "echo cached > /var/cache/modeldeploy/x && cat /var/cache/modeldeploy/x;"
        "echo temp > /tmp/t && cat /tmp/t;"
        "touch /usr/forbidden 2>/dev/null || echo root-is-read-only"
    )
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=textwrap.dedent(f"""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: cfg}}
        data: {{greeting: hello, app.conf: "level=debug"}}
        ---
        apiVersion: v1
        kind: Secret
        metadata: {{name: creds}}
        stringData: {{password: s3cret}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: envtest}}
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: busybox
            command: [sh, -c, {json.dumps(script)}]
            env:
            - {{name: GREETING, valueFrom: {{configMapKeyRef: {{name: cfg, key: greeting}}}}}}
            - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}}}
            - {{name: MY_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
            - {{name: MY_NS, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
            - {{name: COMBINED, value: "$(GREETING)-$(MY_NAME)"}}
            - {{name: LITERAL_REF, value: "$$(MY_NAME)"}}
            securityContext: {{readOnlyRootFilesystem: true}}
            volumeMounts:
            # /tmp first: the kubelet's own workdir (the volumes' sources) may be under /tmp
            - {{name: tmp, mountPath: /tmp}}
            - {{name: cache, mountPath: /var/cache/modeldeploy}}
            - {{name: conf, mountPath: /etc/conf}}
          volumes:
          - {{name: tmp, emptyDir: {{}}}}
          - {{name: cache, emptyDir: {{}}}}
          - {{name: conf, configMap: {{name: cfg}}}}
        """))
    wait_until(lambda: get(cluster, "pod", "envtest")["status"].get("phase") == "Succeeded", 60,
               "envtest to succeed")
    if isinstance(cluster, LocalCluster):
        ip = get(cluster, "pod", "envtest")["status"]["podIP"]
        lines = cluster.pod_log(ns, "envtest", "main").read_text().splitlines()
        assert lines == [
            f"hello hello-envtest $(MY_NAME) s3cret {ns} {ip}",
            "level=debug",
            ns,
            "cached",
            "temp",
            "root-is-read-only",
        ]
    cluster.kubectl("-n", ns, "delete", "pod", "envtest", "--wait=true", timeout=60)


def test_deletion_sends_sigterm_and_waits_for_a_graceful_exit(cluster: Cluster, ns: str) -> None:
    code = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    print('got SIGTERM, cleaning up', flush=True); time.sleep(1); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('up', flush=True)\n"
        "while True: time.sleep(1)\n"
    )
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: graceful}}
        spec:
          terminationGracePeriodSeconds: 10
          containers:
          - name: main
            image: python:3.11-slim
            command: [python3, -c, {json.dumps(code)}]
        """))
    wait_until(lambda: get(cluster, "pod", "graceful")["status"].get("phase") == "Running", 60,
               "graceful to run")
    ip = get(cluster, "pod", "graceful")["status"]["podIP"]
    if isinstance(cluster, LocalCluster):
        log = cluster.pod_log(ns, "graceful", "main")
        wait_until(lambda: "up" in log.read_text(), 30, "graceful to print 'up'")
    cluster.kubectl("-n", ns, "delete", "pod", "graceful", "--wait=true", timeout=60)
    assert processes_with_env(f"POD_IP={ip}") == []
    if isinstance(cluster, LocalCluster):
        assert "got SIGTERM, cleaning up" in cluster.pod_log(ns, "graceful", "main").read_text()


def test_kubelet_restart_kills_orphans_and_reruns_pods_on_the_same_ip(
    cluster: Cluster, ns: str
) -> None:
    if not isinstance(cluster, LocalCluster):
        pytest.skip("needs a LocalCluster to restart its kubelet")
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: survivor}}
        spec:
          containers:
          - name: web
            image: python:3.11-slim
            command: {json.dumps(HTTP_SERVER)}
            readinessProbe: {{tcpSocket: {{port: 8000}}, periodSeconds: 1}}
        """))
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/survivor", "--timeout=60s",
                    timeout=90)
    ip = get(cluster, "pod", "survivor")["status"]["podIP"]
    before = processes_with_env(f"POD_IP={ip}")
    assert before
    cluster.restart_kubelet()

    def rerun() -> bool:
        st = get(cluster, "pod", "survivor")["status"]
        cs = st["containerStatuses"][0]
        return bool(cs["restartCount"] == 1 and cs["ready"] and st["podIP"] == ip)

    wait_until(rerun, 60, "survivor to run again, Ready, restartCount 1, same IP")
    after = processes_with_env(f"POD_IP={ip}")
    assert after and not set(before) & set(after), (before, after)
    assert http_status(ip, 8000) == 200
    cluster.kubectl("-n", ns, "delete", "pod", "survivor", "--wait=true", timeout=60)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "a"),
        ("x$(A)y$(B)z", "xaybz"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$a"),
        ("$(UNSET)", "$(UNSET)"),
        ("$(A", "$(A"),
        ("$A", "$A"),
        ("$", "$"),
        ("a$$b", "a$b"),
        ("$()", "$()"),
    ],
)
def test_dollar_paren_expansion_follows_kubernetes(text: str, expected: str) -> None:
    from controlplane.kubelet.env import expand

    assert expand(text, {"A": "a", "B": "b"}) == expected


def test_pod_ips_are_unique_loopback_and_not_reused_at_once() -> None:
    from controlplane.kubelet.ipam import Ipam

    ipam = Ipam("127.200.0.0/16")
    first = ipam.allocate("a")
    second = ipam.allocate("b")
    assert first != second and ipam.allocate("a") == first
    ipam.release("a")
    assert ipam.allocate("c") not in (first, second)
    assert ipam.allocate("d", prefer=first) == first  # a restarted kubelet keeps a pod's IP
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        Ipam("10.0.0.0/24")


def test_termination_message_is_reported_like_the_kubelet_does(cluster: Cluster, ns: str) -> None:
    """What a container writes to its terminationMessagePath ends up in its terminated state (Jobs read it)."""
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: term}
        spec:
          restartPolicy: Never
          containers:
          - name: writes
            image: busybox
            command: [sh, -c, 'echo "{\\"score\\": 0.93}" > /dev/termination-log']
          - name: fails
            image: busybox
            command: [sh, -c, 'echo last words; exit 3']
            terminationMessagePolicy: FallbackToLogsOnError
        """))
    wait_until(lambda: get(cluster, "pod", "term")["status"].get("phase") == "Failed", 60, "term to finish")
    states = {s["name"]: s["state"]["terminated"] for s in get(cluster, "pod", "term")["status"]["containerStatuses"]}
    assert json.loads(states["writes"]["message"]) == {"score": 0.93} and states["writes"]["exitCode"] == 0
    assert states["fails"]["exitCode"] == 3 and states["fails"]["message"].strip() == "last words"
    cluster.kubectl("-n", ns, "delete", "pod", "term", "--wait=true", timeout=60)


def test_a_volume_over_the_checkout_does_not_hide_the_image(cluster: Cluster, ns: str) -> None:
    """The project's checkout and venv stand in for the image: an emptyDir mounted over their parent
    directory (as /tmp is, when CI clones under /tmp) must not make `modeldeploy` vanish."""
    parent = str(Path(__file__).resolve().parents[1].parent)
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: shadow}}
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: modeldeploy/server
            command: [modeldeploy, crd]
            securityContext: {{readOnlyRootFilesystem: true}}
            volumeMounts: [{{name: scratch, mountPath: {json.dumps(parent)}}}]
          volumes: [{{name: scratch, emptyDir: {{}}}}]
        """))
    wait_until(lambda: get(cluster, "pod", "shadow")["status"].get("phase") in ("Succeeded", "Failed"), 60,
               "shadow to finish")
    assert get(cluster, "pod", "shadow")["status"]["phase"] == "Succeeded"
    cluster.kubectl("-n", ns, "delete", "pod", "shadow", "--wait=true", timeout=60)

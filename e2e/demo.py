"""`make up` / `make down`: the whole product on this machine, with no cloud account and no Docker.

up: local control plane (built from Kubernetes' Go modules) -> CRD -> the operator -> an example
model trained here and served over HTTP on loopback -> the sample ModelDeployment, Ready.
Everything lives under .local/ and keeps running until `make down`.
"""

from __future__ import annotations

import argparse
import os
import signal
import string
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "e2e"), str(ROOT / "examples")]

from controlplane.cluster import LocalCluster  # noqa: E402
from train_iris import train  # noqa: E402

LOCAL = ROOT / ".local"
CLUSTER_DIR = LOCAL / "cluster"
MODELS_DIR = LOCAL / "models"
MODEL_PORT = int(os.environ.get("MODELDEPLOY_DEMO_MODEL_PORT", "18765"))
OPERATOR_HEALTH_PORT = int(os.environ.get("MODELDEPLOY_DEMO_OPERATOR_PORT", "18081"))
BIN = Path(sys.executable).parent


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def background(name: str, args: list[str], env: dict[str, str]) -> None:
    """Start a process that outlives `make up`, with a pid file and a log under .local/."""
    stop_background(name)  # a second `make up` replaces, never duplicates
    with (LOCAL / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=ROOT)
    (LOCAL / f"{name}.pid").write_text(str(proc.pid))


def stop_background(name: str) -> None:
    pid_file = LOCAL / f"{name}.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    try:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(50):
            os.killpg(pid, 0)
            time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pid_file.unlink()
    say(f"stopped {name}")


def running_cluster() -> LocalCluster | None:
    """The cluster a previous `make up` left running, so that `make up` can be run again."""
    if not (CLUSTER_DIR / "cluster.json").exists():
        return None
    cluster = LocalCluster.attach(CLUSTER_DIR)
    alive = cluster.running()
    return cluster if alive and all(alive.values()) else None


def bin_dir() -> Path:
    out = subprocess.run(["bash", str(ROOT / "e2e/controlplane/build.sh")], check=True, text=True,
                         stdout=subprocess.PIPE)
    return Path(out.stdout.strip().splitlines()[-1])


def up() -> None:
    LOCAL.mkdir(exist_ok=True)
    say("building (first time only) and starting the local control plane")
    cluster = running_cluster() or LocalCluster(CLUSTER_DIR, bin_dir())
    if not cluster.running():
        cluster.start(watchdog=False)
    else:
        say("reusing the control plane already running in .local/cluster")
    env = {**os.environ, **cluster.env}
    say("installing the ModelDeployment CRD")
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modeldeploy.dev", "--timeout=60s")

    say("starting the operator")
    background("operator", [str(BIN / "modeldeploy"), "operator", "--liveness",
                            f"http://127.0.0.1:{OPERATOR_HEALTH_PORT}/healthz"], env)

    say("training the example model and serving it on loopback")
    path, digest = train("1.0.0", MODELS_DIR)
    background("model-files", [sys.executable, "-m", "http.server", str(MODEL_PORT), "--bind", "127.0.0.1",
                               "--directory", str(MODELS_DIR)], env)
    uri = f"http://127.0.0.1:{MODEL_PORT}/{path.name}"

    say(f"applying the sample ModelDeployment (model {uri}, sha256 {digest[:12]}…)")
    manifest = string.Template((ROOT / "examples/iris.yaml").read_text()).substitute(MODEL_URI=uri,
                                                                                      MODEL_SHA256=digest)
    cluster.kubectl("apply", "-f", "-", input=manifest)
    cluster.kubectl("wait", "--for=condition=Ready", "md/iris", "--timeout=300s")
    print(cluster.kubectl("get", "modeldeployments").stdout)
    ip = cluster.kubectl("get", "pods", "-l", "modeldeploy.dev/modeldeployment=iris",
                         "-o", "jsonpath={.items[0].status.podIP}").stdout
    print(f"""The model is serving. Try:
  export KUBECONFIG={cluster.kubeconfig} PATH={cluster.bin_dir}:$PATH
  kubectl get md -o wide
  curl -s http://{ip}:8080/predict -H 'content-type: application/json' -d '{{"features": [5.1, 3.5, 1.4, 0.2]}}'
  make down   # stops everything""")


def down() -> None:
    stop_background("operator")
    stop_background("model-files")
    if (CLUSTER_DIR / "cluster.json").exists():
        LocalCluster.attach(CLUSTER_DIR).stop()
        say("stopped the local control plane")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down"])
    args = parser.parse_args()
    up() if args.action == "up" else down()


if __name__ == "__main__":
    main()

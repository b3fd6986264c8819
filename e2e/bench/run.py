#!/usr/bin/env python3
"""Benchmark modeldeploy's server against MLServer, KServe and a naive FastAPI app (issue 3, items 5-6).

    python e2e/bench/run.py            # 3 repetitions, medians (~12-15 min on 2 cores)
    python e2e/bench/run.py --quick    # 1 repetition, short runs (~3 min)
    python e2e/bench/run.py --tune     # sweep each server's knobs on single rows at c=64 (pick configs)

Standard library only. On first use it creates one venv per peer under .local/bench/ from the pinned
e2e/bench/requirements-*.txt (cached by the files' hash), trains the two models with fixed seeds in the
naive venv, then starts one server at a time on 127.0.0.1, checks its answer, warms it up and drives it
with wrk (post.lua) at concurrency 1, 8 and 64 with single rows and at 8 with 100-row batches. The RSS
of the server's process tree is read from /proc after each load. It prints one table (medians over the
repetitions, ratios ours/peer) and the targets of issue 3 item 6; raw numbers go to .local/bench/.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WORK = REPO / ".local" / "bench"
OURS_VENV = REPO / ".venv"
HOST = "127.0.0.1"

PEERS = ("mlserver", "kserve", "naive")
SERVERS = ("ours", "mlserver", "kserve", "naive")
MODELS = ("rf", "lr")
MODEL_TITLES = {"rf": "RandomForest", "lr": "LogisticRegression"}
BATCH_ROWS = 100


@dataclass(frozen=True)
class Scenario:
    name: str
    concurrency: int
    batch: bool

    @property
    def title(self) -> str:
        return f"{BATCH_ROWS}-row batch c={self.concurrency}" if self.batch else f"1 row c={self.concurrency}"


SCENARIOS = (
    Scenario("c1", 1, False),
    Scenario("c8", 8, False),
    Scenario("c64", 64, False),
    Scenario("batch_c8", 8, True),
)


@dataclass
class Config:
    """Each server's knobs (defaults: the best found by --tune on this machine, see docs/benchmark.md)."""

    ours_workers: int = 1
    mlserver_parallel_workers: int = 0
    mlserver_max_batch_size: int = 64
    mlserver_max_batch_time_ms: float = 1.0
    mlserver_outputs: str = "predict,predict_proba"
    kserve_workers: int = 2
    naive_workers: int = 1

    def describe(self, server: str) -> str:
        if server == "ours":
            return f"modeldeploy serve --workers {self.ours_workers} (micro-batching defaults: 64 rows / 2 ms)"
        if server == "mlserver":
            return (
                f"parallel_workers={self.mlserver_parallel_workers}, adaptive batching max_batch_size="
                f"{self.mlserver_max_batch_size} max_batch_time={self.mlserver_max_batch_time_ms / 1000:g}s, "
                f"debug=false, gzip off, outputs {self.mlserver_outputs}"
            )
        if server == "kserve":
            return f"kserve.ModelServer workers={self.kserve_workers}, gRPC off, latency logging off"
        return f"uvicorn naive_app:app --workers {self.naive_workers} --no-access-log"


@dataclass
class Timing:
    reps: int = 3
    duration_s: int = 5
    warmup_s: int = 2


@dataclass
class Result:
    server: str
    model: str
    scenario: str
    rep: int
    rps: float
    p50_ms: float
    p99_ms: float
    rss_mb: float
    pss_mb: float
    errors: int
    raw: dict[str, Any] = field(default_factory=dict)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- environments --------------------------------------------------------------------------------


def base_python() -> str:
    """A Python 3.11 to build the peer venvs with (the pins were frozen on 3.11)."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if not found:
        sys.exit("run.py: needs a python3.11 for the peer venvs (pins were frozen on 3.11)")
    return found


def ensure_venv(peer: str) -> Path:
    req = HERE / f"requirements-{peer}.txt"
    venv = WORK / f"venv-{peer}"
    stamp = venv / f".installed-{hashlib.sha256(req.read_bytes()).hexdigest()[:12]}"
    if stamp.exists():
        return venv
    log(f"creating {venv.relative_to(REPO)} from {req.relative_to(REPO)} (once)")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([base_python(), "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(req)], check=True)
    stamp.touch()
    return venv


def ensure_tools() -> None:
    if not shutil.which("wrk"):
        log("wrk is missing: apt-get install -y wrk")
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False)
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update", "-q"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True)
    if not (OURS_VENV / "bin" / "modeldeploy").exists():
        sys.exit("run.py: /work/main/.venv has no modeldeploy: run `make venv` first")


def ensure_models(naive_venv: Path) -> dict[str, Any]:
    out = WORK / "models"
    train = HERE / "train.py"
    key = hashlib.sha256(train.read_bytes() + (HERE / "requirements-naive.txt").read_bytes()).hexdigest()[:12]
    meta_path = out / "meta.json"
    stamp = out / f".trained-{key}"
    if not stamp.exists():
        log("training the models (fixed seeds)")
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([str(naive_venv / "bin" / "python"), str(train), str(out)], check=True)
        stamp.touch()
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    for name, info in meta["models"].items():
        digest = hashlib.sha256(Path(info["path"]).read_bytes()).hexdigest()
        if digest != info["sha256"]:
            sys.exit(f"run.py: {info['path']} does not match its recorded sha256")
        log(f"model {name}: {info['class']} sha256 {digest[:16]}...")
    return meta


def versions() -> dict[str, str]:
    """Installed versions of the packages that matter, per server."""
    wanted = {
        "ours": ["modeldeploy", "fastapi", "uvicorn", "scikit-learn", "numpy"],
        "mlserver": ["mlserver", "mlserver-sklearn", "fastapi", "uvicorn", "scikit-learn", "numpy"],
        "kserve": ["kserve", "fastapi", "uvicorn", "scikit-learn", "numpy"],
        "naive": ["fastapi", "uvicorn", "scikit-learn", "numpy"],
    }
    out: dict[str, str] = {}
    for server, names in wanted.items():
        venv = OURS_VENV if server == "ours" else WORK / f"venv-{server}"
        code = "import importlib.metadata as m, sys\nprint(', '.join(f'{n} {m.version(n)}' for n in sys.argv[1:]))"
        proc = subprocess.run(
            [str(venv / "bin" / "python"), "-c", code, *names], capture_output=True, text=True, check=False
        )
        out[server] = proc.stdout.strip() or proc.stderr.strip().splitlines()[-1]
    out["wrk"] = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.split(" [")[0]
    out["python"] = sys.version.split()[0]
    return out


# -- request bodies ------------------------------------------------------------------------------


def v2_body(rows: list[list[float]], outputs: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), len(rows[0])],
                "datatype": "FP32",
                "data": [v for row in rows for v in row],
            }
        ]
    }
    if outputs:
        body["outputs"] = [{"name": name} for name in outputs.split(",")]
    return body


def body_for(server: str, meta: dict[str, Any], batch: bool, cfg: Config) -> tuple[str, dict[str, Any]] | None:
    """(path suffix, JSON body) for one request of this server's protocol; None if it has no such call."""
    rows = meta["batch"] if batch else [meta["row"]]
    if server == "ours":
        return ("/predict/batch", {"instances": rows}) if batch else ("/predict", {"features": rows[0]})
    if server == "naive":
        return None if batch else ("/predict", {"features": rows[0]})
    outputs = cfg.mlserver_outputs if server == "mlserver" else "predict,predict_proba"
    return ("/v2/models/{model}/infer", v2_body(rows, outputs))


def labels_of(server: str, response: dict[str, Any], batch: bool) -> list[int]:
    if server in ("ours", "naive"):
        if batch:
            return [int(v) for v in response["predictions"]]
        return [int(response["prediction"])]
    for out in response["outputs"]:
        if out["name"] == "predict":
            data = out["data"]
            return [int(v) for v in (data if batch else data[:1])]
    # predict_proba only: the label is the arg max
    proba = next(o for o in response["outputs"] if o["name"] == "predict_proba")
    n = proba["shape"][1]
    flat = proba["data"]
    return [max(range(n), key=lambda j, i=i: flat[i * n + j]) for i in range(len(flat) // n)]


# -- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    server: str
    model: str
    proc: subprocess.Popen[bytes]
    port: int
    ready_path: str
    log_path: Path

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path.format(model=self.model)}"


def launch(server: str, model: str, meta: dict[str, Any], cfg: Config, tag: str) -> Running:
    info = meta["models"][model]
    port = free_port()
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{tag}-{server}-{model}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELDEPLOY_", "MLSERVER_"))}
    env["PYTHONUNBUFFERED"] = "1"
    cwd = WORK
    if server == "ours":
        cmd = [
            str(OURS_VENV / "bin" / "modeldeploy"), "serve", "--model", info["path"], "--sha256", info["sha256"],
            "--name", model, "--version", "1", "--host", HOST, "--port", str(port),
            "--workers", str(cfg.ours_workers),
        ]  # fmt: skip
        ready = "/ready"
    elif server == "naive":
        venv = WORK / "venv-naive"
        cmd = [
            str(venv / "bin" / "uvicorn"), "naive_app:app", "--app-dir", str(HERE), "--host", HOST,
            "--port", str(port), "--workers", str(cfg.naive_workers), "--no-access-log",
        ]  # fmt: skip
        env["NAIVE_MODEL"] = info["path"]
        ready = "/health"
    elif server == "kserve":
        venv = WORK / "venv-kserve"
        cmd = [
            str(venv / "bin" / "python"), str(HERE / "kserve_app.py"), "--model_name", model,
            "--model_path", info["path"], "--http_port", str(port), "--grpc_port", str(free_port()),
            "--enable_grpc", "false", "--workers", str(cfg.kserve_workers),
            "--enable_latency_logging", "false",
        ]  # fmt: skip
        env["BENCH_HOST"] = HOST
        ready = "/v2/models/{model}/ready"
    elif server == "mlserver":
        venv = WORK / "venv-mlserver"
        repo = WORK / "mlserver-repo" / f"{tag}-{model}"
        shutil.rmtree(repo, ignore_errors=True)
        (repo / model).mkdir(parents=True)
        settings = {
            "host": HOST,
            "http_port": port,
            "grpc_port": free_port(),
            "metrics_port": free_port(),
            "parallel_workers": cfg.mlserver_parallel_workers,
            "debug": False,
            "gzip_enabled": False,
            "metrics_dir": str(repo / ".metrics"),
            "load_models_at_startup": True,
        }
        model_settings = {
            "name": model,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "max_batch_size": cfg.mlserver_max_batch_size,
            "max_batch_time": cfg.mlserver_max_batch_time_ms / 1000.0,
            "parameters": {"uri": info["path"], "version": "1"},
        }
        (repo / "settings.json").write_text(json.dumps(settings, indent=1))
        (repo / model / "model-settings.json").write_text(json.dumps(model_settings, indent=1))
        cmd = [str(venv / "bin" / "mlserver"), "start", str(repo)]
        cwd = repo
        ready = "/v2/models/{model}/ready"
    else:
        raise ValueError(server)
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Running(server, model, proc, port, ready, log_path)


def wait_ready(run: Running, timeout_s: float = 120.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if run.proc.poll() is not None:
            tail = run.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{run.server} exited with {run.proc.returncode} before ready:\n{tail}")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(run.url(run.ready_path), timeout=2) as resp,
        ):
            if resp.status == 200:
                return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"{run.server} not ready after {timeout_s:.0f}s (log: {run.log_path})")


def stop(run: Running) -> None:
    """SIGTERM to the server's own process group (it was started in a new session), SIGKILL if it lingers."""
    if run.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.proc.pid, signal.SIGTERM)
        try:
            run.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait(timeout=10)
    # Worker processes left in the group (none expected) go too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(run.proc.pid, signal.SIGKILL)


def check_answer(run: Running, meta: dict[str, Any], cfg: Config, body_file: dict[bool, Path]) -> None:
    """One request per call kind: the server must answer 200 with the training-time label(s)."""
    info = meta["models"][run.model]
    for batch, path in body_file.items():
        spec = body_for(run.server, meta, batch, cfg)
        assert spec is not None
        req = urllib.request.Request(
            run.url(spec[0]), data=path.read_bytes(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer = json.loads(resp.read())
        got = labels_of(run.server, answer, batch)
        want = info["expected_batch_labels"] if batch else [info["expected_label"]]
        if got != want:
            raise RuntimeError(f"{run.server}/{run.model} answered {got[:5]}..., expected {want[:5]}...")


def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of the process and all its descendants, in MB (RSS counts shared pages per process)."""
    rss = pss = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return rss / 1024.0, pss / 1024.0


def wrk(url: str, body: Path, concurrency: int, duration_s: int, *, many: bool = False) -> dict[str, Any]:
    """One wrk load: `body` is one JSON body, or with `many` a file of bodies (one per line) drawn at random."""
    threads = 1 if concurrency == 1 else 2
    cmd = [
        "wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration_s}s", "--timeout", "10s", "--latency",
        "-s", str(HERE / "post.lua"), url,
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, env={**os.environ, "BENCH_BODIES" if many else "BENCH_BODY": str(body)}, capture_output=True, text=True,
        timeout=duration_s + 60, check=False,
    )  # fmt: skip
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH "):
            data: dict[str, Any] = json.loads(line[len("BENCH ") :])
            data["wrk_stdout"] = proc.stdout
            return data
    raise RuntimeError(f"wrk printed no result (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def write_bodies(meta: dict[str, Any], cfg: Config) -> dict[tuple[str, bool], Path]:
    out = WORK / "bodies"
    out.mkdir(parents=True, exist_ok=True)
    files: dict[tuple[str, bool], Path] = {}
    for server in SERVERS:
        for batch in (False, True):
            spec = body_for(server, meta, batch, cfg)
            if spec is None:
                continue
            path = out / f"{server}-{'batch' if batch else 'row'}.json"
            path.write_text(json.dumps(spec[1], separators=(",", ":")))
            files[(server, batch)] = path
    return files


@contextlib.contextmanager
def serving(server: str, model: str, meta: dict[str, Any], cfg: Config, tag: str) -> Iterator[Running]:
    run = launch(server, model, meta, cfg, tag)
    try:
        took = wait_ready(run)
        log(f"{server}/{model} ready in {took:.1f}s on :{run.port}")
        yield run
    finally:
        stop(run)


def bench_server(
    server: str,
    model: str,
    meta: dict[str, Any],
    cfg: Config,
    timing: Timing,
    bodies: dict[tuple[str, bool], Path],
    rep: int,
    scenarios: tuple[Scenario, ...] = SCENARIOS,
    profile: str | None = None,
) -> list[Result]:
    results: list[Result] = []
    with serving(server, model, meta, cfg, f"r{rep}") as run:
        mine = {batch: path for (s, batch), path in bodies.items() if s == server}
        check_answer(run, meta, cfg, mine)
        path_row = body_for(server, meta, False, cfg)
        assert path_row is not None
        wrk(run.url(path_row[0]), mine[False], 64, timing.warmup_s)
        if True in mine:
            path_batch = body_for(server, meta, True, cfg)
            assert path_batch is not None
            wrk(run.url(path_batch[0]), mine[True], 8, max(1, timing.warmup_s // 2))
        for sc in scenarios:
            spec = body_for(server, meta, sc.batch, cfg)
            if spec is None:
                continue
            spy = None
            if profile and sc.name == profile:
                spy = start_profile(run, sc, timing.duration_s)
            data = wrk(run.url(spec[0]), mine[sc.batch], sc.concurrency, timing.duration_s)
            if spy is not None:
                spy.wait(timeout=120)
                summarize_profile(WORK / f"profile-{server}-{model}-{sc.name}.txt")
            rss, pss = memory_mb(run.proc.pid)
            seconds = data["duration_us"] / 1e6
            rate = data["requests"] / seconds * (BATCH_ROWS if sc.batch else 1)
            errors = sum(data[k] for k in ("non2xx", "connect", "read", "write", "timeout"))
            res = Result(
                server, model, sc.name, rep, rate, data["p50_us"] / 1000, data["p99_us"] / 1000, rss, pss, errors,
                {k: v for k, v in data.items() if k != "wrk_stdout"},
            )  # fmt: skip
            results.append(res)
            unit = "rows/s" if sc.batch else "rps"
            flag = f" ERRORS {errors}" if errors else ""
            log(
                f"  rep {rep} {server:8s} {model} {sc.name:8s} {rate:9.0f} {unit:6s} p50 {res.p50_ms:7.2f} ms "
                f"p99 {res.p99_ms:7.2f} ms RSS {rss:6.0f} MB PSS {pss:6.0f} MB{flag}"
            )
    return results


def start_profile(run: Running, sc: Scenario, duration_s: int) -> subprocess.Popen[bytes]:
    """py-spy (from ours' venv) samples the server's process tree during the scenario's load."""
    out = WORK / f"profile-{run.server}-{run.model}-{sc.name}.txt"
    cmd = [
        str(OURS_VENV / "bin" / "py-spy"), "record", "--subprocesses", "--format", "raw", "-r", "250",
        "-d", str(duration_s), "-o", str(out), "--pid", str(run.proc.pid),
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(path: Path, top: int = 25) -> None:
    """Inclusive share of the samples per function (collapsed stacks from py-spy --format raw)."""
    if not path.exists():
        log(f"py-spy wrote no {path.name}")
        return
    total = 0
    inclusive: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        for frame in {
            f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")" if " (" in f else f
            for f in stack.split(";")
        }:
            inclusive[frame] = inclusive.get(frame, 0) + n
    log(f"profile {path.relative_to(REPO)}: {total} samples; inclusive share per function:")
    for frame, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        log(f"  {100 * n / total:5.1f}%  {frame}")


# -- report --------------------------------------------------------------------------------------


def median_of(results: list[Result], server: str, model: str, scenario: str) -> dict[str, float] | None:
    rows = [r for r in results if (r.server, r.model, r.scenario) == (server, model, scenario)]
    if not rows:
        return None
    return {
        "rps": statistics.median(r.rps for r in rows),
        "p50": statistics.median(r.p50_ms for r in rows),
        "p99": statistics.median(r.p99_ms for r in rows),
        "rss": statistics.median(r.rss_mb for r in rows),
        "pss": statistics.median(r.pss_mb for r in rows),
        "errors": sum(r.errors for r in rows),
        "n": len(rows),
    }


def table(results: list[Result]) -> str:
    head = (
        "| model | load | server | rps (rows/s) | p50 ms | p99 ms | RSS MB | ours/peer throughput "
        "| ours/peer p99 | ours/peer RSS |"
    )
    lines = [head, "|---|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for model in MODELS:
        for sc in SCENARIOS:
            ours = median_of(results, "ours", model, sc.name)
            for server in SERVERS:
                m = median_of(results, server, model, sc.name)
                if m is None:
                    if server == "naive" and sc.batch and ours is not None:
                        lines.append(f"| {MODEL_TITLES[model]} | {sc.title} | naive | n/a (no batch call) |{' |' * 6}")
                    continue
                err = f" ({m['errors']:.0f} errors)" if m["errors"] else ""
                if server == "ours" or ours is None:
                    ratios = "| | | "
                else:
                    ratios = (
                        f"| **{ours['rps'] / m['rps']:.2f}x** | {ours['p99'] / m['p99']:.2f}x "
                        f"| {ours['rss'] / m['rss']:.2f}x "
                    )
                lines.append(
                    f"| {MODEL_TITLES[model]} | {sc.title} | {server} | {m['rps']:,.0f}{err} | {m['p50']:.2f} "
                    f"| {m['p99']:.2f} | {m['rss']:.0f} {ratios}|"
                )
    return "\n".join(lines)


def per_rep(results: list[Result], model: str, sc: str, peers: tuple[str, ...]) -> str:
    """Ours/peer throughput in each repetition (the better peer's when several), to show the spread."""
    rate = {(r.server, r.rep): r.rps for r in results if (r.model, r.scenario) == (model, sc)}
    ratios = []
    for rep in sorted({rep for (server, rep) in rate if server == "ours"}):
        best = max((rate[(p, rep)] for p in peers if (p, rep) in rate), default=None)
        if best:
            ratios.append(f"{rate[('ours', rep)] / best:.2f}")
    return f"; per repetition {', '.join(ratios)}" if len(ratios) > 1 else ""


def targets(results: list[Result]) -> list[tuple[str, bool | None, str]]:
    """Issue 3 item 6, judged on the medians of this run: (target, met, the numbers)."""

    def m(server: str, model: str, sc: str) -> dict[str, float] | None:
        return median_of(results, server, model, sc)

    out: list[tuple[str, bool | None, str]] = []
    o, p = m("ours", "rf", "c64"), m("mlserver", "rf", "c64")
    if o and p:
        r = o["rps"] / p["rps"]
        out.append((
            "RandomForest, 1 row, c=64: >= 2x MLServer (adaptive batching) rps, p99 no worse",
            r >= 2 and o["p99"] <= p["p99"],
            f"{r:.2f}x rps; p99 {o['p99']:.1f} vs {p['p99']:.1f} ms{per_rep(results, 'rf', 'c64', ('mlserver',))}",
        ))  # fmt: skip
    o = m("ours", "lr", "c64")
    peers = [x for x in (m("mlserver", "lr", "c64"), m("kserve", "lr", "c64")) if x]
    if o and peers:
        best = max(x["rps"] for x in peers)
        r = o["rps"] / best
        out.append((
            "LogisticRegression, 1 row, c=64: >= 1.5x the better of MLServer and KServe rps",
            r >= 1.5,
            f"{r:.2f}x ({o['rps']:,.0f} vs {best:,.0f} rps{per_rep(results, 'lr', 'c64', ('mlserver', 'kserve'))})",
        ))  # fmt: skip
    for model in MODELS:
        o, p = m("ours", model, "batch_c8"), m("mlserver", model, "batch_c8")
        if o and p:
            r = o["rps"] / p["rps"]
            spread = per_rep(results, model, "batch_c8", ("mlserver",))
            out.append((
                f"{MODEL_TITLES[model]}, 100-row batches c=8: >= 1.5x MLServer rows/s",
                r >= 1.5,
                f"{r:.2f}x ({o['rps']:,.0f} vs {p['rps']:,.0f} rows/s{spread})",
            ))  # fmt: skip
    worst = []
    for model in MODELS:
        for sc in SCENARIOS:
            o, p = m("ours", model, sc.name), m("mlserver", model, sc.name)
            if o and p:
                worst.append((o["rss"] / p["rss"], model, sc.name, o["rss"], p["rss"]))
    if worst:
        r, model, sc, a, b = max(worst)
        out.append((
            "RSS at most MLServer's (every model and load)",
            r <= 1.0, f"worst {r:.2f}x ({MODEL_TITLES[model]} {sc}: {a:.0f} vs {b:.0f} MB)",
        ))  # fmt: skip
    return out


def report(results: list[Result], cfg: Config, timing: Timing, vers: dict[str, str], argv: list[str]) -> str:
    lines = [table(results), "", "Targets (issue 3 item 6, medians of this run):", ""]
    for name, met, numbers in targets(results):
        mark = "MET" if met else "NOT MET"
        lines.append(f"- {mark}: {name} — {numbers}")
    lines += ["", "Configurations:", ""]
    for server in SERVERS:
        lines.append(f"- {server}: {cfg.describe(server)}; {vers.get(server, '')}")
    lines += [
        "",
        f"{timing.reps} repetition(s) x {timing.duration_s} s per load after a {timing.warmup_s} s warm-up; "
        f"{vers.get('wrk', 'wrk')} on the same cores; Python {vers.get('python')}; "
        f"command: python e2e/bench/run.py {' '.join(argv)}".rstrip(),
    ]
    return "\n".join(lines)


# -- tuning --------------------------------------------------------------------------------------


def tune(meta: dict[str, Any], timing: Timing, servers: tuple[str, ...], only: str | None) -> None:
    """Each server's knobs on RandomForest, single rows at c=64 and 100-row batches at c=8 (medians)."""
    base = Config()
    variants: list[tuple[str, Config]] = []
    for w in (1, 2):
        variants.append((f"ours workers={w}", Config(ours_workers=w)))
    for pw in (0, 1, 2):
        for bt in (1.0, 2.0, 5.0, 10.0):
            variants.append((
                f"mlserver parallel_workers={pw} max_batch_size=64 max_batch_time={bt:g}ms",
                Config(mlserver_parallel_workers=pw, mlserver_max_batch_time_ms=bt),
            ))  # fmt: skip
    variants.append((
        f"mlserver parallel_workers={base.mlserver_parallel_workers} no adaptive batching",
        Config(mlserver_max_batch_size=0, mlserver_max_batch_time_ms=0),
    ))  # fmt: skip
    variants.append((
        f"mlserver parallel_workers={base.mlserver_parallel_workers} "
        f"max_batch_time={base.mlserver_max_batch_time_ms:g}ms outputs=predict_proba only",
        Config(mlserver_outputs="predict_proba"),
    ))  # fmt: skip
    for w in (1, 2):
        variants.append((f"kserve workers={w}", Config(kserve_workers=w)))
    for w in (1, 2):
        variants.append((f"naive workers={w}", Config(naive_workers=w)))
    variants = [(label, cfg) for label, cfg in variants if label.split()[0] in servers]
    if only:
        variants = [(label, cfg) for label, cfg in variants if re.search(only, label)]
    scen = (SCENARIOS[2], SCENARIOS[3])
    results: dict[str, list[Result]] = {label: [] for label, _ in variants}
    failed: dict[str, str] = {}
    for rep in range(timing.reps):
        for label, cfg in variants:
            if label in failed:
                continue
            bodies_v = write_bodies(meta, cfg)
            try:
                results[label] += bench_server(label.split()[0], "rf", meta, cfg, timing, bodies_v, rep, scen)
            except Exception as exc:  # a config that does not start is a result too
                failed[label] = str(exc).splitlines()[0]
    write_bodies(meta, base)
    print(f"| config ({timing.reps} rep, median) | RF 1 row c=64 rps | p99 ms | RF 100-row c=8 rows/s | RSS MB |")
    print("|---|--:|--:|--:|--:|")
    for label, _ in variants:
        if label in failed:
            print(f"| {label} | failed: {failed[label]} | | | |")
            continue
        res = results[label]
        one = median_of(res, label.split()[0], "rf", "c64")
        batch = median_of(res, label.split()[0], "rf", "batch_c8")
        assert one is not None
        rows = f"{batch['rps']:,.0f}" if batch else "n/a"
        print(f"| {label} | {one['rps']:,.0f} | {one['p99']:.1f} | {rows} | {one['rss']:.0f} |", flush=True)


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 repetition, 2 s loads")
    ap.add_argument("--tune", action="store_true", help="sweep the servers' knobs instead of the benchmark")
    ap.add_argument("--report", metavar="RESULTS_JSON", help="print the table of a saved run again, run nothing")
    ap.add_argument("--tune-only", metavar="REGEX", help="with --tune: only the configs matching REGEX")
    ap.add_argument("--reps", type=int, help="repetitions (default 3, --quick 1)")
    ap.add_argument("--duration", type=int, help="seconds per load (default 5, --quick 2)")
    ap.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset of " + ",".join(SERVERS))
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of rf,lr")
    ap.add_argument("--profile", metavar="SCENARIO", help="py-spy record ours during this scenario (e.g. c64)")
    ap.add_argument("--ours-workers", type=int, default=Config.ours_workers)
    ap.add_argument("--mlserver-parallel-workers", type=int, default=Config.mlserver_parallel_workers)
    ap.add_argument("--mlserver-max-batch-time-ms", type=float, default=Config.mlserver_max_batch_time_ms)
    ap.add_argument("--kserve-workers", type=int, default=Config.kserve_workers)
    args = ap.parse_args(argv)
    timing = Timing(reps=1, duration_s=2, warmup_s=1) if args.quick else Timing()
    if args.reps:
        timing.reps = args.reps
    if args.duration:
        timing.duration_s = args.duration
    cfg = Config(
        ours_workers=args.ours_workers,
        mlserver_parallel_workers=args.mlserver_parallel_workers,
        mlserver_max_batch_time_ms=args.mlserver_max_batch_time_ms,
        kserve_workers=args.kserve_workers,
    )
    servers = tuple(s for s in SERVERS if s in args.servers.split(","))
    models = tuple(m for m in MODELS if m in args.models.split(","))

    if args.report:
        saved = json.loads(Path(args.report).read_text())
        print(report(
            [Result(**r) for r in saved["results"]], Config(**saved["config"]), Timing(**saved["timing"]),
            saved["versions"], saved["argv"],
        ))  # fmt: skip
        return 0
    started = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    ensure_tools()
    venvs = {peer: ensure_venv(peer) for peer in PEERS}
    meta = ensure_models(venvs["naive"])
    bodies = write_bodies(meta, cfg)
    if args.tune:
        tune(meta, timing, servers, args.tune_only)
        return 0

    results: list[Result] = []
    for rep in range(timing.reps):
        for model in models:
            # Rotate the order per repetition so that no server always runs first (or last).
            order = servers[rep % len(servers) :] + servers[: rep % len(servers)]
            for server in order:
                prof = args.profile if server == "ours" else None
                results += bench_server(server, model, meta, cfg, timing, bodies, rep, profile=prof)
    vers = versions()
    out = WORK / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({
        "argv": argv, "config": cfg.__dict__, "timing": timing.__dict__, "versions": vers,
        "results": [r.__dict__ for r in results],
    }, indent=1))  # fmt: skip
    print(report(results, cfg, timing, vers, argv))
    log(f"done in {time.monotonic() - started:.0f}s; raw results in {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

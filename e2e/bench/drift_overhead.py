#!/usr/bin/env python3
"""Throughput of modeldeploy's server with drift monitoring on vs. off (issue 4, item 7: target <= 5 % loss).

    python e2e/bench/drift_overhead.py            # 5 paired repetitions of 5 s (~8 min on 2 cores)
    python e2e/bench/drift_overhead.py --quick    # 2 repetitions of 3 s

For each model it trains (fixed seeds, in the project venv), writes the training table as CSV and builds
the reference profile with the real CLI (`modeldeploy profile --data train.csv --model m.joblib`). Then two
servers of the same model run side by side on 127.0.0.1: one without a profile, one with it (window 1000
rows, judged every 5 s, the predicted labels profiled too). wrk loads one at a time, alternating off/on
(the order flips every repetition), so machine noise hits both alike; the idle one only sleeps. The
bodies are drawn at random from 20,000 held-out rows of the training distribution (not one repeated row).
After the loads the monitored server's `/drift/state` must have counted every row that was answered,
so "on" really monitored.

Scenarios: single rows at concurrency 64 (micro-batched into model calls) and 100-row batches at 8. It prints
a table of medians and the paired on/off ratio, and whether the loss is within 5 %.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (the peer benchmark's launcher helpers)

WORK = bench.WORK / "drift"
MODELDEPLOY = bench.OURS_VENV / "bin" / "modeldeploy"
PYTHON = bench.OURS_VENV / "bin" / "python"
BATCH_ROWS = 100
TARGET_LOSS = 0.05

TRAIN = """
import csv, hashlib, json, sys
import joblib, numpy as np
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
out = sys.argv[1]
specs = {"lr4": (4, LogisticRegression(max_iter=1000, random_state=0)),
         "lr20": (20, LogisticRegression(max_iter=1000, random_state=0)),
         "rf20": (20, RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0))}
meta = {}
for name, (width, model) in specs.items():
    X, y = make_classification(n_samples=25000, n_features=width, n_informative=min(width, 10),
                               n_redundant=0, random_state=0)
    X = X.astype(np.float32).astype(np.float64)
    train, held_out = X[:5000], X[5000:]  # requests: 20000 rows of the training distribution
    model.fit(train, y[:5000])
    joblib.dump(model, f"{out}/{name}.joblib")
    with open(f"{out}/{name}-train.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([f"x{i}" for i in range(width)])
        w.writerows(train.tolist())
    sha = hashlib.sha256(open(f"{out}/{name}.joblib", "rb").read()).hexdigest()
    np.save(f"{out}/{name}-requests.npy", held_out)
    meta[name] = {"width": width, "class": type(model).__name__, "sha256": sha}
json.dump(meta, open(f"{out}/meta.json", "w"))
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    concurrency: int
    batch: bool


SCENARIOS = (Scenario("1 row c=64", 64, False), Scenario(f"{BATCH_ROWS}-row batch c=8", 8, True))


def prepare() -> dict[str, Any]:
    """Models, training CSVs, profiles (built by `modeldeploy profile`) and request bodies; cached by this file."""
    key = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    stamp = WORK / f".prepared-{key}"
    if not stamp.exists():
        bench.log("training the models and building their reference profiles")
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(PYTHON), "-c", TRAIN, str(WORK)], check=True)
        meta = json.loads((WORK / "meta.json").read_text())
        for name, info in meta.items():
            subprocess.run(
                [str(MODELDEPLOY), "profile", "--data", str(WORK / f"{name}-train.csv"), "--model",
                 str(WORK / f"{name}.joblib"), "--sha256", info["sha256"], "-o", str(WORK / f"{name}-profile.json")],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            rows = _load_rows(WORK / f"{name}-requests.npy")
            singles = [json.dumps({"features": row}, separators=(",", ":")) for row in rows]
            batches = [
                json.dumps({"instances": rows[i : i + BATCH_ROWS]}, separators=(",", ":"))
                for i in range(0, len(rows) - BATCH_ROWS + 1, BATCH_ROWS)
            ]
            (WORK / f"{name}-row.bodies").write_text("\n".join(singles) + "\n")
            (WORK / f"{name}-batch.bodies").write_text("\n".join(batches) + "\n")
        stamp.touch()
    meta: dict[str, Any] = json.loads((WORK / "meta.json").read_text())
    return meta


def _load_rows(path: Path) -> list[list[float]]:
    code = "import json, sys, numpy; print(json.dumps(numpy.load(sys.argv[1]).tolist()))"
    out = subprocess.run([str(PYTHON), "-c", code, str(path)], check=True, capture_output=True, text=True).stdout
    rows: list[list[float]] = json.loads(out)
    return rows


def launch(name: str, info: dict[str, Any], monitored: bool) -> bench.Running:
    port = bench.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELDEPLOY_")}
    env["PYTHONUNBUFFERED"] = "1"
    if monitored:
        profile = WORK / f"{name}-profile.json"
        env |= {
            "MODELDEPLOY_DRIFT_REFERENCE_URI": profile.as_uri(),
            "MODELDEPLOY_DRIFT_REFERENCE_SHA256": hashlib.sha256(profile.read_bytes()).hexdigest(),
            "MODELDEPLOY_DRIFT_WINDOW_SIZE": "1000",
            "MODELDEPLOY_DRIFT_INTERVAL_SECONDS": "5",
        }
    log_path = WORK / f"{name}-{'on' if monitored else 'off'}.log"
    cmd = [
        str(MODELDEPLOY), "serve", "--model", str(WORK / f"{name}.joblib"), "--sha256", info["sha256"],
        "--name", name, "--version", "1", "--host", bench.HOST, "--port", str(port),
    ]  # fmt: skip
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return bench.Running("ours", name, proc, port, "/ready", log_path)


@contextlib.contextmanager
def pair(name: str, info: dict[str, Any]) -> Iterator[dict[bool, bench.Running]]:
    runs = {False: launch(name, info, False), True: launch(name, info, True)}
    try:
        for r in runs.values():
            bench.wait_ready(r)
        yield runs
    finally:
        for r in runs.values():
            bench.stop(r)


def wrk(url: str, bodies: Path, concurrency: int, duration_s: int) -> dict[str, Any]:
    data = bench.wrk(url, bodies, concurrency, duration_s, many=True)
    if data["non2xx"] or data["connect"] or data["read"] or data["timeout"]:
        raise RuntimeError(f"errors under load: {data}")
    return data


def get_json(run: bench.Running, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(run.url(path), timeout=30) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


@dataclass
class Row:
    model: str
    scenario: str
    rps_off: list[float]
    rps_on: list[float]
    p99_off: list[float]
    p99_on: list[float]
    rows_sent: int
    rows_counted: int
    drift_status: str

    @property
    def ratios(self) -> list[float]:
        return [on / off for on, off in zip(self.rps_on, self.rps_off, strict=True)]

    @property
    def loss(self) -> float:
        return 1.0 - statistics.median(self.ratios)


def measure(name: str, info: dict[str, Any], sc: Scenario, reps: int, duration_s: int) -> Row:
    bodies = WORK / f"{name}-{'batch' if sc.batch else 'row'}.bodies"
    path = "/predict/batch" if sc.batch else "/predict"
    rows_per_request = BATCH_ROWS if sc.batch else 1
    result = Row(name, sc.name, [], [], [], [], 0, 0, "")
    with pair(name, info) as runs:
        for monitored in (False, True):  # warm-up: both servers, JIT-free but caches and pools settle
            wrk(runs[monitored].url(path), bodies, sc.concurrency, 2)
        before = get_json(runs[True], "/drift/state")["state"]["totalRows"]
        sent = 0
        for rep in range(reps):
            for monitored in (False, True) if rep % 2 == 0 else (True, False):
                data = wrk(runs[monitored].url(path), bodies, sc.concurrency, duration_s)
                rps = data["requests"] / (data["duration_us"] / 1e6)
                (result.rps_on if monitored else result.rps_off).append(rps)
                (result.p99_on if monitored else result.p99_off).append(data["p99_us"] / 1000)
                if monitored:
                    sent += data["requests"] * rows_per_request
        time.sleep(0.5)
        result.rows_sent = sent
        result.rows_counted = get_json(runs[True], "/drift/state")["state"]["totalRows"] - before
        result.drift_status = get_json(runs[True], "/drift/report")["status"]
        bench.log(
            f"{name} {sc.name}: off {statistics.median(result.rps_off):.0f} rps, on "
            f"{statistics.median(result.rps_on):.0f} rps, loss {result.loss:+.1%}"
        )
    return result


def table(rows: list[Row], meta: dict[str, Any]) -> str:
    out = [
        "| model | scenario | req/s off | req/s on | on/off (paired median) | loss | p99 ms off / on | rows counted "
        "/ answered (wrk counts) | drift verdict | target loss <= 5 % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        info = meta[r.model]
        ok = "yes" if r.loss <= TARGET_LOSS else "NO"
        out.append(
            f"| {r.model} ({info['class']}, {info['width']} features) | {r.scenario} "
            f"| {statistics.median(r.rps_off):.0f} | {statistics.median(r.rps_on):.0f} "
            f"| {statistics.median(r.ratios):.3f} (min {min(r.ratios):.3f}, max {max(r.ratios):.3f}) "
            f"| {r.loss:+.1%} | {statistics.median(r.p99_off):.1f} / {statistics.median(r.p99_on):.1f} "
            f"| {r.rows_counted} / {r.rows_sent} | {r.drift_status} | {ok} |"
        )
    return "\n".join(out)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 repetitions of 3 s")
    ap.add_argument("--reps", type=int, help="paired repetitions (default 5, --quick 2)")
    ap.add_argument("--duration", type=int, help="seconds per load (default 5, --quick 3)")
    ap.add_argument("--models", default="lr4,lr20,rf20", help="comma-separated subset of lr4,lr20,rf20")
    args = ap.parse_args(argv)
    reps = args.reps or (2 if args.quick else 5)
    duration = args.duration or (3 if args.quick else 5)
    bench.ensure_tools()
    meta = prepare()
    started = time.monotonic()
    rows = [
        measure(name, meta[name], sc, reps, duration) for name in args.models.split(",") for sc in SCENARIOS
    ]
    load = os.getloadavg()
    print(
        f"# drift monitoring on vs off: {reps} paired repetitions x {duration} s per server, alternating; "
        f"{os.cpu_count()} cores, load average {load[0]:.1f} at the end; {time.monotonic() - started:.0f} s"
    )
    print(table(rows, meta))
    counted_all = all(r.rows_counted >= r.rows_sent for r in rows)
    print(f"\nevery answered row counted by the monitor: {'yes' if counted_all else 'NO'}")
    return 0 if counted_all else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Drift calibration benchmark: prints one table of FPR, power, scipy agreement and overhead.

Run:  .venv/bin/python tests/bench/drift_calibration.py [--reps-scale 1.0] [--seed 2026]

Everything goes through the package's public pieces (``build_profile`` / ``numeric_profile``,
``WindowState.observe``, ``assess_feature`` / ``evaluate``); scipy's ``ks_2samp`` runs on the
*same raw data* for the power comparison.  The reference is redrawn (20,000 rows) for every
repetition, so the FPR is the unconditional one.  The monitoring cost is measured on the
server's own path (``DriftMonitor.observe`` after each model call, the background ``fold``);
the throughput with monitoring on vs. off is e2e/bench/drift_overhead.py.  Not a unit test (no asserts, ~2-4 minutes
on 2 cores); the unit tests in tests/server/drift hold the same properties at small size.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "server"))

from modeldeploy_drift import (  # noqa: E402
    DriftConfig,
    DriftStatus,
    WindowState,
    assess_feature,
    build_profile,
    evaluate,
    ks_pvalue_raw,
)
from modeldeploy_drift.profile import (  # noqa: E402
    CategoricalProfile,
    Profile,
    categorical_profile,
    numeric_profile,
)
from modeldeploy_server.drift_monitor import DriftMonitor  # noqa: E402
from modeldeploy_server.logs import ModelLogger  # noqa: E402
from modeldeploy_server.metrics import ServerMetrics  # noqa: E402
from modeldeploy_server.runtime import ModelFacts  # noqa: E402
from modeldeploy_server.settings import ServerSettings  # noqa: E402

ALPHA = 0.05
N_REF = 20_000
WINDOWS = (100, 500, 1000)
SHIFTS = (0.1, 0.25, 0.5)
ANCHORS = {(0.25, 100): 0.54, (0.1, 500): 0.51}  # scipy ks_2samp power quoted in the issue

Row = tuple[str, str, str, str, str, str]


def se(p: float, reps: int) -> float:
    return math.sqrt(p * (1 - p) / reps)


def one_feature_pvalue(ref: np.ndarray, live: np.ndarray) -> float:
    """p-value of the monitored test for one numeric feature, via profile -> state -> test."""
    prof = Profile(features=(numeric_profile("x", ref),))
    st = WindowState(prof, window_size=live.size, buckets=1)
    st.observe(live.reshape(-1, 1))
    entry = assess_feature(prof.features[0], st.window_counts()[: prof.features[0].n_cells])
    assert entry.p_value is not None
    return entry.p_value


def numeric_rows(rng: np.random.Generator, reps: int) -> list[Row]:
    rows: list[Row] = []
    for n in WINDOWS:
        ours = theirs = 0
        for _ in range(reps):
            ref, live = rng.normal(size=N_REF), rng.normal(size=n)
            ours += one_feature_pvalue(ref, live) <= ALPHA
            theirs += stats.ks_2samp(ref, live).pvalue <= ALPHA
        band = 2 * se(ALPHA, reps)
        fpr = ours / reps
        rows.append(
            (
                "per-feature FPR, numeric (no shift)",
                f"n={n}, {reps} reps",
                f"{fpr:.4f}",
                f"{theirs / reps:.4f}",
                f"{ALPHA - band:.4f}..{ALPHA + band:.4f}",
                "yes" if abs(fpr - ALPHA) <= band else "NO",
            )
        )
    return rows


def power_rows(rng: np.random.Generator, reps: int) -> list[Row]:
    rows: list[Row] = []
    for shift in SHIFTS:
        for n in WINDOWS:
            ours = np.zeros(reps)
            theirs = np.zeros(reps)
            for r in range(reps):
                ref, live = rng.normal(size=N_REF), rng.normal(shift, size=n)
                ours[r] = one_feature_pvalue(ref, live) <= ALPHA
                theirs[r] = stats.ks_2samp(ref, live).pvalue <= ALPHA
            diff = ours - theirs  # paired: same raw data
            delta, delta_se = float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(reps))
            anchor = ANCHORS.get((shift, n))
            target = ">= scipy" + (f" (anchor {anchor:.2f})" if anchor else "")
            rows.append(
                (
                    "power, numeric mean shift",
                    f"{shift} SD, n={n}, {reps} reps",
                    f"{ours.mean():.3f}",
                    f"{theirs.mean():.3f} (paired diff {delta:+.3f} +- {delta_se:.3f})",
                    target,
                    "yes" if delta >= -2 * delta_se else "NO",
                )
            )
    return rows


def dataset_rows(rng: np.random.Generator, reps: int) -> list[Row]:
    rows: list[Row] = []
    m = 20
    for n in WINDOWS:
        drifted = {"bh": 0, "bonferroni": 0}
        for _ in range(reps):
            prof = build_profile(rng.normal(size=(N_REF // 4, m)))
            st = WindowState(prof, window_size=n, buckets=1)
            st.observe(rng.normal(size=(n, m)))
            for rule in drifted:
                report = evaluate(prof, st, DriftConfig(alpha=ALPHA, correction=rule))  # type: ignore[arg-type]
                drifted[rule] += report.status is DriftStatus.DRIFTED
        for rule, count in drifted.items():
            fpr = count / reps
            rows.append(
                (
                    f"dataset FPR, 20 null features, {rule}",
                    f"n={n}, {reps} reps",
                    f"{fpr:.4f}",
                    "",
                    f"<= {ALPHA} (+2 SE = {ALPHA + 2 * se(ALPHA, reps):.4f})",
                    "yes" if fpr <= ALPHA + 2 * se(ALPHA, reps) else "NO",
                )
            )
    return rows


def categorical_rows(rng: np.random.Generator, reps: int) -> list[Row]:
    p0, p1 = np.array([0.4, 0.3, 0.2, 0.1]), np.array([0.35, 0.3, 0.2, 0.15])
    cats = np.array(["a", "b", "c", "d"])
    n = 500
    null_rej = alt_rej = 0
    for _ in range(reps):
        prof: CategoricalProfile = categorical_profile("c", rng.choice(cats, p=p0, size=N_REF))
        for probs, is_null in ((p0, True), (p1, False)):
            live = rng.choice(cats, p=probs, size=n)
            cells = np.bincount([prof.cell_of(str(v)) for v in live], minlength=prof.n_cells)
            p = assess_feature(prof, cells).p_value
            assert p is not None
            if is_null:
                null_rej += p <= ALPHA
            else:
                alt_rej += p <= ALPHA
    band = 2 * se(ALPHA, reps)
    return [
        (
            "per-feature FPR, categorical chi2",
            f"[.4,.3,.2,.1], n={n}, {reps} reps",
            f"{null_rej / reps:.4f}",
            "",
            f"{ALPHA - band:.4f}..{ALPHA + band:.4f}",
            "yes" if abs(null_rej / reps - ALPHA) <= band else "NO",
        ),
        (
            "power, categorical chi2",
            f"->[.35,.3,.2,.15], n={n}, {reps} reps",
            f"{alt_rej / reps:.3f}",
            "",
            ">= 0.85",
            "yes" if alt_rej / reps >= 0.85 else "NO",
        ),
    ]


def agreement_rows(rng: np.random.Generator) -> list[Row]:
    rows: list[Row] = []
    sizes = [(100, 100), (100, 37), (500, 200), (1000, 100), (5000, 100), (20_000, 100), (20_000, 1000)]
    for method in ("auto", "exact", "asymp"):
        worst, count = 0.0, 0
        for m, n in sizes:
            if method == "exact" and m * n > 1_000_000:
                continue
            for shift in (0.0, 0.1, 0.3):
                for ties in (False, True):
                    a, b = rng.normal(size=m), rng.normal(shift, size=n)
                    if ties:
                        a, b = np.round(a, 1), np.round(b, 1)
                    ours = ks_pvalue_raw(a, b, method=method)
                    worst = max(worst, abs(ours - stats.ks_2samp(a, b, method=method).pvalue))
                    count += 1
        rows.append(
            (
                "ks_pvalue_raw vs scipy ks_2samp",
                f"method={method}, {count} pairs",
                f"max abs diff = {worst:.1e}",
                "",
                "<= 1e-6",
                "yes" if worst <= 1e-6 else "NO",
            )
        )
    return rows


def server_monitor(profile: Profile, directory: Path) -> DriftMonitor:
    """The server's drift monitor for this profile, loaded as `modeldeploy serve` loads it (window 1000)."""
    path = directory / f"profile-{profile.digest()}.json"
    path.write_text(profile.to_json())
    settings = ServerSettings(
        model_name="bench", model_version="1", model_uri=str(path), drift_reference_uri=path.as_uri(),
        drift_reference_sha256=hashlib.sha256(path.read_bytes()).hexdigest(), drift_window_size=1000,
        drift_interval_seconds=3600,
    )  # fmt: skip
    monitor = DriftMonitor(settings, ServerMetrics("bench", "1").drift, ModelLogger(logging.getLogger("bench"), {}))
    facts = ModelFacts(
        "bench", "1", "joblib", str(path), "0" * 64, len(profile.features), "input", np.dtype("float64"),
        None, None, None, None, None, 0.0,
    )  # fmt: skip
    monitor.load(facts)
    assert monitor.profile is not None, monitor.error
    return monitor


def server_path_cost(monitor: DriftMonitor, calls: list[tuple[np.ndarray, np.ndarray]], n: int) -> tuple[float, float]:
    """(total us per row, median predict-thread us per call) of `n` model calls through the server's drift path.

    Total = every `observe` (the predict thread: queue, and the folds it does itself when the
    queue is full) plus the background folds, i.e. everything monitoring costs per row.
    """
    observe, clock = monitor.observe, time.perf_counter_ns
    per_call = []
    rows = 0
    started = clock()
    for i in range(n):
        x, labels = calls[i % len(calls)]
        t0 = clock()
        observe(x, labels)
        per_call.append(clock() - t0)
        rows += x.shape[0]
    monitor.fold()  # what the background has left
    total_ns = clock() - started
    return total_ns / rows / 1e3, statistics.median(per_call) / 1e3


def overhead_rows(rng: np.random.Generator) -> list[Row]:
    """Monitoring cost per row and feature on the server's path: `DriftMonitor.observe` after every model
    call (it queues) and the vectorised background `fold` (it counts), with the predicted labels profiled."""
    rows: list[Row] = []
    classes = np.array([0, 1, 2])
    with tempfile.TemporaryDirectory() as tmp:
        for width in (1, 4, 20, 100):
            labels_ref = rng.choice(classes, size=5000)
            prof = build_profile(rng.normal(size=(5000, width)))
            prof = replace(prof, prediction=categorical_profile("prediction", labels_ref.astype(str)))
            for batch in (1, 100):
                monitor = server_monitor(prof, Path(tmp))
                calls = [(rng.normal(size=(batch, width)), rng.choice(classes, size=batch)) for _ in range(256)]
                n = 100_000 if batch == 1 else 5_000
                per_row, hot = server_path_cost(monitor, calls, n)
                rows.append(
                    (
                        f"monitoring cost, {width} numeric feature(s) + predicted label",
                        f"model calls of {batch} row(s)",
                        f"{per_row / width:.3f} us/row/feature",
                        f"{per_row:.2f} us/row in all; predict thread {hot:.2f} us/call (median)",
                        "< 1 us/row/feature",
                        "yes" if per_row / width < 1.0 else "NO",
                    )
                )
        # mixed table: 10 numeric + 10 categorical, object rows as a JSON body gives them
        cats = np.array([f"c{i}" for i in range(30)])
        data = {f"n{i}": rng.normal(size=5000) for i in range(10)}
        data.update({f"c{i}": rng.choice(cats, size=5000) for i in range(10)})
        mixed = build_profile(data)
        for batch in (1, 100):
            monitor = server_monitor(mixed, Path(tmp))
            calls = []
            for _ in range(256):
                obj = np.empty((batch, 20), dtype=object)
                obj[:, :10] = rng.normal(size=(batch, 10))
                obj[:, 10:] = rng.choice(cats, size=(batch, 10))
                calls.append((obj, rng.choice(classes, size=batch)))
            per_row, hot = server_path_cost(monitor, calls, 20_000 if batch == 1 else 1_000)
            rows.append(
                (
                    "monitoring cost, 10 numeric + 10 categorical (object rows)",
                    f"model calls of {batch} row(s)",
                    f"{per_row / 20:.3f} us/row/feature",
                    f"{per_row:.2f} us/row in all; predict thread {hot:.2f} us/call (median)",
                    "< 1 us/row/feature",
                    "yes" if per_row / 20 < 1.0 else "NO",
                )
            )
    f = 20
    prof = build_profile(rng.normal(size=(N_REF, f)))
    x = rng.normal(size=(1000, f))
    st = WindowState(prof, window_size=1000, buckets=10)
    per_feature = st.nbytes / f
    prof_bytes = len(prof.to_json()) / f
    state_json = len(__import__("json").dumps(st.to_dict(collapse=True))) / f
    rows.append(
        (
            "memory per numeric feature (32 bins)",
            "window 1000, 10 buckets",
            f"{per_feature:.0f} B counters",
            f"{prof_bytes:.0f} B profile JSON, {state_json:.0f} B collapsed state JSON",
            "bounded, traffic-independent",
            "yes",
        )
    )
    st.observe(x[:1000])
    t0 = time.perf_counter()
    for _ in range(20):
        evaluate(prof, st)
    rows.append(
        (
            "evaluate() cost",
            "20 numeric features, n=1000",
            f"{(time.perf_counter() - t0) / 20 * 1e3:.1f} ms/evaluation",
            "",
            "",
            "",
        )
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps-scale", type=float, default=1.0, help="scale all repetitions")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    scale = args.reps_scale
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    rows: list[Row] = []
    rows += numeric_rows(rng, int(2000 * scale))
    rows += dataset_rows(rng, int(500 * scale))
    rows += power_rows(rng, int(1000 * scale))
    rows += categorical_rows(rng, int(2000 * scale))
    rows += agreement_rows(rng)
    rows += overhead_rows(rng)
    header: Row = ("check", "setting", "ours", "scipy ks_2samp (raw) / extra", "target", "ok")
    print(
        f"# drift calibration: alpha={ALPHA}, reference {N_REF} rows redrawn per rep, 32 bins, "
        f"seed {args.seed}; python {platform.python_version()}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}"
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

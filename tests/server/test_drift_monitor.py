"""Drift monitoring in the server: profile loading, the window fed by predictions, endpoints, gauges, workers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from modeldeploy_api import constants
from modeldeploy_drift import DriftConfig, Profile, WindowState, evaluate
from modeldeploy_server.app import create_app
from modeldeploy_server.drift_monitor import BIG_CALL_VALUES, PENDING_CALLS, PENDING_VALUES, DriftMonitor
from modeldeploy_server.metrics import DRIFT_WINDOW_ROWS, MAX_LABELS, OTHER_LABEL, ServerMetrics
from modeldeploy_server.settings import ServerSettings
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.models import SavedModel
from tests.server.conftest import running, serve_http, settings_for, wait_ready
from tests.server.drift_support import (
    FEATURES,
    SavedProfile,
    drift_settings,
    reference_rows,
    save_iris_profile,
    shifted_rows,
)
from tests.server.test_cli import GRACEFUL, serve_process

pytestmark = pytest.mark.anyio
DRIFT_GETS = ("/drift/state", "/drift/profile", "/drift/report", "/drift")


@pytest.fixture(scope="module")
def iris_profile(iris_model: SavedModel, tmp_path_factory: pytest.TempPathFactory) -> SavedProfile:
    return save_iris_profile(iris_model, tmp_path_factory.mktemp("profile"))


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one metric from a /metrics page, keyed by their sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


async def send(client: httpx.AsyncClient, rows: np.ndarray[Any, Any], singles: int = 10) -> None:
    """Some rows one by one (micro-batched), the rest as one batch request."""
    for row in rows[:singles]:
        assert (await client.post("/predict", json={"features": row.tolist()})).status_code == 200
    if len(rows) > singles:
        response = await client.post("/predict/batch", json={"instances": rows[singles:].tolist()})
        assert response.status_code == 200


# -- settings ---------------------------------------------------------------------------------


def test_drift_settings_from_the_operators_env(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        constants.ENV_DRIFT_REFERENCE_URI: "http://127.0.0.1:1/p.json",
        constants.ENV_DRIFT_REFERENCE_SHA256: "AB" * 32,
        constants.ENV_DRIFT_WINDOW_SIZE: "200",
        constants.ENV_DRIFT_INTERVAL_SECONDS: "2.0",
        constants.ENV_DRIFT_MIN_SAMPLES: "50",
        constants.ENV_DRIFT_ALPHA: "0.01",
        constants.ENV_DRIFT_CORRECTION: "bonferroni",
        constants.ENV_DRIFT_WEBHOOK_URL: "https://hooks.example.invalid/T0/SECRET",
        constants.POD_NAME_ENV: "iris-abc",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = ServerSettings()
    assert (s.drift_window_size, s.drift_interval_seconds, s.drift_min_samples) == (200, 2.0, 50)
    assert (s.drift_alpha, s.drift_correction, s.pod_name) == (0.01, "bonferroni", "iris-abc")
    assert s.drift_reference_sha256 == "ab" * 32
    assert s.drift_webhook_url is not None and s.drift_webhook_url.get_secret_value().endswith("/SECRET")
    assert "SECRET" not in repr(s) and "SECRET" not in str(s.model_dump())
    assert s.env()[constants.ENV_DRIFT_WEBHOOK_URL] == env[constants.ENV_DRIFT_WEBHOOK_URL]  # workers get it


# -- endpoints --------------------------------------------------------------------------------


async def test_drift_endpoints_answer_404_when_not_configured(iris_model: SavedModel) -> None:
    app = create_app(settings_for(iris_model))
    async with running(app) as client:
        answers = [await client.get(path) for path in DRIFT_GETS]
        paths = (await client.get("/openapi.json")).json()["paths"]
    for response in answers:
        assert response.status_code == 404
        assert response.json()["reason"] == "drift_not_configured"
    assert set(DRIFT_GETS) <= set(paths)
    assert paths["/drift/state"]["get"]["tags"] == ["drift"]


async def test_state_is_what_the_operator_merges(iris_model: SavedModel, iris_profile: SavedProfile) -> None:
    app = create_app(drift_settings(iris_model, iris_profile))
    rows = reference_rows(60)
    async with running(app) as client:
        await send(client, rows)
        state = (await client.get(constants.DRIFT_STATE_PATH)).json()
        profile = (await client.get(constants.DRIFT_PROFILE_PATH)).json()
    loaded = Profile.from_dict(profile)
    assert loaded == iris_profile.profile
    assert state["profileDigest"] == loaded.digest()
    assert state["modelVersion"] == "v1"
    window = WindowState.from_dict(state["state"], loaded)  # as the operator reads it
    assert window.window_rows == window.total_rows == 60
    expected = WindowState(iris_profile.profile, window_size=200)
    expected.observe(rows, iris_model.model.predict(rows))
    assert window.window_counts().tolist() == expected.window_counts().tolist()


async def test_shifted_traffic_drifts_and_recovers(iris_model: SavedModel, iris_profile: SavedProfile) -> None:
    app = create_app(drift_settings(iris_model, iris_profile))
    monitor: DriftMonitor = app.state.drift
    async with running(app) as client:
        await send(client, reference_rows(200))
        calm = await asyncio.to_thread(monitor.evaluate_now)
        calm_metrics = (await client.get("/metrics")).text
        await send(client, shifted_rows(200))
        drifted = await asyncio.to_thread(monitor.evaluate_now)
        report = (await client.get("/drift/report")).json()
        drifted_metrics = (await client.get("/metrics")).text
        await send(client, reference_rows(200, seed=2))
        recovered = await asyncio.to_thread(monitor.evaluate_now)
    assert [e.report.status.value for e in (calm, drifted, recovered)] == ["NoDrift", "Drifted", "NoDrift"]
    assert report["status"] == "Drifted" and report["windowRows"] == 200 and report["modelVersion"] == "v1"
    flagged = {f["name"] for f in report["features"] if f["drifted"]}
    assert {FEATURES[1], FEATURES[2]} <= flagged
    model = (("model_name", "iris"), ("model_version", "v1"))
    assert samples(calm_metrics, "modeldeploy_drift_dataset_drifted") == {model: 0.0}
    assert samples(drifted_metrics, "modeldeploy_drift_dataset_drifted") == {model: 1.0}
    assert samples(drifted_metrics, "modeldeploy_drift_window_rows") == {model: 200.0}
    p_value = samples(drifted_metrics, "modeldeploy_drift_dataset_p_value")[model]
    assert p_value == drifted.report.p_value and p_value < 0.05
    per_feature = samples(drifted_metrics, "modeldeploy_drift_feature_drifted")
    assert per_feature[(("feature", FEATURES[2]), *model)] == 1.0
    score = samples(drifted_metrics, "modeldeploy_drift_feature_score")[(("feature", FEATURES[2]), *model)]
    assert 0.0 < score <= 1.0
    assert samples(drifted_metrics, "modeldeploy_drift_feature_p_value")[(("feature", FEATURES[2]), *model)] < 0.05


async def test_a_bad_profile_never_stops_serving(
    iris_model: SavedModel, iris_profile: SavedProfile, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(drift_settings(iris_model, iris_profile, drift_reference_sha256="0" * 64))
    async with running(app) as client:
        ready = await client.get("/ready")
        predict = await client.post("/predict", json={"features": [5.1, 3.5, 1.4, 0.2]})
        state = await client.get("/drift/state")
        page = await client.get("/drift")
    assert ready.status_code == 200 and predict.status_code == 200
    assert state.status_code == page.status_code == 503
    assert state.json()["reason"] == "drift_unavailable"
    assert "sha256" in state.json()["error"] and "refusing" in state.json()["error"]
    assert any("drift monitoring is off" in r.getMessage() for r in caplog.records)


async def test_a_profile_of_other_features_is_refused(
    iris_model: SavedModel, iris_profile: SavedProfile, tmp_path: Path
) -> None:
    data = iris_profile.profile.to_dict()
    data["features"] = data["features"][:3]
    path = tmp_path / "three.json"
    path.write_text(json.dumps(data))
    app = create_app(drift_settings(iris_model, iris_profile, drift_reference_uri=str(path),
                                    drift_reference_sha256=None))
    async with running(app) as client:
        state = await client.get("/drift/state")
    assert state.status_code == 503
    assert "3 features, the model takes 4" in state.json()["error"]


def test_rows_that_cannot_be_counted_are_logged_once(
    iris_model: SavedModel, iris_profile: SavedProfile, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(drift_settings(iris_model, iris_profile))
    runtime, monitor = app.state.runtime, app.state.drift
    runtime.load()  # no lifespan: nothing judges in the background
    assert monitor.latest_report().reason == "not judged yet"
    for _ in range(3):
        monitor.observe(np.zeros((2, 3)), None)  # wrong width: never raises
    monitor.observe(reference_rows(5), iris_model.model.predict(reference_rows(5)))
    assert monitor.snapshot().window_rows == 5
    assert sum("rows not counted" in r.getMessage() for r in caplog.records) == 1


def test_queued_calls_are_bounded(iris_model: SavedModel, iris_profile: SavedProfile) -> None:
    """The predict thread only queues, but folds itself at PENDING_CALLS small calls or PENDING_VALUES values."""
    app = create_app(drift_settings(iris_model, iris_profile, drift_window_size=1_000_000))
    app.state.runtime.load()
    monitor: DriftMonitor = app.state.drift
    window = monitor._state
    assert window is not None
    row = reference_rows(1)
    for i in range(PENDING_CALLS - 1):
        monitor.observe(row, np.array([i % 3]))
    assert window.total_rows == 0, "single rows wait for the background fold"
    monitor.observe(row, np.array([0]))
    assert window.total_rows == PENDING_CALLS, "a full queue is folded by the predict thread"
    big = reference_rows(BIG_CALL_VALUES // len(FEATURES))
    labels = iris_model.model.predict(big)
    calls = -(-PENDING_VALUES // big.size)  # the call that reaches PENDING_VALUES folds
    for _ in range(calls - 1):
        monitor.observe(big, labels)
    assert window.total_rows == PENDING_CALLS
    monitor.observe(big, labels)
    assert window.total_rows == PENDING_CALLS + calls * len(big)
    assert window.window_counts()[window.cell_slices()[-1]].sum() == window.total_rows, "labels counted too"


@pytest.mark.parametrize("window_size", [50, 200, 5000])
def test_a_fold_counts_exactly_what_counting_every_call_would(
    iris_model: SavedModel, iris_profile: SavedProfile, window_size: int
) -> None:
    """Folds skip the rows that leave the window again, and big calls behind a whole window are let go
    before any fold: the window must still equal counting every call (256+ rows of 4 features are big)."""
    app = create_app(drift_settings(iris_model, iris_profile, drift_window_size=window_size))
    app.state.runtime.load()
    monitor: DriftMonitor = app.state.drift
    reference = WindowState(iris_profile.profile, window_size=window_size, buckets=min(10, window_size))
    rng = np.random.default_rng(window_size)
    for fold in range(30):
        for _ in range(int(rng.integers(0, 40))):
            rows = reference_rows(int(rng.choice([0, 1, 1, 3, 17, 64, 250, 256, 600])), seed=int(rng.integers(1 << 30)))
            labels = iris_model.model.predict(rows) if len(rows) else np.empty(0, dtype=np.int64)
            monitor.observe(rows, labels)
            reference.observe(rows, labels)
        window = monitor.snapshot()  # folds
        assert window.total_rows == reference.total_rows, fold
        assert window.window_rows == reference.window_rows, fold
        assert window.window_counts().tolist() == reference.window_counts().tolist(), fold


@pytest.mark.parametrize("window_size", [1_000_000, 500])
def test_concurrent_predict_threads_lose_no_rows(
    iris_model: SavedModel, iris_profile: SavedProfile, window_size: int
) -> None:
    """Several predict threads observe small and big calls while the background folds: every row counts once.

    With a window larger than the traffic every row is in it; with a small one big calls are let go
    concurrently, and the tally of rows must still be exact.
    """
    app = create_app(drift_settings(iris_model, iris_profile, drift_window_size=window_size))
    app.state.runtime.load()
    monitor: DriftMonitor = app.state.drift
    sizes = (1, 2, 300)  # 300 rows x 4 features is a big call
    rows = reference_rows(300)
    labels = iris_model.model.predict(rows)
    stop = threading.Event()

    def folder() -> None:
        while not stop.is_set():
            monitor.fold()

    def predictor() -> None:
        for i in range(900):
            n = sizes[i % 3]
            monitor.observe(rows[:n], labels[:n])

    background = threading.Thread(target=folder)
    background.start()
    threads = [threading.Thread(target=predictor) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    background.join()
    window = monitor.snapshot()
    assert window.total_rows == 4 * 300 * sum(sizes)
    if window_size < window.total_rows:
        assert window_size - window.capacity <= window.window_rows <= window_size
        return
    assert window.window_rows == window.total_rows
    expected = np.zeros(window.window_counts().shape, dtype=np.int64)
    reference = WindowState(window.profile, window_size=1000)
    for n in sizes:
        reference.reset()
        reference.observe(rows[:n], labels[:n])
        expected += 4 * 300 * reference.window_counts()
    assert window.window_counts().tolist() == expected.tolist()


# -- predicted labels -----------------------------------------------------------------------


async def test_predicted_labels_are_counted(iris_model: SavedModel, ridge_model: SavedModel) -> None:
    rows = reference_rows(50)
    app = create_app(settings_for(iris_model))
    async with running(app) as client:
        await send(client, rows)
        text = (await client.get("/metrics")).text
    counts = {dict(k)["label"]: v for k, v in samples(text, "modeldeploy_predictions_total").items()}
    labels, expected = np.unique(iris_model.model.predict(rows), return_counts=True)
    assert counts == dict(zip(labels.tolist(), map(float, expected), strict=True))

    regressor = create_app(settings_for(ridge_model))
    async with running(regressor) as client:
        await send(client, ridge_model.rows[:5], singles=1)
        text = (await client.get("/metrics")).text
    assert samples(text, "modeldeploy_predictions_total") == {}


def test_predicted_label_cardinality_is_bounded() -> None:
    metrics = ServerMetrics("m", "1")
    metrics.count_predictions(np.arange(MAX_LABELS + 50))
    metrics.count_predictions(np.array([1.0, 1.0, 500.0]))  # 1.0 is label "1"; 500 is one label too many
    metrics.count_predictions(np.array(["late"]))
    text = metrics.render().decode()
    counts = {dict(k)["label"]: v for k, v in samples(text, "modeldeploy_predictions_total").items()}
    assert len(counts) == MAX_LABELS + 1
    assert counts["1"] == 3.0
    assert counts[OTHER_LABEL] == 50 + 1 + 1
    assert sum(counts.values()) == MAX_LABELS + 50 + 3 + 1


# -- several workers ------------------------------------------------------------------------


def test_sibling_workers_windows_are_merged(
    iris_model: SavedModel, iris_profile: SavedProfile, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker answers for the pod: its own window plus its live siblings' published ones."""
    caplog.set_level(logging.DEBUG)
    settings = drift_settings(iris_model, iris_profile, workers=2, worker_state_dir=str(tmp_path))
    app = create_app(settings)
    monitor: DriftMonitor = app.state.drift
    assert monitor.state_dir == tmp_path and monitor.window_size == 100  # the pod's 200 rows, split
    app.state.runtime.load()
    mine, theirs = shifted_rows(80), reference_rows(90)
    monitor.observe(mine, iris_model.model.predict(mine))
    sibling = WindowState(iris_profile.profile, window_size=100)
    sibling.observe(theirs, iris_model.model.predict(theirs))
    (tmp_path / f"drift-{os.getppid()}.json").write_text(json.dumps(sibling.to_dict(collapse=True)))
    (tmp_path / "drift-999999999.json").write_text(json.dumps(sibling.to_dict()))  # a dead worker's
    (tmp_path / f"drift-{os.getpid() + 1}.json").write_text("{trunc")  # half-written (if alive: skipped)
    body = monitor.state_body()
    evaluation = monitor.evaluate_now()

    one = WindowState(iris_profile.profile, window_size=200)  # one process that saw every row
    both = np.vstack([theirs, mine])
    one.observe(both, iris_model.model.predict(both))
    merged = WindowState.from_dict(body["state"], iris_profile.profile)
    assert body["workers"] == 2 == evaluation.workers
    assert merged.window_rows == 170
    assert merged.window_counts().tolist() == one.window_counts().tolist()
    config = DriftConfig(alpha=0.05, min_samples=50)
    assert evaluation.report.status == evaluate(iris_profile.profile, one, config).status
    assert evaluation.report.p_value == evaluate(iris_profile.profile, one, config).p_value
    assert not (tmp_path / "drift-999999999.json").exists()  # cleaned up
    assert json.loads((tmp_path / f"drift-{os.getpid()}.json").read_text())["totalRows"] == 80  # published
    assert monitor.alerting()  # the first to take the alert lock posts the pod's alerts
    assert not create_app(settings).state.drift.alerting()  # a second worker does not


def test_two_worker_processes_answer_for_the_whole_pod(
    iris_model: SavedModel, iris_profile: SavedProfile, tmp_path: Path
) -> None:
    """`serve --workers 2`: whichever worker answers, /drift/state and the gauges cover every worker's rows."""
    env = {
        constants.ENV_MODEL_NAME: "iris",
        constants.ENV_MODEL_URI: iris_model.uri,
        constants.ENV_MODEL_SHA256: iris_model.sha256,
        constants.ENV_CACHE_DIR: str(tmp_path / "cache"),
        constants.ENV_DRIFT_REFERENCE_URI: iris_profile.path.as_uri(),
        constants.ENV_DRIFT_REFERENCE_SHA256: iris_profile.sha256,
        constants.ENV_DRIFT_WINDOW_SIZE: "200",
        constants.ENV_DRIFT_INTERVAL_SECONDS: "0.2",
        constants.ENV_DRIFT_MIN_SAMPLES: "50",
    }
    rows = reference_rows(120)
    gauge = (("model_name", "iris"), ("model_version", "1"))
    seen: list[tuple[int, ...]] = []  # (workers, rows) of /drift/state answers, then (rows, gauge)
    with serve_process(env, "--workers", "2") as served:
        wait_ready(served.url, timeout=90)
        try:
            with httpx.Client(base_url=served.url, headers={"connection": "close"}) as client:  # spread over workers
                for row in rows:
                    assert client.post("/predict", json={"features": row.tolist()}).status_code == 200

                def pod_wide() -> bool:
                    bodies = [client.get(constants.DRIFT_STATE_PATH).json() for _ in range(6)]
                    seen[:] = sorted({(b["workers"], b["state"]["totalRows"]) for b in bodies})
                    return seen == [(2, len(rows))]

                wait_until(pod_wide, lambda: f"every worker's answer to cover the pod's rows (seen {seen})")

                def judged() -> bool:  # the gauges judge the same merged window as /drift/state
                    total = client.get(constants.DRIFT_STATE_PATH).json()["state"]["totalRows"]
                    seen.append((total, samples(client.get("/metrics").text, DRIFT_WINDOW_ROWS).get(gauge, -1)))
                    return seen[-1][0] == seen[-1][1]

                wait_until(judged, lambda: f"the window gauge to count the pod's rows (seen {seen[-3:]})")
                metrics = client.get("/metrics").text
        except AssertionError as exc:
            served.stop()
            exc.add_note(f"server log:\n{served.stderr[-3000:]}")
            raise
        assert served.stop() in GRACEFUL
    # A worker that uvicorn replaced (it missed a health check on a loaded machine) takes its rows with it.
    assert seen[-1][0] == len(rows) or "died" in served.stderr, served.stderr[-3000:]
    assert sum(samples(metrics, "modeldeploy_predictions_total").values()) == len(rows)
    assert samples(metrics, "modeldeploy_drift_dataset_drifted") == {gauge: 0.0}


def wait_until(check: Callable[[], bool], what: str | Callable[[], str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what if isinstance(what, str) else what()}"
        time.sleep(0.1)


@pytest.mark.parametrize("judged", [False, True], ids=["before-judging", "judged"])
def test_drift_endpoints_conform_to_their_schema(
    iris_model: SavedModel, iris_profile: SavedProfile, judged: bool
) -> None:
    """Schemathesis on the drift operations of a server that monitors drift (200s, not 404s)."""
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis import GenerationMode

    from tests.server.test_fuzz import _fuzz

    app = create_app(drift_settings(iris_model, iris_profile))
    with serve_http(app) as url:
        wait_ready(url)
        if judged:
            assert httpx.post(f"{url}/predict/batch", json={"instances": shifted_rows(100).tolist()}).status_code == 200
            app.state.drift.evaluate_now()
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [r.ok() for r in schema.get_all_operations() if r.ok().path.startswith("/drift")]
        assert sorted(o.path for o in operations) == sorted(DRIFT_GETS)
        for operation in operations:
            _fuzz(operation, GenerationMode.POSITIVE, [])
        status = httpx.get(f"{url}/drift/report").json()["status"]
        assert status in (("Drifted",) if judged else ("Unknown", "Insufficient"))  # judged in the background or not

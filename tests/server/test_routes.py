"""The plain REST API over an in-process ASGI client: answers, bad input, metrics, docs."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from modeldeploy_server import sources
from modeldeploy_server.app import create_app
from modeldeploy_server.runtime import ModelRuntime

from tests.fixtures.models import SavedModel

from .conftest import running, settings_for

pytestmark = pytest.mark.anyio


async def test_health_and_ready(iris_model: SavedModel) -> None:
    async with running(create_app(settings_for(iris_model))) as client:
        health = await client.get("/health")
        ready = await client.get("/ready")
    assert health.status_code == 200
    assert health.json() == {"status": "alive"}
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "model_name": "m", "model_version": "v1"}


async def test_predict_matches_the_model(iris_model: SavedModel) -> None:
    rows = iris_model.rows[::15]
    expected_labels = iris_model.model.predict(rows)
    expected_proba = iris_model.model.predict_proba(rows)
    async with running(create_app(settings_for(iris_model))) as client:
        for row, label, proba in zip(rows, expected_labels, expected_proba, strict=True):
            response = await client.post("/predict", json={"features": row.tolist()})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["prediction"] == label
            assert body["probability"] == pytest.approx(proba.max())
            assert body["model_name"] == "m"
            assert body["model_version"] == "v1"
            assert "class_probabilities" not in body


async def test_predict_class_probabilities_on_request(iris_model: SavedModel) -> None:
    row = iris_model.rows[60]
    expected = dict(zip(iris_model.model.classes_, iris_model.model.predict_proba([row])[0], strict=True))
    async with running(create_app(settings_for(iris_model))) as client:
        response = await client.post("/predict", json={"features": row.tolist(), "class_probabilities": True})
    per_class = response.json()["class_probabilities"]
    assert set(per_class) == {"setosa", "versicolor", "virginica"}
    for name, p in expected.items():
        assert per_class[name] == pytest.approx(p)


async def test_regressor_has_no_probability(ridge_model: SavedModel) -> None:
    row = ridge_model.rows[3]
    async with running(create_app(settings_for(ridge_model))) as client:
        response = await client.post("/predict", json={"features": row.tolist(), "class_probabilities": True})
    body = response.json()
    assert response.status_code == 200
    assert body["prediction"] == pytest.approx(ridge_model.model.predict([row])[0])
    assert body["probability"] is None
    assert body["class_probabilities"] is None


async def test_batch_is_one_call_and_matches(iris_model: SavedModel) -> None:
    rows = iris_model.rows[::7]
    app = create_app(settings_for(iris_model))
    async with running(app) as client:
        response = await client.post("/predict/batch", json={"instances": rows.tolist(), "class_probabilities": True})
        metrics = (await client.get("/metrics")).text
    body = response.json()
    assert response.status_code == 200
    assert body["predictions"] == iris_model.model.predict(rows).tolist()
    proba = iris_model.model.predict_proba(rows)
    assert body["probabilities"] == pytest.approx(proba.max(axis=1).tolist())
    assert [row["virginica"] for row in body["class_probabilities"]] == pytest.approx(proba[:, 2].tolist())
    # The whole batch went to the model in one call.
    assert _sample(metrics, "modeldeploy_batch_size_count") == 1
    assert _sample(metrics, "modeldeploy_batch_size_sum") == len(rows)


async def test_batch_regressor(ridge_model: SavedModel) -> None:
    rows = ridge_model.rows[:4]
    async with running(create_app(settings_for(ridge_model))) as client:
        body = (await client.post("/predict/batch", json={"instances": rows.tolist()})).json()
    assert body["predictions"] == pytest.approx(ridge_model.model.predict(rows).tolist())
    assert body["probabilities"] is None


GOOD = [5.1, 3.5, 1.4, 0.2]


@pytest.mark.parametrize(
    ("body", "reason", "words"),
    [
        ({"features": [5.1, 3.5, 1.4]}, "wrong_feature_count", "expects 4 features per row, got 3"),
        ({"features": [*GOOD, 1.0]}, "wrong_feature_count", "expects 4 features per row, got 5"),
        ({"features": []}, "wrong_feature_count", "at least one feature"),
        ({"features": [5.1, "x", 1.4, 0.2]}, "invalid_request", "Expected `float`, got `str`"),
        ({"features": [5.1, True, 1.4, 0.2]}, "invalid_request", "Expected `float`, got `bool`"),
        ({"features": [5.1, None, 1.4, 0.2]}, "invalid_request", "got `null`"),
        ({"features": [5.1, [1], 1.4, 0.2]}, "invalid_request", "got `array`"),
        ({"features": "5.1,3.5"}, "invalid_request", "Expected `array`"),
        ({"rows": [GOOD]}, "invalid_request", "missing required field `features`"),
        ([GOOD], "invalid_request", "Expected `object`"),
        ({"features": [5.1, 1e39, 1.4, 0.2]}, "out_of_range", "float32 range"),
    ],
)
async def test_predict_refuses_bad_input(iris_model: SavedModel, body: Any, reason: str, words: str) -> None:
    async with running(create_app(settings_for(iris_model))) as client:
        response = await client.post("/predict", json=body)
    assert response.status_code == 400
    assert response.json()["reason"] == reason
    assert words in response.json()["error"]


@pytest.mark.parametrize(
    ("raw", "reason", "words"),
    [
        (b'{"features": [5.1, NaN, 1.4, 0.2]}', "malformed_json", "NaN and Infinity are not valid"),
        (b'{"features": [5.1, Infinity, 1.4, 0.2]}', "malformed_json", "not valid JSON"),
        (b'{"features": [5.1, -Infinity, 1.4, 0.2]}', "malformed_json", "not valid JSON"),
        (b'{"features": [5.1, 1e400, 1.4, 0.2]}', "invalid_request", "out of range"),
        (b'{"features": [5.1, 3.5, 1.4, 0.2]', "malformed_json", "truncated"),
        (b"features=1,2,3,4", "malformed_json", "malformed JSON"),
        (b"", "malformed_json", "body is empty"),
        (b"\xff\xfe", "malformed_json", "malformed JSON"),
    ],
)
async def test_predict_refuses_malformed_json(iris_model: SavedModel, raw: bytes, reason: str, words: str) -> None:
    async with running(create_app(settings_for(iris_model))) as client:
        response = await client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["reason"] == reason
    assert words in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "reason", "words"),
    [
        ({"instances": []}, 400, "empty_batch", "at least one row"),
        ({"instances": [GOOD] * 6}, 413, "too_many_instances", "at most 5"),
        ({"instances": [GOOD, GOOD[:3]]}, 400, "ragged_batch", "row 1 has 3"),
        ({"instances": [GOOD[:3]] * 2}, 400, "wrong_feature_count", "expects 4 features"),
        ({"instances": [[1.0, 2.0, "a", 3.0]]}, 400, "invalid_request", "$.instances[0][2]"),
        ({"instances": GOOD}, 400, "invalid_request", "Expected `array`, got `float`"),
        ({"instances": [[[1.0]]]}, 400, "invalid_request", "Expected `float`, got `array`"),
    ],
)
async def test_batch_refuses_bad_input(iris_model: SavedModel, body: Any, status: int, reason: str, words: str) -> None:
    async with running(create_app(settings_for(iris_model, max_instances=5))) as client:
        response = await client.post("/predict/batch", json=body)
    assert response.status_code == status
    assert response.json()["reason"] == reason
    assert words in response.json()["error"]


async def test_body_size_limit(iris_model: SavedModel) -> None:
    big = {"instances": [GOOD] * 200}  # about 5 KB
    async with running(create_app(settings_for(iris_model, max_body_bytes=2048))) as client:
        declared = await client.post("/predict/batch", json=big)

        async def chunks():  # no Content-Length: the cap applies while streaming
            for _ in range(10):
                yield b" " * 512

        streamed = await client.post("/predict", content=chunks())
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["reason"] == "payload_too_large"
        assert "over the limit of 2048" in response.json()["error"]


async def test_compressed_bodies(iris_model: SavedModel) -> None:
    import gzip

    async with running(create_app(settings_for(iris_model, max_body_bytes=2048))) as client:
        ok = await client.post(
            "/predict",
            content=gzip.compress(b'{"features": [5.1, 3.5, 1.4, 0.2]}'),
            headers={"content-encoding": "gzip"},
        )
        bomb = await client.post(
            "/predict",
            content=gzip.compress(b" " * 100_000),
            headers={"content-encoding": "gzip"},
        )
        unknown = await client.post("/predict", content=b"{}", headers={"content-encoding": "br"})
    assert ok.status_code == 200
    assert ok.json()["prediction"] == "setosa"
    assert bomb.status_code == 413
    assert unknown.status_code == 415
    assert unknown.json()["reason"] == "unsupported_encoding"


async def test_unknown_route_and_method_are_json(iris_model: SavedModel) -> None:
    async with running(create_app(settings_for(iris_model))) as client:
        missing = await client.get("/nope")
        wrong_method = await client.get("/predict")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not Found", "reason": "not_found"}
    assert wrong_method.status_code == 405
    assert wrong_method.json()["reason"] == "method_not_allowed"


async def test_metrics_are_labelled(iris_model: SavedModel) -> None:
    async with running(create_app(settings_for(iris_model))) as client:
        await client.post("/predict", json={"features": GOOD})
        await client.post("/predict", json={"features": GOOD[:2]})
        text = (await client.get("/metrics")).text
    model = 'model_name="m",model_version="v1"'
    assert f'modeldeploy_requests_total{{code="200",endpoint="predict",{model}}} 1.0' in text
    assert f'modeldeploy_requests_total{{code="400",endpoint="predict",{model}}} 1.0' in text
    assert (f'modeldeploy_request_errors_total{{endpoint="predict",{model},reason="wrong_feature_count"}} 1.0') in text
    assert f'modeldeploy_request_duration_seconds_count{{endpoint="predict",{model}}} 2.0' in text
    assert (f'modeldeploy_model_info{{format="sklearn",{model},sha256="{iris_model.sha256}"}} 1.0') in text
    assert f"modeldeploy_model_ready{{{model}}} 1.0" in text
    assert f"modeldeploy_predicted_rows_total{{{model}}}" in text
    assert "_created" not in text


async def test_docs_describe_every_endpoint(iris_model: SavedModel) -> None:
    app = create_app(settings_for(iris_model))
    async with running(app) as client:
        docs = await client.get("/docs")
        spec = (await client.get("/openapi.json")).json()
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    assert set(spec["paths"]) == {
        "/health",
        "/ready",
        "/predict",
        "/predict/batch",
        "/metrics",
        "/drift",
        "/drift/state",
        "/drift/profile",
        "/drift/report",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    }
    for path in spec["paths"].values():
        for operation in path.values():
            assert operation["summary"]
            assert "200" in operation["responses"]
    features = spec["components"]["schemas"]["PredictRequest"]["properties"]["features"]
    assert features["minItems"] == features["maxItems"] == 4
    assert spec["paths"]["/predict"]["post"]["requestBody"]["required"] is True


async def test_ready_is_503_while_loading(iris_model: SavedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real_fetch = sources.fetch

    def slow_fetch(*args: Any, **kwargs: Any) -> Any:
        release.wait(10)
        return real_fetch(*args, **kwargs)

    monkeypatch.setattr(sources, "fetch", slow_fetch)
    app = create_app(settings_for(iris_model))
    try:
        async with running(app, wait=False) as client:
            health = await client.get("/health")
            ready = await client.get("/ready")
            predict = await client.post("/predict", json={"features": GOOD})
            v2_ready = await client.get("/v2/health/ready")
            release.set()
            await app.state.runtime.wait_loaded()
            after = await client.get("/ready")
    finally:
        release.set()
    assert health.status_code == 200
    assert ready.status_code == 503
    assert ready.json() == {"error": "model 'm' is still loading", "reason": "model_loading"}
    assert predict.status_code == 503
    assert v2_ready.status_code == 503
    assert v2_ready.json()["ready"] is False
    assert after.status_code == 200


async def test_failed_load_keeps_serving_the_reason(iris_model: SavedModel, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(iris_model, model_sha256="0" * 64)
    app = create_app(settings)
    async with running(app) as client:
        ready = await client.get("/ready")
        predict = await client.post("/predict", json={"features": GOOD})
        health = await client.get("/health")
        metrics = (await client.get("/metrics")).text
    assert health.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["reason"] == "digest_mismatch"
    assert "failed to load" in ready.json()["error"]
    assert iris_model.sha256 in ready.json()["error"]
    assert predict.status_code == 503
    assert predict.json()["reason"] == "digest_mismatch"
    assert 'modeldeploy_model_ready{model_name="m",model_version="v1"} 0.0' in metrics
    failures = [r for r in caplog.records if "failed to load" in r.getMessage()]
    assert failures and failures[0].reason == "digest_mismatch"  # type: ignore[attr-defined]
    assert failures[0].model_name == "m"  # type: ignore[attr-defined]


async def test_app_over_a_preloaded_runtime(ridge_model: SavedModel) -> None:
    runtime = ModelRuntime(settings_for(ridge_model))
    runtime.load()
    async with running(create_app(runtime=runtime)) as client:
        response = await client.post("/predict", json={"features": [0.0] * 5})
    assert response.json()["prediction"] == pytest.approx(ridge_model.model.predict(np.zeros((1, 5)))[0])


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


async def test_ready_waits_for_every_worker(iris_model: SavedModel, tmp_path: Path) -> None:
    """With several workers, /ready (and V2 readiness) is 200 only once all have loaded."""
    state = tmp_path / "ready"
    app = create_app(settings_for(iris_model, workers=2, worker_state_dir=str(state)))
    async with running(app) as client:
        alone = await client.get("/ready")
        v2_alone = await client.get("/v2/health/ready")
        model_alone = await client.get("/v2/models/m/ready")
        (state / "999999999").touch()  # a worker that died: its pid is gone
        stale = await client.get("/ready")
        (state / str(os.getppid())).touch()  # a live sibling
        both = await client.get("/ready")
        predict_meanwhile = await client.post("/predict", json={"features": GOOD})
    assert alone.status_code == v2_alone.status_code == model_alone.status_code == 503
    assert alone.json() == {
        "error": "1 of 2 worker processes have loaded the model",
        "reason": "workers_loading",
    }
    assert stale.status_code == 503
    assert both.status_code == 200
    assert predict_meanwhile.status_code == 200
    assert not (state / str(os.getpid())).exists()  # removed at shutdown


async def test_unexpected_errors_are_json_500s(
    iris_model: SavedModel, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings_for(iris_model))
    runtime = app.state.runtime

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    async with running(app, raise_app_exceptions=False) as client:
        monkeypatch.setattr(runtime, "predict_one", broken)  # the short POST path
        predict = await client.post("/predict", json={"features": GOOD})
        monkeypatch.setattr(runtime, "ready", broken)  # a plain FastAPI route
        ready = await client.get("/ready")
    for response in (predict, ready):
        assert response.status_code == 500
        assert response.json() == {"error": "internal server error", "reason": "internal_error"}
    assert sum("unhandled error on" in r.getMessage() for r in caplog.records) == 2


async def test_on_predicted_sees_every_model_call(iris_model: SavedModel, caplog: pytest.LogCaptureFixture) -> None:
    """The hook for per-call statistics (drift): rows and outputs, never breaking a prediction."""
    seen: list[tuple[int, list[Any]]] = []
    app = create_app(settings_for(iris_model))
    runtime = app.state.runtime
    runtime.on_predicted = lambda rows, out: seen.append((len(rows), out.labels.tolist()))
    async with running(app) as client:
        await client.post("/predict", json={"features": GOOD})
        await client.post("/predict/batch", json={"instances": [GOOD, GOOD]})
        runtime.on_predicted = lambda rows, out: 1 / 0
        broken_hook = await client.post("/predict", json={"features": GOOD})
    assert seen == [(1, ["setosa"]), (2, ["setosa", "setosa"])]
    assert broken_hook.status_code == 200
    assert any("on_predicted hook failed" in r.getMessage() for r in caplog.records)

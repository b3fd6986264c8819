"""Each model format served end to end: sklearn, skops and ONNX through /predict and V2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from modeldeploy_server.app import create_app

from tests.fixtures import models

from .conftest import running, settings_for

pytestmark = pytest.mark.anyio


async def test_onnx_multiclass_over_http_api(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    X, y = models.iris()
    model = models.LogisticRegression(max_iter=1000).fit(X, y)
    saved = models.save_onnx(model, X, tmp_path / "iris.onnx")
    rows = X[::20]
    expected = model.predict_proba(rows)
    app = create_app(settings_for(saved, model_sha256=None))
    async with running(app) as client:
        one = (await client.post("/predict", json={"features": rows[0].tolist(), "class_probabilities": True})).json()
        many = (await client.post("/predict/batch", json={"instances": rows.tolist()})).json()
        meta = (await client.get("/v2/models/m")).json()
        v2 = (
            await client.post(
                "/v2/models/m/infer",
                json={
                    "inputs": [
                        {"name": "input", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}
                    ]
                },
            )
        ).json()
    assert one["prediction"] == int(model.predict(rows[:1])[0])
    assert set(one["class_probabilities"]) == {"0", "1", "2"}
    np.testing.assert_allclose(list(one["class_probabilities"].values()), expected[0], atol=1e-5)
    assert many["predictions"] == model.predict(rows).tolist()
    np.testing.assert_allclose(many["probabilities"], expected.max(axis=1), atol=1e-5)
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    labels, proba = v2["outputs"]
    assert labels["datatype"] == "INT64"
    assert labels["data"] == model.predict(rows).tolist()
    assert proba["datatype"] == "FP32"
    np.testing.assert_allclose(proba["data"], expected.ravel(), atol=1e-5)


async def test_onnx_regressor_values(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    model, X = models.ridge()
    saved = models.save_onnx(model, X, tmp_path / "ridge.onnx")
    async with running(create_app(settings_for(saved))) as client:
        body = (await client.post("/predict", json={"features": X[0].tolist()})).json()
    assert body["probability"] is None
    assert body["prediction"] == pytest.approx(model.predict(X[:1])[0], rel=1e-4)


async def test_skops_over_http(tmp_path: Path) -> None:
    pytest.importorskip("skops")
    model, X = models.iris_logreg()
    saved = models.save_skops(model, X, tmp_path / "iris.skops")
    async with running(create_app(settings_for(saved))) as client:
        body = (await client.post("/predict/batch", json={"instances": X[::50].tolist()})).json()
        meta = (await client.get("/v2/models/m")).json()
    assert body["predictions"] == model.predict(X[::50]).tolist()
    assert meta["platform"] == "sklearn"

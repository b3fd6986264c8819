"""Open Inference Protocol (KServe V2): raw JSON and binary requests, and unchanged V2 clients."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from modeldeploy_server.app import create_app

from tests.fixtures.models import SavedModel

from .conftest import running, serve_http, settings_for, wait_ready

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
KSERVE_PYTHON = Path(os.environ.get("MODELDEPLOY_KSERVE_PYTHON", ROOT / ".local/venv-kserve/bin/python"))


def infer_body(rows: np.ndarray[Any, Any], datatype: str = "FP64", **extra: Any) -> dict[str, Any]:
    data = rows.astype(np.int64).tolist() if datatype.startswith("INT") else rows.tolist()
    return {
        "inputs": [{"name": "x", "shape": list(rows.shape), "datatype": datatype, "data": data}],
        **extra,
    }


async def test_health_and_metadata(iris_model: SavedModel) -> None:
    async with running(create_app(settings_for(iris_model))) as client:
        live = (await client.get("/v2/health/live")).json()
        ready = (await client.get("/v2/health/ready")).json()
        server = (await client.get("/v2")).json()
        model = (await client.get("/v2/models/m")).json()
        versioned = (await client.get("/v2/models/m/versions/v1")).json()
        model_ready = await client.get("/v2/models/m/ready")
        version_ready = await client.get("/v2/models/m/versions/v1/ready")
    assert live == {"live": True}
    assert ready == {"ready": True}
    assert server["name"] == "modeldeploy"
    assert "binary_tensor_data" in server["extensions"]
    assert model == versioned
    assert model["name"] == "m"
    assert model["versions"] == ["v1"]
    assert model["platform"] == "sklearn"
    assert model["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert model["outputs"] == [
        {"name": "predict", "datatype": "BYTES", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    assert model["parameters"]["classes"] == ["setosa", "versicolor", "virginica"]
    assert model_ready.json() == {"name": "m", "ready": True}
    assert version_ready.status_code == 200


@pytest.mark.parametrize("versioned", [False, True])
async def test_infer_json(iris_model: SavedModel, versioned: bool) -> None:
    rows = iris_model.rows[::30]
    path = "/v2/models/m/versions/v1/infer" if versioned else "/v2/models/m/infer"
    async with running(create_app(settings_for(iris_model))) as client:
        response = await client.post(path, json=infer_body(rows, id="req-7"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("m", "v1", "req-7")
    predict, proba = body["outputs"]
    assert predict == {
        "name": "predict",
        "shape": [len(rows)],
        "datatype": "BYTES",
        "data": iris_model.model.predict(rows).tolist(),
    }
    assert proba["shape"] == [len(rows), 3]
    assert proba["datatype"] == "FP64"
    np.testing.assert_allclose(proba["data"], iris_model.model.predict_proba(rows).ravel())


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT32", "INT64", "BYTES"])
async def test_infer_datatypes(forest_model: SavedModel, datatype: str) -> None:
    rows = np.round(forest_model.rows[:5] * 3)  # integral, so INT* carries the same values
    body = infer_body(rows, datatype)
    if datatype == "BYTES":
        body["inputs"][0]["data"] = [str(v) for v in rows.ravel()]
    async with running(create_app(settings_for(forest_model))) as client:
        response = await client.post("/v2/models/m/infer", json=body)
    assert response.status_code == 200, response.text
    predict = response.json()["outputs"][0]
    assert predict["datatype"] == "INT64"
    assert predict["data"] == forest_model.model.predict(rows).tolist()


async def test_nested_data_one_row_and_requested_outputs(forest_model: SavedModel) -> None:
    row = forest_model.rows[3]
    expected = forest_model.model.predict_proba([row])[0]
    async with running(create_app(settings_for(forest_model))) as client:
        nested = await client.post(
            "/v2/models/m/infer",
            json={
                "inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP64", "data": [row.tolist()]}],
                "outputs": [{"name": "predict_proba"}],
            },
        )
        flat_row = await client.post(
            "/v2/models/m/infer",
            json={"inputs": [{"name": "x", "shape": [8], "datatype": "FP64", "data": row.tolist()}]},
        )
    outputs = nested.json()["outputs"]
    assert [o["name"] for o in outputs] == ["predict_proba"]
    np.testing.assert_allclose(outputs[0]["data"], expected)
    assert flat_row.json()["outputs"][0]["shape"] == [1]
    assert flat_row.json()["outputs"][0]["data"] == [int(np.argmax(expected))]


async def test_regressor_has_only_predict(ridge_model: SavedModel) -> None:
    rows = ridge_model.rows[:3]
    async with running(create_app(settings_for(ridge_model))) as client:
        meta = (await client.get("/v2/models/m")).json()
        body = (await client.post("/v2/models/m/infer", json=infer_body(rows))).json()
        proba = await client.post("/v2/models/m/infer", json=infer_body(rows, outputs=[{"name": "predict_proba"}]))
    assert [o["name"] for o in meta["outputs"]] == ["predict"]
    assert [o["name"] for o in body["outputs"]] == ["predict"]
    np.testing.assert_allclose(body["outputs"][0]["data"], ridge_model.model.predict(rows))
    assert proba.status_code == 400
    assert proba.json()["reason"] == "unknown_output"
    assert "its outputs are predict" in proba.json()["error"]


async def test_binary_tensor_extension(iris_model: SavedModel) -> None:
    rows = iris_model.rows[::25].astype(np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": rows.nbytes},
                }
            ],
            "outputs": [
                {"name": "predict", "parameters": {"binary_data": True}},
                {"name": "predict_proba", "parameters": {"binary_data": True}},
            ],
        }
    ).encode()
    async with running(create_app(settings_for(iris_model))) as client:
        response = await client.post(
            "/v2/models/m/infer",
            content=header + rows.tobytes(),
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    split = int(response.headers["inference-header-content-length"])
    meta = json.loads(response.content[:split])
    blob = response.content[split:]
    labels_size = meta["outputs"][0]["parameters"]["binary_data_size"]
    labels, offset = [], 0
    while offset < labels_size:
        (n,) = struct.unpack_from("<I", blob, offset)
        labels.append(blob[offset + 4 : offset + 4 + n].decode())
        offset += 4 + n
    proba = np.frombuffer(blob[labels_size:], dtype="<f8").reshape(meta["outputs"][1]["shape"])
    expected_rows = rows.astype(np.float64)
    assert labels == iris_model.model.predict(expected_rows).tolist()
    np.testing.assert_allclose(proba, iris_model.model.predict_proba(expected_rows), rtol=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "reason", "words"),
    [
        ({"inputs": []}, 400, "wrong_input_count", "exactly one input"),
        (
            {"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}] * 2},
            400,
            "wrong_input_count",
            "got 2",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3]}]},
            400,
            "shape_mismatch",
            "has 3 values but shape [1, 4] needs 4",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]},
            400,
            "wrong_feature_count",
            "expects 4 features",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP99", "data": [1, 2, 3, 4]}]},
            400,
            "invalid_datatype",
            "unknown datatype 'FP99'",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP64", "data": ["a", 2, 3, 4]}]},
            400,
            "not_a_number",
            "must be numbers",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1, 4], "datatype": "INT64", "data": [1.5, 2, 3, 4]}]},
            400,
            "not_an_integer",
            "must be integers",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1, 4], "datatype": "BYTES", "data": ["1", "x", "3", "4"]}]},
            400,
            "not_a_number",
            "BYTES elements must hold numbers",
        ),
        (
            {"inputs": [{"name": "a", "shape": [1, 4], "datatype": "BYTES", "data": ["nan", "1", "3", "4"]}]},
            400,
            "not_finite",
            "NaN and infinity are not accepted",
        ),
        (
            {"inputs": [{"name": "a", "shape": [2, 2, 1], "datatype": "FP64", "data": [1, 2, 3, 4]}]},
            400,
            "wrong_shape",
            "[rows, features]",
        ),
        (
            {"inputs": [{"name": "a", "shape": [0, 4], "datatype": "FP64", "data": []}]},
            400,
            "empty_batch",
            "at least one row",
        ),
        (
            {"inputs": [{"name": "a", "shape": [2, 4], "datatype": "FP64", "data": [[1, 2, 3, 4], [1, 2]]}]},
            400,
            "ragged_data",
            "ragged",
        ),
        ({"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP64"}]}, 400, "missing_data", "needs `data`"),
        ({"inputs": "x"}, 400, "invalid_request", "Expected `array`"),
    ],
)
async def test_infer_errors_are_v2_error_bodies(
    iris_model: SavedModel, body: Any, status: int, reason: str, words: str
) -> None:
    async with running(create_app(settings_for(iris_model))) as client:
        response = await client.post("/v2/models/m/infer", json=body)
    assert response.status_code == status
    assert response.json()["reason"] == reason
    assert words in response.json()["error"]


async def test_binary_nan_and_bad_sizes(iris_model: SavedModel) -> None:
    rows = np.array([[5.1, np.nan, 1.4, 0.2]])

    def request(size: int, extra: bytes = b"") -> tuple[bytes, dict[str, str]]:
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, 4],
                        "datatype": "FP64",
                        "parameters": {"binary_data_size": size},
                    }
                ]
            }
        ).encode()
        return header + rows.tobytes() + extra, {"Inference-Header-Content-Length": str(len(header))}

    async with running(create_app(settings_for(iris_model))) as client:
        nan = await client.post("/v2/models/m/infer", content=request(32)[0], headers=request(32)[1])
        short = await client.post("/v2/models/m/infer", content=request(40)[0], headers=request(40)[1])
        header_too_long = await client.post(
            "/v2/models/m/infer", content=b"{}", headers={"Inference-Header-Content-Length": "999"}
        )
    assert nan.status_code == 400
    assert nan.json()["reason"] == "not_finite"
    assert "row 0, feature 1 is nan" in nan.json()["error"]
    assert short.status_code == 400
    assert short.json()["reason"] == "binary_size_mismatch"
    assert header_too_long.status_code == 400
    assert "does not fit" in header_too_long.json()["error"]


async def test_unknown_model_and_version(iris_model: SavedModel) -> None:
    async with running(create_app(settings_for(iris_model))) as client:
        model = await client.get("/v2/models/other")
        version = await client.get("/v2/models/m/versions/v9")
        ready = await client.get("/v2/models/other/ready")
        infer = await client.post("/v2/models/other/infer", json=infer_body(iris_model.rows[:1]))
    for response in (model, version, ready, infer):
        assert response.status_code == 404
        assert set(response.json()) == {"error", "reason"}
    assert model.json()["reason"] == "model_not_found"
    assert "this server serves 'm'" in model.json()["error"]
    assert version.json()["reason"] == "version_not_found"


async def test_failed_model_reports_its_reason(iris_model: SavedModel) -> None:
    async with running(create_app(settings_for(iris_model, model_sha256="1" * 64))) as client:
        metadata = await client.get("/v2/models/m")
        model_ready = await client.get("/v2/models/m/ready")
        server_ready = await client.get("/v2/health/ready")
        live = await client.get("/v2/health/live")
    assert live.status_code == 200
    for response in (metadata, model_ready, server_ready):
        assert response.status_code == 503
        assert response.json()["reason"] == "digest_mismatch"
        assert "failed to load" in response.json()["error"]
    assert server_ready.json()["ready"] is False


# -- existing V2 clients, unchanged, over real HTTP on 127.0.0.1 -------------------------------


def test_tritonclient(iris_model: SavedModel) -> None:
    http = pytest.importorskip("tritonclient.http")
    from tritonclient.utils import InferenceServerException

    rows = iris_model.rows[::10].astype(np.float32)
    expected = iris_model.model.predict(rows.astype(np.float64)).tolist()
    proba = iris_model.model.predict_proba(rows.astype(np.float64))
    with serve_http(create_app(settings_for(iris_model))) as base_url:
        wait_ready(base_url)
        client = http.InferenceServerClient(url=base_url.removeprefix("http://"))
        try:
            assert client.is_server_live()
            assert client.is_server_ready()
            assert client.is_model_ready("m")
            assert client.is_model_ready("m", "v1")
            assert not client.is_model_ready("other")
            assert client.get_server_metadata()["name"] == "modeldeploy"
            assert client.get_model_metadata("m")["inputs"][0]["shape"] == [-1, 4]
            for binary in (True, False):  # the binary tensor extension is the default
                tensor = http.InferInput("input-0", list(rows.shape), "FP32")
                tensor.set_data_from_numpy(rows, binary_data=binary)
                outputs = [
                    http.InferRequestedOutput("predict", binary_data=binary),
                    http.InferRequestedOutput("predict_proba", binary_data=binary),
                ]
                result = client.infer("m", [tensor], outputs=outputs, request_id="t1")
                labels = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("predict")]
                assert labels == expected
                np.testing.assert_allclose(result.as_numpy("predict_proba"), proba, rtol=1e-6)
                assert result.get_response()["id"] == "t1"
            plain = http.InferInput("input-0", list(rows.shape), "FP32")
            plain.set_data_from_numpy(rows)
            everything = client.infer("m", [plain])  # no outputs named: all, in binary
            assert everything.as_numpy("predict_proba").shape == (len(rows), 3)
            with pytest.raises(InferenceServerException, match="expects 4 features"):
                narrow = http.InferInput("input-0", [1, 3], "FP32")
                narrow.set_data_from_numpy(rows[:1, :3])
                client.infer("m", [narrow])
            with pytest.raises(InferenceServerException, match="not served here"):
                client.infer("other", [plain])
        finally:
            client.close()


KSERVE_SCRIPT = r"""
import asyncio, json, sys
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

base_url, rows = sys.argv[1], np.array(json.loads(sys.argv[2]), dtype=np.float32)

async def main():
    client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    out = {
        "live": await client.is_server_live(base_url),
        "ready": await client.is_server_ready(base_url),
        "model_ready": await client.is_model_ready(base_url, "m"),
        "other_ready": await client.is_model_ready(base_url, "other"),
    }
    for binary in (False, True):
        tensor = InferInput("input-0", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        result = await client.infer(base_url, InferRequest("m", [tensor], request_id="k1"), model_name="m")
        by_name = {o.name: o for o in result.outputs}
        out[f"binary={binary}"] = {
            "id": result.id,
            "predict": [x.decode() if isinstance(x, bytes) else x for x in by_name["predict"].as_numpy().tolist()],
            "predict_proba": by_name["predict_proba"].as_numpy().tolist(),
        }
    try:
        bad = InferInput("input-0", [1, 2], "FP32")
        bad.set_data_from_numpy(rows[:1, :2], binary_data=False)
        await client.infer(base_url, InferRequest("m", [bad]), model_name="m")
    except Exception as exc:
        out["error"] = str(exc)
    await client.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def test_kserve_rest_client(iris_model: SavedModel) -> None:
    """The kserve SDK pins its own dependencies, so it runs from its own venv as a client."""
    if not KSERVE_PYTHON.exists():
        if os.environ.get("CI"):  # CI must really run it: `make test` creates the venv
            pytest.fail(f"no kserve venv at {KSERVE_PYTHON}: run `make kserve-client`")
        pytest.skip(f"no kserve venv at {KSERVE_PYTHON} (make kserve-client)")
    rows = iris_model.rows[::20]
    with serve_http(create_app(settings_for(iris_model))) as base_url:
        wait_ready(base_url)
        done = subprocess.run(
            [str(KSERVE_PYTHON), "-c", KSERVE_SCRIPT, base_url, json.dumps(rows.tolist())],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")},
        )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["live"] is True
    assert out["ready"] is True
    assert out["model_ready"] is True
    assert out["other_ready"] is False
    float_rows = rows.astype(np.float32).astype(np.float64)
    for key in ("binary=False", "binary=True"):
        assert out[key]["id"] == "k1"
        assert out[key]["predict"] == iris_model.model.predict(float_rows).tolist()
        np.testing.assert_allclose(out[key]["predict_proba"], iris_model.model.predict_proba(float_rows), rtol=1e-6)
    assert "expects 4 features per row, got 2" in out["error"]


def test_v2_single_rows_are_batched_over_http(forest_model: SavedModel) -> None:
    """V2 one-row requests go through the micro-batcher like /predict."""
    import asyncio

    import aiohttp

    rows = forest_model.rows[:200]
    app = create_app(settings_for(forest_model, max_latency_ms=5))
    with serve_http(app) as base_url:
        wait_ready(base_url)

        async def fire() -> list[Any]:
            async with aiohttp.ClientSession(base_url) as session:

                async def one(row: np.ndarray[Any, Any]) -> Any:
                    body = infer_body(row[None, :])
                    async with session.post("/v2/models/m/infer", json=body) as r:
                        return await r.json()

                return list(await asyncio.gather(*(one(r) for r in rows)))

        bodies = asyncio.run(fire())
    assert [b["outputs"][0]["data"][0] for b in bodies] == forest_model.model.predict(rows).tolist()
    metrics = app.state.metrics.render().decode()
    calls = next(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("modeldeploy_batch_size_count{")
    )
    assert calls < len(rows)

"""`modeldeploy serve` with MODELDEPLOY_LOG_FORMAT=json: every line it prints is JSON naming the model and version."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.fixtures.models import SavedModel

from .conftest import wait_ready

MODELDEPLOY = str(Path(sys.executable).parent / "modeldeploy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("workers", [1, 2])
def test_every_line_is_json_with_model_name_and_version(iris_model: SavedModel, tmp_path: Path, workers: int) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELDEPLOY_")}
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "client").write_text("json-logs-key-000000000000000000")
    env.update({
        "MODELDEPLOY_MODEL_NAME": "iris", "MODELDEPLOY_MODEL_VERSION": "2.1.0",
        "MODELDEPLOY_MODEL_URI": str(iris_model.path), "MODELDEPLOY_MODEL_SHA256": iris_model.sha256,
        "MODELDEPLOY_HOST": "127.0.0.1", "MODELDEPLOY_PORT": str(port), "MODELDEPLOY_WORKERS": str(workers),
        "MODELDEPLOY_LOG_FORMAT": "json", "MODELDEPLOY_ACCESS_LOG": "true", "MODELDEPLOY_CACHE_DIR": str(tmp_path),
        "MODELDEPLOY_AUTH_DIR": str(keys),
    })
    out = tmp_path / "out.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen([MODELDEPLOY, "serve"], env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, timeout=120)
            row = iris_model.rows[0].tolist()
            key = {"X-API-Key": "json-logs-key-000000000000000000"}
            assert httpx.post(f"{url}/predict", json={"features": row}, headers=key).status_code == 200
            assert httpx.post(f"{url}/predict", json={"features": [1.0]}, headers=key).status_code == 400
            assert httpx.post(f"{url}/predict", json={"features": row}).status_code == 401
            assert httpx.get(f"{url}/nowhere").status_code == 404
            assert httpx.get(f"{url}/metrics").status_code == 200
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
    lines = [line for line in out.read_text().splitlines() if line.strip()]
    assert len(lines) >= 5, lines  # start-up, model loaded, access lines, shutdown
    for line in lines:
        record = json.loads(line)  # fails on any non-JSON line, e.g. a stray print or traceback
        assert (record["model_name"], record["model_version"]) == ("iris", "2.1.0"), line
        assert {"time", "level", "logger", "message"} <= record.keys(), line
    messages = " ".join(json.loads(line)["message"] for line in lines)
    assert "model loaded" in messages and "/predict" in messages  # the access log is JSON too

"""`modeldeploy serve`: flags over env, readable refusals, and real server processes."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from modeldeploy_server.cli import add_serve_arguments, run_serve, settings_from_args

from tests.fixtures.models import SavedModel

from .conftest import wait_ready

SERVE = "import sys; from modeldeploy_server.cli import main; sys.exit(main())"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(argv)


def test_flags_override_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELDEPLOY_MODEL_NAME", "from-env")
    monkeypatch.setenv("MODELDEPLOY_PORT", "9000")
    monkeypatch.setenv("MODELDEPLOY_WORKERS", "3")
    args = parse("--model", "/m.joblib", "--port", "9100", "--version", "2.0", "--format", "onnx")
    settings = settings_from_args(args)
    assert settings.model_name == "from-env"
    assert settings.port == 9100
    assert settings.workers == 3
    assert settings.model_uri == "/m.joblib"
    assert settings.model_version == "2.0"
    assert settings.model_format == "onnx"
    assert settings.allow_unverified is False


def test_no_flags_is_all_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELDEPLOY_MODEL_URI", "https://models.example/m.joblib")
    monkeypatch.setenv("MODELDEPLOY_MODEL_SHA256", "AB" * 32)
    monkeypatch.setenv("MODELDEPLOY_ALLOW_UNVERIFIED", "true")
    settings = settings_from_args(parse())
    assert settings.model_uri == "https://models.example/m.joblib"
    assert settings.model_sha256 == "ab" * 32
    assert settings.allow_unverified is True


def test_sha256_and_allow_unverified_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("--sha256", "a" * 64, "--allow-unverified")
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_bad_settings_exit_2_with_the_env_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_serve(parse("--model", "/m.joblib", "--sha256", "xyz", "--port", "0")) == 2
    err = capsys.readouterr().err
    assert "MODELDEPLOY_MODEL_SHA256" in err
    assert "64 hex characters" in err
    assert "MODELDEPLOY_PORT" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    url: str
    process: subprocess.Popen[str]
    stderr: str = ""

    def stop(self) -> int:
        """SIGTERM, then the exit status and all of stderr (uvicorn re-raises the signal)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _, self.stderr = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, self.stderr = self.process.communicate()
        return self.process.returncode


@contextmanager
def serve_process(env: dict[str, str], *argv: str) -> Iterator[Served]:
    port = _free_port()
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MODELDEPLOY_")},
        "MODELDEPLOY_HOST": "127.0.0.1",
        "MODELDEPLOY_PORT": str(port),
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, *argv],
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    served = Served(f"http://127.0.0.1:{port}", process)
    try:
        yield served
    finally:
        served.stop()


GRACEFUL = (0, -signal.SIGTERM)


def test_serve_from_env_like_a_pod(iris_model: SavedModel, tmp_path: Path) -> None:
    """`modeldeploy serve` with no flags: everything from MODELDEPLOY_*, JSON logs on stderr."""
    env = {
        "MODELDEPLOY_MODEL_NAME": "iris",
        "MODELDEPLOY_MODEL_VERSION": "3",
        "MODELDEPLOY_MODEL_URI": iris_model.uri,
        "MODELDEPLOY_MODEL_SHA256": iris_model.sha256,
        "MODELDEPLOY_CACHE_DIR": str(tmp_path / "cache"),
        "MODELDEPLOY_LOG_FORMAT": "json",
    }
    with serve_process(env) as served:
        wait_ready(served.url)
        response = httpx.post(f"{served.url}/predict", json={"features": [5.1, 3.5, 1.4, 0.2]})
        assert served.stop() in GRACEFUL
    stderr = served.stderr
    assert response.json()["prediction"] == "setosa"
    assert response.json()["model_version"] == "3"
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert lines, "no log lines"
    assert all((line["model_name"], line["model_version"]) == ("iris", "3") for line in lines)
    assert any("model loaded" in line["message"] for line in lines)
    assert not any("POST /predict" in line["message"] for line in lines)  # no access log


def test_serve_flags_and_failed_load_stays_up(iris_model: SavedModel) -> None:
    """A load failure keeps the process serving /health and says why on /ready and in logs."""
    with serve_process({}, "--model", str(iris_model.path), "--name", "iris") as served:
        url = served.url
        deadline = time.monotonic() + 20
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{url}/ready", timeout=2)
                if ready.status_code == 503 and ready.json()["reason"] != "model_loading":
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        assert ready is not None
        assert httpx.get(f"{url}/health").status_code == 200
        assert served.stop() in GRACEFUL
    stderr = served.stderr
    assert ready.status_code == 503
    assert ready.json()["reason"] == "unverified_pickle"
    assert "[model=iris version=1]" in stderr
    assert "refusing to unpickle" in stderr


def test_serve_with_two_workers(forest_model: SavedModel) -> None:
    """Workers read the settings back from the env; /metrics adds up every worker's."""
    argv = ("--model", str(forest_model.path), "--sha256", forest_model.sha256, "--workers", "2")
    rows = forest_model.rows[:40]
    with serve_process({"MODELDEPLOY_MODEL_NAME": "forest"}, *argv) as served:
        url = served.url
        wait_ready(url, timeout=60)
        with httpx.Client(base_url=url) as client:
            answers = []
            for row in rows:
                # New connections, so that both workers get some of them.
                client.headers["connection"] = "close"
                answers.append(client.post("/predict", json={"features": row.tolist()}).json())
            metrics = client.get("/metrics").text
    assert [a["prediction"] for a in answers] == forest_model.model.predict(rows).tolist()
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("modeldeploy_requests_total{") and 'endpoint="predict"' in line
    )
    assert total == len(rows)
    assert 'model_name="forest"' in metrics

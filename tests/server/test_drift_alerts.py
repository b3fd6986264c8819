"""Drift alerts: Slack-compatible posts to a real HTTP receiver on loopback, retried, the URL never logged."""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from modeldeploy_server.app import create_app
from modeldeploy_server.drift_alerts import WebhookNotifier
from modeldeploy_server.logs import ModelLogger

from tests.fixtures.models import SavedModel
from tests.server.conftest import serve_http, wait_ready
from tests.server.drift_support import SavedProfile, drift_settings, reference_rows, save_iris_profile, shifted_rows

SECRET_PATH = "/services/T000/B000/XXXXSECRETXXXX"


class Receiver:
    """A webhook receiver on 127.0.0.1 answering `codes` in turn (then 200), recording every body."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = list(codes)
        self.bodies: list[dict[str, Any]] = []
        self.attempts = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                code = receiver.codes.pop(0) if receiver.codes else 200
                if code == 200:
                    assert self.path == SECRET_PATH and self.headers["Content-Type"] == "application/json"
                    receiver.bodies.append(json.loads(body))
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"


@contextlib.contextmanager
def receiving(codes: list[int]) -> Iterator[Receiver]:
    receiver = Receiver(codes)
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def logger() -> ModelLogger:
    return ModelLogger(logging.getLogger("modeldeploy.server"), {"model_name": "m", "model_version": "1"})


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_failed_attempts_are_retried_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    with receiving([500, 503]) as receiver:
        notifier = WebhookNotifier(receiver.url, logger(), base_delay_s=0.01)
        notifier.post({"text": "drift!"})
        assert notifier.join(timeout=60)
        notifier.close()
    assert receiver.attempts == 3
    assert receiver.bodies == [{"text": "drift!"}]
    assert (notifier.sent, notifier.failed) == (1, 0)
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2 and "HTTP 500" in retries[0] and "retrying in 0.0s" in retries[0]
    assert "SECRET" not in caplog.text and "127.0.0.1" not in caplog.text


@pytest.mark.parametrize(("codes", "attempts"), [([503] * 10, 3), ([404], 1)], ids=["gives-up", "no-retry-on-4xx"])
def test_attempts_are_bounded(codes: list[int], attempts: int, caplog: pytest.LogCaptureFixture) -> None:
    with receiving(codes) as receiver:
        notifier = WebhookNotifier(receiver.url, logger(), max_attempts=3, base_delay_s=0.01)
        notifier.post({"text": "drift!"})
        assert notifier.join(timeout=60)
        notifier.close()
    assert receiver.attempts == attempts and receiver.bodies == []
    assert notifier.failed == 1
    assert any(f"not delivered after {attempts} attempt(s)" in r.getMessage() for r in caplog.records)
    assert "SECRET" not in caplog.text


def test_unreachable_webhook_is_reported_without_its_url(caplog: pytest.LogCaptureFixture) -> None:
    with receiving([]) as receiver:
        url = receiver.url  # then nothing listens there any more
    notifier = WebhookNotifier(url, logger(), max_attempts=2, base_delay_s=0.01, timeout_s=5)
    notifier.post({"text": "drift!"})
    assert notifier.join(timeout=60)
    notifier.close()
    assert notifier.failed == 1
    assert "ConnectionRefusedError" in caplog.text
    assert "SECRET" not in caplog.text and "XXXX" not in repr(notifier)


def test_replica_alerts_when_it_drifts_and_when_it_recovers(
    iris_model: SavedModel, tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole path: predictions -> window -> background judgement -> webhook, the first attempt failing."""
    profile: SavedProfile = save_iris_profile(iris_model, tmp_path_factory.mktemp("profile"))
    with receiving([500]) as receiver:
        settings = drift_settings(
            iris_model, profile, drift_interval_seconds=0.05, drift_webhook_url=receiver.url, pod_name="iris-7f9c"
        )
        app = create_app(settings)
        with serve_http(app) as url:
            wait_ready(url)
            batch = {"instances": shifted_rows(200).tolist()}
            assert httpx.post(f"{url}/predict/batch", json=batch).status_code == 200
            wait_until(lambda: len(receiver.bodies) >= 1, "the drift alert")
            batch = {"instances": reference_rows(200).tolist()}
            assert httpx.post(f"{url}/predict/batch", json=batch).status_code == 200
            wait_until(lambda: len(receiver.bodies) >= 2, "the recovery alert")
    detected, resolved = receiver.bodies[:2]
    assert receiver.attempts >= 3  # the first post failed and was retried
    assert detected["text"].startswith(":warning: Drift detected for *iris* v1 on pod `iris-7f9c`")
    assert "`petal_length`" in detected["text"] and "`sepal_width`" in detected["text"]
    assert detected["blocks"][0]["type"] == "section"
    assert resolved["text"].startswith(":white_check_mark: Drift resolved for *iris* v1")
    assert len(receiver.bodies) == 2  # one alert per change, not one per judgement
    assert "SECRET" not in caplog.text

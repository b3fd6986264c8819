"""Drift alerts: Slack-compatible webhook posts from a background thread, retried with exponential backoff.

The webhook URL is a secret (Slack's carries its token in the path): it is never logged, and
failures are reported by status code or error kind only. Posting never blocks serving: alerts
go through a small queue (the oldest is dropped when it is full) to one daemon thread.
"""

from __future__ import annotations

import json
import queue
import threading
import urllib.error
import urllib.request
from typing import Any, Final

from modeldeploy_drift import DriftReport

from modeldeploy_server.drift_monitor import Transition
from modeldeploy_server.logs import ModelLogger

MAX_ATTEMPTS: Final = 6
BASE_DELAY_S: Final = 1.0
MAX_DELAY_S: Final = 60.0
TIMEOUT_S: Final = 10.0
QUEUE_SIZE: Final = 16
_TOP_FEATURES: Final = 5


def alert_payload(
    change: Transition, *, model_name: str, model_version: str, pod: str | None, page_url: str | None = None
) -> dict[str, Any]:
    """The Slack-compatible body: `text` (what every receiver reads), plus Block Kit `blocks`."""
    report = change.evaluation.report
    where = f"*{model_name}* {model_version}" + (f" on pod `{pod}`" if pod else "")
    if change.drifted:
        headline = f":warning: Drift detected for {where}"
        detail = _drifted_lines(report)
    else:
        headline = f":white_check_mark: Drift resolved for {where}"
        detail = f"no feature drifted in the last {report.window_rows} rows"
    facts = (
        f"window {report.window_rows} rows, dataset p={_fmt(report.p_value)}, "
        f"alpha={report.alpha} ({report.correction}), checked {report.checked_at:%Y-%m-%dT%H:%M:%SZ}"
    )
    text = f"{headline}: {detail} ({facts})"
    context = facts + (f" - <{page_url}|drift report>" if page_url else "")
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{headline}\n{detail}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


def _drifted_lines(report: DriftReport) -> str:
    drifted = report.drifted_features
    parts = [f"`{f.name}` ({f.test}, p={_fmt(f.p_adjusted)}, JS={_fmt(f.js)})" for f in drifted[:_TOP_FEATURES]]
    more = len(drifted) - _TOP_FEATURES
    return "drift in " + ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


class WebhookNotifier:
    """Posts JSON bodies to one webhook URL from a daemon thread (see module docstring)."""

    def __init__(
        self,
        url: str,
        log: ModelLogger,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        base_delay_s: float = BASE_DELAY_S,
        max_delay_s: float = MAX_DELAY_S,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self._url = url
        self.log = log
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.timeout_s = timeout_s
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(QUEUE_SIZE)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drift-alerts", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return "WebhookNotifier(url=<secret>)"

    def post(self, payload: dict[str, Any]) -> None:
        """Queue a body for posting; returns at once (drops the oldest alert if many are pending)."""
        while True:
            try:
                self._queue.put_nowait(payload)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self._queue.task_done()
                    self.log.warning("drift alert dropped: too many alerts pending for the webhook")
                except queue.Empty:
                    pass

    def join(self, timeout: float) -> bool:
        """Wait until every queued alert was delivered or given up (tests); True if it was."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self) -> None:
        """Stop the thread; pending alerts are dropped."""
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                payload = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._deliver(payload)
            finally:
                self._queue.task_done()

    def _deliver(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        for attempt in range(1, self.max_attempts + 1):
            outcome, retry = self._attempt(body)
            if outcome is None:
                self.sent += 1
                return
            if not retry or attempt == self.max_attempts:
                self.failed += 1
                self.log.error("drift alert not delivered after %d attempt(s): %s", attempt, outcome)
                return
            delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
            self.log.warning(
                "drift alert attempt %d/%d failed (%s), retrying in %.1fs", attempt, self.max_attempts, outcome, delay
            )
            if self._stop.wait(delay):
                return

    def _attempt(self, body: bytes) -> tuple[str | None, bool]:
        """None on success, else what went wrong (never the URL) and whether to retry."""
        request = urllib.request.Request(
            self._url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
            return None, False
        except urllib.error.HTTPError as exc:
            code = exc.code
            return f"HTTP {code}", code >= 500 or code in (408, 429)
        except urllib.error.URLError as exc:
            return self._scrub(f"{type(exc.reason).__name__}: {exc.reason}"), True
        except (OSError, ValueError) as exc:  # timeouts, resets; a malformed URL (ValueError) is not retried
            return self._scrub(type(exc).__name__), isinstance(exc, OSError)

    def _scrub(self, text: str) -> str:
        return text.replace(self._url, "<webhook>")

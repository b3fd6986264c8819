"""Drift monitoring in the server: the reference profile, this replica's live window, verdicts off the request path.

- At start-up (in the loading thread, beside the model) the profile named by
  `MODELDEPLOY_DRIFT_REFERENCE_URI` is fetched and its sha256 checked exactly as the model's is.
  A profile that cannot be used never stops serving: the drift endpoints then answer 503 and say why.
- `observe(rows, labels)` runs in the predict thread after every model call: it only appends the
  call's arrays to a queue (a fraction of a microsecond, lock-free for small calls). `fold()` counts
  the queued calls into a fixed-size `WindowState` in one vectorised pass, in the background every
  FOLD_SECONDS (and before any read). Rows that a fold would push out of the window again are not
  counted at all, only tallied (`WindowState.kept_rows`), so a fold costs at most about one window
  of rows whatever the traffic; and once the big calls queued after a call hold a whole window of
  rows, that call is let go at once (tallied), so request arrays are not kept alive for nothing.
  The queue is bounded: at PENDING_CALLS small calls, or once the big calls hold PENDING_VALUES
  values, the predict thread folds itself.
- A background task judges the window every `MODELDEPLOY_DRIFT_INTERVAL_SECONDS` in a thread
  (never on the event loop, never on a request): gauges, the `/drift` page and the alert webhook.

Several workers (`serve --workers N`): each process owns a window of `ceil(window / N)` rows, so
the pod still judges about `window` rows. Every worker writes its collapsed window to
`<worker_state_dir>/drift-<pid>.json` (atomically, about once a second when it changed), and
whichever worker answers `/drift/state` or judges merges its own live window with the files of
its live siblings (`WindowState.merge`, exact counts). Siblings are at most that second stale.
Only the worker holding the flock on `drift-alert.lock` posts alerts, so a pod alerts once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
from modeldeploy_drift import DriftConfig, DriftReport, DriftStatus, Profile, ProfileError, StateError, WindowState
from modeldeploy_drift import evaluate as judge

from modeldeploy_server import sources
from modeldeploy_server.errors import NotFound, ServerError
from modeldeploy_server.logs import ModelLogger
from modeldeploy_server.metrics import DriftGauges
from modeldeploy_server.runtime import ModelFacts
from modeldeploy_server.settings import ServerSettings
from modeldeploy_server.stores import StoreConfig

MAX_PROFILE_BYTES: Final = 16 * 1024 * 1024
PUBLISH_SECONDS: Final = 1.0
"""How often a worker of several writes its window for its siblings (when it changed)."""
FOLD_SECONDS: Final = 0.25
"""Longest a model call waits to be counted into the window (in the background)."""
PENDING_CALLS: Final = 512
"""Queued model calls at which the predict thread folds them itself (bounds the memory of small calls)."""
BIG_CALL_VALUES: Final = 1024
"""A model call with this many values (rows x features) or more counts towards PENDING_VALUES."""
PENDING_VALUES: Final = 1 << 20
"""Values of queued big calls at which the predict thread folds them itself (8 MiB of float64)."""
_BUCKETS: Final = 10
_STATE_PREFIX: Final = "drift-"
_ALERT_LOCK: Final = "drift-alert.lock"


class DriftUnavailable(ServerError):
    """Drift is configured but cannot be judged (profile loading, or unusable)."""

    status = 503
    reason = "drift_unavailable"


NOT_CONFIGURED = NotFound(
    "drift monitoring is not configured (set MODELDEPLOY_DRIFT_REFERENCE_URI)", reason="drift_not_configured"
)


@dataclass(frozen=True)
class Evaluation:
    """One verdict and the (merged) window it was computed from."""

    report: DriftReport
    window: WindowState
    workers: int
    """Worker processes whose windows were merged into `window`."""


@dataclass(frozen=True)
class Transition:
    """This replica's verdict turned Drifted (`drifted`), or back to NoDrift."""

    drifted: bool
    evaluation: Evaluation


class DriftMonitor:
    """Owns the profile, the window and the latest verdict of this process (see module docstring)."""

    def __init__(
        self,
        settings: ServerSettings,
        gauges: DriftGauges,
        log: ModelLogger,
        *,
        state_dir: Path | None = None,
        workers: int = 1,
    ) -> None:
        assert settings.drift_reference_uri, "DriftMonitor needs MODELDEPLOY_DRIFT_REFERENCE_URI"
        self.settings = settings
        self.gauges = gauges
        self.log = log
        self.config = DriftConfig(
            alpha=settings.drift_alpha, correction=settings.drift_correction, min_samples=settings.drift_min_samples
        )
        self.state_dir = state_dir
        self.workers = workers
        self.window_size = math.ceil(settings.drift_window_size / workers)
        self.profile: Profile | None = None
        self.error: ServerError | None = None
        self.latest: Evaluation | None = None
        self._state: WindowState | None = None
        self._lock = threading.Lock()  # the window: fold vs snapshot
        self._pending: deque[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]] = deque()
        self._big_lock = threading.Lock()  # the tallies of big queued calls, and letting calls go
        self._big_values = 0
        self._big_rows = 0
        self._let_go = 0  # rows of calls let go before the next fold (outside the window by then)
        self._span = 0  # rows a window can hold (buckets x capacity)
        self._row_shape: tuple[int] | None = None  # (features,) once the profile is loaded
        self._judging = threading.Lock()  # one judgement at a time, so `latest` is never older than it
        self._observe_errors = 0
        self._published_rows = -1
        self._alerted_drifted = False
        self._alert_lock: IO[bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self.on_transition: Callable[[Transition], None] | None = None
        """Called on the event loop when this replica's verdict changes (the alert webhook)."""

    # -- loading (the model's loading thread) ----------------------------------------------

    def load(self, facts: ModelFacts) -> None:
        """Fetch, check and install the profile; never raises (a failure is kept in `error`)."""
        uri = self.settings.drift_reference_uri or ""
        try:
            local = sources.fetch(
                uri,
                expected_sha256=self.settings.drift_reference_sha256,
                cache_dir=self.settings.cache_dir,
                timeout_s=self.settings.download_timeout_s,
                log=self.log,
                store=StoreConfig.from_settings(self.settings),  # the model's object store and claims
            )
            size = local.path.stat().st_size
            if size > MAX_PROFILE_BYTES:
                raise DriftUnavailable(f"{size} bytes, the limit is {MAX_PROFILE_BYTES}")
            profile = Profile.from_json(local.path.read_bytes())
            n = len(profile.features)
            if facts.n_features is not None and n != facts.n_features:
                raise DriftUnavailable(f"it has {n} features, the model takes {facts.n_features}")
        except Exception as exc:  # never the model's load failure: serving goes on without drift
            expected = isinstance(exc, ServerError | ProfileError | OSError)
            message = exc.message if isinstance(exc, ServerError) else str(exc) if expected else repr(exc)
            self.error = DriftUnavailable(f"drift reference profile {uri} is unusable: {message}")
            self.log.error("drift monitoring is off: %s", self.error.message, extra={"reason": "drift_profile"},
                           exc_info=not expected)
            return
        if profile.model_sha256 and profile.model_sha256 != facts.sha256:
            self.log.warning(
                "the drift profile was built for another model file (sha256 %s, this model %s)",
                profile.model_sha256[:12],
                facts.sha256[:12],
            )
        self._state = WindowState(profile, window_size=self.window_size, buckets=min(_BUCKETS, self.window_size))
        self.profile = profile
        self._span = self._state.capacity * self._state.buckets
        self._row_shape = (len(profile.features),)
        self.log.info(
            "drift monitoring on: profile %s (%d features), window %d rows%s, judged every %gs",
            profile.digest(),
            len(profile.features),
            self.window_size,
            f" per worker x {self.workers}" if self.workers > 1 else "",
            self.settings.drift_interval_seconds,
        )

    def ready_profile(self) -> Profile:
        """The profile if drift can be judged; else raises why not (503)."""
        if self.profile is not None:
            return self.profile
        if self.error is not None:
            raise self.error
        raise DriftUnavailable("the drift reference profile is still loading", reason="drift_loading")

    # -- observing (the predict thread) --------------------------------------------------

    def observe(self, rows: np.ndarray[Any, Any], labels: np.ndarray[Any, Any] | None) -> None:
        """Queue one model call's rows and predicted labels for the next fold; never raises, never waits long.

        The hot path is a shape check and a deque append (thread-safe without a lock); a big call
        also adds its size to a counter under a lock. Counting happens in `fold`.
        """
        if rows.shape[1:] != self._row_shape or rows.ndim != 2:
            if self.profile is not None:
                self._not_counted(f"rows of shape {rows.shape}, the profile has {len(self.profile.features)} features")
            return
        pending = self._pending
        size = rows.size
        if size < BIG_CALL_VALUES:
            pending.append((rows, labels))
            full = len(pending) >= PENDING_CALLS
        else:
            with self._big_lock:
                pending.append((rows, labels))
                self._big_values += size
                self._big_rows += rows.shape[0]
                # Calls older than a whole window of big rows can only be evicted: let them go now.
                while pending and self._big_rows - _rows_if_big(pending[0][0]) >= self._span:
                    old, _ = pending.popleft()
                    self._let_go += old.shape[0]
                    self._untally(old)
                full = self._big_values >= PENDING_VALUES
        if full:
            self.fold()

    def fold(self) -> None:
        """Count the queued model calls into the window, in call order, in one pass.

        Only the rows that stay in the window are concatenated and counted; the calls before them
        (and those let go by `observe`) are tallied as skipped rows: this fold would evict them anyway.
        """
        state = self._state
        if state is None:
            return
        with self._lock:
            pending = self._pending
            with self._big_lock:
                calls = [pending.popleft() for _ in range(len(pending))]  # appends meanwhile wait for the next fold
                for r, _ in calls:
                    self._untally(r)
                let_go, self._let_go = self._let_go, 0
            if not calls:
                return
            try:
                queued = sum(r.shape[0] for r, _ in calls)
                skipped = let_go + queued - state.kept_rows(let_go + queued)  # >= let_go: those came first
                first, dropped = 0, let_go
                while first < len(calls) and dropped + calls[first][0].shape[0] <= skipped:  # outside the window
                    dropped += calls[first][0].shape[0]
                    first += 1
                kept = calls[first:]
                if not kept:  # nothing but empty calls
                    return
                cut = skipped - dropped  # leading rows of the first kept call that fall out too
                if len(kept) == 1:
                    rows, labels = kept[0]
                else:
                    rows = np.concatenate([r for r, _ in kept])
                    labels = None if any(p is None for _, p in kept) else np.concatenate([p for _, p in kept])
                if labels is not None and labels.shape != (rows.shape[0],):
                    labels = None
                state.observe(rows[cut:], labels[cut:] if labels is not None else None, skipped=skipped)
            except (ValueError, TypeError) as exc:
                self._not_counted(str(exc))

    def _untally(self, rows: np.ndarray[Any, Any]) -> None:
        """Take a call that leaves the queue out of the big-call tallies (under `_big_lock`)."""
        if rows.size >= BIG_CALL_VALUES:
            self._big_rows -= rows.shape[0]
            self._big_values -= rows.size

    def _not_counted(self, why: str) -> None:
        self._observe_errors += 1
        if self._observe_errors == 1 or self._observe_errors % 10_000 == 0:
            self.log.warning("drift: rows not counted (%d times so far): %s", self._observe_errors, why)

    def snapshot(self) -> WindowState:
        """A copy of this process's window with every call so far counted (a few array copies)."""
        if self._state is None:
            self.ready_profile()
            raise AssertionError("drift profile without a window")
        self.fold()
        with self._lock:
            return WindowState.merge([self._state])

    # -- the pod's window (several workers) ------------------------------------------------

    def pod_window(self) -> tuple[WindowState, int]:
        """This process's window merged with its live sibling workers' published windows."""
        own = self.snapshot()
        if self.state_dir is None:
            return own, 1
        states = [own]
        for path in self.state_dir.glob(f"{_STATE_PREFIX}*.json"):
            pid = path.stem.removeprefix(_STATE_PREFIX)
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            if not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            try:
                states.append(WindowState.from_dict(json.loads(path.read_bytes()), own.profile))
            except (OSError, ValueError, StateError) as exc:  # half-written by a dying worker, another profile
                self.log.debug("drift: sibling window %s skipped: %s", path.name, exc)
        return (WindowState.merge(states) if len(states) > 1 else own), len(states)

    def state_body(self) -> dict[str, Any]:
        """What `/drift/state` answers: the pod's window, collapsed, for the operator to merge."""
        profile = self.ready_profile()
        window, workers = self.pod_window()
        return {
            "profileDigest": profile.digest(),
            "modelVersion": self.settings.model_version,
            "pod": self.settings.pod_name,
            "workers": workers,
            "state": window.to_dict(collapse=True),
        }

    def publish(self) -> None:
        """Write this worker's window for its siblings (only with several workers, only if it changed)."""
        if self.state_dir is None or self._state is None:
            return
        own = self.snapshot()
        if own.total_rows == self._published_rows:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        target = self.state_dir / f"{_STATE_PREFIX}{os.getpid()}.json"
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(json.dumps(own.to_dict(collapse=True), separators=(",", ":")))
        os.replace(tmp, target)
        self._published_rows = own.total_rows

    def unpublish(self) -> None:
        if self.state_dir is not None:
            (self.state_dir / f"{_STATE_PREFIX}{os.getpid()}.json").unlink(missing_ok=True)

    # -- judging (a background thread) -----------------------------------------------------

    def evaluate_now(self) -> Evaluation:
        """Judge the pod's window now: sets `latest` and the gauges (blocking; not on the event loop)."""
        profile = self.ready_profile()
        with self._judging:
            self.publish()
            window, workers = self.pod_window()
            report = judge(profile, window, self.config, model_version=self.settings.model_version)
            evaluation = Evaluation(report, window, workers)
            self.latest = evaluation
            self.gauges.update(report, profile.feature_names)
        return evaluation

    def latest_report(self) -> DriftReport:
        """The last verdict (an Unknown report before the first one)."""
        self.ready_profile()
        if self.latest is None:
            return DriftReport.unknown("not judged yet", model_version=self.settings.model_version)
        return self.latest.report

    def transition(self, evaluation: Evaluation) -> Transition | None:
        """A change worth an alert: to Drifted, or from an alerted drift back to NoDrift.

        Insufficient or Unknown windows change nothing (no traffic is no evidence either way).
        """
        status = evaluation.report.status
        if status is DriftStatus.DRIFTED and not self._alerted_drifted:
            self._alerted_drifted = True
            return Transition(True, evaluation)
        if status is DriftStatus.NO_DRIFT and self._alerted_drifted:
            self._alerted_drifted = False
            return Transition(False, evaluation)
        return None

    def alerting(self) -> bool:
        """Whether this process posts the pod's alerts (the one holding the alert lock, or the only one)."""
        if self.state_dir is None:
            return True
        if self._alert_lock is None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            handle = (self.state_dir / _ALERT_LOCK).open("ab")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return False
            self._alert_lock = handle  # held until the process exits
        return True

    def _tick(self, judge_now: bool, publish_now: bool) -> Transition | None:
        if judge_now:
            evaluation = self.evaluate_now()
            change = self.transition(evaluation)
            return change if change is not None and self.alerting() else None
        if publish_now:
            self.publish()
        else:
            self.fold()
        return None

    # -- the background task ---------------------------------------------------------------

    def start(self) -> None:
        """Start judging every interval (and publishing, with several workers) on the running loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="drift-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(OSError):
            self.unpublish()
        if self._alert_lock is not None:
            self._alert_lock.close()
            self._alert_lock = None

    async def _run(self) -> None:
        """Fold every FOLD_SECONDS, publish every PUBLISH_SECONDS (several workers), judge every interval."""
        interval = self.settings.drift_interval_seconds
        step = min(interval, FOLD_SECONDS)
        next_judgement = next_publish = time.monotonic()
        while True:
            if self.profile is None:
                await asyncio.sleep(1.0)  # the model and the profile are still loading
                if self.error is not None:
                    return
                continue
            now = time.monotonic()
            judge_now, publish_now = now >= next_judgement, self.state_dir is not None and now >= next_publish
            if judge_now:
                next_judgement = now + interval
            if publish_now or judge_now:
                next_publish = now + PUBLISH_SECONDS
            try:
                change = await asyncio.to_thread(self._tick, judge_now, publish_now)
            except Exception:
                self.log.exception("drift: judging the window failed")
            else:
                if change is not None and self.on_transition is not None:
                    self.on_transition(change)
            await asyncio.sleep(max(0.0, min(step, next_judgement - time.monotonic())))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rows_if_big(rows: np.ndarray[Any, Any]) -> int:
    """Rows of a call that counts in the big-call tallies, else 0."""
    return rows.shape[0] if rows.size >= BIG_CALL_VALUES else 0

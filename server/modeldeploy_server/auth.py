"""API keys and bearer tokens on the prediction endpoints, read from a mounted Secret and re-read when it changes.

Every non-hidden file in the key directory holds accepted keys, one per line (`#` starts a comment):
with a Kubernetes Secret mounted there, each key of the Secret is a file, so several keys coexist and
a key is rotated by adding the new one, moving clients over, then deleting the old one. The kubelet
swaps the files atomically (the `..data` symlink); the directory is looked at again at most every
`reload_seconds`, on a request, with a few stat() calls, and read only when something changed.

A client sends `Authorization: Bearer <key>` or `X-API-Key: <key>`. Keys are kept as SHA-256
digests and compared with hmac.compare_digest against every known key, so neither the key nor its
length shows in the timing. A missing or empty directory accepts nothing (fail closed).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Scope

from modeldeploy_server.codec import error_response
from modeldeploy_server.errors import ServerError

AUTH_FAILURES = "modeldeploy_auth_failures"  # exported as modeldeploy_auth_failures_total
REALM = "modeldeploy"
API_KEY_HEADER = "x-api-key"

PREDICTION_PATHS = ("/predict", "/predict/batch")
PREDICTION_PREFIXES = ("/v2/models/",)  # V2 inference, model metadata and model readiness


def is_protected(path: str) -> bool:
    """Whether a route (by its path template) needs credentials: predictions and model metadata.

    Open: /health, /ready, /metrics, /v2 (server metadata), /v2/health/* (probes and scraping),
    the drift endpoints the operator reads, and the API docs.
    """
    return path in PREDICTION_PATHS or path.startswith(PREDICTION_PREFIXES)


class Unauthorized(ServerError):
    status = 401
    reason = "invalid_credentials"


Fingerprint = tuple[object, ...]


class KeyDirectory:
    """The keys in a directory, cached, and re-read when its contents change."""

    def __init__(
        self,
        path: str | Path,
        reload_seconds: float,
        log: logging.LoggerAdapter[logging.Logger],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.reload_seconds = reload_seconds
        self.log = log
        self._clock = clock
        self._checked_at = clock()
        self._fingerprint: Fingerprint | None = None
        self._digests: tuple[bytes, ...] = ()
        self._refresh()

    def digests(self) -> tuple[bytes, ...]:
        """SHA-256 digests of the accepted keys (the directory is stat()ed at most every reload_seconds)."""
        now = self._clock()
        if now - self._checked_at >= self.reload_seconds:
            self._checked_at = now
            self._refresh()
        return self._digests

    def _files(self) -> list[Path]:
        # `..data`, `..2026_...` (the kubelet's atomic-writer machinery) and dotfiles are not keys.
        return sorted(p for p in self.path.iterdir() if not p.name.startswith(".") and p.is_file())

    def _current_fingerprint(self) -> Fingerprint:
        try:
            data_link = os.readlink(self.path / "..data") if (self.path / "..data").is_symlink() else None
            stats = []
            for p in self._files():
                st = p.stat()
                stats.append((p.name, st.st_ino, st.st_mtime_ns, st.st_size))
            return (data_link, tuple(stats))
        except OSError as exc:
            return ("error", str(exc))

    def _refresh(self) -> None:
        fingerprint = self._current_fingerprint()
        if fingerprint == self._fingerprint:
            return
        self._fingerprint = fingerprint
        try:
            keys = {key for p in self._files() for key in parse_keys(p.read_text(encoding="utf-8"))}
        except (OSError, UnicodeDecodeError) as exc:
            self.log.error("cannot read API keys from %s: %s; refusing every prediction request", self.path, exc)
            self._digests = ()
            return
        self._digests = tuple(sorted(_digest(k) for k in keys))
        if not keys:
            self.log.warning("no API keys in %s: every prediction request is refused", self.path)
        else:
            self.log.info("loaded %d API key(s) from %s", len(keys), self.path)


def parse_keys(text: str) -> list[str]:
    """The keys in one file: one per line, blank lines and `#` comments skipped."""
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def presented(headers: Headers) -> list[str]:
    """The credentials a request carries: a bearer token and/or an X-API-Key."""
    out = []
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        out.append(token.strip())
    api_key = headers.get(API_KEY_HEADER, "").strip()
    if api_key:
        out.append(api_key)
    return out


class Authenticator:
    """Decides whether a request may predict; counts refusals by reason."""

    def __init__(self, keys: KeyDirectory, registry: CollectorRegistry, model: tuple[str, str]) -> None:
        self.keys = keys
        failures = Counter(
            AUTH_FAILURES, "Prediction requests refused for missing or invalid credentials.",
            ["model_name", "model_version", "reason"], registry=registry,
        )  # fmt: skip
        self._failures = {r: failures.labels(*model, r) for r in ("missing_credentials", "invalid_credentials")}

    def check(self, headers: Headers) -> Unauthorized | None:
        """None when a presented credential is a known key; else the error to answer with."""
        creds = presented(headers)
        if not creds:
            self._failures["missing_credentials"].inc()
            return Unauthorized(
                "credentials required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
                reason="missing_credentials",
            )
        known = self.keys.digests()
        ok = False
        for cred in creds:
            digest = _digest(cred)
            for key in known:  # no early exit: the time taken does not depend on which key matched
                ok |= hmac.compare_digest(digest, key)
        if ok:
            return None
        self._failures["invalid_credentials"].inc()
        return Unauthorized("invalid credentials", reason="invalid_credentials")


def unauthorized_response(error: Unauthorized) -> Response:
    """The usual error body with RFC 6750's challenge."""
    challenge = f'Bearer realm="{REALM}"'
    if error.reason == "invalid_credentials":
        challenge += ', error="invalid_token"'
    response = error_response(error)
    response.headers["WWW-Authenticate"] = challenge
    return response


class RouteGuard:
    """Checks credentials before any protected route runs, whichever way it is served (fast path included)."""

    def __init__(self, authenticator: Authenticator, routes: Iterable[BaseRoute]) -> None:
        self.authenticator = authenticator
        self.patterns: list[re.Pattern[str]] = [
            r.path_regex for r in routes if isinstance(r, Route) and is_protected(r.path)
        ]

    def __call__(self, scope: Scope) -> Response | None:
        path = scope["path"]
        if not any(p.match(path) for p in self.patterns):
            return None
        error = self.authenticator.check(Headers(scope=scope))
        return unauthorized_response(error) if error is not None else None

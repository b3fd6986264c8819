"""Gets the model file onto local disk (path, file://, pvc://, http(s)://, s3://, gs://) and checks its sha256."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import httpx

from modeldeploy_server import stores
from modeldeploy_server.errors import ModelLoadError
from modeldeploy_server.stores import StoreConfig

_CHUNK = 1 << 20
_RETRIES = 3


@dataclass(frozen=True)
class LocalModel:
    """A model file on local disk whose digest has been computed (and checked, if pinned)."""

    path: Path
    sha256: str
    downloaded: bool


def resolve_cache_dir(configured: str, log: logging.LoggerAdapter[logging.Logger]) -> Path:
    """The configured cache dir if usable, else a per-user temp dir (local runs without root)."""
    wanted = Path(configured).expanduser()
    try:
        wanted.mkdir(parents=True, exist_ok=True)
        if os.access(wanted, os.W_OK | os.X_OK):
            return wanted
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"modeldeploy-cache-{os.getuid()}"
    fallback.mkdir(parents=True, exist_ok=True)
    log.warning("cache dir %s is not writable, using %s", wanted, fallback)
    return fallback


def uri_suffix(uri: str) -> str:
    """The file suffix of a path or URL (`.onnx`), used to guess the format."""
    parsed = urlsplit(uri)
    path = parsed.path if parsed.scheme in ("http", "https", "file", "pvc", *stores.OBJECT_STORE_SCHEMES) else uri
    return PurePosixPath(unquote(path)).suffix.lower()


def is_remote(uri: str) -> bool:
    """Fetched over the network into the cache (http(s) and object stores)."""
    return urlsplit(uri).scheme in ("http", "https", *stores.OBJECT_STORE_SCHEMES)


def pvc_path(uri: str, root: str) -> Path:
    """Where pvc://CLAIM/PATH is read: ROOT/CLAIM/PATH (the operator mounts the claim at ROOT/CLAIM)."""
    parsed = urlsplit(uri)
    rel = PurePosixPath(unquote(parsed.path).lstrip("/"))
    if not parsed.netloc or not rel.parts or ".." in rel.parts or parsed.query:
        raise ModelLoadError(f"not a claim URI: {uri!r} (expected pvc://CLAIM/PATH)", reason="unsupported_uri")
    return Path(root) / parsed.netloc / rel


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def local_path(uri: str) -> Path:
    """The path named by a plain path or a file:// URI."""
    parsed = urlsplit(uri)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ModelLoadError(f"file:// URI with a remote host is not supported: {uri}", reason="unsupported_uri")
        return Path(url2pathname(unquote(parsed.path)))
    if parsed.scheme and len(parsed.scheme) > 1:
        raise ModelLoadError(
            f"unsupported model URI scheme {parsed.scheme!r} (use a path, file://, pvc://, http(s)://, s3://, gs://)",
            reason="unsupported_uri",
        )
    return Path(uri).expanduser()


def fetch(
    uri: str,
    *,
    expected_sha256: str | None,
    cache_dir: str,
    timeout_s: float,
    log: logging.LoggerAdapter[logging.Logger],
    store: StoreConfig | None = None,
) -> LocalModel:
    """Local copy of the model with its digest; raises ModelLoadError naming what went wrong.

    `store` says how to reach object stores and where claims are mounted (default: SDK defaults).
    """
    store = store or StoreConfig()
    if is_remote(uri):
        cache = resolve_cache_dir(cache_dir, log)
        return _download(uri, expected_sha256, cache, timeout_s, log, store)
    on_claim = urlsplit(uri).scheme == "pvc"
    path = pvc_path(uri, store.pvc_root) if on_claim else local_path(uri)
    if not path.is_file():
        claim_dir = Path(store.pvc_root) / urlsplit(uri).netloc
        where = f" (from {uri}; is the claim mounted at {claim_dir}?)" if on_claim else ""
        raise ModelLoadError(f"model file not found: {path}{where}", reason="model_not_found")
    digest = sha256_of(path)
    _check_digest(digest, expected_sha256, uri)
    return LocalModel(path=path, sha256=digest, downloaded=False)


def _check_digest(actual: str, expected: str | None, uri: str) -> None:
    if expected is not None and actual != expected:
        raise ModelLoadError(
            f"sha256 of {uri} is {actual}, expected {expected}; refusing to load it",
            reason="digest_mismatch",
        )


def _cache_name(uri: str, expected_sha256: str | None) -> str:
    suffix = uri_suffix(uri)
    if expected_sha256 is not None:
        return f"sha256-{expected_sha256}{suffix}"
    return f"url-{hashlib.sha256(uri.encode()).hexdigest()[:24]}{suffix}"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock so that several worker processes download a model once."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _download(
    uri: str,
    expected_sha256: str | None,
    cache_dir: Path,
    timeout_s: float,
    log: logging.LoggerAdapter[logging.Logger],
    store: StoreConfig,
) -> LocalModel:
    target = cache_dir / _cache_name(uri, expected_sha256)
    with _locked(target.with_name(target.name + ".lock")):
        # A pinned file already in the cache is reused; an unpinned one is fetched afresh.
        if expected_sha256 is not None and target.is_file():
            if sha256_of(target) == expected_sha256:
                log.info("model found in cache at %s", target)
                return LocalModel(path=target, sha256=expected_sha256, downloaded=False)
            target.unlink()
        if urlsplit(uri).scheme in stores.OBJECT_STORE_SCHEMES:
            # The SDKs retry transient errors themselves.
            with stores.open_object(uri, store, timeout_s) as chunks:
                digest = _write_checked(uri, target, expected_sha256, chunks)
        else:
            digest = _download_with_retries(uri, target, expected_sha256, timeout_s, log)
    return LocalModel(path=target, sha256=digest, downloaded=True)


def _download_with_retries(
    uri: str,
    target: Path,
    expected_sha256: str | None,
    timeout_s: float,
    log: logging.LoggerAdapter[logging.Logger],
) -> str:
    for attempt in range(1, _RETRIES + 1):
        try:
            return _download_once(uri, target, expected_sha256, timeout_s)
        except (httpx.TransportError, _RetryableStatus) as exc:
            if attempt == _RETRIES:
                raise ModelLoadError(
                    f"could not download {uri} after {_RETRIES} attempts: {exc}",
                    reason="download_failed",
                ) from exc
            delay = 0.5 * 2 ** (attempt - 1)
            log.warning("download of %s failed (%s), retrying in %.1fs", uri, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


class _RetryableStatus(Exception):
    pass


def _download_once(uri: str, target: Path, expected_sha256: str | None, timeout_s: float) -> str:
    with httpx.stream("GET", uri, timeout=timeout_s, follow_redirects=True) as response:
        if response.status_code >= 500 or response.status_code == 429:
            raise _RetryableStatus(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise ModelLoadError(
                f"could not download {uri}: HTTP {response.status_code}",
                reason="download_failed",
            )
        return _write_checked(uri, target, expected_sha256, response.iter_bytes(_CHUNK))


def _write_checked(uri: str, target: Path, expected_sha256: str | None, chunks: Iterable[bytes]) -> str:
    """Write `chunks` to `target` through a temp file, digesting on the way; the digest."""
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".download-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        # Checked before the file gets its final name, so a bad download is never cached.
        _check_digest(actual, expected_sha256, uri)
        tmp.replace(target)
        return actual
    finally:
        tmp.unlink(missing_ok=True)

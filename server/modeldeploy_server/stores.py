"""Object stores holding model files: s3:// (boto3) and gs:// (fsspec/gcsfs), read as streams of chunks.

sources.py decides where a URI points and checks digests; this module only knows how to open an
object and how to turn each store's errors into a ModelLoadError whose reason says what to fix:
`model_not_found` (no such bucket or key), `access_denied` (credentials missing, wrong or not
allowed), `download_failed` (the store could not be reached), `missing_runtime` (SDK not installed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modeldeploy_api import constants

from modeldeploy_server.errors import ModelLoadError
from modeldeploy_server.settings import ServerSettings

OBJECT_STORE_SCHEMES = ("s3", "gs")
CHUNK = 1 << 20

# S3 error codes (and bare HTTP statuses, for HEAD-like answers without a body) by what they mean.
_S3_NOT_FOUND = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}
_S3_DENIED = {
    "AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem", "401",
}  # fmt: skip


@dataclass(frozen=True)
class StoreConfig:
    """How to reach the object stores; empty fields mean the SDK's defaults."""

    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_addressing_style: str = "auto"
    s3_ca_bundle: str | None = None
    gcs_endpoint: str | None = None
    gcs_credentials: str | None = None
    pvc_root: str = constants.PVC_ROOT

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> StoreConfig:
        return cls(
            s3_endpoint=settings.s3_endpoint,
            s3_region=settings.s3_region,
            s3_addressing_style=settings.s3_addressing_style,
            s3_ca_bundle=settings.s3_ca_bundle,
            gcs_endpoint=settings.gcs_endpoint,
            gcs_credentials=settings.gcs_credentials,
            pvc_root=settings.pvc_root,
        )


def split_object_uri(uri: str) -> tuple[str, str, str]:
    """(scheme, bucket, key) of s3://bucket/key or gs://bucket/key."""
    parsed = urlsplit(uri)
    key = parsed.path.lstrip("/")
    if parsed.scheme not in OBJECT_STORE_SCHEMES or not parsed.netloc or not key or parsed.query:
        raise ModelLoadError(
            f"not an object URI: {uri!r} (expected s3://BUCKET/KEY or gs://BUCKET/OBJECT)", reason="unsupported_uri"
        )
    return parsed.scheme, parsed.netloc, key


@contextlib.contextmanager
def open_object(uri: str, config: StoreConfig, timeout_s: float) -> Iterator[Iterator[bytes]]:
    """The object's bytes as an iterator of chunks; errors (also while streaming) are ModelLoadErrors."""
    scheme, bucket, key = split_object_uri(uri)
    if scheme == "s3":
        with _open_s3(uri, bucket, key, config, timeout_s) as chunks:
            yield chunks
    else:
        with _open_gcs(uri, bucket, key, config, timeout_s) as chunks:
            yield chunks


# ---- S3 ----------------------------------------------------------------------------------------


def s3_client(config: StoreConfig, timeout_s: float) -> Any:
    """A boto3 S3 client for `config`; credentials come from the SDK's chain (env AWS_* first)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise ModelLoadError("s3:// models need boto3 (pip install boto3)", reason="missing_runtime") from exc
    verify: str | None = None
    if config.s3_ca_bundle:
        if not Path(config.s3_ca_bundle).is_file():
            raise ModelLoadError(f"S3 CA bundle {config.s3_ca_bundle} not found", reason="bad_ca_bundle")
        verify = config.s3_ca_bundle
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=config.s3_endpoint or None,
        region_name=config.s3_region or None,
        verify=verify,
        config=Config(
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": config.s3_addressing_style},
        ),
    )


@contextlib.contextmanager
def _open_s3(uri: str, bucket: str, key: str, config: StoreConfig, timeout_s: float) -> Iterator[Iterator[bytes]]:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

    client = s3_client(config, timeout_s)
    where = f" at {config.s3_endpoint}" if config.s3_endpoint else ""
    try:
        response = client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        raise _s3_error(uri, where, exc) from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise ModelLoadError(
            f"no usable S3 credentials to read {uri}: {exc} (set spec.storage.s3.credentialsSecretRef, "
            "or give the pod an identity)",
            reason="access_denied",
        ) from exc
    except BotoCoreError as exc:
        raise ModelLoadError(f"could not read {uri}{where}: {exc}", reason="download_failed") from exc
    body = response["Body"]

    def chunks() -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(CHUNK)
        except (BotoCoreError, OSError) as exc:
            raise ModelLoadError(f"reading {uri}{where} failed: {exc}", reason="download_failed") from exc

    try:
        yield chunks()
    finally:
        body.close()


def _s3_error(uri: str, where: str, exc: Any) -> ModelLoadError:
    error = exc.response.get("Error") or {}
    code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "")
    detail = f"{code}: {error.get('Message') or exc}" if code else str(exc)
    if code in _S3_NOT_FOUND:
        return ModelLoadError(f"{uri} not found{where} ({detail})", reason="model_not_found")
    if code in _S3_DENIED:
        return ModelLoadError(
            f"access to {uri}{where} denied ({detail}); check the credentials in spec.storage.s3 "
            "and the bucket policy (without s3:ListBucket, S3 also says AccessDenied for a key that does not exist)",
            reason="access_denied",
        )
    return ModelLoadError(f"could not read {uri}{where} ({detail})", reason="download_failed")


# ---- Google Cloud Storage ------------------------------------------------------------------------


def gcs_filesystem(config: StoreConfig, timeout_s: float) -> Any:
    """A gcsfs filesystem for `config`: a key file, `anon`, or Application Default Credentials."""
    try:
        # The plain JSON-API filesystem: gcsfs' default "extended" one first asks the Storage Control
        # gRPC API for the bucket layout, which reading one object does not need.
        from gcsfs.core import GCSFileSystem
    except ImportError as exc:
        raise ModelLoadError("gs:// models need gcsfs (pip install gcsfs)", reason="missing_runtime") from exc
    token: str | None = config.gcs_credentials or None
    if token not in (None, constants.GCS_ANONYMOUS) and not Path(str(token)).is_file():
        raise ModelLoadError(f"GCS credentials file {token} not found", reason="access_denied")
    return GCSFileSystem(
        token=token,
        endpoint_url=config.gcs_endpoint or None,
        access="read_only",
        skip_instance_cache=True,
        requests_timeout=timeout_s,
    )


@contextlib.contextmanager
def _open_gcs(uri: str, bucket: str, key: str, config: StoreConfig, timeout_s: float) -> Iterator[Iterator[bytes]]:
    fs = gcs_filesystem(config, timeout_s)
    where = f" at {config.gcs_endpoint}" if config.gcs_endpoint else ""
    try:
        handle = fs.open(f"{bucket}/{key}", "rb", block_size=CHUNK)
    except Exception as exc:
        raise _gcs_error(uri, where, exc) from exc

    def chunks() -> Iterator[bytes]:
        try:
            while chunk := handle.read(CHUNK):
                yield chunk
        except Exception as exc:
            raise _gcs_error(uri, where, exc) from exc

    try:
        yield chunks()
    finally:
        handle.close()


def _gcs_error(uri: str, where: str, exc: Exception) -> ModelLoadError:
    if isinstance(exc, ModelLoadError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return ModelLoadError(f"{uri} not found{where}", reason="model_not_found")
    code = getattr(exc, "code", None)
    if isinstance(exc, PermissionError) or code in (401, 403):
        return ModelLoadError(
            f"access to {uri}{where} denied ({exc}); check spec.storage.gcs credentials and the bucket's IAM",
            reason="access_denied",
        )
    return ModelLoadError(f"could not read {uri}{where}: {exc!r}", reason="download_failed")

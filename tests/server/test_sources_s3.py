"""s3:// models against a real S3-protocol server on 127.0.0.1 (moto's server mode), and pvc:// paths.

moto checks signatures and IAM policies once its auth is switched on (`/moto-api/reset-auth`):
the fixture sets up the bucket, a reader user and a user without any policy while auth is off,
then turns it on, so wrong secrets, unknown key ids and missing permissions are refused by the
server as AWS would (SignatureDoesNotMatch, InvalidAccessKeyId, AccessDenied).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
from modeldeploy_api import constants
from modeldeploy_server.app import create_app
from modeldeploy_server.errors import ModelLoadError
from modeldeploy_server.logs import model_logger
from modeldeploy_server.settings import ServerSettings
from modeldeploy_server.sources import fetch, pvc_path, uri_suffix
from modeldeploy_server.stores import StoreConfig, split_object_uri
from moto.server import ThreadedMotoServer

from tests.fixtures.models import SavedModel

from .conftest import serve_http, wait_ready
from .drift_support import save_iris_profile

BUCKET = "models"
KEY = "iris/1.0.0/model.joblib"
READ_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}],
}


@dataclass(frozen=True)
class Keys:
    access_key_id: str
    secret_access_key: str


@dataclass(frozen=True)
class S3Store:
    endpoint: str
    reader: Keys
    outsider: Keys  # a valid user with no policy at all

    def uri(self, key: str = KEY) -> str:
        return f"s3://{BUCKET}/{key}"

    @property
    def config(self) -> StoreConfig:
        return StoreConfig(s3_endpoint=self.endpoint, s3_region="us-east-1", s3_addressing_style="path")


def _no_aws_config(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    """Credentials only from what a test sets: no profile, no shared files, never the instance metadata service."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        mp.delenv(name, raising=False)
    mp.setenv("AWS_CONFIG_FILE", str(tmp / "no-config"))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "no-credentials"))
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")


def use_keys(mp: pytest.MonkeyPatch, keys: Keys) -> None:
    """As the operator's secretKeyRef env does in the pod."""
    mp.setenv(constants.AWS_ACCESS_KEY_ID_ENV, keys.access_key_id)
    mp.setenv(constants.AWS_SECRET_ACCESS_KEY_ENV, keys.secret_access_key)


@pytest.fixture(scope="module")
def s3(iris_model: SavedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Store]:
    mp = pytest.MonkeyPatch()
    _no_aws_config(mp, tmp_path_factory.mktemp("aws"))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    admin = {"endpoint_url": endpoint, "region_name": "us-east-1",
             "aws_access_key_id": "admin", "aws_secret_access_key": "admin"}
    try:
        s3c = boto3.client("s3", **admin)
        s3c.create_bucket(Bucket=BUCKET)
        s3c.put_object(Bucket=BUCKET, Key=KEY, Body=iris_model.path.read_bytes())
        iam = boto3.client("iam", **admin)
        keys = {}
        for user in ("reader", "outsider"):
            iam.create_user(UserName=user)
            k = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = Keys(k["AccessKeyId"], k["SecretAccessKey"])
        iam.put_user_policy(UserName="reader", PolicyName="read-models", PolicyDocument=json.dumps(READ_POLICY))
        # From now on every request must be signed by a known key and allowed by a policy.
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()
        yield S3Store(endpoint, keys["reader"], keys["outsider"])
    finally:
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"inf")
        server.stop()
        mp.undo()


@pytest.fixture
def log() -> logging.LoggerAdapter[logging.Logger]:
    return model_logger(ServerSettings())


def s3_fetch(store: S3Store, tmp_path: Path, log: logging.LoggerAdapter[logging.Logger], *,
             uri: str | None = None, sha256: str | None = None, config: StoreConfig | None = None) -> Path:
    local = fetch(uri or store.uri(), expected_sha256=sha256, cache_dir=str(tmp_path / "cache"), timeout_s=10,
                  log=log, store=config or store.config)
    return local.path


def test_download_with_digest_check_then_from_cache(
    s3: S3Store, iris_model: SavedModel, tmp_path: Path, log: logging.LoggerAdapter[logging.Logger],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_keys(monkeypatch, s3.reader)
    cache = str(tmp_path / "cache")
    first = fetch(s3.uri(), expected_sha256=iris_model.sha256, cache_dir=cache, timeout_s=10, log=log,
                  store=s3.config)
    assert first.downloaded and first.sha256 == iris_model.sha256
    assert first.path.read_bytes() == iris_model.path.read_bytes()
    assert first.path.suffix == ".joblib"
    again = fetch(s3.uri(), expected_sha256=iris_model.sha256, cache_dir=cache, timeout_s=10, log=log,
                  store=s3.config)
    assert not again.downloaded and again.path == first.path


def test_digest_mismatch_is_refused_and_never_cached(
    s3: S3Store, tmp_path: Path, log: logging.LoggerAdapter[logging.Logger], monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_keys(monkeypatch, s3.reader)
    with pytest.raises(ModelLoadError) as err:
        s3_fetch(s3, tmp_path, log, sha256="0" * 64)
    assert err.value.reason == "digest_mismatch" and s3.uri() in err.value.message
    assert not [p for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")]


@pytest.mark.parametrize(("uri", "what"), [
    (f"s3://{BUCKET}/iris/9.9.9/model.joblib", "NoSuchKey"),
    ("s3://no-such-bucket/model.joblib", "NoSuchBucket"),
])
def test_missing_key_or_bucket(
    s3: S3Store, tmp_path: Path, log: logging.LoggerAdapter[logging.Logger], monkeypatch: pytest.MonkeyPatch,
    uri: str, what: str,
) -> None:
    use_keys(monkeypatch, s3.reader)
    with pytest.raises(ModelLoadError) as err:
        s3_fetch(s3, tmp_path, log, uri=uri)
    assert err.value.reason == "model_not_found", err.value.message
    assert what in err.value.message and uri in err.value.message


def test_wrong_secret_unknown_key_and_no_permission_are_denied(
    s3: S3Store, tmp_path: Path, log: logging.LoggerAdapter[logging.Logger], monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases = [
        (Keys(s3.reader.access_key_id, "wrong-secret"), "SignatureDoesNotMatch"),
        (Keys("AKIAUNKNOWNKEY000000", "whatever"), "InvalidAccessKeyId"),
        (s3.outsider, "AccessDenied"),
    ]
    for keys, code in cases:
        use_keys(monkeypatch, keys)
        with pytest.raises(ModelLoadError) as err:
            s3_fetch(s3, tmp_path, log)
        assert err.value.reason == "access_denied", err.value.message
        assert code in err.value.message and "spec.storage.s3" in err.value.message


def test_no_credentials_at_all_is_a_clear_error(
    s3: S3Store, tmp_path: Path, log: logging.LoggerAdapter[logging.Logger],
) -> None:
    with pytest.raises(ModelLoadError) as err:
        s3_fetch(s3, tmp_path, log)
    assert err.value.reason == "access_denied" and "credentials" in err.value.message


def test_unreachable_endpoint(tmp_path: Path, log: logging.LoggerAdapter[logging.Logger],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    use_keys(monkeypatch, Keys("a", "b"))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = StoreConfig(s3_endpoint=f"http://127.0.0.1:{port}", s3_region="us-east-1")
    with pytest.raises(ModelLoadError) as err:
        fetch("s3://models/m.joblib", expected_sha256=None, cache_dir=str(tmp_path), timeout_s=2, log=log,
              store=config)
    assert err.value.reason == "download_failed" and f"127.0.0.1:{port}" in err.value.message


def test_missing_ca_bundle_file(tmp_path: Path, log: logging.LoggerAdapter[logging.Logger]) -> None:
    config = StoreConfig(s3_endpoint="https://127.0.0.1:1", s3_ca_bundle=str(tmp_path / "nope.pem"))
    with pytest.raises(ModelLoadError) as err:
        fetch("s3://models/m.joblib", expected_sha256=None, cache_dir=str(tmp_path), timeout_s=2, log=log,
              store=config)
    assert err.value.reason == "bad_ca_bundle"


# ---- the whole server: loads from S3, or refuses with a reason on /ready and stays up --------------------


def settled_ready(url: str, attempts: int = 400) -> httpx.Response:
    """/ready once loading has ended, either way (bounded polling; no duration is asserted)."""
    for _ in range(attempts):
        r = httpx.get(f"{url}/ready", timeout=5)
        if r.status_code == 200 or r.json().get("reason") != "model_loading":
            return r
        time.sleep(0.05)
    raise AssertionError(f"{url} still loading: {r.text}")


def s3_settings(s3: S3Store, sha256: str, **extra: object) -> ServerSettings:
    return ServerSettings(
        model_name="iris", model_version="1.0.0", model_uri=s3.uri(), model_sha256=sha256,
        s3_endpoint=s3.endpoint, s3_region="us-east-1", s3_addressing_style="path", **extra,  # type: ignore[arg-type]
    )


def test_server_loads_from_s3_and_predicts(
    s3: S3Store, iris_model: SavedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_keys(monkeypatch, s3.reader)
    app = create_app(s3_settings(s3, iris_model.sha256, cache_dir=str(tmp_path)))
    with serve_http(app) as url:
        wait_ready(url)
        r = httpx.post(f"{url}/predict", json={"features": iris_model.rows[0].tolist()})
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == "1.0.0"


@pytest.mark.parametrize(("keys", "reason"), [("reader", "digest_mismatch"), ("outsider", "access_denied")])
def test_failed_load_is_explained_on_ready_and_the_server_stays_up(
    s3: S3Store, iris_model: SavedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: str, reason: str,
) -> None:
    use_keys(monkeypatch, getattr(s3, keys))
    sha = "0" * 64 if reason == "digest_mismatch" else iris_model.sha256
    app = create_app(s3_settings(s3, sha, cache_dir=str(tmp_path)))
    with serve_http(app) as url:
        r = settled_ready(url)
        assert r.status_code == 503 and r.json()["reason"] == reason, r.text
        assert s3.uri() in r.json()["error"]
        assert httpx.get(f"{url}/health").status_code == 200
        predict = httpx.post(f"{url}/predict", json={"features": iris_model.rows[0].tolist()})
        assert predict.status_code == 503 and predict.json()["reason"] == reason


def test_the_drift_reference_profile_comes_from_the_same_store(
    s3: S3Store, iris_model: SavedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """spec.monitoring.drift.reference may be s3://: fetched with the model's endpoint and keys, digest checked."""
    profile = save_iris_profile(iris_model, tmp_path)
    httpx.post(f"{s3.endpoint}/moto-api/reset-auth", content=b"inf").raise_for_status()  # upload as the fixture did
    try:
        boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1", aws_access_key_id="admin",
                     aws_secret_access_key="admin").put_object(
            Bucket=BUCKET, Key="iris/1.0.0/profile.json", Body=profile.path.read_bytes())
    finally:
        httpx.post(f"{s3.endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()
    use_keys(monkeypatch, s3.reader)
    for sha, status in ((profile.sha256, 200), ("0" * 64, 503)):
        settings = s3_settings(s3, iris_model.sha256, cache_dir=str(tmp_path / sha[:4]),
                               drift_reference_uri=s3.uri("iris/1.0.0/profile.json"), drift_reference_sha256=sha)
        with serve_http(create_app(settings)) as url:
            wait_ready(url)
            r = httpx.get(f"{url}/drift/state", timeout=5)
            assert r.status_code == status, r.text
            if status == 200:
                assert r.json()["profileDigest"] == profile.profile.digest()
            else:
                assert "refusing to load it" in r.json()["error"] and "profile.json" in r.json()["error"]
            assert httpx.post(f"{url}/predict", json={"features": iris_model.rows[0].tolist()}).status_code == 200


# ---- parsing --------------------------------------------------------------------------------------------


def test_object_uris_split_into_bucket_and_key() -> None:
    assert split_object_uri("s3://models/iris/1.0.0/model.joblib") == ("s3", "models", "iris/1.0.0/model.joblib")
    assert split_object_uri("gs://my.bucket/a b.onnx") == ("gs", "my.bucket", "a b.onnx")
    assert uri_suffix("s3://models/iris/model.ONNX") == ".onnx"
    assert uri_suffix("gs://models/iris.skops") == ".skops"
    assert uri_suffix("pvc://store/iris/model.joblib") == ".joblib"
    for bad in ("s3://models", "s3://models/", "s3:///key", "gs://bucket/key?versionId=1", "http://x/y"):
        with pytest.raises(ModelLoadError) as err:
            split_object_uri(bad)
        assert err.value.reason == "unsupported_uri"


def test_pvc_uris_resolve_under_the_mount_root(tmp_path: Path, iris_model: SavedModel,
                                               log: logging.LoggerAdapter[logging.Logger]) -> None:
    assert pvc_path("pvc://store/iris/1.joblib", "/mnt/pvc") == Path("/mnt/pvc/store/iris/1.joblib")
    for bad in ("pvc://store/../other/x", "pvc://store", "pvc:///x"):
        with pytest.raises(ModelLoadError) as err:
            pvc_path(bad, "/mnt/pvc")
        assert err.value.reason == "unsupported_uri"
    (tmp_path / "store" / "iris").mkdir(parents=True)
    (tmp_path / "store" / "iris" / "1.joblib").write_bytes(iris_model.path.read_bytes())
    config = StoreConfig(pvc_root=str(tmp_path))
    local = fetch("pvc://store/iris/1.joblib", expected_sha256=iris_model.sha256, cache_dir=str(tmp_path / "c"),
                  timeout_s=1, log=log, store=config)
    assert local.path == tmp_path / "store" / "iris" / "1.joblib" and not local.downloaded
    with pytest.raises(ModelLoadError) as err:
        fetch("pvc://other/iris.joblib", expected_sha256=None, cache_dir=str(tmp_path / "c"), timeout_s=1, log=log,
              store=config)
    assert err.value.reason == "model_not_found" and str(tmp_path / "other") in err.value.message

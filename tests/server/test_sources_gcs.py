"""gs:// models through gcsfs against a GCS emulator on 127.0.0.1 (gcp-storage-emulator).

The emulator speaks the JSON API but checks no credentials: reads use `anon` here, and the
service-account wiring (a mounted key file) is checked by building the filesystem from a
generated key, without any request. Access-denied answers of real GCS are not exercised.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gcp_storage_emulator.server import create_server
from modeldeploy_api import constants
from modeldeploy_server.app import create_app
from modeldeploy_server.errors import ModelLoadError
from modeldeploy_server.logs import model_logger
from modeldeploy_server.settings import ServerSettings
from modeldeploy_server.sources import fetch
from modeldeploy_server.stores import StoreConfig, gcs_filesystem

from tests.fixtures.models import SavedModel

from .conftest import serve_http

BUCKET = "models"
KEY = "iris/1.0.0/model.joblib"


@pytest.fixture(scope="module")
def gcs(iris_model: SavedModel) -> Iterator[str]:
    """The emulator's endpoint, with the iris model uploaded."""
    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket=BUCKET)
    server.start()
    host, port = server._api._httpd.server_address
    endpoint = f"http://{host}:{port}"
    try:
        r = httpx.post(f"{endpoint}/upload/storage/v1/b/{BUCKET}/o", params={"uploadType": "media", "name": KEY},
                       content=iris_model.path.read_bytes())
        r.raise_for_status()
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def log() -> logging.LoggerAdapter[logging.Logger]:
    return model_logger(ServerSettings())


def anon(endpoint: str) -> StoreConfig:
    return StoreConfig(gcs_endpoint=endpoint, gcs_credentials=constants.GCS_ANONYMOUS)


def test_download_with_digest_check(gcs: str, iris_model: SavedModel, tmp_path: Path,
                                    log: logging.LoggerAdapter[logging.Logger]) -> None:
    local = fetch(f"gs://{BUCKET}/{KEY}", expected_sha256=iris_model.sha256, cache_dir=str(tmp_path), timeout_s=10,
                  log=log, store=anon(gcs))
    assert local.downloaded and local.path.read_bytes() == iris_model.path.read_bytes()


def test_digest_mismatch_and_missing_objects(gcs: str, tmp_path: Path,
                                             log: logging.LoggerAdapter[logging.Logger]) -> None:
    cases = [(f"gs://{BUCKET}/{KEY}", "0" * 64, "digest_mismatch"),
             (f"gs://{BUCKET}/iris/9.9.9/model.joblib", None, "model_not_found"),
             ("gs://no-such-bucket/model.joblib", None, "model_not_found")]
    for uri, sha, reason in cases:
        with pytest.raises(ModelLoadError) as err:
            fetch(uri, expected_sha256=sha, cache_dir=str(tmp_path), timeout_s=10, log=log, store=anon(gcs))
        assert err.value.reason == reason and uri in err.value.message, err.value.message


def test_missing_key_file_is_refused_before_any_request(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as err:
        gcs_filesystem(StoreConfig(gcs_credentials=str(tmp_path / "key.json")), 5)
    assert err.value.reason == "access_denied" and "key.json" in err.value.message


def test_service_account_key_file_is_used(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {
        "type": "service_account", "project_id": "p", "private_key_id": "1", "private_key": pem,
        "client_email": "models-reader@p.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path / "key.json"
    path.write_text(json.dumps(info))
    fs = gcs_filesystem(StoreConfig(gcs_credentials=str(path)), 5)
    assert fs.credentials.credentials.service_account_email == "models-reader@p.iam.gserviceaccount.com"
    assert fs.credentials.scope.endswith("devstorage.read_only")  # the least the server needs


def test_server_loads_from_gcs(gcs: str, iris_model: SavedModel, tmp_path: Path) -> None:
    settings = ServerSettings(model_name="iris", model_version="1", model_uri=f"gs://{BUCKET}/{KEY}",
                              model_sha256=iris_model.sha256, gcs_endpoint=gcs,
                              gcs_credentials=constants.GCS_ANONYMOUS, cache_dir=str(tmp_path))
    with serve_http(create_app(settings)) as url:
        for _ in range(400):  # bounded polling until the background load ends
            r = httpx.get(f"{url}/ready", timeout=5)
            if r.status_code == 200 or r.json().get("reason") != "model_loading":
                break
            time.sleep(0.05)
        assert r.status_code == 200, r.text
        predict = httpx.post(f"{url}/predict", json={"features": iris_model.rows[0].tolist()})
        assert predict.status_code == 200, predict.text

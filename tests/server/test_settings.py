"""Settings: the env names the operator sets, defaults, validation with readable messages."""

from __future__ import annotations

import pytest
from modeldeploy_api import constants
from modeldeploy_server.settings import ServerSettings
from pydantic import ValidationError


def test_every_shared_env_name_is_a_setting() -> None:
    names = {v for k, v in vars(constants).items() if k.startswith("ENV_") and k != "ENV_PREFIX"}
    fields = {f"{constants.ENV_PREFIX}{name.upper()}" for name in ServerSettings.model_fields}
    assert names <= fields, names - fields


def test_defaults() -> None:
    s = ServerSettings()
    assert s.port == constants.DEFAULT_PORT == 8080
    assert s.cache_dir == constants.MODEL_CACHE_DIR
    assert s.workers == 1
    assert s.model_format == "auto"
    assert s.allow_unverified is False
    assert s.log_format == "text"


def test_read_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(constants.ENV_MODEL_NAME, "iris")
    monkeypatch.setenv(constants.ENV_MAX_BATCH_SIZE, "128")
    monkeypatch.setenv(constants.ENV_MAX_LATENCY_MS, "0.5")
    monkeypatch.setenv(constants.ENV_ALLOW_UNVERIFIED, "true")
    monkeypatch.setenv("MODELDEPLOY_SKOPS_TRUSTED_TYPES", "a.B, c.D")
    s = ServerSettings()
    assert (s.model_name, s.max_batch_size, s.max_latency_ms) == ("iris", 128, 0.5)
    assert s.allow_unverified is True
    assert s.skops_trusted_types == ["a.B", "c.D"]


def test_env_round_trip() -> None:
    s = ServerSettings(model_name="m", model_uri="/x.onnx", skops_trusted_types=["a.B", "c.D"])
    env = s.env()
    assert env[constants.ENV_MODEL_URI] == "/x.onnx"
    assert env[constants.ENV_ALLOW_UNVERIFIED] == "false"
    assert constants.ENV_MODEL_SHA256 not in env  # None is left out
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        assert ServerSettings() == s


@pytest.mark.parametrize(
    ("value", "expected"),
    [("AB" * 32, "ab" * 32), ("sha256:" + "cd" * 32, "cd" * 32), ("  ", None)],
)
def test_digest_is_normalised(value: str, expected: str | None) -> None:
    assert ServerSettings(model_sha256=value).model_sha256 == expected


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("model_sha256", "abc", "64 hex characters"),
        ("model_format", "pickle", "'auto', 'sklearn', 'skops' or 'onnx'"),
        ("port", 0, "greater than or equal to 1"),
        ("workers", 0, "greater than or equal to 1"),
        ("model_name", "a/b", "should match pattern"),
        ("log_level", "chatty", "one of DEBUG"),
        ("max_batch_size", 10_000, "must not exceed max_queue_size"),
    ],
)
def test_invalid_values_are_refused(field: str, value: object, words: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ServerSettings(**{field: value})
    assert words in str(refused.value)

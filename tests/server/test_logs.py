"""Log lines carry the model's name and version, as text or one JSON object per line."""

from __future__ import annotations

import io
import json
import logging

import pytest
from modeldeploy_server.logs import JsonFormatter, ModelContextFilter, configure_logging, model_logger
from modeldeploy_server.settings import ServerSettings


def _capture(formatter: logging.Formatter, settings: ServerSettings) -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(ModelContextFilter(settings.model_name, settings.model_version))
    return stream, handler


def test_json_lines_carry_model_and_extra_fields() -> None:
    settings = ServerSettings(model_name="iris", model_version="7")
    stream, handler = _capture(JsonFormatter(), settings)
    log = model_logger(settings)
    log.logger.addHandler(handler)
    try:
        log.warning("load failed: %s", "boom", extra={"reason": "digest_mismatch"})
        logging.getLogger("uvicorn.error").addHandler(handler)
        logging.getLogger("uvicorn.error").warning("third-party line")
    finally:
        log.logger.removeHandler(handler)
        logging.getLogger("uvicorn.error").removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "load failed: boom"
    assert first["reason"] == "digest_mismatch"
    assert first["level"] == "WARNING"
    assert (first["model_name"], first["model_version"]) == ("iris", "7")
    assert (second["model_name"], second["model_version"]) == ("iris", "7")  # from the filter
    assert second["logger"] == "uvicorn.error"


def test_json_exceptions_are_one_line() -> None:
    settings = ServerSettings(model_name="iris")
    stream, handler = _capture(JsonFormatter(), settings)
    log = model_logger(settings)
    log.logger.addHandler(handler)
    try:
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("prediction failed")
    finally:
        log.logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "ValueError: bad" in json.loads(lines[0])["exc_info"]


def test_configure_logging_text(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging(ServerSettings(model_name="iris", model_version="2", log_level="DEBUG"))
        logging.getLogger("anything").debug("hello")
        err = capsys.readouterr().err
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    assert "DEBUG anything [model=iris version=2] hello" in err

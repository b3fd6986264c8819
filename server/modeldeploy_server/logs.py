"""Logging set-up: every line carries the model name and version; JSON lines when LOG_FORMAT=json."""

from __future__ import annotations

import logging
import logging.config
import time
from typing import Any

import msgspec

from modeldeploy_server.settings import ServerSettings

LOGGER_NAME = "modeldeploy.server"

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "model_name", "model_version", "taskName"}
)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [model=%(model_name)s version=%(model_version)s] %(message)s"


class ModelContextFilter(logging.Filter):
    """Stamps `model_name` / `model_version` on records that do not carry them yet."""

    def __init__(self, model_name: str = "", model_version: str = "") -> None:
        super().__init__()
        self.model_name = model_name
        self.model_version = model_version

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "model_name"):
            record.model_name = self.model_name
        if not hasattr(record, "model_version"):
            record.model_version = self.model_version
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, model, and any `extra` fields."""

    _encoder = msgspec.json.Encoder()

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "model_name": getattr(record, "model_name", ""),
            "model_version": getattr(record, "model_version", ""),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return self._encoder.encode(payload).decode()


def logging_config(settings: ServerSettings) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict, also handed to uvicorn (its own loggers included)."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if settings.log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "model": {
                "()": f"{__name__}.ModelContextFilter",
                "model_name": settings.model_name,
                "model_version": settings.model_version,
            }
        },
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["model"],
            }
        },
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": settings.access_log},
        },
        "root": {"handlers": ["stderr"], "level": settings.log_level},
    }


def configure_logging(settings: ServerSettings) -> None:
    logging.config.dictConfig(logging_config(settings))


class ModelLogger(logging.LoggerAdapter[logging.Logger]):
    """Binds the model's name and version to every record, keeping per-call `extra` fields."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def model_logger(settings: ServerSettings) -> ModelLogger:
    return ModelLogger(
        logging.getLogger(LOGGER_NAME),
        {"model_name": settings.model_name, "model_version": settings.model_version},
    )

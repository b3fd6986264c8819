"""`modeldeploy serve`: flags over MODELDEPLOY_* env, then uvicorn with one or more workers."""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modeldeploy_server.logs import configure_logging, logging_config
from modeldeploy_server.metrics import MULTIPROC_ENV
from modeldeploy_server.settings import ServerSettings

_FORMATS = ("auto", "sklearn", "skops", "onnx")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `modeldeploy serve`; each overrides its MODELDEPLOY_* env var when given."""
    parser.add_argument(
        "--model", dest="model_uri", metavar="PATH_OR_URI",
        help="model file: a path, file:// or http(s):// URL (env MODELDEPLOY_MODEL_URI)",
    )  # fmt: skip
    pin = parser.add_mutually_exclusive_group()
    pin.add_argument(
        "--sha256", dest="model_sha256", metavar="HEX",
        help="expected sha256 of the model file, checked before loading (MODELDEPLOY_MODEL_SHA256)",
    )  # fmt: skip
    pin.add_argument(
        "--allow-unverified", dest="allow_unverified", action="store_true", default=None,
        help="load a pickle without a pinned sha256 (unsafe; MODELDEPLOY_ALLOW_UNVERIFIED)",
    )  # fmt: skip
    parser.add_argument("--name", dest="model_name", metavar="N", help="model name (MODELDEPLOY_MODEL_NAME)")
    parser.add_argument(
        "--version", dest="model_version", metavar="V", help="model version (MODELDEPLOY_MODEL_VERSION)"
    )
    parser.add_argument(
        "--format", dest="model_format", choices=_FORMATS, metavar="F",
        help="auto, sklearn, skops or onnx; auto guesses from the suffix (MODELDEPLOY_MODEL_FORMAT)",
    )  # fmt: skip
    parser.add_argument("--host", metavar="H", help="address to listen on (MODELDEPLOY_HOST)")
    parser.add_argument("--port", type=int, metavar="P", help="port to listen on (MODELDEPLOY_PORT)")
    parser.add_argument(
        "--workers", type=int, metavar="N", help="worker processes, e.g. the CPU limit (MODELDEPLOY_WORKERS)"
    )


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """Settings from the environment, with the flags that were given on top."""
    fields = ServerSettings.model_fields
    overrides: dict[str, Any] = {key: value for key, value in vars(args).items() if key in fields and value is not None}
    return ServerSettings(**overrides)


def run_serve(args: argparse.Namespace) -> int:
    """Serve until stopped; the exit code (2 for bad settings)."""
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        print(f"modeldeploy serve: invalid settings:\n{_explain(exc)}", file=sys.stderr)
        return 2
    configure_logging(settings)
    try:
        serve(settings)
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def serve(settings: ServerSettings) -> None:
    import uvicorn

    quiet_per_call_warnings()
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": logging_config(settings),
        "access_log": settings.access_log,
        "timeout_graceful_shutdown": 20,
        "server_header": False,
    }
    if settings.workers == 1:
        from modeldeploy_server.app import create_app

        uvicorn.run(create_app(settings), **common)
        return
    # Workers are fresh processes: they read the same settings back from the environment, and
    # write metrics to a shared directory so that /metrics adds up every worker's.
    state_dir = tempfile.mkdtemp(prefix="modeldeploy-workers-")
    atexit.register(shutil.rmtree, state_dir, ignore_errors=True)
    settings = settings.model_copy(update={"worker_state_dir": f"{state_dir}/ready"})
    os.environ.update(settings.env())
    os.environ.setdefault(MULTIPROC_ENV, f"{state_dir}/metrics")
    Path(os.environ[MULTIPROC_ENV]).mkdir(parents=True, exist_ok=True)
    uvicorn.run("modeldeploy_server.app:app_from_env", factory=True, workers=settings.workers, **common)


def quiet_per_call_warnings() -> None:
    """Silence warnings that scikit-learn would repeat on every prediction."""
    # Predicting with an ndarray on a model fitted on a DataFrame warns on every call.
    warnings.filterwarnings("ignore", message="X does not have valid feature names")


def _explain(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        lines.append(f"  MODELDEPLOY_{field.upper()}: {error['msg']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m modeldeploy_server.cli`) until the shared CLI wires it."""
    parser = argparse.ArgumentParser(prog="modeldeploy serve", description=__doc__)
    add_serve_arguments(parser)
    return run_serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

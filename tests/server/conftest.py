"""Fixtures for the server tests: saved models, settings, in-process and real-HTTP apps."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from modeldeploy_server.settings import ServerSettings

from tests.fixtures import models
from tests.fixtures.models import SavedModel


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def iris_model(model_dir: Path) -> SavedModel:
    """Multi-class logistic regression with string labels."""
    model, X = models.iris_logreg()
    return models.save_joblib(model, X, model_dir / "iris.joblib")


@pytest.fixture(scope="session")
def forest_model(model_dir: Path) -> SavedModel:
    """Binary random forest on 8 features."""
    model, X = models.binary_forest()
    return models.save_joblib(model, X, model_dir / "forest.joblib")


@pytest.fixture(scope="session")
def ridge_model(model_dir: Path) -> SavedModel:
    """A regressor (no predict_proba) on 5 features."""
    model, X = models.ridge()
    return models.save_joblib(model, X, model_dir / "ridge.joblib")


def settings_for(saved: SavedModel, **overrides: Any) -> ServerSettings:
    values: dict[str, Any] = {
        "model_name": "m",
        "model_version": "v1",
        "model_uri": str(saved.path),
        "model_sha256": saved.sha256,
    }
    values.update(overrides)
    return ServerSettings(**values)


@contextlib.asynccontextmanager
async def running(
    app: FastAPI, *, wait: bool = True, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client on `app`, with its lifespan run (and the model loaded if `wait`)."""
    async with app.router.lifespan_context(app):
        if wait:
            await app.state.runtime.wait_loaded()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@contextlib.contextmanager
def serve_http(app: FastAPI, **config: Any) -> Iterator[str]:
    """`app` served by uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, **config))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def wait_ready(base_url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base_url}/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"{base_url} did not become ready")


async def gather(*coros: Any) -> list[Any]:
    return list(await asyncio.gather(*coros))

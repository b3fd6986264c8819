"""The generic modeldeploy inference server (FastAPI): one image serves every model.

- `settings.ServerSettings`: every MODELDEPLOY_* setting, typed and validated.
- `runtime.ModelRuntime`: the transport-free data plane (load, validate, predict), with
  `batching.MicroBatcher` coalescing single rows; `formats` and `sources` load the model.
- `app.create_app(settings, runtime=None)`: the FastAPI app (`routes`, `v2_routes`).
- `cli.add_serve_arguments` / `cli.run_serve`: `modeldeploy serve`.

Names are imported lazily (`from modeldeploy_server import create_app` works), so that tools
in this package such as `drift` do not pull in the web stack.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_app": "modeldeploy_server.app",
    "ModelRuntime": "modeldeploy_server.runtime",
    "ServerSettings": "modeldeploy_server.settings",
    "ServerError": "modeldeploy_server.errors",
}

__all__ = ["ModelRuntime", "ServerError", "ServerSettings", "__version__", "create_app"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

from __future__ import annotations

from typing import Any

import pytest

SHA = "a" * 64


def make_md(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {"name": "iris", "version": "1.0.0", "uri": "https://models.example/iris.joblib", "sha256": SHA},
    }
    base.update(spec)
    return {
        "apiVersion": "modeldeploy.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml", "uid": "uid-1", "generation": 1},
        "spec": base,
    }


@pytest.fixture
def md() -> dict[str, Any]:
    return make_md()

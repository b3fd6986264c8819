"""Helpers of the server's drift tests: an iris reference profile, settings, reference and shifted rows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from modeldeploy_drift import Profile, build_profile
from modeldeploy_server.settings import ServerSettings

from tests.fixtures import models
from tests.fixtures.models import SavedModel

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
SHIFTED = (1, 2)
"""Features moved by 1.5 standard deviations in shifted traffic."""


@dataclass(frozen=True)
class SavedProfile:
    path: Path
    sha256: str
    profile: Profile


def save_iris_profile(saved: SavedModel, directory: Path) -> SavedProfile:
    """The iris training data's profile (with the model's predictions), as `modeldeploy profile` writes it."""
    X, _ = models.iris()
    profile = build_profile({n: X[:, i] for i, n in enumerate(FEATURES)}, model=saved.model, feature_names=FEATURES,
                            model_sha256=saved.sha256)
    path = directory / "iris-profile.json"
    path.write_text(profile.to_json())
    return SavedProfile(path, hashlib.sha256(path.read_bytes()).hexdigest(), profile)


def drift_settings(saved: SavedModel, profile: SavedProfile, **overrides: Any) -> ServerSettings:
    values: dict[str, Any] = {
        "model_name": "iris",
        "model_version": "v1",
        "model_uri": str(saved.path),
        "model_sha256": saved.sha256,
        "drift_reference_uri": profile.path.as_uri(),
        "drift_reference_sha256": profile.sha256,
        "drift_window_size": 200,
        "drift_min_samples": 50,
        "drift_interval_seconds": 3600,  # tests judge with evaluate_now(), never by the clock
    }
    values.update(overrides)
    return ServerSettings(**values)


def reference_rows(n: int, seed: int = 0) -> np.ndarray[Any, Any]:
    """Rows drawn from the training data (the reference distribution)."""
    X, _ = models.iris()
    return X[np.random.default_rng(seed).integers(0, len(X), n)]


def shifted_rows(n: int, seed: int = 1) -> np.ndarray[Any, Any]:
    """Reference rows with two features moved up by 1.5 standard deviations."""
    X, _ = models.iris()
    rows = reference_rows(n, seed).copy()
    for j in SHIFTED:
        rows[:, j] += 1.5 * X[:, j].std()
    return rows

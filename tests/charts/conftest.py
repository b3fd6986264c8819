"""The helm binary for chart tests: built from its pinned Go module by e2e/controlplane/build.sh (cached)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_SH = ROOT / "e2e" / "controlplane" / "build.sh"
BIN_DIR_ENV = "MODELDEPLOY_E2E_BIN_DIR"  # as e2e/controlplane/binaries.py: use these binaries, build nothing


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """Path of helm; the first run on a machine builds the control plane binaries (many minutes)."""
    if os.environ.get(BIN_DIR_ENV):
        bin_dir = Path(os.environ[BIN_DIR_ENV])
    else:
        res = subprocess.run(["bash", str(BUILD_SH)], capture_output=True, text=True, timeout=3600)
        if res.returncode != 0:
            pytest.fail(f"{BUILD_SH} failed ({res.returncode}):\n{res.stderr[-4000:]}")
        bin_dir = Path(res.stdout.strip().splitlines()[-1])
    helm = bin_dir / "helm"
    assert os.access(helm, os.X_OK), f"{helm} missing: build it with {BUILD_SH}"
    return helm

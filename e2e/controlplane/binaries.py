"""Locating/building the pinned control-plane binaries through build.sh (cached after the first run)."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

BUILD_SH = Path(__file__).with_name("build.sh")
BIN_DIR_ENV = "MODELDEPLOY_E2E_BIN_DIR"  # skip build.sh and use these binaries


def ensure_binaries(progress: Callable[[str], None] | None = None) -> Path:
    """Run build.sh (returns at once when everything is cached) and return the bin directory.

    build.sh's progress lines (stderr) are passed to `progress` as they come: the first build
    compiles Kubernetes from source and takes many minutes.
    """
    if os.environ.get(BIN_DIR_ENV):
        return Path(os.environ[BIN_DIR_ENV])
    err_lines: list[str] = []
    with subprocess.Popen(
        ["bash", str(BUILD_SH)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                err_lines.append(line)
                if progress is not None:
                    progress(line.rstrip("\n"))

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait()
        t.join()
    if proc.returncode != 0:
        tail = "".join(err_lines[-40:])
        raise RuntimeError(f"{BUILD_SH} failed with exit code {proc.returncode}:\n{tail}")
    lines = out.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{BUILD_SH} printed no bin directory")
    return Path(lines[-1])

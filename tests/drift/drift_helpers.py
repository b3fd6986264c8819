"""Shared helpers for the drift tests: synthetic reference data and binned counts."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from modeldeploy_drift.profile import NumericProfile, numeric_profile


def normal_reference(
    rng: np.random.Generator, n: int = 20_000, bins: int = 32
) -> tuple[NumericProfile, npt.NDArray[np.int64]]:
    """Profile of n standard-normal draws and its reference bin counts."""
    prof = numeric_profile("x", rng.normal(size=n), bins=bins)
    return prof, np.asarray(prof.counts, dtype=np.int64)


def live_counts(prof: NumericProfile, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Counts of live values in the profile's bins (missing excluded)."""
    edges = np.asarray(prof.edges)
    idx = np.searchsorted(edges, np.asarray(values, dtype=np.float64), side="left")
    return np.bincount(idx, minlength=edges.size + 1).astype(np.int64)

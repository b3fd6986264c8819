"""Drift detection core: reference profiles, mergeable live windows, calibrated tests, verdicts.

Pure numpy/scipy: no FastAPI, Kubernetes or operator imports, so both the server (per-replica
state, gauges, /drift page) and the operator (merging replicas' states into ``status.drift``)
can use it.
"""

from .evaluate import DriftConfig, assess_feature, evaluate
from .ks import binned_ks_test, ks_2samp_raw, ks_pvalue_raw, multinomial_ks_sf
from .profile import (
    SCHEMA_VERSION,
    CategoricalProfile,
    FeatureProfile,
    NumericProfile,
    Profile,
    ProfileError,
    build_profile,
)
from .report import DriftReport, DriftStatus, FeatureDrift
from .state import StateError, WindowState
from .stats import adjust_pvalues, chi2_test, js_distance, psi

__all__ = [
    "SCHEMA_VERSION",
    "CategoricalProfile",
    "DriftConfig",
    "DriftReport",
    "DriftStatus",
    "FeatureDrift",
    "FeatureProfile",
    "NumericProfile",
    "Profile",
    "ProfileError",
    "StateError",
    "WindowState",
    "adjust_pvalues",
    "assess_feature",
    "binned_ks_test",
    "build_profile",
    "chi2_test",
    "evaluate",
    "js_distance",
    "ks_2samp_raw",
    "ks_pvalue_raw",
    "multinomial_ks_sf",
    "psi",
]

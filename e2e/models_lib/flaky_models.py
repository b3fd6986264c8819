"""Test-only estimators that misbehave on purpose. Pods find this module through PYTHONPATH set in the
ModelDeployment's `spec.server.env` (how a user would add their own estimator code)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class FlakyClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Wraps a fitted classifier and raises (a server error, 5xx) on rows whose first feature is above `limit`."""

    def __init__(self, inner: Any = None, limit: float = 5.5) -> None:
        self.inner = inner
        self.limit = limit

    def fit(self, x: Any, y: Any) -> FlakyClassifier:
        self.inner.fit(x, y)
        self.classes_ = self.inner.classes_
        self.n_features_in_ = self.inner.n_features_in_
        return self

    def _check(self, x: Any) -> None:
        if np.any(np.asarray(x)[:, 0] > self.limit):
            raise RuntimeError("flaky model: cannot handle this input")

    def predict(self, x: Any) -> Any:
        self._check(x)
        return self.inner.predict(x)

    def predict_proba(self, x: Any) -> Any:
        self._check(x)
        return self.inner.predict_proba(x)

"""Train the two benchmark models with fixed seeds; write joblib files, their sha256 and the request rows.

Run by e2e/bench/run.py with the naive peer's venv (scikit-learn pinned in requirements-naive.txt):
    python train.py OUT_DIR
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

N_FEATURES = 20
BATCH_ROWS = 100


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    X, y = make_classification(n_samples=5000, n_features=N_FEATURES, n_informative=10, random_state=0)
    # Every server gets the same float32-exact values, whatever its wire format.
    X = X.astype(np.float32).astype(np.float64)
    models = {
        "rf": RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0),
        "lr": LogisticRegression(max_iter=1000, random_state=0),
    }
    row = X[0:1]
    batch = X[:BATCH_ROWS]
    meta: dict[str, object] = {
        "sklearn": sklearn.__version__,
        "row": row[0].tolist(),
        "batch": batch.tolist(),
        "models": {},
    }
    for name, model in models.items():
        model.fit(X, y)
        path = out / f"{name}.joblib"
        joblib.dump(model, path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        meta["models"][name] = {  # type: ignore[index]
            "path": str(path),
            "sha256": digest,
            "class": type(model).__name__,
            "expected_label": int(model.predict(row)[0]),
            "expected_batch_labels": model.predict(batch).astype(int).tolist(),
        }
    (out / "meta.json").write_text(json.dumps(meta))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

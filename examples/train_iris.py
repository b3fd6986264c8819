"""Train the small example model (iris) and print its path and SHA-256 — what a ModelDeployment pins.

    python examples/train_iris.py --version 1.0.0 --out models/
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression


def train(version: str, out_dir: Path, kind: str = "logreg") -> tuple[Path, str]:
    """Fit with fixed seeds; `kind` lets two versions differ in what they predict."""
    x, y = load_iris(return_X_y=True)
    model = (
        RandomForestClassifier(n_estimators=20, max_depth=3, random_state=0)
        if kind == "forest"
        else LogisticRegression(max_iter=500, random_state=0)
    ).fit(x, y)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"iris-{version}.joblib"
    joblib.dump(model, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--out", type=Path, default=Path("models"))
    parser.add_argument("--kind", choices=["logreg", "forest"], default="logreg")
    args = parser.parse_args()
    path, digest = train(args.version, args.out, args.kind)
    print(f"{path} {digest}")


if __name__ == "__main__":
    main()

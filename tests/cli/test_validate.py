"""`modeldeploy validate`: the CI check and the rollout gate's Job, run as the real command."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from modeldeploy_server.validate import csv_text
from sklearn.datasets import load_diabetes, load_iris
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

MODELDEPLOY = str(Path(sys.executable).parent / "modeldeploy")


def save(model: object, path: Path) -> str:
    joblib.dump(model, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("iris")
    x, y = load_iris(return_X_y=True)
    good = LogisticRegression(max_iter=500, random_state=0).fit(x, y)
    bad = DummyClassifier(strategy="most_frequent").fit(x, y)
    (d / "test.csv").write_text(csv_text(x, y, ["a", "b", "c", "d"], "species"))
    return {"good": str(d / "good.joblib"), "good_sha": save(good, d / "good.joblib"),
            "bad": str(d / "bad.joblib"), "bad_sha": save(bad, d / "bad.joblib"), "data": str(d / "test.csv")}


def run(*args: str, log: Path | None = None) -> tuple[int, dict[str, object]]:
    extra = ["--termination-log", str(log)] if log else []
    proc = subprocess.run([MODELDEPLOY, "validate", *args, *extra], capture_output=True, text=True, timeout=120)
    return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])


def test_passes_above_the_bar(iris: dict[str, str], tmp_path: Path) -> None:
    code, out = run("--model", iris["good"], "--sha256", iris["good_sha"], "--data", iris["data"],
                    "--target", "species", "--metric", "accuracy", "--min", "0.9", log=tmp_path / "term")
    assert code == 0 and out["passed"] is True and float(out["score"]) > 0.9  # type: ignore[arg-type]
    assert json.loads((tmp_path / "term").read_text())["score"] == out["score"]


def test_fails_below_the_bar_with_the_score(iris: dict[str, str]) -> None:
    code, out = run("--model", iris["bad"], "--sha256", iris["bad_sha"], "--data", iris["data"],
                    "--target", "species", "--metric", "accuracy", "--min", "0.85")
    assert code == 1 and out["passed"] is False
    assert out["score"] == pytest.approx(1 / 3, abs=1e-6) and "< 0.85" in str(out["message"])


@pytest.mark.parametrize("metric", ["f1", "roc_auc"])
def test_other_classification_metrics(iris: dict[str, str], metric: str) -> None:
    code, out = run("--model", iris["good"], "--sha256", iris["good_sha"], "--data", iris["data"],
                    "--target", "species", "--metric", metric, "--min", "0.9")
    assert code == 0 and 0.9 <= float(out["score"]) <= 1.0  # type: ignore[arg-type]


def test_regression_error_metrics_use_max(tmp_path: Path) -> None:
    x, y = load_diabetes(return_X_y=True)
    sha = save(LinearRegression().fit(x, y), tmp_path / "reg.joblib")
    (tmp_path / "d.csv").write_text(csv_text(x, y, [f"f{i}" for i in range(x.shape[1])], "y"))
    expected = float(np.sqrt(np.mean((LinearRegression().fit(x, y).predict(x) - y) ** 2)))
    code, out = run("--model", str(tmp_path / "reg.joblib"), "--sha256", sha, "--data", str(tmp_path / "d.csv"),
                    "--target", "y", "--metric", "rmse", "--max", "60")
    assert code == 0 and out["score"] == pytest.approx(expected, rel=1e-5)
    code, out = run("--model", str(tmp_path / "reg.joblib"), "--sha256", sha, "--data", str(tmp_path / "d.csv"),
                    "--target", "y", "--metric", "mae", "--max", "10")
    assert code == 1 and "> 10" in str(out["message"])


@pytest.mark.parametrize(("args", "needle"), [(["--sha256", "0" * 64], "sha256"), ([], "refusing to unpickle")])
def test_digest_errors_are_readable_and_exit_2(iris: dict[str, str], args: list[str], needle: str) -> None:
    code, out = run("--model", iris["good"], *args, "--data", iris["data"], "--target", "species",
                    "--metric", "accuracy", "--min", "0.9")
    assert code == 2 and needle in str(out["error"]).lower()


def test_missing_target_column_is_named(iris: dict[str, str]) -> None:
    code, out = run("--model", iris["good"], "--allow-unverified", "--data", iris["data"],
                    "--target", "nope", "--metric", "accuracy", "--min", "0.9")
    assert code == 2 and "column 'nope' not in" in str(out["error"])


def test_wrong_direction_is_an_error(iris: dict[str, str]) -> None:
    code, out = run("--model", iris["good"], "--sha256", iris["good_sha"], "--data", iris["data"],
                    "--target", "species", "--metric", "accuracy", "--max", "0.9")
    assert code == 2 and "use --min" in str(out["error"])


def test_the_test_set_is_read_from_a_claim_like_the_model(iris: dict[str, str], tmp_path: Path) -> None:
    """pvc:// data resolves under the same mount root (MODELDEPLOY_PVC_ROOT) as a pvc:// model."""
    (tmp_path / "datasets" / "iris").mkdir(parents=True)
    (tmp_path / "datasets" / "iris" / "test.csv").write_bytes(Path(iris["data"]).read_bytes())
    env = {**os.environ, "MODELDEPLOY_PVC_ROOT": str(tmp_path)}
    proc = subprocess.run(
        [MODELDEPLOY, "validate", "--model", iris["good"], "--sha256", iris["good_sha"], "--data",
         "pvc://datasets/iris/test.csv", "--target", "species", "--metric", "accuracy", "--min", "0.9"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["passed"] is True

"""``modeldeploy profile`` arguments and run, and import isolation of the drift package."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from modeldeploy_drift import Profile
from modeldeploy_drift.cli import add_profile_arguments, run_profile


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_profile_arguments(parser)
    return parser.parse_args(argv)


def _write_csv(path: Path, n: int = 400) -> None:
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["x1", "x2", "colour", "label"])
        for i in range(n):
            x1 = "" if i % 50 == 0 else f"{rng.normal():.5f}"
            w.writerow([x1, int(rng.integers(0, 5)), rng.choice(["red", "blue"]), i % 2])


def test_profile_from_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, out = tmp_path / "train.csv", tmp_path / "out" / "profile.json"
    _write_csv(data)
    code = run_profile(_parse(["--data", str(data), "-o", str(out), "--exclude", "label", "--categorical", "x2"]))
    assert code == 0
    prof = Profile.from_json(out.read_text())
    assert prof.feature_names == ("x1", "x2", "colour")
    assert [f.type for f in prof.features] == ["numeric", "categorical", "categorical"]
    assert prof.features[0].missing == 8 and prof.rows == 400
    assert "3 features" in capsys.readouterr().err


def test_profile_with_verified_model(tmp_path: Path) -> None:
    from sklearn.tree import DecisionTreeClassifier

    data, out, model_path = tmp_path / "train.csv", tmp_path / "p.json", tmp_path / "m.joblib"
    _write_csv(data)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 2))
    model = DecisionTreeClassifier(max_depth=2).fit(x, (x[:, 0] > 0).astype(int))
    joblib.dump(model, model_path)
    sha = hashlib.sha256(model_path.read_bytes()).hexdigest()
    # the model has no feature names: give them via --exclude of the rest
    args = [
        "--data",
        str(data),
        "-o",
        str(out),
        "--model",
        str(model_path),
        "--exclude",
        "colour",
        "--exclude",
        "label",
    ]
    assert run_profile(_parse([*args, "--sha256", sha])) == 0
    prof = Profile.from_json(out.read_text())
    assert prof.model_sha256 == sha and prof.prediction is not None
    assert prof.prediction.type == "categorical"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "{model}"], "needs --sha256"),
        (["--model", "{model}", "--sha256", "0" * 64], "SHA-256 is"),
        (["--model", "{model}", "--sha256", "xyz"], "64 hexadecimal"),
        (["--sha256", "0" * 64], "only meaningful with --model"),
        (["--bins", "1000"], "bins must be between"),
        (["--categorical", "nope"], "unknown features: nope"),
    ],
)
def test_profile_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    data, out, model_path = tmp_path / "train.csv", tmp_path / "p.json", tmp_path / "m.joblib"
    _write_csv(data, n=20)
    joblib.dump({"not": "a model"}, model_path)
    argv = ["--data", str(data), "-o", str(out), *[e.replace("{model}", str(model_path)) for e in extra]]
    assert run_profile(_parse(argv)) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("t.csv", "", "empty file"),
        ("t.csv", "a,b\n", "no data rows"),
        ("t.csv", "a,b\n1,2,3\n", "3 cells, header has 2"),
        ("t.csv", "a,a\n1,2\n", "duplicate column names"),
        ("t.txt", "a\n1\n", "unsupported file type"),
        ("missing.csv", None, "no such file"),
    ],
)
def test_bad_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    assert run_profile(_parse(["--data", str(path), "-o", str(tmp_path / "p.json")])) == 2
    assert message in capsys.readouterr().err


def test_stdout_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "train.csv"
    _write_csv(data, n=50)
    assert run_profile(_parse(["--data", str(data), "-o", "-"])) == 0
    assert json.loads(capsys.readouterr().out)["schemaVersion"] == 1


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0, None, 4.0], "b": ["x", "y", "x", None]}), path)
    out = tmp_path / "p.json"
    assert run_profile(_parse(["--data", str(path), "-o", str(out)])) == 0
    prof = Profile.from_json(out.read_text())
    assert [f.type for f in prof.features] == ["numeric", "categorical"]


def test_drift_package_does_not_import_web_or_kubernetes() -> None:
    code = (
        "import sys; import modeldeploy_drift, modeldeploy_drift.cli; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'starlette', 'kubernetes', 'kopf', 'modeldeploy_operator', 'uvicorn')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[3]
    env_path = f"{root / 'server'}:{root / 'api'}"
    proc = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": env_path}, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

"""`modeldeploy validate`: score a model on a labelled CSV and exit non-zero below the bar.

The same check gates a rollout: the operator runs it as a Job with the server image before any
traffic reaches a new version. The result is one JSON line on stdout and, in a pod, in the
container's termination message (where the operator reads it).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modeldeploy_server.errors import ModelLoadError
from modeldeploy_server.formats import guess_format, load
from modeldeploy_server.settings import ServerSettings
from modeldeploy_server.sources import fetch, uri_suffix
from modeldeploy_server.stores import StoreConfig

HIGHER_IS_BETTER = {"accuracy": True, "f1": True, "roc_auc": True, "rmse": False, "mae": False}
EXIT_PASSED, EXIT_BELOW_BAR, EXIT_ERROR = 0, 1, 2
log = logging.getLogger("modeldeploy.validate")


@dataclass(frozen=True)
class Result:
    metric: str
    score: float
    threshold: float
    passed: bool
    rows: int
    message: str


def add_validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Model path or URI (file://, http(s)://).")
    parser.add_argument("--sha256", help="Expected SHA-256 of the model file (checked before loading).")
    parser.add_argument("--allow-unverified", action="store_true", help="Load a pickle without a digest.")
    parser.add_argument("--format", default="sklearn", choices=["sklearn", "skops", "onnx", "auto"])
    parser.add_argument("--data", required=True, help="Labelled test set: CSV path or URI with a header row.")
    parser.add_argument("--data-sha256", help="Expected SHA-256 of the data file.")
    parser.add_argument("--target", required=True, help="Name of the label column.")
    parser.add_argument("--metric", required=True, choices=sorted(HIGHER_IS_BETTER))
    bar = parser.add_mutually_exclusive_group(required=True)
    bar.add_argument("--min", type=float, help="Lowest acceptable score (accuracy, f1, roc_auc).")
    bar.add_argument("--max", type=float, help="Highest acceptable score (rmse, mae).")
    parser.add_argument("--cache-dir", default="/var/cache/modeldeploy")
    parser.add_argument(
        "--termination-log",
        type=Path,
        default=None,
        help="Also write the JSON result here (a pod's /dev/termination-log).",
    )


def read_csv(path: Path, target: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path.name} is empty")
        if target not in header:
            raise ValueError(f"column {target!r} not in {path.name} (columns: {', '.join(header)})")
        rows = [r for r in reader if r]
    t = header.index(target)
    try:
        features = np.asarray([[float(v) for i, v in enumerate(r) if i != t] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"non-numeric feature value in {path.name}: {exc}") from exc
    labels = np.asarray([r[t] for r in rows])
    if len(rows) == 0:
        raise ValueError(f"{path.name} has no rows")
    return features, labels


def _as_labels(truth: np.ndarray[Any, Any], like: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """CSV labels are text; give them the dtype of the model's labels."""
    try:
        return truth.astype(like.dtype)
    except (ValueError, TypeError):
        return truth


def score(metric: str, predictor: Any, x: np.ndarray[Any, Any], truth: np.ndarray[Any, Any]) -> float:
    from sklearn import metrics

    out = predictor.predict(x)
    if metric in ("rmse", "mae"):
        y = truth.astype(np.float64)
        pred = np.asarray(out.labels, dtype=np.float64)
        err = metrics.mean_squared_error(y, pred) ** 0.5 if metric == "rmse" else metrics.mean_absolute_error(y, pred)
        return float(err)
    y = _as_labels(truth, np.asarray(out.labels))
    if metric == "accuracy":
        return float(metrics.accuracy_score(y, out.labels))
    if metric == "f1":
        average = "binary" if len(np.unique(y)) <= 2 else "macro"
        pos = {"pos_label": np.asarray(predictor.classes)[-1]} if average == "binary" else {}
        return float(metrics.f1_score(y, out.labels, average=average, **pos))
    if out.proba is None:
        raise ValueError("roc_auc needs a classifier with predict_proba")
    if out.proba.shape[1] == 2:
        return float(metrics.roc_auc_score(y == np.asarray(predictor.classes)[1], out.proba[:, 1]))
    return float(metrics.roc_auc_score(y, out.proba, multi_class="ovr", labels=predictor.classes))


def validate(args: argparse.Namespace) -> Result:
    adapter = logging.LoggerAdapter(log, {})
    fmt = guess_format(args.format, uri_suffix(args.model))
    if fmt == "sklearn" and not args.sha256 and not args.allow_unverified:
        raise ModelLoadError(
            "refusing to unpickle a model without --sha256 (or --allow-unverified)", reason="unverified_model"
        )
    # Object-store endpoints and credentials come from the same MODELDEPLOY_*/AWS_* env as the server's.
    store = StoreConfig.from_settings(ServerSettings())
    model_file = fetch(args.model, expected_sha256=args.sha256, cache_dir=args.cache_dir, timeout_s=300, log=adapter,
                       store=store)
    data_file = fetch(args.data, expected_sha256=args.data_sha256, cache_dir=args.cache_dir, timeout_s=300, log=adapter,
                      store=store)
    predictor = load(fmt, model_file.path, trusted_types=[], threads=1)
    x, truth = read_csv(data_file.path, args.target)
    value = score(args.metric, predictor, x, truth)
    higher = HIGHER_IS_BETTER[args.metric]
    threshold = args.min if args.min is not None else args.max
    if (args.min is not None) != higher:
        raise ValueError(
            f"{args.metric} is {'higher' if higher else 'lower'}-is-better: use --{'min' if higher else 'max'}"
        )
    passed = value >= threshold if higher else value <= threshold
    sign = (">=" if higher else "<=") if passed else ("<" if higher else ">")
    return Result(
        args.metric,
        round(value, 6),
        threshold,
        passed,
        len(truth),
        f"{args.metric} {value:.4f} {sign} {threshold} on {len(truth)} rows",
    )


def run_validate(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        result = validate(args)
        payload: dict[str, Any] = asdict(result)
        code = EXIT_PASSED if result.passed else EXIT_BELOW_BAR
    except (ModelLoadError, ValueError, OSError) as exc:
        payload = {"passed": False, "error": str(exc), "message": f"validation could not run: {exc}"}
        code = EXIT_ERROR
    line = json.dumps(payload)
    print(line)
    if args.termination_log is not None:
        try:
            args.termination_log.write_text(line)
        except OSError as exc:
            print(f"could not write {args.termination_log}: {exc}", file=sys.stderr)
    return code


def csv_text(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], names: list[str], target: str) -> str:
    """A labelled CSV (used by tests and examples to write test sets)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*names, target])
    for row, label in zip(x, y, strict=True):
        writer.writerow([*map(float, row), label])
    return buf.getvalue()

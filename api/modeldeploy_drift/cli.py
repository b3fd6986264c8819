"""``modeldeploy profile``: build a drift reference profile from a training table (and a model).

Wiring (done by the CLI package)::

    sub = subparsers.add_parser("profile", help="build a drift reference profile")
    add_profile_arguments(sub)
    sub.set_defaults(func=run_profile)

Exit codes: 0 written, 2 bad input (message on stderr, nothing written).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tempfile
from pathlib import Path

from .profile import DEFAULT_BINS, DEFAULT_MAX_CATEGORIES, MAX_BINS, MIN_BINS, ProfileError, build_profile
from .table import TableError, read_table

_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")


def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``profile`` sub-command's arguments to ``parser``."""
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        metavar="TRAIN.csv|.parquet",
        help="training table with a header row (Parquet needs pyarrow)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        metavar="MODEL.joblib",
        help="fitted model: gives feature names/order (feature_names_in_) and the prediction profile",
    )
    parser.add_argument(
        "--sha256",
        metavar="HEX",
        help="expected SHA-256 of --model; required with --model (checked before unpickling)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="profile.json",
        help="where to write ('-' = stdout)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="COLUMN",
        help="column that is not a feature, e.g. the target (repeatable)",
    )
    parser.add_argument(
        "--categorical",
        action="append",
        default=[],
        metavar="COLUMN",
        help="treat a numeric-looking column as categorical (repeatable)",
    )
    parser.add_argument(
        "--bins",
        type=int,
        default=DEFAULT_BINS,
        help=f"bins per numeric feature, {MIN_BINS}..{MAX_BINS} (default {DEFAULT_BINS})",
    )
    parser.add_argument(
        "--max-categories",
        type=int,
        default=DEFAULT_MAX_CATEGORIES,
        help=f"categories kept per categorical feature (default {DEFAULT_MAX_CATEGORIES})",
    )


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_model(path: Path, expected: str | None) -> tuple[object, str]:
    if expected is None:
        raise ProfileError("--model needs --sha256 HEX (the model is only unpickled once verified)")
    if not _SHA256_RE.match(expected):
        raise ProfileError("--sha256 must be 64 hexadecimal characters")
    if not path.is_file():
        raise ProfileError(f"{path}: no such model file")
    actual = _sha256_file(path)
    if actual != expected.lower():
        raise ProfileError(f"{path}: SHA-256 is {actual}, expected {expected.lower()}")
    import joblib

    return joblib.load(path), actual


def _write(text: str, output: str) -> None:
    if output == "-":
        sys.stdout.write(text + "\n")
        return
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".profile-", suffix=".json", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_profile(args: argparse.Namespace) -> int:
    """Run ``modeldeploy profile``; returns the process exit code."""
    try:
        if args.sha256 is not None and args.model is None:
            raise ProfileError("--sha256 is only meaningful with --model")
        model, digest = (None, None)
        if args.model is not None:
            model, digest = _load_model(args.model, args.sha256)
        columns = read_table(args.data)
        profile = build_profile(
            columns,
            model=model,
            categorical=args.categorical,
            exclude=args.exclude,
            bins=args.bins,
            max_categories=args.max_categories,
            model_sha256=digest,
        )
        text = profile.to_json(indent=1)
    except (ProfileError, TableError) as exc:
        print(f"modeldeploy profile: error: {exc}", file=sys.stderr)
        return 2
    _write(text, args.output)
    if args.output != "-":
        kinds = [f.type for f in profile.features]
        print(
            f"wrote {args.output}: {len(kinds)} features ({kinds.count('numeric')} numeric, "
            f"{kinds.count('categorical')} categorical), {profile.rows} rows, "
            f"prediction profile: {profile.prediction.type if profile.prediction else 'none'}",
            file=sys.stderr,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m modeldeploy_drift.cli``)."""
    parser = argparse.ArgumentParser(prog="modeldeploy profile", description=__doc__)
    add_profile_arguments(parser)
    return run_profile(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

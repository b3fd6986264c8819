"""`modeldeploy`: one command for the server, the operator and the tools around them.

Each subcommand imports its package lazily, so `modeldeploy serve` never loads Kopf and
`modeldeploy operator` never loads FastAPI.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

Runner = Callable[[argparse.Namespace], int]


def _serve(parser: argparse.ArgumentParser) -> Runner:
    from modeldeploy_server.cli import add_serve_arguments, run_serve

    add_serve_arguments(parser)
    return cast(Runner, run_serve)


def _operator(parser: argparse.ArgumentParser) -> Runner:
    from modeldeploy_operator.main import add_operator_arguments, run_operator

    add_operator_arguments(parser)
    return run_operator


def _crd(parser: argparse.ArgumentParser) -> Runner:
    parser.add_argument("--output-dir", "-o", type=Path, action="append", default=[],
                        help="Write the CRD YAML into this folder (repeatable) instead of printing it.")
    parser.add_argument("--check", action="store_true",
                        help="Exit 1 if the files in --output-dir differ from the generated CRD.")

    def run(args: argparse.Namespace) -> int:
        from modeldeploy_api.crd import CRD_FILE, render_crd_yaml, write_crd

        if not args.output_dir:
            sys.stdout.write(render_crd_yaml())
            return 0
        stale = [d / CRD_FILE for d in args.output_dir
                 if not (d / CRD_FILE).is_file() or (d / CRD_FILE).read_text() != render_crd_yaml()]
        if args.check:
            for path in stale:
                print(f"out of date: {path} (run: modeldeploy crd -o {path.parent})", file=sys.stderr)
            return 1 if stale else 0
        for d in args.output_dir:
            print(write_crd(d))
        return 0

    return run


def _profile(parser: argparse.ArgumentParser) -> Runner:
    from modeldeploy_drift.cli import add_profile_arguments, run_profile

    add_profile_arguments(parser)
    return cast(Runner, run_profile)


def _validate(parser: argparse.ArgumentParser) -> Runner:
    from modeldeploy_server.validate import add_validate_arguments, run_validate

    add_validate_arguments(parser)
    return run_validate


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], Runner]]] = {
    "serve": ("Run the inference server for one model.", _serve),
    "operator": ("Run the Kubernetes operator.", _operator),
    "crd": ("Print (or write) the generated ModelDeployment CRD.", _crd),
    "profile": ("Build a drift reference profile from training data.", _profile),
    "validate": ("Score a model on a labelled test set; exit 1 below the bar (CI and rollout gate).", _validate),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="modeldeploy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    runners: dict[str, Runner] = {}
    for name, (help_text, setup) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # only the chosen command's package is imported
            runners[name] = setup(command_parser)
    args = parser.parse_args(argv)
    return runners[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())

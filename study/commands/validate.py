"""`study validate FILE...`: check experiment files (schema, parameters, expressions, the expanded sweep)."""

from __future__ import annotations

import argparse

HELP = "check experiment files: schema, parameters, expressions and the expanded sweep"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="experiment YAML files")
    parser.add_argument("--system", help="check against this system (name or path) instead of the file's")


def run(args: argparse.Namespace) -> int:
    import sys

    from study.config import load_experiment
    from study.errors import InputError
    from study.sweep import expand
    from study.systems import system_for

    failed = 0
    for file in args.files:
        try:
            experiment = load_experiment(file)
            system = system_for(experiment, args.system)
            runs = expand(experiment, system)
        except InputError as exc:
            print(f"study validate: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        points = len(runs) // experiment.repeats
        print(
            f"ok: {file}: {experiment.kind} experiment {experiment.name}, {len(runs)} runs "
            f"({points} points x {experiment.repeats} repeats) on {system.name}"
        )
    if failed:
        print(f"{failed} of {len(args.files)} files invalid", file=sys.stderr)
        return 2
    return 0

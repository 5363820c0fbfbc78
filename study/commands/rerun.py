"""`study rerun WORKSPACE --failed`: new attempts (new job scripts) for the failed runs.

Each rerun is a new attempt folder; the failed attempts keep their logs. `--max-attempts N` leaves
alone runs that already had N attempts.
"""

from __future__ import annotations

import argparse

from study.commands import add_max_parallel_argument

HELP = "resubmit the failed runs of a workspace as new attempts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace", metavar="WORKSPACE", help="a rendered workspace folder")
    parser.add_argument("--failed", action="store_true", required=True, help="rerun the runs that failed")
    parser.add_argument("--max-attempts", type=int, metavar="N", help="skip runs that already had N attempts")
    add_max_parallel_argument(parser)
    parser.add_argument("--dry-run", action="store_true", help="show what would be rerun; submit nothing")


def run(args: argparse.Namespace) -> int:
    from study.errors import InputError
    from study.submit import open_session, rerun_failed, workspace_arg

    if args.max_attempts is not None and args.max_attempts < 1:
        raise InputError("must be at least 1", key="--max-attempts")
    workspace = workspace_arg(args.workspace)
    with open_session(workspace, max_parallel=args.max_parallel) as session:
        chosen, exhausted = rerun_failed(session, max_attempts=args.max_attempts, dry_run=args.dry_run)
    verb = "dry run: would rerun" if args.dry_run else "rerunning"
    limit = f"; {len(exhausted)} failed runs reached --max-attempts {args.max_attempts}" if exhausted else ""
    print(f"{verb} {len(chosen)} failed runs{limit}")
    return 1 if exhausted else 0

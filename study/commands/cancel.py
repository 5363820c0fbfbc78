"""`study cancel WORKSPACE`: cancel every job of the workspace that has not ended."""

from __future__ import annotations

import argparse

HELP = "cancel the workspace's queued and running jobs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace", metavar="WORKSPACE", help="a rendered workspace folder")
    parser.add_argument("--dry-run", action="store_true", help="show what would be cancelled")


def run(args: argparse.Namespace) -> int:
    from study.submit import cancel, counts_line, open_session, refresh, workspace_arg

    workspace = workspace_arg(args.workspace)
    with open_session(workspace) as session:
        ids = cancel(session, dry_run=args.dry_run)
        counts = refresh(session) if not args.dry_run else None
    if args.dry_run:
        print(f"dry run: would cancel {len(ids)} jobs")
        return 0
    print(f"cancelled {len(ids)} jobs{': ' + ', '.join(ids) if ids else ''}; runs: {counts_line(counts)}")
    return 0

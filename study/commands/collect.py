"""`study collect WORKSPACE`: each run's last good attempt → dataset.parquet/.csv and timers.parquet/.csv."""

from __future__ import annotations

import argparse
import sys

HELP = "collect the workspace's results into dataset.parquet/.csv and timers.parquet/.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace", metavar="WORKSPACE", help="a rendered workspace folder")
    parser.add_argument(
        "--no-refresh",
        action="store_true",
        help="do not ask the scheduler first (collect what the folders and state say)",
    )


def run(args: argparse.Namespace) -> int:
    from study.collect import collect_workspace
    from study.state import has_state, read_only_folder
    from study.submit import workspace_arg

    workspace = workspace_arg(args.workspace)
    if has_state(workspace) and not args.no_refresh and not read_only_folder(workspace):
        from study.submit import open_session, refresh

        with open_session(workspace) as session:
            refresh(session)
    collected = collect_workspace(workspace, on_problem=lambda p: print(f"warning: {p}", file=sys.stderr))
    print(f"wrote {workspace / 'dataset.parquet'} (+.csv) and {workspace / 'timers.parquet'} (+.csv)")
    if collected.corrected:
        print(
            f"recorded {len(collected.corrected)} run(s) the state store had as ok as failed "
            f"({', '.join(collected.corrected[:5])}{', …' if len(collected.corrected) > 5 else ''}); "
            "`study rerun --failed` reruns them",
            file=sys.stderr,
        )
    print(f"collected {workspace.name}: {collected.summary()}")
    return 1 if collected.counts.get("failed") else 0

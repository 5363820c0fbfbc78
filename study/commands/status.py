"""`study status WORKSPACE`: ask the scheduler (one call for all jobs) and show every job and run state."""

from __future__ import annotations

import argparse
import json

HELP = "show the state of a workspace's jobs and runs (asks the scheduler once)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace", metavar="WORKSPACE", help="a rendered workspace folder")
    parser.add_argument("--json", action="store_true", help="print the state as JSON")


def run(args: argparse.Namespace) -> int:
    import sys

    from study.submit import counts_line, open_session, refresh, run_counts, workspace_arg

    workspace = workspace_arg(args.workspace)
    with open_session(workspace) as session:
        if session.state.read_only:
            print(
                f"warning: the state store of {workspace} is {session.state.why_read_only}: showing "
                "the states last recorded, without asking the scheduler",
                file=sys.stderr,
            )
            counts = run_counts(session.state)
        else:
            counts = refresh(session)
        jobs = session.state.jobs()
        runs = session.state.runs()
    if args.json:
        print(
            json.dumps(
                {
                    "workspace": str(workspace),
                    "scheduler": session.scheduler.name,
                    "counts": counts,
                    "adopted": session.adopted,
                    "jobs": [
                        {
                            "name": j.name,
                            "job_id": j.job_id,
                            "status": j.status,
                            "state": j.state,
                            "reason": j.reason,
                            "round": j.round,
                            "runs": j.runs,
                        }
                        for j in jobs
                    ],
                    "runs": [
                        {
                            "run_id": r.run_id,
                            "status": r.status,
                            "attempt": r.attempt,
                            "reason": r.reason,
                            "job": r.job,
                        }
                        for r in runs
                    ],
                },
                indent=1,
            )
        )
    else:
        _print_tables(jobs, runs)
        print(f"{workspace.name}: {counts_line(counts)} ({len(runs)} runs, {len(jobs)} jobs)")
    return 1 if counts.get("failed") else 0


def _print_tables(jobs, runs) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table("job", "id", "state", "reason", "runs", title="jobs", title_justify="left")
    for job in jobs:
        table.add_row(
            job.name, job.job_id or "-", job.state or job.status, job.reason or "", str(len(job.runs))
        )
    console.print(table)
    failed = [r for r in runs if r.status == "failed"]
    if failed:
        table = Table("run", "attempt", "reason", title="failed runs", title_justify="left")
        for r in failed:
            table.add_row(r.run_id, str(r.attempt or "-"), r.reason or "")
        console.print(table)

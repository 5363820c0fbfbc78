"""`study submit FILE|WORKSPACE`: render if given an experiment, then submit every job not yet submitted.

Submitting twice submits nothing the second time; jobs a crashed submit left with the scheduler are
adopted, not sent again. On the `local` system the jobs run detached: `study status` follows them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from study.commands import add_target_arguments

HELP = "submit a workspace's jobs (rendering the experiment first when given a YAML file)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="FILE|WORKSPACE", help="experiment YAML file or rendered workspace")
    add_target_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="show what would be submitted; submit nothing")


def run(args: argparse.Namespace) -> int:
    from study.errors import InputError
    from study.submit import open_session, submit_planned, workspace_arg

    if args.max_parallel is not None and args.max_parallel < 1:
        raise InputError("must be at least 1", key="--max-parallel")
    target = Path(args.target)
    if target.is_dir():
        workspace = workspace_arg(args.target)
    elif target.is_file():
        from study.render import render_workspace

        plan = render_workspace(
            target, system=args.system, workspace=args.workspace, account=args.account, dry_run=args.dry_run
        )
        if args.dry_run:
            for job in plan.jobs:
                print(f"would submit {job.name}: {job.script} ({len(job.runs)} runs)")
            print(
                f"dry run: would submit {len(plan.jobs)} {plan.scheduler} jobs ({len(plan.runs)} runs) "
                f"from {plan.workspace}"
            )
            return 0
        workspace = Path(plan.workspace)
    else:
        raise InputError("no such experiment file or workspace folder", key=args.target)
    with open_session(workspace, max_parallel=args.max_parallel) as session:
        for adopted in session.adopted:
            print(f"adopted {adopted}: submitted earlier, missing from the state")
        done = submit_planned(session, dry_run=args.dry_run)
        if not args.dry_run:
            for name, job_id in done:
                print(f"submitted {name} as {session.scheduler.name} job {job_id}")
        total = len(session.state.jobs())
    verb = "dry run: would submit" if args.dry_run else "submitted"
    print(
        f"{verb} {len(done)} of {total} jobs ({total - len(done)} submitted before"
        f"{f', {len(session.adopted)} adopted' if session.adopted else ''}); workspace {workspace}"
    )
    return 0

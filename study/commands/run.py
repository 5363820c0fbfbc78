"""`study run FILE`: render, submit, follow the runs live, wait, collect (and with --report, report).

Ctrl-C cancels the workspace's jobs (on `local`, their whole process groups), records their state
and exits 130; `study status` and `study rerun --failed` carry on from there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from study.commands import add_target_arguments

HELP = "render, submit, watch and collect an experiment (on this machine by default)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", metavar="FILE|WORKSPACE", help="experiment YAML file, or a rendered workspace"
    )
    add_target_arguments(parser)
    parser.add_argument("--poll", type=float, default=1.0, metavar="S", help="seconds between status checks")
    parser.add_argument("--report", action="store_true", help="write the analysis report after collecting")
    parser.add_argument(
        "--dry-run", action="store_true", help="render nothing, submit nothing: show the plan"
    )


def run(args: argparse.Namespace) -> int:
    from study.collect import collect_workspace
    from study.errors import InputError
    from study.plan import load_plan_json
    from study.progress import RunProgress
    from study.render import render_workspace
    from study.submit import cancel, counts_line, open_session, refresh, submit_planned, wait, workspace_arg

    if args.max_parallel is not None and args.max_parallel < 1:
        raise InputError("must be at least 1", key="--max-parallel")
    target = Path(args.file)
    if target.is_dir():
        workspace = workspace_arg(args.file)
        experiment = load_plan_json(workspace).get("experiment", workspace.name)
        if args.dry_run:
            print(f"dry run: would submit the unsubmitted jobs of {workspace} and wait for them")
            return 0
    elif target.is_file():
        plan = render_workspace(
            args.file,
            system=args.system,
            workspace=args.workspace,
            account=args.account,
            dry_run=args.dry_run,
        )
        if args.dry_run:
            for job in plan.jobs:
                print(f"would submit {job.name}: {job.script} ({len(job.runs)} runs)")
            print(
                f"dry run: {len(plan.runs)} runs in {len(plan.jobs)} {plan.scheduler} jobs on {plan.system}; "
                f"nothing written"
            )
            return 0
        workspace, experiment = Path(plan.workspace), plan.experiment
    else:
        raise InputError("no such experiment file or workspace folder", key=args.file)
    with open_session(workspace, max_parallel=args.max_parallel) as session:
        submit_planned(session)
        total = len(session.state.runs())
        try:
            with RunProgress(total, experiment) as progress:
                counts = wait(session, interval_s=args.poll, on_update=progress.update)
        except KeyboardInterrupt:
            ids = cancel(session, echo=lambda _: None)
            counts = refresh(session)
            print(f"interrupted: cancelled {len(ids)} jobs; runs: {counts_line(counts)}", file=sys.stderr)
            return 130
    collected = collect_workspace(workspace, on_problem=lambda p: print(f"warning: {p}", file=sys.stderr))
    if args.report:
        _report(workspace)
    print(f"{experiment}: {collected.summary()}; dataset {workspace / 'dataset.parquet'}")
    return 1 if collected.counts.get("failed") or counts.get("failed") else 0


def _report(workspace: Path, max_findings: int = 5) -> None:
    """The analysis report and its first findings, if this installation has it (else a note)."""
    try:
        from analysis.report import build_report, workspace_findings
    except ImportError:
        print("note: analysis.report is not available; skipped the report", file=sys.stderr)
        return
    path = build_report(workspace)
    found = workspace_findings(workspace)
    for sentence in found[:max_findings]:
        print(f"  - {sentence}")
    if len(found) > max_findings:
        print(f"  ({len(found) - max_findings} more findings in the report)")
    print(f"report: {path}")

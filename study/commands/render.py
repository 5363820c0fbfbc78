"""`study render FILE`: write the workspace (plan, resolved experiment, run specs, batch scripts)."""

from __future__ import annotations

import argparse

HELP = "render an experiment into a workspace of ready-to-submit batch scripts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="experiment YAML file")
    parser.add_argument("--system", help="render for this system (name or path) instead of the file's")
    parser.add_argument("--workspace", help="workspace folder (default: workspaces/<experiment>)")
    parser.add_argument(
        "--account", help="scheduler account (else $STUDY_ACCOUNT or ~/.config/study/config.yaml)"
    )
    parser.add_argument("--dry-run", action="store_true", help="show what would be written; write nothing")


def run(args: argparse.Namespace) -> int:
    from study.render import render_workspace

    plan = render_workspace(
        args.file, system=args.system, workspace=args.workspace, account=args.account, dry_run=args.dry_run
    )
    verb = "would render" if args.dry_run else "rendered"
    for job in plan.jobs[:10]:
        print(f"  {plan.workspace}/{job.script}  ({len(job.runs)} runs, {job.nodes} nodes)")
    if len(plan.jobs) > 10:
        print(f"  ... {len(plan.jobs) - 10} more job scripts")
    kept = f"; {len(plan.previous_runs)} runs of an earlier plan kept" if plan.previous_runs else ""
    print(
        f"{verb} {len(plan.runs)} runs in {len(plan.jobs)} {plan.scheduler} jobs "
        f"({plan.node_hours:.2f} node-hours) on {plan.system} into {plan.workspace}{kept}"
    )
    return 0

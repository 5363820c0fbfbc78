"""`study plan FILE`: every run the sweep expands to, the jobs they pack into and the node-hours asked."""

from __future__ import annotations

import argparse

HELP = "show every run of an experiment's sweep, its jobs and the node-hours it asks for"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="experiment YAML file")
    parser.add_argument("--system", help="plan for this system (name or path) instead of the file's")
    parser.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table (default), csv (plan.csv) or json (plan.json)",
    )
    parser.add_argument("--limit", type=int, default=200, help="table rows to show (default 200; 0: all)")


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from study.config import load_experiment
    from study.plan import plan_csv
    from study.render import build_plan, default_workspace
    from study.systems import system_for

    experiment = load_experiment(args.file)
    system = system_for(experiment, args.system)
    workspace = Path(default_workspace(experiment)).absolute()
    plan, _ = build_plan(experiment, system, workspace, None, scripts=False, commands=args.format == "json")
    if args.format == "csv":
        print(plan_csv(plan), end="")
        return 0
    if args.format == "json":
        print(json.dumps(plan.to_json(), indent=1))
        return 0

    from rich.console import Console
    from rich.table import Table

    varying = _varying(plan)
    table = Table(title=f"{experiment.name} on {system.name} ({system.scheduler}, {system.launcher})")
    for column in ("#", "run_id", "rep", "nodes", "gpus/node", "world", *varying, "job"):
        table.add_column(
            column, justify="right" if column in ("#", "rep", "nodes", "gpus/node", "world") else "left"
        )
    shown = plan.runs if args.limit <= 0 else plan.runs[: args.limit]
    for i, r in enumerate(shown, 1):
        table.add_row(
            str(i),
            r.run_id,
            str(r.repeat),
            str(r.nodes),
            str(r.gpus_per_node),
            str(r.world_size),
            *[_cell(r.params.get(k)) for k in varying],
            r.job,
        )
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    if len(shown) < len(plan.runs):
        print(f"... {len(plan.runs) - len(shown)} more runs (--limit 0 shows all)")
    points = len(plan.runs) // experiment.repeats
    print(
        f"{len(plan.runs)} runs ({points} points x {experiment.repeats} repeats) "
        f"in {len(plan.jobs)} jobs, {plan.node_hours:.2f} node-hours on {system.name}"
    )
    return 0


def _varying(plan) -> list[str]:
    skip = {"nodes", "gpus_per_node", "world_size"}
    names = sorted({k for r in plan.runs for k in r.params} - skip)
    return [n for n in names if len({repr(r.params.get(n)) for r in plan.runs}) > 1]


def _cell(value: object) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    return "" if value is None else str(value)

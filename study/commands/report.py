"""`study report WORKSPACE [...]`: one static HTML page with the figures, tables, findings and provenance."""

from __future__ import annotations

import argparse
from pathlib import Path

from study.commands import add_jobs_argument, add_workspaces_argument

HELP = "write WORKSPACE/report.html: figures, tables, findings in plain words, provenance"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workspaces_argument(parser, "+", "several make one report, tagged by system")
    parser.add_argument(
        "--out", metavar="FILE", help="the page to write (default: the first WORKSPACE/report.html)"
    )
    parser.add_argument(
        "--embed",
        action="store_true",
        help="embed the figures in the page (one self-contained file) instead of linking them",
    )
    parser.add_argument(
        "--align",
        choices=("nodes", "world_size"),
        default="nodes",
        help="how the interconnect comparison matches systems (default: nodes)",
    )
    parser.add_argument("--title", help="the page's title")
    add_jobs_argument(parser)


def run(args: argparse.Namespace) -> int:
    from analysis.dataset import load_workspaces
    from analysis.report import write_report
    from study.commands import default_jobs

    ds = load_workspaces(args.workspaces)
    out = Path(args.out) if args.out else Path(args.workspaces[0]) / "report.html"
    path = write_report(
        ds, out, embed=args.embed, align=args.align, title=args.title, jobs=default_jobs(args.jobs)
    )
    print(f"report: wrote {path} ({ds.runs['run_id'].nunique()} runs, {len(ds.workspaces)} workspace(s))")
    return 0

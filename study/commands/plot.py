"""`study plot WORKSPACE [...]`: every figure the data supports, as PNG + PDF + the CSV of the points."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from study.commands import add_jobs_argument, add_workspaces_argument, default_jobs

HELP = "write every figure the workspace's data supports into WORKSPACE/figures (PNG, PDF, CSV)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_workspaces_argument(parser, "*", "several are plotted together, tagged by system")
    parser.add_argument("--out", metavar="DIR", help="where to write (default: the first WORKSPACE/figures)")
    parser.add_argument(
        "--only", metavar="NAME", action="append", help="make only this figure (repeatable); see --list"
    )
    parser.add_argument("--list", action="store_true", help="list the known figures and what each needs")
    add_jobs_argument(parser)


def run(args: argparse.Namespace) -> int:
    from analysis.dataset import load_workspaces
    from analysis.registry import FigureData, load_registry, plot_all
    from study.errors import InputError

    if args.list:
        for name, spec in load_registry().items():
            print(f"{name:26s} {spec.description}  [needs: {spec.needs.describe()}]")
        return 0
    if not args.workspaces:
        raise InputError("give at least one collected workspace", key="WORKSPACE")
    ds = load_workspaces(args.workspaces)
    out = Path(args.out) if args.out else Path(args.workspaces[0]) / "figures"
    data = FigureData(ds, list(ds.workspaces))
    results = plot_all(data, out, only=args.only, jobs=default_jobs(args.jobs))
    written = 0
    for r in results:
        if r.skipped:
            print(f"skipped {r.name}: {r.skipped}", file=sys.stderr)
        for files in r.files:
            written += 1
            print(f"wrote {files['png']} (+.pdf, .csv)")
    made = sum(1 for r in results if r.files)
    unparsed = data.nccl.attrs.get("unparsed", 0)
    print(
        f"plot: {written} figure file set(s) from {made} of {len(results)} figure kinds into {out}; "
        f"{len(results) - made} skipped"
        + (
            f"; {unparsed} NCCL tuning line(s) in the logs not understood (analysis/nccl_log.py)"
            if unparsed
            else ""
        )
    )
    return 0

"""`study compare WS_A WS_B [...]`: the same experiment on two systems, side by side (tables + figures)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "compare the same experiment on several systems (interconnects) side by side: tables and figures"

COMPARE_FIGURES = ("interconnect_allreduce", "interconnect_inference")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspaces", nargs="+", metavar="WORKSPACE", help="two or more collected workspaces")
    parser.add_argument(
        "--align",
        choices=("nodes", "world_size"),
        default="nodes",
        help="match configurations by node count (default) or by GPU count",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="where to write figures and CSV tables (default: ./compare-<system>-vs-<system>)",
    )


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from analysis.compare import comparisons, systems
    from analysis.dataset import load_workspaces
    from analysis.registry import FigureData, plot_all
    from study.errors import InputError
    from study.results import atomic_write_text

    if len(args.workspaces) < 2:
        raise InputError("give at least two workspaces to compare", key="WORKSPACE")
    ds = load_workspaces(args.workspaces)
    labels = systems(ds.ok)
    if len(labels) < 2:
        raise InputError(
            f"the workspaces hold one system only ({', '.join(labels) or 'none'}); "
            "compare needs the same experiment on two systems",
            key="WORKSPACE",
        )
    names = sorted(ds.ok["system"].astype(str).unique())
    out = Path(args.out) if args.out else Path(f"compare-{'-vs-'.join(names)}")
    tables = comparisons(ds.ok, args.align)
    if not tables:
        raise InputError(
            f"no configuration was measured on every system (aligned on {args.align})", key="WORKSPACE"
        )
    out.mkdir(parents=True, exist_ok=True)
    with pd.option_context("display.width", 220, "display.max_rows", 60, "display.max_columns", 30):
        for metric, table in tables.items():
            atomic_write_text(out / f"compare_{metric}.csv", table.to_csv(index=False))
            shown = table[[c for c in table.columns if table[c].notna().any()]]
            print(f"== {metric}: median over repeats, aligned on {args.align} ==")
            print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
            print()
    results = plot_all(FigureData(ds, list(ds.workspaces)), out, only=COMPARE_FIGURES)
    for r in results:
        if r.skipped:
            print(f"skipped {r.name}: {r.skipped}", file=sys.stderr)
        for files in r.files:
            print(f"wrote {files['png']} (+.pdf, .csv)")
    print(
        f"compare: {' vs '.join(labels)}; {len(tables)} table(s) and "
        f"{sum(len(r.files) for r in results)} figure(s) in {out}"
    )
    return 0

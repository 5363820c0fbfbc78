"""`study tree RUN`: a run's timer tree as Hatchet prints it; `--by` gives statistics over many runs."""

from __future__ import annotations

import argparse

HELP = "print a run's call tree (Hatchet); with --by, per-node statistics over many runs (Thicket)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "targets",
        nargs="+",
        metavar="RUN",
        help="a results.json, a run folder (its latest attempt) or, with --by, workspaces",
    )
    parser.add_argument(
        "--metric",
        choices=("time (inc)", "time"),
        default="time (inc)",
        help="the metric shown beside each node (default: inclusive time, ms)",
    )
    parser.add_argument("--depth", type=int, default=10_000, help="deepest level shown")
    parser.add_argument(
        "--by",
        metavar="COLUMN",
        action="append",
        help="group many runs by this metadata column (nodes, system, allreduce, ...) and print "
        "mean/median/std/min/max per node; repeatable",
    )


def run(args: argparse.Namespace) -> int:
    from analysis import trees
    from study.errors import InputError

    if args.depth < 1:
        raise InputError("must be at least 1", key="--depth")
    if args.by:
        import pandas as pd

        tk = trees.thicket_from_paths(args.targets)
        stats = trees.grouped_stats(tk, args.by, [args.metric])
        with pd.option_context("display.width", 200, "display.max_rows", 500, "display.max_columns", 20):
            print(stats.to_string(float_format=lambda v: f"{v:.3f}"))
        print(f"tree: {len(tk.profile)} runs grouped by {', '.join(args.by)}")
        return 0
    if len(args.targets) != 1:
        raise InputError("one run at a time without --by", key="RUN")
    gf = trees.graphframe_from_path(args.targets[0])
    print(trees.tree_text(gf, args.metric, args.depth), end="")
    meta = gf.metadata
    shown = ", ".join(
        f"{k}={meta[k]}" for k in ("run_id", "nodes", "world_size", "tp", "pp", "allreduce") if k in meta
    )
    print(f"tree: {shown}; {args.metric} in ms")
    return 0

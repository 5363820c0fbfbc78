"""One module per `study` sub-command (see study/cli.py), and the arguments several of them share."""

from __future__ import annotations

import argparse
import os


def add_workspaces_argument(parser: argparse.ArgumentParser, nargs: str, what: str) -> None:
    """The collected workspaces a command reads: `what` says what several of them make."""
    parser.add_argument(
        "workspaces", nargs=nargs, metavar="WORKSPACE", help=f"collected workspace folder(s); {what}"
    )


def add_jobs_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=None,
        metavar="N",
        help="draw figures in N processes (default: the CPU count, at most 8)",
    )


def default_jobs(jobs: int | None) -> int:
    """The number of drawing processes: as asked, else one per CPU (at most 8)."""
    from study.errors import InputError

    if jobs is None:
        return max(1, min(8, os.cpu_count() or 1))
    if jobs < 1:
        raise InputError("must be at least 1", key="--jobs")
    return jobs


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """What `study run` and `study submit` take: an experiment file (rendered for --system into
    --workspace) or a rendered workspace, and where the local system runs how many runs at once."""
    parser.add_argument("--system", help="system to render for (with FILE; default: the experiment's)")
    parser.add_argument("--workspace", help="workspace folder (with FILE; default: workspaces/<experiment>)")
    parser.add_argument("--account", help="scheduler account (with FILE)")
    add_max_parallel_argument(parser)


def add_max_parallel_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-parallel",
        type=int,
        metavar="N",
        help="local system: runs at once (default: cores / ranks of the widest run)",
    )

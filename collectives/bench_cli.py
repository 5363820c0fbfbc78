"""The benchmark's command line and the table it prints, both in nccl-tests' conventions
(all_reduce_perf's flags, -a/--average for the statistic over ranks, out-of-place and in-place
column groups); collectives/bench.py measures."""

from __future__ import annotations

import argparse
import re
from typing import Any

import torch

from collectives.api import BACKENDS, REFERENCE_SCHEDULES
from collectives.dtypes import BENCH_DTYPES, torch_dtype
from study import results as study_results

DTYPES = {name: torch_dtype(name) for name in BENCH_DTYPES}
DTYPE_ALIASES = {
    "float": "fp32",
    "float32": "fp32",
    "half": "fp16",
    "float16": "fp16",
    "bfloat16": "bf16",
    "int": "int32",
}
NCCL_TYPE_NAMES = {"fp32": "float", "fp16": "half", "bf16": "bfloat16", "int32": "int32"}
CPU_DEFAULT = (*REFERENCE_SCHEDULES, "gloo")
GPU_DEFAULT = ("nccl", "nvrar")
ALGORITHMS = (*BACKENDS, "mpi")
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?)(i?b?)\s*$", re.IGNORECASE)
# nccl-tests' -a/--average: the statistic over ranks of `time` (study.results.STATISTICS[a]), in words.
AVERAGE_WORDS = ("rank 0's value", "mean over ranks", "minimum over ranks", "maximum over ranks")


class BenchInputError(ValueError):
    """A bad command-line value; the message names the flag."""


def parse_size(text: str, flag: str) -> int:
    """Bytes from `8`, `64K`, `64KiB`, `2M`, `1G` (powers of 1024, as nccl-tests) or `1MB` (of 1000)."""
    m = _SIZE.match(text)
    if not m:
        raise BenchInputError(f"{flag}: cannot read size {text!r} (examples: 8, 64K, 64KiB, 2M, 1MB)")
    value, unit, suffix = int(m.group(1)), m.group(2).lower(), m.group(3).lower()
    base = 1000 if suffix == "b" and unit else 1024
    return value * base ** {"": 0, "k": 1, "m": 2, "g": 3}[unit]


def sizes_between(lo: int, hi: int, factor: int) -> list[int]:
    out, s = [], lo
    while s <= hi:
        out.append(s)
        s *= factor
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m collectives.bench",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-b", "--minbytes", default="8", help="smallest message (8, 64K, 2M; default 8)")
    p.add_argument("-e", "--maxbytes", default="32M", help="largest message (default 32M)")
    p.add_argument("-f", "--stepfactor", type=int, default=2, help="size multiplier between rows (default 2)")
    p.add_argument("-n", "--iters", type=int, default=20, help="timed calls per size (default 20)")
    p.add_argument("-w", "--warmup_iters", type=int, default=5, help="untimed calls first (default 5)")
    p.add_argument("-c", "--check", type=int, choices=(0, 1), default=1, help="check results (default 1)")
    p.add_argument("--no-check", action="store_true", help="same as -c 0")
    p.add_argument(
        "--algo",
        help=f"comma-separated list from {', '.join(ALGORITHMS)} (default: "
        f"{','.join(GPU_DEFAULT)} on GPUs, our references + gloo (+ mpi) on CPUs)",
    )
    p.add_argument("--dtype", default="bf16", help="bf16, fp16, fp32 or int32 (default bf16)")
    p.add_argument("--graphs", action="store_true", help="time calls captured in one CUDA graph")
    p.add_argument("--graph-calls", type=int, default=100, help="calls per captured graph (default 100)")
    p.add_argument("--gpus-per-node", type=int, help="ranks per (virtual) node (default: the launcher's)")
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when available")
    p.add_argument(
        "-a",
        "--average",
        type=int,
        choices=range(len(study_results.STATISTICS)),
        default=study_results.STATISTICS.index(study_results.DEFAULT_STATISTIC),
        metavar="{0,1,2,3}",
        help="time over ranks, as nccl-tests: 0 rank 0's, 1 mean (default), 2 minimum, 3 maximum",
    )
    placement = p.add_mutually_exclusive_group()
    placement.add_argument(
        "--out-of-place",
        action="store_true",
        help="only out of place, separate input and output (default: out of place, then in place)",
    )
    placement.add_argument("--in-place", action="store_true", help="only in place")
    # Not "--tune": Open MPI reads that flag from the command line of every process it starts (MCA tune file).
    p.add_argument("--autotune", action="store_true", help="nvrar: measure launch parameters, cache them")
    p.add_argument("--results", help="results.json path (default: $STUDY_RESULTS or ./results.json)")
    return p


def check_args(args: argparse.Namespace) -> None:
    args.min_bytes = parse_size(args.minbytes, "-b/--minbytes")
    args.max_bytes = parse_size(args.maxbytes, "-e/--maxbytes")
    if args.min_bytes < 1 or args.max_bytes < args.min_bytes:
        raise BenchInputError(f"-b/-e: need 1 <= min <= max bytes, got {args.min_bytes}, {args.max_bytes}")
    if args.stepfactor < 2:
        raise BenchInputError(f"-f/--stepfactor: must be at least 2, got {args.stepfactor}")
    for flag, value in (("-n/--iters", args.iters), ("--graph-calls", args.graph_calls)):
        if value < 1:
            raise BenchInputError(f"{flag}: must be at least 1, got {value}")
    if args.warmup_iters < 0:
        raise BenchInputError(f"-w/--warmup_iters: must be >= 0, got {args.warmup_iters}")
    name = DTYPE_ALIASES.get(args.dtype, args.dtype)
    if name not in DTYPES:
        raise BenchInputError(f"--dtype: expected one of {', '.join(DTYPES)}, got {args.dtype!r}")
    args.dtype = name
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise BenchInputError("--device cuda: no CUDA device here")
    if args.graphs and args.device != "cuda":
        raise BenchInputError("--graphs needs --device cuda")
    if args.algo:
        algos = [a.strip() for a in args.algo.split(",") if a.strip()]
        unknown = [a for a in algos if a not in ALGORITHMS]
        if unknown or not algos:
            known = ", ".join(ALGORITHMS)
            raise BenchInputError(f"--algo: unknown {', '.join(unknown) or '(empty)'}; known: {known}")
        args.algos = algos
    else:
        args.algos = list(GPU_DEFAULT if args.device == "cuda" else CPU_DEFAULT) + (
            ["mpi"] if args.device == "cpu" else []
        )
    if args.no_check:
        args.check = 0
    # in_place per placement, in nccl-tests' order: out of place first.
    args.placements = [False] if args.out_of_place else [True] if args.in_place else [False, True]
    args.statistic = study_results.STATISTICS[args.average]
    if args.gpus_per_node is not None and args.gpus_per_node < 1:
        raise BenchInputError(f"--gpus-per-node: must be at least 1, got {args.gpus_per_node}")


# -- the table ----------------------------------------------------------------------------------------


def fit_number(value: float, width: int) -> str:
    """`value` right-aligned in `width` characters with 2 decimals, fewer when it is too wide (nccl-tests)."""
    for spec in (".2f", ".1f", ".0f"):
        text = f"{value:>{width}{spec}}"
        if len(text) <= width:
            return text
    return f"{value:>{width}.{1 if width >= 7 else 0}e}"


def table_row(nbytes: int, count: int, type_name: str, measured: dict[bool, dict[str, Any]]) -> str:
    """One size's row: the out-of-place columns, then the in-place ones; a placement not run is blank."""
    groups = []
    for in_place in (False, True):
        s = measured.get(in_place)
        if s is None:
            groups.append(" " * GROUP_WIDTH)
            continue
        wrong = "N/A" if s["wrong"] is None else s["wrong"]
        groups.append(
            f"  {fit_number(s['latency_us'], 7)}  {fit_number(s['algbw_GBps'], 6)}"
            f"  {fit_number(s['busbw_GBps'], 6)}  {wrong:>5}"
        )
    return (f"{nbytes:>12}  {count:>12}  {type_name:>8}  {'sum':>6}  {-1:>6}" + "".join(groups)).rstrip()


# nccl-tests' column headers, character for character; each placement's columns take GROUP_WIDTH.
HEADER = "\n".join(
    (
        f"#{'out-of-place':>74}{'in-place':>31}{'':10}",
        "#       size         count      type   redop    root     time   algbw   busbw #wrong     time"
        "   algbw   busbw #wrong",
        "#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)"
        "  (GB/s)  (GB/s)       ",
    )
)
GROUP_WIDTH = 32
PLACEMENT_WORDS = {
    (False, True): "out-of-place, then in-place",
    (False,): "out-of-place",
    (True,): "in-place",
}

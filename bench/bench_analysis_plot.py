"""Time `study plot` and `study report` on a synthetic 100k-row collective dataset (plus an inference sweep).

Run: .venv/bin/python -m bench.bench_analysis_plot [ROWS_TARGET]. Prints one line per stage; results go to
bench/RESULTS-analysis.md by hand.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path


def _cpu() -> float:
    """CPU seconds of this process and its finished workers: steadier than wall time on a shared machine."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def main(argv: list[str]) -> int:
    import pandas as pd

    from bench import synthetic as syn
    from study.cli import main as study

    repeats = int(argv[0]) if argv else 45
    sizes = tuple(int(2 ** (k / 2)) // 2 * 2 for k in range(20, 61))  # 1 KiB .. 1 GiB, factor √2
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        t = time.perf_counter()
        coll = syn.collective_frame(
            nodes=(1, 2, 4, 8, 16, 32, 64),
            sizes=sizes,
            algorithms=("nccl", "nvrar", "nccl-ring", "nccl-tree"),
            graphs=(False, True),
            repeats=repeats,
        )
        runs, timers = syn.inference_frames(gpus=(4, 8, 16, 32, 64, 128), repeats=5)
        syn.write_workspace(ws, pd.concat([coll, runs], ignore_index=True), timers)
        print(
            f"dataset: {len(coll) + len(runs)} rows, {len(timers)} timer rows "
            f"(built in {time.perf_counter() - t:.1f} s)"
        )
        for label, args in (
            ("plot, all figures, 1 process", ["plot", str(ws), "--jobs", "1"]),
            ("plot, all figures, default processes", ["plot", str(ws)]),
            ("report, 1 process", ["report", str(ws), "--jobs", "1"]),
        ):
            t, cpu = time.perf_counter(), _cpu()
            code = study(args)
            figures = len(list((ws / "figures").glob("*.png")))
            print(
                f"{label}: {time.perf_counter() - t:.1f} s wall, {_cpu() - cpu:.1f} s CPU, exit {code}, "
                f"{figures} PNGs in figures/"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

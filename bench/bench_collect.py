"""Collect 10,000 synthetic run folders into the dataset (target: under 10 s on the 2-core machine).

Not a test: run `python -m bench.bench_collect` (or `python bench/bench_collect.py`) and read the table.
The folders are written first (not timed) through study.results: each run has one attempt with
exit.json and a results.json of 8 collective samples and a 3-node timer tree, like a small
all-reduce sweep point; 2 % of the runs failed (exit code 1, no results) and 0.5 % have a truncated
results file. Then `study.collect.collect_workspace` is timed, best of `--repeat`, with the
parquet/CSV writing split out. Numbers and method are kept in bench/RESULTS-running.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from study import results as R  # noqa: E402
from study.collect import collect_workspace  # noqa: E402


def make_workspace(ws: Path, runs: int) -> None:
    """plan.json plus one attempt folder per run (results through study.results.write_result)."""
    os.environ["STUDY_RUN_ID"] = "bench"
    template = R.new_result(
        kind="collective", params={}, topology={"nodes": 1, "gpus_per_node": 4, "world_size": 4}
    )
    plan_runs = []
    for i in range(runs):
        run_id = f"{i:012x}"
        params = {
            "algorithm": ("nccl", "nvrar")[i % 2],
            "nodes": 1 + i % 16,
            "iterations": 100 + i % 25,
            "graphs": bool(i % 3),
        }
        plan_runs.append(
            {
                "run_id": run_id,
                "repeat": i % 3,
                "params": params,
                "nodes": params["nodes"],
                "gpus_per_node": 4,
                "world_size": 4 * params["nodes"],
                "walltime_s": 600,
                "command": "true",
                "job": "j",
            }
        )
        attempt = ws / "runs" / run_id / "attempt-1"
        attempt.mkdir(parents=True)
        failed = i % 50 == 7
        (attempt / "exit.json").write_text(json.dumps({"exit_code": 1 if failed else 0}))
        if failed:
            continue
        if i % 200 == 11:
            (attempt / "results.json").write_text('{"schema": "study.result/1", "run_id": "')
            continue
        result = dict(template, run_id=run_id, params=params)
        result["metrics"] = {"e2e_ms": 1.0 + i % 7}
        result["samples"] = [
            {
                "algorithm": params["algorithm"],
                "size_bytes": 65536 << k,
                "latency_us": 10.0 + k,
                "busbw_GBps": 1.0 + k,
                "graphs": params["graphs"],
            }
            for k in range(8)
        ]
        result["timers"] = R.timers_from_nested(
            {
                "bench": {
                    "time_ms": 5.0,
                    "children": {
                        "allreduce": {"time_ms": 4.0, "type": "comm"},
                        "check": {"time_ms": 0.5, "type": "compute"},
                    },
                }
            }
        )
        result["provenance"] = dict(result["provenance"], end=R.now_iso())
        # written as write_result does it, without its fsync: generation is not what is measured
        R.validate_result(result)
        (attempt / "results.json").write_text(json.dumps(result, indent=1))
    plan = {
        "schema": "study.plan/1",
        "experiment": "bench-collect",
        "system": "perlmutter",
        "scheduler": "slurm",
        "workspace": str(ws),
        "runs": plan_runs,
        "jobs": [],
    }
    (ws / "plan.json").write_text(json.dumps(plan))


def _cpu_s() -> float:
    """CPU seconds of this process and its finished workers: unlike wall time, not inflated by other load."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-collect-"))
    try:
        ws = root / "ws"
        t0 = time.perf_counter()
        make_workspace(ws, args.runs)
        generate_s = time.perf_counter() - t0
        build, total, cpu = [], [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            got = collect_workspace(ws, write=False)
            build.append(time.perf_counter() - t0)
            t0, c0 = time.perf_counter(), _cpu_s()
            got = collect_workspace(ws)
            total.append(time.perf_counter() - t0)
            cpu.append(_cpu_s() - c0)
        size_mb = (
            sum(
                (ws / f).stat().st_size
                for f in ("dataset.parquet", "dataset.csv", "timers.parquet", "timers.csv")
            )
            / 1e6
        )
        print(f"{'phase':<38} {'seconds':>8}")
        print(f"{'generate ' + str(args.runs) + ' run folders (not timed)':<38} {generate_s:>8.2f}")
        print(f"{'collect: read + build tables':<38} {min(build):>8.2f}")
        print(f"{'collect: read + build + write 4 files':<38} {min(total):>8.2f}")
        print(f"{'  CPU seconds of that (all processes)':<38} {min(cpu):>8.2f}")
        print(
            f"rows {len(got.dataset)}, timer rows {len(got.timers)}, files {size_mb:.1f} MB; {got.summary()}"
        )
        verdict = "met" if min(total) < 10 else "MISSED"
        print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} (wall times share that load)")
        print(f"per run: {1e3 * min(total) / args.runs:.3f} ms; target 10 s: {verdict}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Plan and render a 10,000-run sweep: how long `study plan` and `study render` take (target: under 2 s).

Not a test: run `python -m bench.bench_plan` (or `python bench/bench_plan.py`) and read the table.
Each phase is timed in this process, best of `--repeat` runs, with the workspace written to a fresh
temporary folder (first render) and then re-rendered unchanged (second render: no byte changes).
Numbers and method are kept in bench/RESULTS-foundation.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from study.config import load_experiment  # noqa: E402
from study.render import build_plan, render_workspace  # noqa: E402
from study.sweep import expand  # noqa: E402
from study.systems import load_system  # noqa: E402

# 5 node counts x 2 algorithms x 2 graph modes x 25 iteration counts x 10 warm-up counts x 2 repeats = 10,000.
EXPERIMENT = """\
name: bench-10k
kind: collective
system: perlmutter
resources:
  nodes: [1, 2, 4, 8, 16]
  walltime: 10m
  runs_per_job: {runs_per_job}
sweep:
  algorithms: [nccl, nvrar]
  graphs: [false, true]
  iterations: {{from: 100, to: 2500, step: 100}}
  warmup: {{from: 10, to: 100, step: 10}}
fixed:
  sizes: {{from: 64KiB, to: 2MiB, factor: 2}}
  dtype: bf16
derived:
  x_total: iterations + warmup
repeats: 2
"""


def best(fn, repeat: int) -> tuple[tuple[float, float], object]:
    """Best (wall, CPU) seconds over `repeat` calls; CPU counts this process and its finished children."""
    times, result = [], None
    for _ in range(repeat):
        start, cpu = time.perf_counter(), _cpu()
        result = fn()
        times.append((time.perf_counter() - start, _cpu() - cpu))
    return min(times), result


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cli_seconds(args: list[str], repeat: int) -> tuple[float, float]:
    def call() -> None:
        subprocess.run(
            [sys.executable, "-m", "study.cli", *args], check=True, stdout=subprocess.DEVNULL, cwd=ROOT
        )

    return best(call, repeat)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows: list[tuple[str, tuple[float, float], str]] = []
    system = load_system("perlmutter")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for runs_per_job in (1, 16):
            exp = tmp_path / f"bench-{runs_per_job}.yaml"
            exp.write_text(EXPERIMENT.format(runs_per_job=runs_per_job))
            ws = tmp_path / f"ws-{runs_per_job}"

            def phases(exp=exp, ws=ws):
                experiment = load_experiment(exp)
                table = lambda: build_plan(experiment, system, ws, None, scripts=False, commands=False)
                with_commands = lambda: build_plan(experiment, system, ws, None, scripts=False)

                def fresh() -> None:
                    shutil.rmtree(ws, ignore_errors=True)
                    render_workspace(exp, workspace=ws, account="m1")

                return [
                    ("load + validate experiment", lambda: load_experiment(exp), "in process"),
                    ("expand sweep", lambda: expand(experiment, system), "in process"),
                    ("plan: runs + jobs + node-hours (study plan)", table, "in process"),
                    ("plan with launcher lines (plan --format json)", with_commands, "in process"),
                    (
                        "plan + every job script in memory",
                        lambda: build_plan(experiment, system, ws, "m1"),
                        "",
                    ),
                    ("render workspace, fresh folder", fresh, "writes every file"),
                    (
                        "render workspace again, unchanged",
                        lambda: render_workspace(exp, workspace=ws, account="m1"),
                        "no byte changes",
                    ),
                ]

            for name, fn, note in phases():
                seconds, result = best(fn, args.repeat)
                rows.append((f"{name} [runs_per_job={runs_per_job}]", seconds, note))
            plan, _ = build_plan(load_experiment(exp), system, ws, "m1", scripts=False, commands=False)
            print(
                f"runs_per_job={runs_per_job}: {len(plan.runs)} runs, {len(plan.jobs)} jobs", file=sys.stderr
            )
        exp = tmp_path / "bench-16.yaml"
        rows.append(
            (
                "`study plan FILE --format csv` (whole process)",
                cli_seconds(["plan", str(exp), "--format", "csv"], args.repeat),
                "subprocess",
            )
        )
        rows.append(
            (
                "`study render FILE` again, unchanged (whole process)",
                cli_seconds(
                    ["render", str(exp), "--workspace", str(tmp_path / "ws-16"), "--account", "m1"],
                    args.repeat,
                ),
                "subprocess",
            )
        )
    width = max(len(r[0]) for r in rows)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; best of {args.repeat}")
    print(f"{'phase'.ljust(width)}  wall s   CPU s  note")
    for name, (wall, cpu), note in rows:
        print(f"{name.ljust(width)}  {wall:6.3f}  {cpu:6.3f}  {note}")


if __name__ == "__main__":
    main()

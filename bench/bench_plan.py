"""Plan and render a 10,000-run sweep: how long `study plan` and `study render` take (target: under 2 s).

Not a test: run `python -m bench.bench_plan` (or `python bench/bench_plan.py`) and read the table.
Each phase is timed in this process, best of `--repeat` runs, with the workspace written to a new
temporary folder each time (first render) and then re-rendered unchanged (second render: no byte
changes). CPU time is split into user (Python) and system (the kernel: folders, files, renames); on a
shared disk the system part varies a lot, so the "file system floor" row recreates the same folders
and files with bare os calls (mkdir, open, write, close, rename), the least any renderer would pay.
Numbers and method are kept in bench/RESULTS-foundation.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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


Times = tuple[float, float, float, float]  # wall, CPU (user + system), user, system


def best(fn, repeat: int) -> tuple[Times, object]:
    """Best wall and best CPU seconds over `repeat` calls (user and system of the best-CPU call).

    CPU counts this process and its finished children. Wall and CPU are minimized separately: with
    other work on the machine the fastest wall clock and the least CPU are often different calls.
    """
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        start, (user, system) = time.perf_counter(), _cpu()
        result = fn()
        wall = time.perf_counter() - start
        user2, system2 = _cpu()
        walls.append(wall)
        cpus.append((user2 - user + system2 - system, user2 - user, system2 - system))
    return (min(walls), *min(cpus)), result


def _cpu() -> tuple[float, float]:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + children.ru_utime, own.ru_stime + children.ru_stime


def fs_floor(workspace: Path, target: Path) -> Callable[[], None]:
    """A call that recreates the folders and files of `workspace` under `target` with bare os calls.

    The same syscalls a render makes at least (a folder per run, each file through a temporary name
    and a rename); the files are read and the paths made before, so its time is the file system's.
    """
    files = sorted(p for p in workspace.rglob("*") if p.is_file())
    # Every folder, parents first (relative parents end with '.', the workspace itself).
    folders = sorted({str(target / d) for p in files for d in p.relative_to(workspace).parents}, key=len)
    writes = [(str(target / p.relative_to(workspace)), p.read_bytes()) for p in files]

    def write() -> None:
        for folder in folders:
            os.mkdir(folder)
        for path, data in writes:
            fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, data)
            os.close(fd)
            os.replace(path + ".tmp", path)

    return write


def cli_seconds(args: list[str], repeat: int) -> Times:
    def call() -> None:
        subprocess.run(
            [sys.executable, "-m", "study.cli", *args], check=True, stdout=subprocess.DEVNULL, cwd=ROOT
        )

    return best(call, repeat)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows: list[tuple[str, Times, str]] = []
    system = load_system("perlmutter")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        for runs_per_job in (1, 16):
            exp = tmp_path / f"bench-{runs_per_job}.yaml"
            exp.write_text(EXPERIMENT.format(runs_per_job=runs_per_job))
            ws = tmp_path / f"ws-{runs_per_job}"
            count = iter(range(1_000_000))
            current = [ws]  # the folder the last fresh render wrote

            def phases(exp=exp, ws=ws, count=count, current=current):
                experiment = load_experiment(exp)
                table = lambda: build_plan(experiment, system, ws, None, scripts=False, commands=False)
                with_commands = lambda: build_plan(experiment, system, ws, None, scripts=False)

                def fresh() -> None:
                    # A new folder every time, none deleted while timed: deleting the old tree first
                    # would add the kernel's clean-up of 10,000 folders to the render's time.
                    current[0] = ws.with_name(f"{ws.name}-fresh-{next(count)}")
                    render_workspace(exp, workspace=current[0], account="m1")

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
                        lambda: render_workspace(exp, workspace=current[0], account="m1"),
                        "no byte changes",
                    ),
                ]

            for name, fn, note in phases():
                seconds, result = best(fn, args.repeat)
                rows.append((f"{name} [runs_per_job={runs_per_job}]", seconds, note))
            floors = [
                fs_floor(current[0], tmp_path / f"floor-{runs_per_job}-{k}") for k in range(args.repeat)
            ]
            seconds, _ = best(lambda floors=floors: floors.pop()(), args.repeat)
            rows.append(
                (f"file system floor: same folders + files [runs_per_job={runs_per_job}]", seconds, "bare os")
            )
            plan, _ = build_plan(
                load_experiment(exp), system, current[0], "m1", scripts=False, commands=False
            )
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
                    ["render", str(exp), "--workspace", str(current[0]), "--account", "m1"],
                    args.repeat,
                ),
                "subprocess",
            )
        )
    width = max(len(r[0]) for r in rows)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; best of {args.repeat}")
    print(f"{'phase'.ljust(width)}  wall s   CPU s  user s   sys s  note")
    for name, (wall, cpu, user, system_s), note in rows:
        print(f"{name.ljust(width)}  {wall:6.3f}  {cpu:6.3f}  {user:6.3f}  {system_s:6.3f}  {note}")


if __name__ == "__main__":
    main()

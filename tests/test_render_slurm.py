"""Rendered Slurm scripts against a real slurmctld: accepted by `sbatch --test-only`, and run for real."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from study.render import render_workspace

pytestmark = pytest.mark.slurm

# A system shaped like the single-node test cluster: 1 node, 2 CPUs, no GPUs (so no GPU directives).
TEST_SYSTEM = """\
name: slurm-test
scheduler: slurm
launcher: srun
gpus_per_node: 2
cpu_cores: 2
max_nodes: 1
scheduler_options:
  partition: debug
  cpus_per_task: 1
python: {python}
requires_account: false
env:
  OMP_NUM_THREADS: 1
"""

PAYLOAD = r"""
import json, os, sys
if os.environ.get("SLURM_PROCID", "0") == "0":
    record = {"argv": sys.argv[1:], "ntasks": os.environ.get("SLURM_NTASKS"),
              "master": os.environ.get("MASTER_ADDR")}
    with open(os.environ["STUDY_RESULTS"] + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace(os.environ["STUDY_RESULTS"] + ".tmp", os.environ["STUDY_RESULTS"])
"""

EXPERIMENT = """\
name: slurm-render
kind: collective
resources: {nodes: 1, walltime: 2m, runs_per_job: 2}
sweep:
  algorithms: [gloo, reference]
fixed:
  sizes: 4KiB
  iterations: 2
repeats: 2
env: {EVIL: "$(touch MARK); `touch MARK`"}
"""


def render(tmp_path: Path):
    payload = tmp_path / "payload.py"
    payload.write_text(PAYLOAD)
    python = tmp_path / "fakepy"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} {payload} "$@"\n')
    python.chmod(0o755)
    system = tmp_path / "slurm-test.yaml"
    system.write_text(TEST_SYSTEM.format(python=python))
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXPERIMENT.replace("MARK", str(tmp_path / "pwned")))
    return render_workspace(exp, system=str(system), workspace=tmp_path / "ws")


def test_sbatch_test_only_accepts_rendered_scripts(tmp_path, slurm_cluster):
    plan = render(tmp_path)
    assert len(plan.jobs) == 2
    for job in plan.jobs:
        done = slurm_cluster.run("sbatch", "--test-only", str(tmp_path / "ws" / job.script), check=False)
        assert done.returncode == 0, done.stderr
        assert "to start at" in done.stderr


def test_rendered_script_runs_under_slurm(tmp_path, slurm_cluster):
    plan = render(tmp_path)
    ws = tmp_path / "ws"
    job = plan.jobs[0]
    done = slurm_cluster.run("sbatch", "--parsable", str(ws / job.script))
    job_id = done.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 90
    exits = [ws / "runs" / r / "attempt-1" / "exit.json" for r in job.runs]
    while not all(p.exists() for p in exits) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert all(p.exists() for p in exits), slurm_cluster.run(
        "scontrol", "show", "job", job_id, check=False
    ).stdout
    for path in exits:
        info = json.loads(path.read_text())
        assert info["exit_code"] == 0 and info["scheduler_job_id"] == job_id
        record = json.loads((path.parent / "results.json").read_text())
        assert record["ntasks"] == "2" and record["master"]
        assert "--algo" in record["argv"]
    assert not (tmp_path / "pwned").exists()
    output = ws / "jobs" / f"{job.name}.{job_id}.out"
    deadline = time.monotonic() + 30
    while (
        "done, 0 of 2" not in (output.read_text() if output.exists() else "") and time.monotonic() < deadline
    ):
        time.sleep(0.5)
    assert "study: job" in output.read_text()

"""Rendered local job scripts run for real with bash: attempts, markers, exit codes, hostile values inert."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from study.render import render_workspace
from study.systems import SYSTEMS_DIR

FAKE_PAYLOAD = r"""
import json, os, sys, time
params = json.loads(os.environ["STUDY_PARAMS"])
behavior = params.get("x_behavior", "ok")
print("payload running", os.environ["STUDY_RUN_ID"])
print("payload stderr line", file=sys.stderr)
if behavior == "sleep":
    time.sleep(120)
names = ("STUDY_RUN_ID", "STUDY_RESULTS", "STUDY_ATTEMPT", "STUDY_WORKSPACE", "EVIL", "MASTER_ADDR",
         "MASTER_PORT", "OMP_NUM_THREADS")
env = {k: os.environ.get(k) for k in names}
record = {"argv": sys.argv[1:], "env": env, "cwd": os.getcwd(), "params": params}
tmp = os.environ["STUDY_RESULTS"] + ".tmp"
with open(tmp, "w") as f:
    json.dump(record, f)
os.replace(tmp, os.environ["STUDY_RESULTS"])
sys.exit(3 if behavior == "fail" else 0)
"""


def hostile(mark: Path) -> str:
    return f"x; touch {mark}; $(touch {mark}) `touch {mark}` ' \" \\ && touch {mark} | > {mark}\ntouch {mark}"


@pytest.fixture
def local_system(tmp_path: Path) -> Path:
    """The bundled local system with `python` replaced by a payload that records what it was given."""
    payload = tmp_path / "fake_payload.py"
    payload.write_text(FAKE_PAYLOAD)
    python = tmp_path / "fakepy"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} {payload} "$@"\n')
    python.chmod(0o755)
    text = (SYSTEMS_DIR / "local.yaml").read_text().replace("python: null", f"python: {python}")
    path = tmp_path / "local-test.yaml"
    path.write_text(text)
    return path


def experiment(tmp_path: Path, behaviors: list[str], mark: Path) -> Path:
    path = tmp_path / "exec.yaml"
    evil = json.dumps(hostile(mark))
    path.write_text(f"""\
name: exec-test
kind: inference
resources: {{nodes: 1, gpus_per_node: 2, walltime: 5m, runs_per_job: {len(behaviors)}}}
sweep:
  x_behavior: {json.dumps(behaviors)}
fixed:
  model: {evil}
  weights: {evil}
  batch_size: 2
  prompt_len: 8
  decode_len: 4
  allreduce: gloo
env:
  EVIL: {evil}
""")
    return path


def run_job(script: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDY_", "SLURM_", "PBS_"))}
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60)


def test_local_job_runs_records_and_survives_a_failing_run(tmp_path, local_system):
    mark = tmp_path / "pwned"
    ws = tmp_path / "ws"
    plan = render_workspace(
        experiment(tmp_path, ["fail", "ok"], mark), system=str(local_system), workspace=ws
    )
    assert len(plan.jobs) == 1
    script = ws / plan.jobs[0].script
    done = run_job(script)
    assert done.returncode == 1, done.stdout + done.stderr  # one run failed: the job says so
    assert "1 of 2 run(s) failed" in done.stdout
    assert not mark.exists(), "a hostile value was executed"
    failing, passing = plan.runs
    for run, code in ((failing, 3), (passing, 0)):
        attempt = ws / "runs" / run.run_id / "attempt-1"
        exit_info = json.loads((attempt / "exit.json").read_text())
        start_info = json.loads((attempt / "start.json").read_text())
        assert exit_info["exit_code"] == code and exit_info["scheduler_job_id"] is None
        assert (
            start_info["run_id"] == run.run_id and start_info["attempt"] == 1 and start_info["job"] == run.job
        )
        assert exit_info["start"] <= exit_info["end"] and exit_info["host"]
        assert f"payload running {run.run_id}" in (attempt / "stdout").read_text()
        assert "payload stderr line" in (attempt / "stderr").read_text()
        record = json.loads((attempt / "results.json").read_text())
        assert record["cwd"] == str(attempt)
        assert record["env"]["STUDY_RUN_ID"] == run.run_id and record["env"]["STUDY_ATTEMPT"] == "1"
        assert record["env"]["STUDY_RESULTS"] == str(attempt / "results.json")
        assert record["env"]["STUDY_WORKSPACE"] == str(ws.absolute())
        assert record["env"]["EVIL"] == hostile(mark) and record["env"]["OMP_NUM_THREADS"] == "1"
        assert (
            record["env"]["MASTER_ADDR"] == "127.0.0.1" and 20000 <= int(record["env"]["MASTER_PORT"]) < 40000
        )
        assert record["params"] == run.params
        argv = record["argv"]
        assert argv[:3] == ["-m", "collectives.spawn", "--nproc-per-node=2"]
        assert argv[argv.index("--model") + 1] == hostile(mark)
        assert argv[argv.index("--weights") + 1] == hostile(mark)
        assert argv[-2:] == ["--results", str(attempt / "results.json")]
    # A second run of the same job takes the next attempt folders and leaves the first ones alone.
    first = (ws / "runs" / passing.run_id / "attempt-1" / "exit.json").read_text()
    assert run_job(script).returncode == 1
    assert (ws / "runs" / passing.run_id / "attempt-2" / "exit.json").exists()
    assert (ws / "runs" / passing.run_id / "attempt-1" / "exit.json").read_text() == first
    assert not mark.exists()


def test_job_killed_mid_run_leaves_start_without_exit(tmp_path, local_system):
    ws = tmp_path / "ws"
    plan = render_workspace(
        experiment(tmp_path, ["sleep", "ok"], tmp_path / "mark"), system=str(local_system), workspace=ws
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STUDY_", "SLURM_", "PBS_"))}
    proc = subprocess.Popen(
        ["bash", str(ws / plan.jobs[0].script)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    sleeping, later = plan.runs
    started = ws / "runs" / sleeping.run_id / "attempt-1" / "start.json"
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert not (started.parent / "exit.json").exists()
    assert not (ws / "runs" / later.run_id / "attempt-1").exists()

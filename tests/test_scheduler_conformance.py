"""One set of checks, run over every scheduler (study/schedulers/): what the harness relies on from a
batch system, whichever it is.

local runs for real; slurm against the real single-node Slurm of tests/slurm_cluster.py; pbs through
Slurm's Torque-compatible qsub and qdel (slurm-wlm-torque) with tests/pbs_qstat.py standing in for PBS
Pro's `qstat -x -F json` (a test double: no PBS Pro server runs here; docs/running.md says so).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from study.plan import load_plan
from study.schedulers import JobState, scheduler_class
from study.schedulers.base import names

pytestmark = pytest.mark.timeout(240)
HERE = Path(__file__).resolve().parent


@pytest.fixture(params=["local", "slurm", "pbs"])
def kind(request, monkeypatch, tmp_path_factory) -> str:
    name = request.param
    if name in ("slurm", "pbs"):
        request.getfixturevalue("slurm_cluster")
        monkeypatch.setenv("STUDY_SLURM_POLL_S", "0")
    if name == "pbs":
        if not (shutil.which("qsub") and shutil.which("qdel")):
            pytest.skip("slurm-wlm-torque's qsub/qdel wrappers are not installed")
        bin_dir = tmp_path_factory.mktemp("pbs-bin")
        qstat = bin_dir / "qstat"
        qstat.write_text(f'#!/bin/sh\nexec {sys.executable} {HERE / "pbs_qstat.py"} "$@"\n')
        qstat.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return name


def test_every_registered_scheduler_is_checked_here() -> None:
    assert set(names()) == {"local", "slurm", "pbs"}


def _submit(kind: str, ws: Path, run_id: str):
    """Open the scheduler as a session would and submit the run's job; (scheduler, id, name, stem)."""
    plan = load_plan(ws)
    job = next(j for j in plan.jobs if run_id in j.runs)
    cls = scheduler_class(kind)
    sched = cls(ws, **cls.session_options({"runs": [r.__dict__ for r in plan.runs]}))
    name = f"{job.name}-conf"
    job_id = sched.submit(ws / job.script, ws, name, f"study conformance {run_id}")
    return sched, job_id, name, str(ws / "jobs" / job.name)


def _until(sched, job_id: str, done, timeout_s: float = 90):
    deadline = time.monotonic() + timeout_s
    while True:
        status = sched.poll([job_id])[job_id]
        if done(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


def test_a_job_runs_to_completion_and_is_reported_under_its_name(kind, make_workspace) -> None:
    ws = make_workspace({"quick": "ok"}, scheduler=kind)
    sched, job_id, name, stem = _submit(kind, ws, "quick")
    assert job_id
    status = _until(sched, job_id, lambda s: s.state.terminal)
    assert status.state is JobState.COMPLETED, status
    # what the id-reuse check trusts: the name we gave, or none where the scheduler lost it (Slurm's
    # accounting does, once squeue has forgotten the job); never another
    assert status.name in (name, ""), status
    assert (ws / "runs" / "quick" / "attempt-1" / "results.json").is_file()
    # the scheduler knows where the job's output went, and the script asked for that place
    script = (ws / "jobs" / f"{Path(stem).name}.sh").read_text()
    if kind != "local":
        assert sched.output_path(stem) in script
    if kind == "pbs":
        return  # slurm-wlm-torque's qsub reads no #PBS line of the script (it names its own output)
    out = sched.output_file(job_id.split(".")[0], stem)
    deadline = time.monotonic() + 30
    while not (out.is_file() and "study: start quick attempt 1" in out.read_text()):
        assert time.monotonic() < deadline, f"{out} does not hold the job's output"
        time.sleep(0.3)


def test_a_failing_job_is_failed_with_its_exit_code(kind, make_workspace) -> None:
    ws = make_workspace({"bad": "fail"}, scheduler=kind)
    sched, job_id, _, _ = _submit(kind, ws, "bad")
    status = _until(sched, job_id, lambda s: s.state.terminal)
    assert status.state is JobState.FAILED, status
    assert status.exit_code not in (None, 0), status


def test_a_running_job_is_found_by_name_cancelled_and_cancelling_again_is_harmless(
    kind, make_workspace
) -> None:
    ws = make_workspace({"long": "sleep:120"}, scheduler=kind)
    sched, job_id, name, _ = _submit(kind, ws, "long")
    running = _until(sched, job_id, lambda s: s.state is JobState.RUNNING or s.state.terminal)
    assert running.state is JobState.RUNNING, running
    deadline = time.monotonic() + 30
    while name not in {j.name for j in sched.find_jobs([name, "no-such-job"])}:
        assert time.monotonic() < deadline, "find_jobs does not find the submitted job by its name"
        time.sleep(0.3)
    assert "no-such-job" not in {j.name for j in sched.find_jobs([name, "no-such-job"])}
    sched.cancel([job_id])
    status = _until(sched, job_id, lambda s: s.state.terminal)
    assert status.state is JobState.CANCELLED, status
    sched.cancel([job_id])  # a finished job: not an error
    assert sched.poll([job_id])[job_id].state is JobState.CANCELLED


def test_an_id_the_scheduler_never_gave_is_unknown(kind, make_workspace) -> None:
    ws = make_workspace({"quick": "ok"}, scheduler=kind)
    cls = scheduler_class(kind)
    sched = cls(ws, **cls.session_options({"runs": []}))
    never = "987654"
    assert sched.poll([never])[never].state is JobState.UNKNOWN
    assert sched.poll([]) == {}


def test_session_options_are_ones_the_scheduler_takes(kind, tmp_path) -> None:
    cls = scheduler_class(kind)
    options = cls.session_options({"runs": [{"world_size": 1}]}, max_parallel=3)
    sched = cls(tmp_path, **options)
    if kind == "local":  # only a scheduler that runs jobs itself has a parallelism to set
        assert options == {"max_parallel": 3} and sched.max_parallel == 3
        wide = cls.session_options({"runs": [{"world_size": 10_000}]})
        assert wide == {"max_parallel": 1}
    else:
        assert options == {}
    assert cls.output_path("/w/jobs/x").startswith("/w/jobs/x") and cls.output_path("/w/jobs/x").endswith(
        ".out"
    )

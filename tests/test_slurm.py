"""Against a real single-node Slurm 22.05 with slurmdbd (tests/slurm_cluster.py): submit, squeue then
sacct, states, cancel, a crash between sbatch and the state write, submit twice, rerun, walltime."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers import run_study

from study.schedulers import JobState, get_scheduler
from study.submit import FAULT_ENV, open_session, refresh, rerun_failed, submit_planned, wait

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(240)]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fast_polls(monkeypatch) -> None:
    monkeypatch.setenv("STUDY_SLURM_POLL_S", "0")


def _wait_until(check, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.3)


def _jobs_named(cluster, name: str) -> list[str]:
    """Job ids Slurm has under this name: squeue for live ones, sacct for the rest (it lags a little)."""
    live = cluster.run("squeue", "-h", "--states=all", f"--name={name}", "-o", "%i").stdout
    done = cluster.run(
        "sacct", "-X", "-n", "-P", "--starttime=now-1days", f"--name={name}", "--format=JobIDRaw"
    ).stdout
    return sorted(set(live.split()) | set(done.split()))


@pytest.fixture(scope="module")
def walltime_job(slurm_cluster, tmp_path_factory):
    """A job with a one-minute limit that sleeps longer, submitted first so that the other tests run
    while Slurm lets its minute pass; the last test of the module checks it ended as TIMEOUT."""
    from conftest import write_workspace

    ws = write_workspace(
        tmp_path_factory.mktemp("walltime") / "ws", {"sleepy": "sleep:300"}, scheduler="slurm", minutes=1
    )
    with open_session(ws, poll_interval_s=0) as session:
        submit_planned(session)
    return ws


def test_completed_and_failed_jobs_through_squeue_then_sacct(
    slurm_cluster, walltime_job, make_workspace
) -> None:
    ws = make_workspace({"good": "ok", "bad": "fail"}, scheduler="slurm")
    with open_session(ws, poll_interval_s=0) as session:
        submit_planned(session)
        first = session.scheduler.poll([j.job_id for j in session.state.jobs()])
        assert {s.state for s in first.values()} <= {
            JobState.PENDING,
            JobState.RUNNING,
            JobState.COMPLETED,
            JobState.FAILED,
        }
        counts = wait(session, interval_s=0.3)
        # A run is judged done from its exit.json; the job script may still be finishing then, so wait
        # (bounded) until Slurm reports both jobs ended.
        deadline = time.monotonic() + 60
        while not all(JobState(j.state).terminal for j in session.state.jobs() if j.state):
            assert time.monotonic() < deadline, "the jobs never ended"
            time.sleep(0.3)
            refresh(session)
        jobs = {j.runs[0]: j for j in session.state.jobs()}
        finished = session.scheduler.poll([j.job_id for j in jobs.values()])
        bad_reason = session.state.run("bad").reason or ""
    assert counts["ok"] == 1 and counts["failed"] == 1
    assert jobs["good"].state == "COMPLETED" and jobs["bad"].state == "FAILED"
    # sacct answered for the finished jobs: squeue has no exit codes
    assert finished[jobs["good"].job_id].exit_code == 0 and finished[jobs["bad"].job_id].exit_code == 1
    assert "exit code 3" in bad_reason
    assert (ws / "runs" / "good" / "attempt-1" / "results.json").is_file()


def test_cancel_a_running_job(slurm_cluster, walltime_job, make_workspace) -> None:
    ws = make_workspace({"long": "sleep:120"}, scheduler="slurm")
    assert run_study("submit", str(ws)).returncode == 0
    deadline = time.monotonic() + 60
    while not (ws / "runs" / "long" / "attempt-1" / "start.json").exists():
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.2)
    dry = run_study("cancel", str(ws), "--dry-run")
    assert dry.returncode == 0 and "would cancel 1 jobs" in dry.stdout
    out = run_study("cancel", str(ws))
    assert out.returncode == 0, out.stderr
    with open_session(ws, poll_interval_s=0) as session:
        deadline = time.monotonic() + 60
        while refresh(session)["failed"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        job = session.state.jobs()[0]
        run = session.state.run("long")
    assert job.state == "CANCELLED" and job.native.startswith("CANCELLED"), (
        job.state,
        job.native,
        job.reason,
    )
    assert "cancelled" in run.reason


def test_crash_after_sbatch_is_adopted_and_submit_twice_sends_nothing(
    slurm_cluster, walltime_job, make_workspace
) -> None:
    ws = make_workspace({"a": "ok", "b": "ok"}, scheduler="slurm", runs_per_job=2)
    crashed = run_study("submit", str(ws), env={FAULT_ENV: "after-submit"})
    assert crashed.returncode == 75
    with open_session(ws, reconcile_now=False) as session:
        (job,) = session.state.jobs()
        assert job.status == "submitting" and job.job_id is None
    assert len(_jobs_named(slurm_cluster, job.name)) == 1
    again = run_study("submit", str(ws))
    assert again.returncode == 0, again.stderr
    assert "adopted" in again.stdout and "submitted 0 of 1 jobs" in again.stdout
    third = run_study("submit", str(ws))
    assert "submitted 0 of 1 jobs" in third.stdout
    assert len(_jobs_named(slurm_cluster, job.name)) == 1
    with open_session(ws, poll_interval_s=0) as session:
        assert wait(session, interval_s=0.3)["ok"] == 2


def test_rerun_failed_creates_attempt_2_and_keeps_attempt_1(
    slurm_cluster, walltime_job, make_workspace
) -> None:
    ws = make_workspace({"flaky": "flaky"}, scheduler="slurm")
    with open_session(ws, poll_interval_s=0) as session:
        submit_planned(session)
        assert wait(session, interval_s=0.3)["failed"] == 1
        log = (ws / "runs" / "flaky" / "attempt-1" / "stderr").read_text()
        rerun_failed(session, max_attempts=3, echo=lambda _: None)
        assert wait(session, interval_s=0.3)["ok"] == 1
        names = [j.name for j in session.state.jobs()]
    assert (ws / "runs" / "flaky" / "attempt-1" / "stderr").read_text() == log
    assert (ws / "runs" / "flaky" / "attempt-2" / "results.json").is_file()
    assert all(len(_jobs_named(slurm_cluster, n)) == 1 for n in names)


@pytest.mark.slow
def test_a_job_past_its_walltime_is_timeout(slurm_cluster, walltime_job) -> None:
    sched = get_scheduler("slurm", walltime_job, poll_interval_s=0)
    with open_session(walltime_job, poll_interval_s=0) as session:
        (job,) = session.state.jobs()
        deadline = time.monotonic() + 150
        while not JobState(sched.poll([job.job_id])[job.job_id].state).terminal:
            assert time.monotonic() < deadline, "Slurm did not end the job at its time limit"
            time.sleep(1)
        refresh(session)
        run = session.state.run("sleepy")
        state = session.state.jobs()[0].state
    assert state == "TIMEOUT"
    assert run.status == "failed" and run.reason.startswith("walltime exceeded (TIMEOUT)")
    assert (
        (walltime_job / "runs" / "sleepy" / "attempt-1" / "stdout")
        .read_text()
        .startswith("payload sleep:300")
    )


@pytest.mark.slow
def test_an_id_the_controller_reused_is_not_adopted_nor_cancelled(slurm_cluster, make_workspace) -> None:
    """The controller loses its state (a cold restart), ids start again, and another workspace's job
    gets our job's id: polling must not adopt that job's state, and cancel must not touch it. Runs last
    in this module: the restart forgets every job the other tests left queued."""
    ours = make_workspace({"mine": "sleep:300"}, scheduler="slurm")
    with open_session(ours, poll_interval_s=0) as session:
        submit_planned(session)
        (job,) = session.state.jobs()
    lost_id = int(job.job_id)
    with open_session(ours, poll_interval_s=0) as session:
        _wait_until(lambda: refresh(session)["running"] == 1)
    # The node loses the job too (as when the controller's host and the node go down together).
    slurm_cluster.run("scancel", str(lost_id))
    _wait_until(lambda: not slurm_cluster.run("squeue", "-h", "-o", "%i").stdout.strip())
    slurm_cluster.restart_controller_cold()
    # Take the ids below ours with held jobs, so that the other workspace's job gets exactly ours.
    filler = ["0"]
    while int(filler[-1]) < lost_id - 1:
        out = slurm_cluster.run("sbatch", "--parsable", "--hold", "--job-name=filler", "--wrap=true")
        filler.append(out.stdout.strip().split(";")[0])
    assert int(filler[-1]) == lost_id - 1, f"ids did not start again below {lost_id}: {filler[-1]}"
    if filler[1:]:
        slurm_cluster.run("scancel", *filler[1:])
    theirs = make_workspace({"theirs": "sleep:300"}, scheduler="slurm")
    with open_session(theirs, poll_interval_s=0) as session:
        submit_planned(session)
        (other,) = session.state.jobs()
    assert int(other.job_id) == lost_id and other.name != job.name

    status = run_study("status", str(ours), "--json")
    data = json.loads(status.stdout)
    (mine,) = data["jobs"]
    assert mine["state"] == "FAILED" and "reused its id" in mine["reason"], mine
    assert data["runs"][0]["status"] == "failed"
    dry = run_study("cancel", str(ours), "--dry-run")
    assert dry.returncode == 0 and str(lost_id) not in dry.stdout, dry.stdout
    assert run_study("cancel", str(ours)).returncode == 0
    live = slurm_cluster.run("squeue", "-h", f"--jobs={lost_id}", "-o", "%j|%T", check=False).stdout
    assert live.strip().startswith(other.name), live  # their job was not cancelled
    slurm_cluster.run("scancel", str(lost_id), check=False)

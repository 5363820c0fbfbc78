"""The local scheduler, for real: job scripts as subprocesses, a concurrency limit, cancel, Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import run_study as _study
from mounts import tmpfs_or_skip

from study.schedulers import JobState, get_scheduler
from study.submit import open_session, refresh, submit_planned, wait

REPO = Path(__file__).resolve().parents[1]


def _wait_for(check, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def _group_alive(pgid: int) -> bool:
    """Any process of this group that is not a zombie (zombies wait for a reaper, they run nothing)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def test_jobs_run_and_their_exit_codes_are_recorded(make_workspace) -> None:
    ws = make_workspace({"good": "ok", "bad": "fail"})
    with open_session(ws) as session:
        submitted = submit_planned(session)
        counts = wait(session, interval_s=0.1)
        jobs = {j.runs[0]: j for j in session.state.jobs()}
    assert len(submitted) == 2
    assert counts["ok"] == 1 and counts["failed"] == 1
    assert jobs["good"].state == "COMPLETED" and jobs["bad"].state == "FAILED"
    assert jobs["bad"].exit_code == 1
    assert "failing on purpose" in (ws / "runs" / "bad" / "attempt-1" / "stderr").read_text()
    # another process (a later `study status`) sees the same from the workspace alone
    out = subprocess.run(
        [sys.executable, "-m", "study.cli", "status", str(ws), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    data = json.loads(out.stdout)
    assert out.returncode == 1
    assert {r["run_id"]: r["status"] for r in data["runs"]} == {"good": "ok", "bad": "failed"}


def test_concurrency_limit_one_runs_jobs_one_after_another(make_workspace) -> None:
    ws = make_workspace({"a": "sleep:0.5", "b": "sleep:0.5", "c": "sleep:0.5"})
    with open_session(ws, max_parallel=1) as session:
        submit_planned(session)
        wait(session, interval_s=0.1)
    spans = []
    for run in ("a", "b", "c"):
        job_id = json.loads((ws / "runs" / run / "attempt-1" / "exit.json").read_text())["scheduler_job_id"]
        state = json.loads((ws / ".local" / "jobs" / str(job_id) / "state.json").read_text())
        spans.append((state["start"], state["end"]))
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end <= start, f"jobs overlapped with max_parallel=1: {spans}"


def test_cancel_kills_the_whole_process_group(make_workspace) -> None:
    ws = make_workspace({"long": "sleep:120"})
    sched = get_scheduler("local", ws, max_parallel=2)
    with open_session(ws) as session:
        submit_planned(session)
        job = session.state.jobs()[0]
        _wait_for(lambda: (ws / "runs" / "long" / "attempt-1" / "start.json").exists())
        state = json.loads((ws / ".local" / "jobs" / job.job_id / "state.json").read_text())
        pgid = state["runner_pid"]
        assert _group_alive(pgid)
        session.scheduler.cancel([job.job_id])
        assert sched.poll([job.job_id])[job.job_id].state is JobState.CANCELLED
        counts = refresh(session)
        run = session.state.run("long")
    assert counts["failed"] == 1 and "cancel" in run.reason.lower()
    _wait_for(lambda: not _group_alive(pgid), timeout_s=10)


def test_sigint_to_study_run_cancels_and_leaves_a_consistent_state(make_workspace) -> None:
    ws = make_workspace({"slow1": "sleep:120", "slow2": "sleep:120"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "run", str(ws), "--poll", "0.2", "--max-parallel", "2"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background by a non-interactive shell ignores SIGINT, and a child
        # would inherit that: give study run the default disposition the test is about.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    _wait_for(
        lambda: all((ws / "runs" / r / "attempt-1" / "start.json").exists() for r in ("slow1", "slow2"))
    )
    runners = [
        json.loads(p.read_text()).get("runner_pid") for p in (ws / ".local" / "jobs").glob("*/state.json")
    ]
    assert all(_group_alive(pid) for pid in runners)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: cancelled 2 jobs" in err
    for pid in runners:
        _wait_for(lambda pid=pid: not _group_alive(pid), timeout_s=10)
    with open_session(ws) as session:
        counts = refresh(session)
        states = {j.state for j in session.state.jobs()}
    assert counts["failed"] == 2 and states == {"CANCELLED"}


def test_detached_submit_is_followed_by_a_later_status(make_workspace) -> None:
    ws = make_workspace({"r": "sleep:0.5"})
    cli = [sys.executable, "-m", "study.cli"]
    sub = subprocess.run([*cli, "submit", str(ws)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert sub.returncode == 0, sub.stderr
    assert "submitted 1 of 1 jobs" in sub.stdout

    def finished() -> bool:
        out = subprocess.run([*cli, "status", str(ws), "--json"], cwd=REPO, capture_output=True, text=True)
        return json.loads(out.stdout)["counts"]["ok"] == 1

    _wait_for(finished)


def test_a_local_job_is_stopped_at_its_walltime(make_workspace) -> None:
    ws = make_workspace({"slow": "sleep:120", "quick": "ok"}, minutes=0.05)  # a 3 s walltime
    started = time.monotonic()
    with open_session(ws) as session:
        submit_planned(session)
        counts = wait(session, interval_s=0.1)
        jobs = {j.runs[0]: j for j in session.state.jobs()}
        runs = {r: session.state.run(r) for r in ("slow", "quick")}
    assert time.monotonic() - started < 40  # stopped, not slept out
    assert jobs["slow"].state == "TIMEOUT" and jobs["quick"].state == "COMPLETED"
    assert counts["ok"] == 1 and counts["failed"] == 1
    assert "walltime" in runs["slow"].reason
    state = json.loads(next((ws / ".local" / "jobs").glob("*/state.json")).read_text())
    assert state["state"] in ("TIMEOUT", "COMPLETED")
    for folder in (ws / ".local" / "jobs").glob("*"):
        pid = json.loads((folder / "state.json").read_text()).get("runner_pid")
        _wait_for(lambda pid=pid: not _group_alive(pid), timeout_s=15)


def test_a_submit_killed_before_the_runner_started_fails_the_job_instead_of_waiting(make_workspace) -> None:
    """`study submit` dies after writing the local job's files and before starting its runner (the
    window a kill of `study run` can hit): the next `study run` must not wait for it forever."""
    ws = make_workspace({"a": "ok"})
    crashed = _study("submit", str(ws), env={"STUDY_FAULT": "before-runner"})
    assert crashed.returncode == 75, crashed.stderr
    (folder,) = (ws / ".local" / "jobs").iterdir()
    assert json.loads((folder / "state.json").read_text()) == {"state": "PENDING"}
    again = _study("run", str(ws), "--poll", "0.2", timeout=60)
    assert again.returncode == 1, again.stdout + again.stderr
    status = json.loads(_study("status", str(ws), "--json").stdout)
    (job,) = status["jobs"]
    (run,) = status["runs"]
    assert job["state"] == "FAILED" and "runner never started" in job["reason"], job
    assert run["status"] == "failed" and "submitted it" in run["reason"], run
    rerun = _study("rerun", str(ws), "--failed")
    assert rerun.returncode == 0, rerun.stderr
    done = _study("run", str(ws), "--poll", "0.2", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (ws / "runs" / "a" / "attempt-1" / "results.json").is_file()


def test_a_local_submit_that_cannot_write_its_job_leaves_nothing_to_adopt(make_workspace) -> None:
    """The disk fills while a job is being submitted: a clear error, and no half-made job folder that
    a later command would adopt and wait for."""
    ws = make_workspace({"a": "ok"})
    jobs = ws / ".local" / "jobs"
    jobs.mkdir(parents=True)
    fill = tmpfs_or_skip(jobs, size="64k")
    try:
        (jobs / "ballast").write_bytes(b"\0" * (60 * 1024))
        out = _study("submit", str(ws))
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert "cannot" in out.stderr and "No space left on device" in out.stderr, out.stderr
        assert [p.name for p in jobs.iterdir()] == ["ballast"]
        (jobs / "ballast").unlink()
        done = _study("run", str(ws), "--poll", "0.2", timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        fill()

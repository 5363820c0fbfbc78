"""Submit once, adopt after a crash, rerun failed runs as new attempts: on the local scheduler, for real."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers import run_study

from study.submit import FAULT_ENV, open_session, rerun_failed, submit_planned, wait

REPO = Path(__file__).resolve().parents[1]


def _local_jobs(ws: Path) -> list[Path]:
    return sorted((ws / ".local" / "jobs").iterdir()) if (ws / ".local" / "jobs").is_dir() else []


def test_submitting_twice_submits_nothing_the_second_time(make_workspace) -> None:
    ws = make_workspace({"a": "ok", "b": "ok"})
    first, second = run_study("submit", str(ws)), run_study("submit", str(ws))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "submitted 2 of 2 jobs" in first.stdout
    assert "submitted 0 of 2 jobs" in second.stdout
    assert len(_local_jobs(ws)) == 2


def test_a_crash_after_the_scheduler_answered_is_adopted_not_resubmitted(make_workspace) -> None:
    ws = make_workspace({"a": "ok"})
    crashed = run_study("submit", str(ws), env={FAULT_ENV: "after-submit"})
    assert crashed.returncode == 75
    assert len(_local_jobs(ws)) == 1
    with open_session(ws, reconcile_now=False) as session:
        assert session.state.jobs()[0].status == "submitting"
    again = run_study("submit", str(ws))
    assert again.returncode == 0, again.stderr
    assert "adopted" in again.stdout
    assert len(_local_jobs(ws)) == 1
    with open_session(ws) as session:
        counts = wait(session, interval_s=0.1)
    assert counts["ok"] == 1


def test_rerun_failed_makes_a_new_attempt_and_keeps_the_old_logs(make_workspace) -> None:
    ws = make_workspace({"flaky": "flaky", "good": "ok", "broken": "fail"})
    with open_session(ws) as session:
        submit_planned(session)
        assert wait(session, interval_s=0.1)["failed"] == 2
        old_stderr = (ws / "runs" / "flaky" / "attempt-1" / "stderr").read_text()
        chosen, exhausted = rerun_failed(session, max_attempts=2, echo=lambda _: None)
        assert sorted(chosen) == ["broken", "flaky"] and exhausted == []
        counts = wait(session, interval_s=0.1)
        assert counts["ok"] == 2 and counts["failed"] == 1
        assert session.state.run("flaky").attempt == 2
        assert (ws / "runs" / "flaky" / "attempt-1" / "stderr").read_text() == old_stderr
        assert not (ws / "runs" / "good" / "attempt-2").exists()
        rounds = sorted(j.round for j in session.state.jobs())
        assert rounds == [1, 1, 1, 2, 2]
        chosen, exhausted = rerun_failed(session, max_attempts=2, echo=lambda _: None)
    assert chosen == [] and exhausted == ["broken"]
    out = run_study("rerun", str(ws), "--failed", "--max-attempts", "2")
    assert out.returncode == 1 and "1 failed runs reached --max-attempts 2" in out.stdout


def test_rerun_dry_run_submits_nothing(make_workspace) -> None:
    ws = make_workspace({"broken": "fail"})
    run_study("run", str(ws), "--poll", "0.1")
    before = _local_jobs(ws)
    out = run_study("rerun", str(ws), "--failed", "--dry-run")
    assert out.returncode == 0 and "would rerun 1 failed runs" in out.stdout
    assert _local_jobs(ws) == before


def test_a_job_the_scheduler_forgot_is_lost_not_waited_for(make_workspace, monkeypatch) -> None:
    import shutil

    import study.submit as submit_mod

    ws = make_workspace({"a": "sleep:0.2"})
    with open_session(ws) as session:
        submit_planned(session)
        wait(session, interval_s=0.1)
        # a second job whose scheduler records vanish (say, purged) before it was ever seen to end
        session.state.add_job("ghost", "jobs/ghost.sh", ["ghost-run"], 1)
        session.state.claim("ghost")
        session.state.mark_submitted("ghost", "999")
        shutil.rmtree(ws / ".local" / "jobs" / "999", ignore_errors=True)
        assert submit_mod.refresh(session)["pending"] == 1
        monkeypatch.setattr(submit_mod, "LOST_AFTER_S", 0.0)
        counts = wait(session, interval_s=0.1)
        run = session.state.run("ghost-run")
    assert counts["failed"] == 1 and counts["ok"] == 1
    assert run.reason.startswith("job failed (FAILED): lost")


def _tree(ws: Path) -> dict[str, int]:
    return {str(p.relative_to(ws)): p.stat().st_mtime_ns for p in sorted(ws.rglob("*")) if p.is_file()}


def test_a_copied_or_moved_workspace_is_refused_not_run_again(make_workspace, tmp_path) -> None:
    """`cp -a WS COPY; study submit COPY` must neither run the finished runs again nor write into WS
    (the copy's scripts name WS): every command that would submit or poll refuses, naming both
    folders; reading the copy (collect --no-refresh, report) works; a symlink to WS is WS."""
    ws = make_workspace({"a": "ok", "b": "ok"})
    assert run_study("run", str(ws), "--poll", "0.2").returncode == 0
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(ws), str(copy)], check=True)
    before = _tree(ws)
    for args in (("submit",), ("run",), ("status",), ("rerun", "--failed"), ("cancel",), ("collect",)):
        out = run_study(args[0], str(copy), *args[1:])
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert f"{copy / 'plan.json'}: workspace: this workspace is a copy of {ws}" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    again = run_study(
        "render",
        str(copy / "experiment.yaml"),
        "--system",
        str(copy / "system.yaml"),
        "--workspace",
        str(copy),
    )
    assert again.returncode == 2 and "a copy of" in again.stderr, again.stderr
    assert _tree(ws) == before, "the original workspace was written to"
    assert not any(p.name == "attempt-2" for p in copy.rglob("attempt-*"))
    collected = run_study("collect", str(copy), "--no-refresh")
    assert collected.returncode == 0, collected.stderr
    link = tmp_path / "link"
    link.symlink_to(ws)
    assert run_study("status", str(link)).returncode == 0
    moved = tmp_path / "moved"
    ws.rename(moved)
    out = run_study("submit", str(moved))
    assert out.returncode == 2 and f"moved from {ws}" in out.stderr and "move it back" in out.stderr

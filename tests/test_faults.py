"""Faults of the machine, for real: a read-only workspace and a full disk (tests/mounts.py mounts
them; where mount(2) is refused these tests are skipped with the reason)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from helpers import run_study as _study
from mounts import read_only_or_skip, tmpfs_or_skip


def _ran(make_workspace, behaviors: dict[str, str], **kwargs) -> Path:
    ws = make_workspace(behaviors, **kwargs)
    out = _study("run", str(ws), "--poll", "0.2")
    assert out.returncode in (0, 1), out.stderr
    return ws


def test_a_read_only_workspace_still_shows_its_state_and_refuses_changes_clearly(make_workspace) -> None:
    ws = _ran(make_workspace, {"good": "ok", "bad": "fail"})
    dataset = (ws / "dataset.csv").read_bytes()
    undo = read_only_or_skip(ws)
    try:
        status = _study("status", str(ws), "--json")
        assert status.returncode == 1, status.stderr  # one run failed
        assert "read-only file system" in status.stderr and "Traceback" not in status.stderr
        runs = {r["run_id"]: r["status"] for r in json.loads(status.stdout)["runs"]}
        assert runs == {"good": "ok", "bad": "failed"}
        for args in (("collect", str(ws), "--no-refresh"), ("collect", str(ws))):
            out = _study(*args)
            assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
            assert "Read-only file system" in out.stderr and str(ws) in out.stderr, out.stderr
        rerun = _study("rerun", str(ws), "--failed")
        assert rerun.returncode == 1 and "Traceback" not in rerun.stderr, rerun.stderr
        assert "read-only file system" in rerun.stderr.lower() and str(ws) in rerun.stderr, rerun.stderr
        for args in (("submit", str(ws)), ("cancel", str(ws))):  # nothing to send: nothing to write
            out = _study(*args)
            assert out.returncode == 0 and "Traceback" not in out.stderr, (args, out.stderr)
    finally:
        undo()
    assert (ws / "dataset.csv").read_bytes() == dataset
    assert not list(ws.glob("*.tmp*")), list(ws.glob("*.tmp*"))


def test_a_full_disk_gives_a_clear_error_and_keeps_what_was_collected(make_workspace, tmp_path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    undo = tmpfs_or_skip(disk, size="4m")
    try:
        moved = _on_small_disk(make_workspace, disk, {"a": "ok", "b": "ok"})
        out = _study("run", str(moved), "--poll", "0.2")
        assert out.returncode == 0, out.stdout + out.stderr
        dataset = (moved / "dataset.csv").read_bytes()
        ballast = moved / "ballast"
        _fill(ballast)
        for args in (("collect", str(moved), "--no-refresh"), ("status", str(moved))):
            out = _study(*args)
            assert out.returncode in (0, 1) and "Traceback" not in out.stderr, (args, out.stderr)
        out = _study("collect", str(moved), "--no-refresh")
        assert out.returncode == 1 and "No space left on device" in out.stderr, out.stderr
        assert (moved / "dataset.csv").read_bytes() == dataset
        out = _study("rerun", str(moved), "--failed")
        assert "Traceback" not in out.stderr, out.stderr
        ballast.unlink()
        assert _study("collect", str(moved)).returncode == 0
        assert not [p for p in moved.iterdir() if ".tmp" in p.name]
    finally:
        undo()


def _on_small_disk(make_workspace, disk: Path, behaviors: dict[str, str]) -> Path:
    """A workspace made by make_workspace, copied onto `disk` and pointed at its new folder."""
    ws = make_workspace(behaviors)
    moved = disk / "ws"
    subprocess.run(["cp", "-a", str(ws), str(moved)], check=True)
    plan = json.loads((moved / "plan.json").read_text())
    plan["workspace"] = str(moved)
    for run in plan["runs"]:
        run["command"] = run["command"].replace(str(ws), str(moved))
    (moved / "plan.json").write_text(json.dumps(plan))
    for script in (moved / "jobs").glob("*.sh"):
        script.write_text(script.read_text().replace(str(ws), str(moved)))
    return moved


def _fill(path: Path) -> None:
    """Write zeros to `path` until the disk refuses (unbuffered: closing flushes nothing)."""
    with open(path, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass


def test_a_disk_that_fills_while_a_local_job_runs_fails_it_with_the_reason(make_workspace, tmp_path) -> None:
    """The job cannot write its results, its exit record or its runner's final state: while the disk
    is full `status` says so (from the store, read-only); once there is room again the run is failed
    with the reason that its runner died, not left running for ever."""
    import time

    disk = tmp_path / "disk"
    disk.mkdir()
    undo = tmpfs_or_skip(disk, size="4m")
    try:
        ws = _on_small_disk(make_workspace, disk, {"slow": "sleep:4"})
        assert _study("submit", str(ws)).returncode == 0
        deadline = time.monotonic() + 30
        while not (ws / "runs" / "slow" / "attempt-1" / "start.json").exists():
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.1)
        _fill(ws / "ballast")
        jobs = list((ws / ".local" / "jobs").iterdir())
        assert len(jobs) == 1, jobs
        job = jobs[0]
        runner = json.loads((job / "state.json").read_text())["runner_pid"]
        deadline = time.monotonic() + 60
        while Path(f"/proc/{runner}").exists() and "Z" not in _proc_state(runner):
            assert time.monotonic() < deadline, "the runner did not end"
            time.sleep(0.2)
        full = _study("status", str(ws))
        assert "Traceback" not in full.stderr and "the disk holding" in full.stderr, full.stderr
        (ws / "ballast").unlink()
        out = _study("status", str(ws), "--json")
        (run,) = json.loads(out.stdout)["runs"]
        assert run["status"] == "failed" and "the job's runner process died" in run["reason"], run
        assert _study("rerun", str(ws), "--failed").returncode == 0
    finally:
        subprocess.run(["pkill", "-f", str(disk)], check=False)
        undo()


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][:1]
    except OSError:
        return "Z"

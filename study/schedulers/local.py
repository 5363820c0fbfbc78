"""The `local` scheduler: job scripts run as subprocesses of this machine, no batch system needed.

Each job gets a folder `<workspace>/.local/jobs/<n>/` (made with an atomic mkdir, so ids never clash
between concurrent commands) holding `job.json` (name, comment, script), `state.json` (written by
the job's runner, atomically) and `output` (the script's stdout and stderr). The runner is this
module run as `python -m study.schedulers.local JOBDIR`, started in its own session so that it
outlives a detached `study submit` and so that cancelling kills the whole process group. The
concurrency limit is a set of lock files (`.local/slots/slot-<i>.lock`): a runner holds one with
flock while its script runs, so the limit holds across every command working on the workspace.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from study.results import atomic_write_text, now_iso
from study.schedulers.base import (
    FoundJob,
    JobState,
    JobStatus,
    Scheduler,
    SchedulerError,
    exit_reason,
    register,
)
from study.state import disk_full

CANCEL_GRACE_S = 5.0
# A pending job whose runner has not started within this long never will (see _never_started).
RUNNER_START_S = 120.0
# Testing hook (the same variable as study.submit.FAULT_ENV): `before-runner` makes submit die after
# writing a job's files and before starting its runner, the window a killed `study run` can leave.
FAULT_ENV = "STUDY_FAULT"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


@register
class LocalScheduler(Scheduler):
    name = "local"

    @classmethod
    def session_options(cls, plan: Mapping[str, Any], max_parallel: int | None = None) -> dict[str, Any]:
        """Runs at once: `--max-parallel`, else the machine's cores divided by the ranks of the plan's
        widest run (at least 1)."""
        if max_parallel is None:
            ranks = max((int(r.get("world_size") or 1) for r in plan.get("runs", [])), default=1)
            max_parallel = max(1, (os.cpu_count() or 1) // max(1, ranks))
        return {"max_parallel": max_parallel}

    def output_file(self, job_id: str, stem: str) -> Path:
        return self.root / "jobs" / job_id / "output"  # the runner's, whatever the script asks for

    def __init__(self, workspace: Path | None = None, **options: object) -> None:
        super().__init__(workspace, **options)
        if self.workspace is None:
            raise ValueError("the local scheduler keeps its jobs in a workspace folder")
        self.root = self.workspace / ".local"
        self.max_parallel = max(1, int(options.get("max_parallel") or os.cpu_count() or 1))  # type: ignore[arg-type]
        self._procs: dict[str, subprocess.Popen] = {}

    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def _new_job_dir(self) -> tuple[str, Path]:
        jobs = self.root / "jobs"
        jobs.mkdir(parents=True, exist_ok=True)
        n = 1 + max((int(p.name) for p in jobs.iterdir() if p.name.isdigit()), default=0)
        while True:
            try:
                (jobs / str(n)).mkdir()
                return str(n), jobs / str(n)
            except FileExistsError:
                n += 1

    def submit(self, script: Path, workdir: Path, job_name: str, comment: str) -> str:
        try:
            job_id, folder = self._new_job_dir()
        except OSError as exc:
            raise SchedulerError(f"local scheduler: cannot make a job folder in {self.root}: {exc}") from exc
        try:
            _write_json(
                folder / "job.json",
                {
                    "job_id": job_id,
                    "name": job_name,
                    "comment": comment,
                    "script": str(Path(script).resolve()),
                    "workdir": str(workdir),
                    "slots": self.max_parallel,
                    "submitted": now_iso(),
                    "submitter": f"{socket.gethostname()}:{os.getpid()}",
                },
            )
            _write_json(folder / "state.json", {"state": "PENDING"})
            if os.environ.get(FAULT_ENV) == "before-runner":  # testing hook, see study.submit.FAULT_ENV
                os._exit(75)
            with open(folder / "runner.log", "ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "study.schedulers.local", str(folder)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=_runner_env(),
                )
        except OSError as exc:
            # Nothing half-made may stay behind: a job folder with our name would be adopted later.
            shutil.rmtree(folder, ignore_errors=True)
            raise SchedulerError(f"local scheduler: cannot start job {job_name} in {folder}: {exc}") from exc
        self._procs[job_id] = proc
        return job_id

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        for proc in self._procs.values():
            proc.poll()  # reap finished runners so that they do not linger as zombies
        return {job_id: self._status(job_id) for job_id in job_ids}

    def _status(self, job_id: str) -> JobStatus:
        folder = self.job_dir(job_id)
        state = _read_json(folder / "state.json")
        if state is None:
            return JobStatus(job_id, JobState.UNKNOWN, "", f"no state in {folder}")
        native = state.get("state", "")
        mapped = JobState(native) if native in JobState.__members__ else JobState.UNKNOWN
        reason = state.get("reason", "")
        info = _read_json(folder / "job.json") or {}
        if not mapped.terminal and state.get("runner_pid") and state.get("host") == socket.gethostname():
            if not _pid_alive(int(state["runner_pid"])):
                cancelled = (folder / "cancel").exists()
                mapped = JobState.CANCELLED if cancelled else JobState.FAILED
                reason = (
                    "cancelled" if cancelled else f"the job's runner process died; {_runner_clue(folder)}"
                )
        elif mapped is JobState.PENDING and (folder / "cancel").exists() and not _runner_started(folder):
            mapped, reason = JobState.CANCELLED, "cancelled before it started"
        elif mapped is JobState.PENDING and not state.get("runner_pid"):
            why = _never_started(folder, info)
            if why:
                mapped, reason = JobState.FAILED, f"its runner never started: {why}"
        return JobStatus(job_id, mapped, native, reason, state.get("exit_code"), str(info.get("name") or ""))

    def cancel(self, job_ids: Sequence[str]) -> None:
        targets: list[tuple[str, int]] = []
        for job_id in job_ids:
            folder = self.job_dir(job_id)
            if not folder.is_dir():
                continue
            (folder / "cancel").touch()
            state = _read_json(folder / "state.json") or {}
            pid = state.get("runner_pid")
            if pid and not JobState(state.get("state", "UNKNOWN")).terminal and _pid_alive(int(pid)):
                targets.append((job_id, int(pid)))
        for _, pid in targets:
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + CANCEL_GRACE_S
        while targets and time.monotonic() < deadline:
            self.poll([j for j, _ in targets])
            targets = [(j, p) for j, p in targets if _pid_alive(p)]
            time.sleep(0.05)
        for _, pid in targets:
            _signal_group(pid, signal.SIGKILL)
        for proc in self._procs.values():
            proc.poll()

    def find_jobs(self, names: Iterable[str]) -> list[FoundJob]:
        wanted = set(names)
        jobs = self.root / "jobs"
        found = []
        folders = [p for p in jobs.iterdir() if p.name.isdigit()] if jobs.is_dir() else []
        for folder in sorted(folders, key=lambda p: int(p.name)):
            info = _read_json(folder / "job.json")
            if info and info.get("name") in wanted:
                found.append(FoundJob(folder.name, info["name"], info.get("comment", "")))
        return found


def _runner_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _never_started(folder: Path, info: dict[str, Any]) -> str | None:
    """Why a job whose runner has not written its pid will never run, or None while it still may:
    the command that submitted it is gone (killed between writing the job and starting its runner),
    or the runner has had RUNNER_START_S and not begun (it died at start-up, or the disk is full)."""
    host, _, pid = str(info.get("submitter", "")).rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
        launched = (folder / "runner.log").exists()
        if not launched:
            return f"the command that submitted it (pid {pid}) ended before starting it"
    try:
        age = time.time() - (folder / "state.json").stat().st_mtime
    except OSError:
        age = RUNNER_START_S + 1
    if age > RUNNER_START_S:
        return f"no runner after {age:.0f} s; {_runner_clue(folder)}"
    return None


def _runner_clue(folder: Path) -> str:
    """The last line the runner wrote, or why it could write nothing."""
    try:
        lines = (folder / "runner.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        lines = []
    if lines:
        return f"runner.log ends: {lines[-1][:300]}"
    if disk_full(folder):
        return f"runner.log is empty and the disk holding {folder} is full"
    return f"runner.log in {folder} is empty"


def _runner_started(folder: Path) -> bool:
    return bool((_read_json(folder / "state.json") or {}).get("runner_pid"))


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _acquire_slot(slots_dir: Path, slots: int, cancelled) -> int | None:
    """Block until one of `slots` lock files is ours; the fd stays open (and locked) until we exit."""
    slots_dir.mkdir(parents=True, exist_ok=True)
    while not cancelled():
        for i in range(slots):
            fd = os.open(slots_dir / f"slot-{i}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        time.sleep(0.1)
    return None


_TIME_LINE = re.compile(r"^#LOCAL --time=(\d+):(\d{2}):(\d{2})\s*$", re.MULTILINE)
KILL_GRACE_S = 10.0


def script_walltime_s(script: Path) -> float | None:
    """The walltime the job script asks for (its `#LOCAL --time=HH:MM:SS` line), or None."""
    try:
        match = _TIME_LINE.search(Path(script).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    if not match:
        return None
    hours, minutes, seconds = (int(g) for g in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def _wait(child: subprocess.Popen, walltime_s: float | None) -> tuple[int, bool]:
    """The child's exit code, and whether it had to be stopped at its walltime: an alarm sends SIGTERM
    to the job's process group (which the runner shares and survives), then SIGKILL to the script
    after a grace period. The wait itself blocks, so the runner sees the end the moment it comes."""
    stopped = {"timed_out": False}

    def on_alarm(_signum, _frame) -> None:
        if stopped["timed_out"]:
            child.kill()
            return
        stopped["timed_out"] = True
        os.killpg(os.getpgid(0), signal.SIGTERM)
        signal.setitimer(signal.ITIMER_REAL, KILL_GRACE_S)

    if walltime_s:
        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, walltime_s)
    try:
        while True:
            try:
                return child.wait(), stopped["timed_out"]
            except InterruptedError:
                continue
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def run_job(folder: Path) -> int:
    """The runner: wait for a slot, run the script in this process group, stop it at its walltime,
    record how it ended."""
    info = _read_json(folder / "job.json") or {}
    state_path = folder / "state.json"
    base = {"runner_pid": os.getpid(), "host": socket.gethostname()}
    terminated = {"flag": False}

    def on_term(signum, _frame):
        terminated["flag"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    _write_json(state_path, {"state": "PENDING", **base})
    cancelled = lambda: terminated["flag"] or (folder / "cancel").exists()
    slot = _acquire_slot(folder.parents[1] / "slots", int(info.get("slots", 1)), cancelled)
    if slot is None:
        _write_json(state_path, {"state": "CANCELLED", "reason": "cancelled before it started", **base})
        return 0
    start = now_iso()
    _write_json(state_path, {"state": "RUNNING", "start": start, **base})
    job_id = str(info.get("job_id", folder.name))
    env = dict(os.environ, STUDY_LOCAL_JOB_ID=job_id, STUDY_SCHEDULER_JOB_ID=job_id)
    with open(folder / "output", "ab") as out:
        child = subprocess.Popen(
            ["bash", info["script"]],
            cwd=info.get("workdir") or None,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        code, timed_out = _wait(child, script_walltime_s(Path(info["script"])))
    end = now_iso()
    if timed_out:
        walltime = int(script_walltime_s(Path(info["script"])) or 0)
        state, reason = JobState.TIMEOUT, f"stopped at its walltime of {walltime} s"
    elif cancelled():
        state, reason = JobState.CANCELLED, "cancelled"
    elif code == 0:
        state, reason = JobState.COMPLETED, ""
    else:
        state = JobState.FAILED
        reason = exit_reason(None, -code) if code < 0 else exit_reason(code)
    _write_json(
        state_path,
        {"state": state.value, "reason": reason, "exit_code": code, "start": start, "end": end, **base},
    )
    return 0


def main(folder: Path) -> int:
    """The runner's entry: a runner that cannot go on (a full or read-only disk) says so in
    runner.log and, where it still can, in state.json, instead of dying without a word."""
    try:
        return run_job(folder)
    except OSError as exc:
        try:
            print(f"study local runner: {exc}", file=sys.stderr, flush=True)
        except OSError:
            pass
        try:
            _write_json(
                folder / "state.json",
                {"state": JobState.FAILED.value, "reason": f"the job's runner failed: {exc}"},
            )
        except OSError:
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))

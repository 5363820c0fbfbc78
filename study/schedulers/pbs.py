"""PBS Pro: `qsub`, `qstat -x -F json -f` for many jobs (finished ones included, thanks to -x), `qdel`.

PBS Pro has no submit-time comment, so the job name alone is the tag reconciliation looks for.
Finished jobs (state F, or X for array members) are judged by `Exit_status`: PBS Pro's negative
JOB_EXEC codes (-29 walltime, -28 cpu time, -27/-26 memory, -11 requeue, …), 256 + a signal number
for a job killed by a signal (271: SIGTERM, what qdel sends), and the script's own exit code otherwise.
No PBS Pro server could be run where this was written: the parsing is tested on documents in the
format of `qstat -x -F json -f` from PBS Pro, and qsub/qdel through Slurm's Torque-compatible
wrappers; see docs/running.md.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from study.schedulers.base import FoundJob, JobState, JobStatus, Scheduler, SchedulerError, register

_LIVE = {
    "Q": (JobState.PENDING, "queued"),
    "H": (JobState.PENDING, "held"),
    "W": (JobState.PENDING, "waiting for its start time"),
    "T": (JobState.PENDING, "being moved"),
    "M": (JobState.PENDING, "moved to another server"),
    "R": (JobState.RUNNING, ""),
    "E": (JobState.RUNNING, "exiting"),
    "B": (JobState.RUNNING, "array job begun"),
    "S": (JobState.RUNNING, "suspended"),
    "U": (JobState.RUNNING, "suspended (workstation busy)"),
}
# PBS Pro's JOB_EXEC_* codes (src/include/job.h) that say more than "failed".
_EXEC_CODES = {
    -29: (JobState.TIMEOUT, "walltime exceeded (JOB_EXEC_KILL_WALLTIME)"),
    -28: (JobState.TIMEOUT, "cpu time exceeded (JOB_EXEC_KILL_CPUT)"),
    -27: (JobState.OUT_OF_MEMORY, "memory limit exceeded (JOB_EXEC_KILL_MEM)"),
    -26: (JobState.OUT_OF_MEMORY, "virtual memory limit exceeded (JOB_EXEC_KILL_VMEM)"),
    -25: (JobState.FAILED, "ncpus limit exceeded (JOB_EXEC_KILL_NCPUS_SUM)"),
    -24: (JobState.FAILED, "ncpus burst exceeded (JOB_EXEC_KILL_NCPUS_BURST)"),
    -20: (JobState.NODE_FAIL, "mother superior connection failed (JOB_EXEC_RERUN_MS_FAIL)"),
    -14: (JobState.NODE_FAIL, "sister node failed (JOB_EXEC_RERUN_SIS_FAIL)"),
    -11: (JobState.PREEMPTED, "requeued by the server (JOB_EXEC_RERUN)"),
    -10: (JobState.FAILED, "user id not valid on the node (JOB_EXEC_FAILUID)"),
    -3: (JobState.FAILED, "could not start, retry (JOB_EXEC_RETRY)"),
    -2: (JobState.FAILED, "could not start (JOB_EXEC_FAIL2)"),
    -1: (JobState.FAILED, "could not start (JOB_EXEC_FAIL1)"),
}


def map_job(job_id: str, info: dict[str, Any]) -> JobStatus:
    """One job of `qstat -F json` → JobStatus."""
    native = str(info.get("job_state", ""))
    comment = str(info.get("comment", "") or "")
    if native in _LIVE:
        state, words = _LIVE[native]
        return JobStatus(job_id, state, native, comment or words)
    if native not in ("F", "X"):
        return JobStatus(job_id, JobState.UNKNOWN, native, comment)
    code = info.get("Exit_status")
    try:
        code = int(code) if code is not None else None
    except (TypeError, ValueError):
        code = None
    lowered = comment.lower()
    if code is None:
        return JobStatus(job_id, JobState.CANCELLED, native, comment or "deleted before it ran")
    if code == 0:
        return JobStatus(job_id, JobState.COMPLETED, native, comment, 0)
    if "walltime" in lowered and "exceed" in lowered:
        return JobStatus(job_id, JobState.TIMEOUT, native, comment, code)
    if code in _EXEC_CODES:
        state, words = _EXEC_CODES[code]
        return JobStatus(job_id, state, native, words + (f"; {comment}" if comment else ""), code)
    if code < 0:
        return JobStatus(
            job_id, JobState.FAILED, native, f"PBS could not run the job (code {code}); {comment}", code
        )
    if code > 256:
        sig = code - 256
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        if sig == signal.SIGTERM or "delete" in lowered:
            return JobStatus(
                job_id, JobState.CANCELLED, native, f"killed by {name} (qdel); {comment}".strip("; "), code
            )
        return JobStatus(job_id, JobState.FAILED, native, f"killed by {name}; {comment}".strip("; "), code)
    return JobStatus(job_id, JobState.FAILED, native, f"exit code {code}", code)


def parse_qstat_json(text: str) -> dict[str, dict[str, Any]]:
    """`qstat -F json` output → {job id: attributes} (strict=False: PBS Pro writes raw control characters)."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text, strict=False)
    except ValueError as exc:
        raise SchedulerError(f"qstat -F json printed something that is not JSON: {exc}") from exc
    jobs = data.get("Jobs") or {}
    if not isinstance(jobs, dict):
        raise SchedulerError("qstat -F json: 'Jobs' is not an object")
    return jobs


def _same_job(a: str, b: str) -> bool:
    """PBS ids are 'number.server'; the short and long forms name one job."""
    return a == b or a.split(".", 1)[0] == b.split(".", 1)[0]


@register
class PbsScheduler(Scheduler):
    name = "pbs"

    def submit(self, script: Path, workdir: Path, job_name: str, comment: str) -> str:
        proc = self._run(["qsub", "-N", job_name, str(script)], cwd=workdir)
        job_id = proc.stdout.strip().splitlines()[-1].strip() if proc.stdout.strip() else ""
        if not job_id:
            raise SchedulerError(f"qsub {script}: printed no job id: {proc.stderr.strip()}")
        return job_id

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        ids = sorted(set(job_ids))
        if not ids:
            return {}
        proc = self._run(["qstat", "-x", "-F", "json", "-f", *ids], check=False)
        jobs = parse_qstat_json(proc.stdout)
        if proc.returncode != 0 and not jobs and "Unknown Job" not in proc.stderr:
            raise SchedulerError(f"qstat -x -F json -f exited {proc.returncode}: {proc.stderr.strip()}")
        out = {}
        for job_id in ids:
            match = next((info for key, info in jobs.items() if _same_job(key, job_id)), None)
            out[job_id] = (
                replace(map_job(job_id, match), name=str(match.get("Job_Name") or ""))
                if match is not None
                else JobStatus(job_id, JobState.UNKNOWN, "", "not known to qstat -x")
            )
        return out

    def cancel(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        proc = self._run(["qdel", *job_ids], check=False)
        benign = ("finished", "Unknown Job", "unknown job", "completed")
        if proc.returncode == 0 or any(word in proc.stderr for word in benign):
            return
        # qdel's words for a job that has already ended differ between versions (and some say
        # nothing): a job qstat reports as ended was not an error to cancel.
        if all(status.state.terminal for status in self.poll(job_ids).values()):
            return
        raise SchedulerError(f"qdel exited {proc.returncode}: {proc.stderr.strip()}")

    def find_jobs(self, names: Iterable[str]) -> list[FoundJob]:
        wanted = set(names)
        if not wanted:
            return []
        proc = self._run(["qstat", "-x", "-F", "json", "-f"], check=False)
        found = [
            FoundJob(job_id, str(info.get("Job_Name")), str(info.get("comment", "") or ""))
            for job_id, info in parse_qstat_json(proc.stdout).items()
            if info.get("Job_Name") in wanted
        ]
        return found

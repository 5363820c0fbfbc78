"""Slurm: `sbatch --parsable`, one `squeue` for the live jobs, one `sacct` for the finished ones.

squeue forgets a job a few minutes after it ends (MinJobAge), so anything squeue does not list is
asked of sacct in the same poll. Polls closer together than `poll_interval_s` (default 10 s; the
option or $STUDY_SLURM_POLL_S) return the previous answer: a login node is shared.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from study.schedulers.base import FoundJob, JobState, JobStatus, Scheduler, SchedulerError, register

# squeue's and sacct's long state names (sacct adds e.g. "CANCELLED by 0").
_STATES: dict[str, JobState] = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "BOOT_FAIL": JobState.NODE_FAIL,
    "SPECIAL_EXIT": JobState.FAILED,
    "TIMEOUT": JobState.TIMEOUT,
    "DEADLINE": JobState.TIMEOUT,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
    "CANCELLED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
    "NODE_FAIL": JobState.NODE_FAIL,
    "PREEMPTED": JobState.PREEMPTED,
}
_SEP = "|"


def map_state(native: str) -> JobState:
    """Map a squeue/sacct state ("CANCELLED by 0", "OUT_OF_ME+" is never asked for: we use -P)."""
    word = native.strip().split(" ", 1)[0].rstrip("+")
    return _STATES.get(word, JobState.UNKNOWN)


def parse_exit_code(text: str) -> tuple[int | None, int | None]:
    """sacct's ExitCode "code:signal" → (code, signal)."""
    try:
        code, sig = text.strip().split(":", 1)
        return int(code), int(sig)
    except ValueError:
        return None, None


# Names sacct gives a job whose name slurmdbd no longer has: on our Slurm 22.05 test cluster, JobName
# "allocation" for batch jobs once squeue has forgotten them (seen for cancelled and completed jobs).
# Reported as no name: such an answer neither confirms nor contradicts the name the job was given.
NAMELESS = ("allocation",)
SQUEUE_FORMAT = "%i|%T|%r|%j"
SACCT_FORMAT = "JobIDRaw,State,ExitCode,Reason,JobName"


def parse_squeue(text: str) -> dict[str, JobStatus]:
    """Lines of `squeue -h -o %i|%T|%r|%j` (the name, last, may be absent)."""
    out: dict[str, JobStatus] = {}
    for line in text.splitlines():
        parts = line.strip().split(_SEP, 3)
        if len(parts) < 3 or not parts[0]:
            continue
        job_id, native, reason = parts[0], parts[1], parts[2]
        name = parts[3] if len(parts) > 3 else ""
        out[job_id] = JobStatus(
            job_id, map_state(native), native, "" if reason == "None" else reason, name=name
        )
    return out


def parse_sacct(text: str) -> dict[str, JobStatus]:
    """Lines of `sacct -X -n -P --format=JobIDRaw,State,ExitCode,Reason,JobName` (allocations only;
    the name, last, may be absent)."""
    out: dict[str, JobStatus] = {}
    for line in text.splitlines():
        parts = line.strip().split(_SEP, 4)
        if len(parts) < 4 or not parts[0]:
            continue
        job_id, native, exit_text, reason = parts[:4]
        name = parts[4] if len(parts) > 4 and parts[4] not in NAMELESS else ""
        code, sig = parse_exit_code(exit_text)
        state = map_state(native)
        words = [] if reason in ("", "None") else [reason]
        if state is JobState.FAILED and code:
            words.insert(0, f"exit code {code}")
        if sig:
            words.insert(0, f"signal {sig}")
        out[job_id] = JobStatus(job_id, state, native, "; ".join(words), code, name)
    return out


@register
class SlurmScheduler(Scheduler):
    name = "slurm"

    @classmethod
    def output_path(cls, stem: str) -> str:
        return f"{stem}.%j.out"  # sbatch puts the job id in: a rerun's output never overwrites the first

    def output_file(self, job_id: str, stem: str) -> Path:
        return Path(self.output_path(stem).replace("%j", job_id))

    def __init__(self, workspace: Path | None = None, **options: object) -> None:
        super().__init__(workspace, **options)
        default = os.environ.get("STUDY_SLURM_POLL_S", "10")
        self.poll_interval_s = float(options.get("poll_interval_s", default))  # type: ignore[arg-type]
        self._last_poll = 0.0
        self._cache: dict[str, JobStatus] = {}

    def submit(self, script: Path, workdir: Path, job_name: str, comment: str) -> str:
        proc = self._run(
            [
                "sbatch",
                "--parsable",
                f"--job-name={job_name}",
                f"--comment={comment}",
                f"--chdir={workdir}",
                str(script),
            ]
        )
        job_id = proc.stdout.strip().split(";", 1)[0]
        if not job_id:
            raise SchedulerError(f"sbatch {script}: printed no job id: {proc.stderr.strip()}")
        return job_id

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        ids = sorted(set(job_ids))
        if not ids:
            return {}
        now = time.monotonic()
        if now - self._last_poll < self.poll_interval_s and all(i in self._cache for i in ids):
            return {i: self._cache[i] for i in ids}
        result: dict[str, JobStatus] = {}
        queue = self._run(
            ["squeue", "-h", "--states=all", f"--jobs={','.join(ids)}", "-o", SQUEUE_FORMAT], check=False
        )
        # squeue exits non-zero when every id is unknown to it ("Invalid job id"): that is sacct's turn.
        if queue.returncode == 0:
            result.update(
                {k: v for k, v in parse_squeue(queue.stdout).items() if k in ids and not v.state.terminal}
            )
        rest = [i for i in ids if i not in result]
        if rest:
            acct = self._run(
                [
                    "sacct",
                    "-X",
                    "-n",
                    "-P",
                    f"--jobs={','.join(rest)}",
                    f"--format={SACCT_FORMAT}",
                ]
            )
            finished = parse_sacct(acct.stdout)
            for i in rest:
                result[i] = finished.get(
                    i, JobStatus(i, JobState.UNKNOWN, "", "not known to squeue or sacct")
                )
        self._cache.update(result)
        self._last_poll = now
        return result

    def cancel(self, job_ids: Sequence[str]) -> None:
        if job_ids:
            self._run(["scancel", *job_ids])
            self._cache.clear()

    def find_jobs(self, names: Iterable[str]) -> list[FoundJob]:
        wanted = sorted(set(names))
        if not wanted:
            return []
        found: dict[str, FoundJob] = {}
        acct = self._run(
            [
                "sacct",
                "-X",
                "-n",
                "-P",
                "--starttime=now-30days",
                f"--name={','.join(wanted)}",
                "--format=JobIDRaw,JobName,Comment",
            ],
            check=False,
        )
        queue = self._run(
            ["squeue", "-h", "--states=all", f"--name={','.join(wanted)}", "-o", "%i|%j|%k"], check=False
        )
        for text in (
            acct.stdout if acct.returncode == 0 else "",
            queue.stdout if queue.returncode == 0 else "",
        ):
            for line in text.splitlines():
                parts = line.strip().split(_SEP, 2)
                if len(parts) == 3 and parts[1] in wanted:
                    found[parts[0]] = FoundJob(parts[0], parts[1], "" if parts[2] == "(null)" else parts[2])
        return sorted(found.values(), key=lambda j: int(j.job_id) if j.job_id.isdigit() else 0)

"""One interface for every batch system: submit, poll many jobs in one call, cancel, find by tag.

A scheduler module subclasses `Scheduler`, maps its native states onto `JobState` and registers
itself by name with `@register`. The harness (study.submit) only speaks this interface, so adding a
batch system is one small module. Polling takes all job ids at once because site admins rightly
punish one `squeue` per job.
"""

from __future__ import annotations

import enum
import importlib
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.errors import InputError, StudyError


class JobState(enum.StrEnum):
    """The states every scheduler's native states map onto."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    CANCELLED = "CANCELLED"
    NODE_FAIL = "NODE_FAIL"
    PREEMPTED = "PREEMPTED"
    UNKNOWN = "UNKNOWN"

    @property
    def terminal(self) -> bool:
        return self not in (JobState.PENDING, JobState.RUNNING, JobState.UNKNOWN)


@dataclass(frozen=True)
class JobStatus:
    """What the scheduler says about one job: its own word (`native`), ours (`state`), and why."""

    job_id: str
    state: JobState
    native: str = ""
    reason: str = ""
    exit_code: int | None = None
    # The job's name as the scheduler has it ("" when it did not say): the harness trusts an id only
    # while this is the name it gave the job, because a controller that lost its state reuses ids.
    name: str = ""


@dataclass(frozen=True)
class FoundJob:
    """A job the scheduler knows, found by its name: used to adopt jobs a crashed submit left behind."""

    job_id: str
    name: str
    comment: str = ""


class SchedulerError(StudyError):
    """A scheduler command failed (exit 1): the message holds the command line and its stderr."""


class Scheduler(ABC):
    """Submit, poll, cancel and find jobs of one batch system."""

    name: str = ""

    def __init__(self, workspace: Path | None = None, **options: object) -> None:
        self.workspace = Path(workspace) if workspace is not None else None
        self.options = options

    @classmethod
    def output_path(cls, stem: str) -> str:
        """The job's output file as a job script tells the batch system (`#SBATCH --output`, `#PBS -o`):
        `stem` plus what this system can put in it (Slurm: the job id)."""
        return f"{stem}.out"

    def output_file(self, job_id: str, stem: str) -> Path:
        """Where the output of job `job_id`, whose script asked for `output_path(stem)`, is written."""
        return Path(self.output_path(stem))

    @classmethod
    def session_options(cls, plan: Mapping[str, Any], max_parallel: int | None = None) -> dict[str, Any]:
        """The options a workspace's session opens this scheduler with: from its plan.json and the
        command line's `--max-parallel` (which only a scheduler that runs the jobs itself takes)."""
        return {}

    @abstractmethod
    def submit(self, script: Path, workdir: Path, job_name: str, comment: str) -> str:
        """Submit one job script; return the scheduler's job id as soon as it has one."""

    @abstractmethod
    def poll(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Status of many jobs in one round trip; a job the scheduler no longer knows is UNKNOWN."""

    @abstractmethod
    def cancel(self, job_ids: Sequence[str]) -> None:
        """Cancel these jobs; cancelling a finished job is not an error."""

    @abstractmethod
    def find_jobs(self, names: Iterable[str]) -> list[FoundJob]:
        """Jobs, queued or finished, whose name is one of `names`: the tags the harness gives its jobs."""

    def _run(
        self,
        argv: Sequence[str],
        *,
        input_text: str | None = None,
        timeout: float = 120,
        check: bool = True,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess:
        """Run a scheduler command; a missing binary or a non-zero exit becomes a SchedulerError."""
        if shutil.which(argv[0]) is None:
            raise SchedulerError(f"{argv[0]}: command not found (is this a {self.name} system?)")
        try:
            proc = subprocess.run(
                list(argv), capture_output=True, text=True, input=input_text, timeout=timeout, cwd=cwd
            )
        except subprocess.TimeoutExpired as exc:
            raise SchedulerError(f"{' '.join(argv)}: no answer within {timeout:.0f} s") from exc
        if check and proc.returncode != 0:
            raise SchedulerError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc


_REGISTRY: dict[str, type[Scheduler]] = {}
_MODULES = {
    "local": "study.schedulers.local",
    "slurm": "study.schedulers.slurm",
    "pbs": "study.schedulers.pbs",
}


def register(cls: type[Scheduler]) -> type[Scheduler]:
    """Class decorator: make a scheduler available by its `name`."""
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    return sorted(set(_MODULES) | set(_REGISTRY))


def scheduler_class(name: str) -> type[Scheduler]:
    """The scheduler class registered as `name`, importing its module on first use."""
    if name not in _REGISTRY and name in _MODULES:
        importlib.import_module(_MODULES[name])
    if name not in _REGISTRY:
        raise InputError(f"unknown scheduler {name!r}; known: {', '.join(names())}", key="scheduler")
    return _REGISTRY[name]


def get_scheduler(name: str, workspace: Path | None = None, **options: object) -> Scheduler:
    """An instance of the scheduler registered as `name`."""
    return scheduler_class(name)(workspace, **options)


def exit_reason(exit_code: int | None, signal_number: int | None = None) -> str:
    """Human words for a process's end: 'exit code 3', 'killed by signal 9 (SIGKILL)'."""
    import signal as _signal

    if signal_number is None and exit_code is not None and exit_code > 128:
        signal_number = exit_code - 128
    if signal_number:
        try:
            return f"killed by signal {signal_number} ({_signal.Signals(signal_number).name})"
        except ValueError:
            return f"killed by signal {signal_number}"
    return f"exit code {exit_code}"

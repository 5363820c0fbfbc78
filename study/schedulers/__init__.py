"""Batch systems behind one interface (base.Scheduler); each lives in its own module, loaded on use."""

from study.schedulers.base import (
    FoundJob,
    JobState,
    JobStatus,
    Scheduler,
    SchedulerError,
    get_scheduler,
    register,
    scheduler_class,
)

__all__ = [
    "FoundJob",
    "JobState",
    "JobStatus",
    "Scheduler",
    "SchedulerError",
    "get_scheduler",
    "register",
    "scheduler_class",
]

"""Orchestration: put a workspace's jobs in the state store, reconcile, submit, refresh, wait, rerun, cancel.

Every command starts with `open_session`: open the store, record the plan's jobs, and reconcile with the
scheduler, adopting any job of this workspace that the store does not know (a submit that died after
the scheduler answered). A job's scheduler name is its plan name plus a tag of the workspace's path,
so two copies of one experiment never adopt each other's jobs.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from study.collect import job_reason, judge_attempt
from study.errors import InputError, StudyError
from study.plan import check_location, load_plan_json
from study.results import attempt_folders
from study.schedulers.base import JobState, JobStatus, Scheduler, SchedulerError, scheduler_class
from study.state import (
    PLANNED,
    RUN_DONE,
    RUN_FAILED,
    RUN_OK,
    RUN_PENDING,
    RUN_PLANNED,
    RUN_RUNNING,
    SUBMITTED,
    SUBMITTING,
    State,
)

# Testing hook: STUDY_FAULT=after-submit makes `submit` die right after the scheduler accepted a job
# and before the state store heard of it: the crash window that reconciliation closes.
FAULT_ENV = "STUDY_FAULT"
COMMENT_MAX = 900
# A job the scheduler keeps not knowing this long after submission is lost (its records were purged).
LOST_AFTER_S = 600.0
# How long `wait` lets the jobs of finished runs take to end before returning anyway.
JOB_END_GRACE_S = 30.0


@dataclass
class Session:
    """A workspace opened for work: its plan (plain plan.json data), store and scheduler."""

    workspace: Path
    plan: dict[str, Any]
    state: State
    scheduler: Scheduler
    adopted: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.state.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def workspace_arg(value: str) -> Path:
    """A rendered workspace named on the command line; InputError (exit 2) when it is not one."""
    path = Path(value)
    if not path.is_dir():
        raise InputError("no such workspace folder", key=value)
    if not (path / "plan.json").is_file():
        raise InputError("not a workspace: plan.json is missing (render it or submit FILE first)", key=value)
    return path.resolve()


def counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts.get(k, 0)} {k}" for k in ("ok", "failed", "running", "pending", "planned"))


def workspace_tag(workspace: Path) -> str:
    return hashlib.sha256(str(workspace.resolve()).encode()).hexdigest()[:6]


def scheduler_name(job_name: str, workspace: Path) -> str:
    return f"{job_name}-{workspace_tag(workspace)}"


def job_comment(workspace: Path, runs: list[str]) -> str:
    text = f"study ws={workspace_tag(workspace)} runs={','.join(runs)}"
    return text if len(text) <= COMMENT_MAX else text[: COMMENT_MAX - 3] + "..."


def open_session(
    workspace: str | os.PathLike[str],
    *,
    max_parallel: int | None = None,
    poll_interval_s: float | None = None,
    reconcile_now: bool = True,
) -> Session:
    """Open a rendered workspace: store + scheduler, the plan's jobs recorded, reconciled."""
    workspace = Path(workspace).resolve()
    plan = load_plan_json(workspace)
    check_location(workspace, plan)
    kind = scheduler_class(plan.get("scheduler") or "local")
    options = kind.session_options(plan, max_parallel)
    if poll_interval_s is not None:
        options["poll_interval_s"] = poll_interval_s
    scheduler = kind(workspace, **options)
    state = State(workspace)
    session = Session(workspace, plan, state, scheduler)
    if state.read_only:  # nothing can be recorded: show what the store holds (commands that change it fail)
        return session
    record_plan_jobs(state, workspace, plan)
    if reconcile_now:
        session.adopted = reconcile(session)
    return session


def record_plan_jobs(state: State, workspace: Path, plan: dict[str, Any]) -> None:
    """Put plan.json's jobs in the store; a job whose runs already belong to another (a rerun that
    render_jobs wrote but the store did not hear of) is a new round starting after their attempts."""
    known = {j.name for j in state.jobs()}
    for job in plan.get("jobs", []):
        name = scheduler_name(job["name"], workspace)
        if name in known:
            continue
        runs = list(job["runs"])
        earlier = [state.run(r) for r in runs]
        rounds = [state.job(r.job).round for r in earlier if r is not None]
        floors = {r: _last_attempt(workspace, r) for r in runs} if rounds else None
        state.add_job(name, job["script"], runs, 1 + max(rounds, default=0), floors)


def _last_attempt(workspace: Path, run_id: str) -> int:
    folders = attempt_folders(workspace / "runs" / run_id)
    return folders[-1][0] if folders else 0


def _submitter_alive(submitter: str | None) -> bool:
    if not submitter:
        return False
    host, _, pid = submitter.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine: assume it is still at work
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def reconcile(session: Session) -> list[str]:
    """Adopt jobs the scheduler has under our names but the store lacks; free claims of dead submitters."""
    state, sched = session.state, session.scheduler
    unknown = [j for j in state.jobs() if j.status in (PLANNED, SUBMITTING) and not j.job_id]
    unknown = [
        j
        for j in unknown
        if not (
            j.status == SUBMITTING
            and _submitter_alive(j.submitter)
            and j.submitter != f"{socket.gethostname()}:{os.getpid()}"
        )
    ]
    if not unknown:
        return []
    found: dict[str, list[str]] = {}
    for job in sched.find_jobs([j.name for j in unknown]):
        found.setdefault(job.name, []).append(job.job_id)
    adopted = []
    for job in unknown:
        ids = found.get(job.name)
        if ids:
            state.mark_submitted(job.name, ids[0], JobState.UNKNOWN.value)
            adopted.append(f"{job.name}={ids[0]}")
        elif job.status == SUBMITTING:
            state.unclaim(job.name)
    return adopted


def submit_planned(
    session: Session, *, dry_run: bool = False, echo: Callable[[str], None] = print
) -> list[tuple[str, str]]:
    """Submit every planned job once; returns (job name, job id or 'dry-run')."""
    done = []
    for job in session.state.jobs(PLANNED):
        script = session.workspace / job.script
        if dry_run:
            echo(f"would submit {job.name}: {script} ({len(job.runs)} runs)")
            done.append((job.name, "dry-run"))
            continue
        if not script.is_file():
            raise InputError("job script is missing (render the workspace again)", file=str(script))
        if not session.state.claim(job.name):
            continue
        try:
            job_id = session.scheduler.submit(
                script, session.workspace, job.name, job_comment(session.workspace, job.runs)
            )
        except BaseException:
            session.state.unclaim(job.name)
            raise
        if os.environ.get(FAULT_ENV) == "after-submit":
            os._exit(75)
        session.state.mark_submitted(job.name, job_id)
        done.append((job.name, job_id))
    return done


def refresh(session: Session) -> dict[str, int]:
    """Poll every live job in one call, then judge each unfinished run; returns run counts by status."""
    state = session.state
    jobs = {j.name: j for j in state.jobs()}
    live = [
        j
        for j in jobs.values()
        if j.status == SUBMITTED and j.job_id and not (j.state and JobState(j.state).terminal)
    ]
    if live:
        answers = session.scheduler.poll([j.job_id for j in live])
        for job in live:
            status = answers.get(job.job_id) or JobStatus(job.job_id, JobState.UNKNOWN)
            if status.name and status.name != job.name:  # no name: the scheduler could not say
                # A controller that lost its state hands our id to someone else's job: never adopt
                # that job's state (nor cancel it); ours is gone.
                status = JobStatus(
                    job.job_id,
                    JobState.FAILED,
                    status.native,
                    f"lost: the scheduler's job {job.job_id} is now {status.name!r}, not this job "
                    "(the scheduler lost ours and reused its id)",
                )
            elif status.state is JobState.UNKNOWN and _age_s(job.submitted_at) > LOST_AFTER_S:
                status = JobStatus(
                    job.job_id,
                    JobState.FAILED,
                    status.native,
                    f"lost: the scheduler has not known the job for {LOST_AFTER_S:.0f} s",
                )
            if (status.state.value, status.reason) != (job.state, job.reason):
                state.set_job_state(
                    job.name, status.state.value, status.native, status.reason, status.exit_code
                )
        jobs = {j.name: j for j in state.jobs()}
    updates = []
    for run in state.runs():
        if run.status in RUN_DONE:
            continue
        job = jobs.get(run.job)
        if job is None or job.status != SUBMITTED:
            continue
        job_state = JobState(job.state) if job.state else JobState.UNKNOWN
        mine = [(n, f) for n, f in attempt_folders(session.workspace / "runs" / run.run_id) if n > run.floor]
        if not mine:
            if job_state.terminal:
                updates.append(
                    (
                        run.run_id,
                        RUN_FAILED,
                        None,
                        f"{job_reason(job_state, job.reason)}; the run never started",
                    )
                )
            elif run.status != RUN_PENDING:
                updates.append((run.run_id, RUN_PENDING, None, None))
            continue
        number, folder = mine[-1]
        outcome = judge_attempt(
            folder, job_state if job_state is not JobState.UNKNOWN else JobState.RUNNING, job.reason
        )
        if outcome.status == "running":
            if run.status != RUN_RUNNING:
                updates.append((run.run_id, RUN_RUNNING, number, None))
        else:
            updates.append(
                (run.run_id, RUN_OK if outcome.status == "ok" else RUN_FAILED, number, outcome.reason)
            )
    if updates:
        state.set_runs(updates)
    return run_counts(state)


def _age_s(iso: str | None) -> float:
    if not iso:
        return 0.0
    return (datetime.now(UTC) - datetime.fromisoformat(iso)).total_seconds()


def run_counts(state: State) -> dict[str, int]:
    counts = {s: 0 for s in (RUN_PLANNED, RUN_PENDING, RUN_RUNNING, RUN_OK, RUN_FAILED)}
    for run in state.runs():
        counts[run.status] = counts.get(run.status, 0) + 1
    return counts


def wait(
    session: Session, *, interval_s: float = 1.0, on_update: Callable[[dict[str, int]], None] | None = None
) -> dict[str, int]:
    """Refresh until no run is pending or running (planned runs that nobody submits do not hold us).

    A run is judged from its attempt folder, which is final a moment before its job script exits; once
    every run is done we keep polling, up to JOB_END_GRACE_S, until their jobs have ended too, so that
    the job states a caller reads afterwards are settled (a job stuck in an epilog does not hold us).
    """
    settled_by: float | None = None
    while True:
        counts = refresh(session)
        if on_update:
            on_update(counts)
        if counts[RUN_PENDING] == 0 and counts[RUN_RUNNING] == 0:
            if settled_by is None:
                settled_by = time.monotonic() + JOB_END_GRACE_S
            if not _live_jobs(session.state) or time.monotonic() >= settled_by:
                return counts
        time.sleep(interval_s)


def _live_jobs(state: State) -> list:
    """Submitted jobs the scheduler last reported as not ended."""
    return [j for j in state.jobs(SUBMITTED) if j.job_id and not (j.state and JobState(j.state).terminal)]


def cancel(session: Session, *, dry_run: bool = False, echo: Callable[[str], None] = print) -> list[str]:
    """Cancel every submitted job that has not ended; returns their job ids."""
    refresh(session)
    live = _live_jobs(session.state)
    ids = [j.job_id for j in live]
    if dry_run:
        for job in live:
            echo(f"would cancel {job.name} (job {job.job_id}, {job.state})")
        return ids
    if ids:
        session.scheduler.cancel(ids)
    return ids


def attempts_used(session: Session, run_id: str) -> int:
    """Attempts a run has had: its attempt folders, or its submissions when a job died before making one."""
    run = session.state.run(run_id)
    job = session.state.job(run.job) if run else None
    folders = attempt_folders(session.workspace / "runs" / run_id)
    return max(folders[-1][0] if folders else 0, job.round if job else 0)


def rerun_failed(
    session: Session,
    *,
    max_attempts: int | None = None,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
) -> tuple[list[str], list[str]]:
    """New jobs (through study.render.render_jobs) for failed runs; returns (rerun ids, ids at the limit)."""
    refresh(session)
    failed = [r for r in session.state.runs() if r.status == RUN_FAILED]
    chosen, exhausted = [], []
    for run in failed:
        used = attempts_used(session, run.run_id)
        (exhausted if max_attempts is not None and used >= max_attempts else chosen).append(run.run_id)
    if not chosen:
        return [], exhausted
    round_ = 1 + max(session.state.job(session.state.run(r).job).round for r in chosen)
    if dry_run:
        echo(f"would render and submit round {round_} for {len(chosen)} failed runs: {', '.join(chosen)}")
        return chosen, exhausted
    try:
        from study.render import render_jobs
    except ImportError as exc:
        raise StudyError("rerun needs study.render.render_jobs, which this installation lacks") from exc
    jobs = render_jobs(session.workspace, chosen, f"r{round_}")
    floors = {r: _last_attempt(session.workspace, r) for r in chosen}
    for job in jobs:
        script = Path(job.script)
        rel = script.relative_to(session.workspace) if script.is_absolute() else script
        session.state.add_job(
            scheduler_name(job.name, session.workspace), str(rel), list(job.runs), round_, floors
        )
    submit_planned(session, echo=echo)
    return chosen, exhausted


__all__ = [
    "Session",
    "SchedulerError",
    "open_session",
    "reconcile",
    "submit_planned",
    "refresh",
    "wait",
    "cancel",
    "rerun_failed",
    "run_counts",
    "workspace_tag",
    "scheduler_name",
    "SUBMITTING",
]

"""Collection: every run's chosen attempt → one tidy table per workspace (docs/results.md, "The dataset").

Results files are read only through study.results.read_result. For each run of the plan the attempt
used is the last successful one; a run with none appears once with status `failed` and the reason
(exit code, signal, walltime, out of memory, scheduler reason, missing or corrupt results file). A
corrupt file is reported with its path and never stops collection. Runs still queued or running
count as `pending`, runs never submitted as `missing`; neither has rows. The tables are written
atomically, in plan order, so collecting twice gives the same files.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from study.plan import load_plan_json
from study.results import (
    TIMER_TABLE_COLUMNS,
    ResultError,
    atomic_write,
    attempt_folders,
    flatten_timers,
    read_result,
)
from study.schedulers.base import JobState, exit_reason

# Above this many runs, collection reads result files in worker processes.
PARALLEL_MIN_RUNS = 2000
PARALLEL_WORKERS = 8
PARALLEL_CHUNK = 250
BASE_COLUMNS = (
    "experiment",
    "run_id",
    "repeat",
    "attempt",
    "system",
    "interconnect",
    "scheduler",
    "gpu",
    "kind",
    "status",
    "error",
    "nodes",
    "gpus_per_node",
    "world_size",
)
PROVENANCE_COLUMNS = ("git_sha", "start", "end", "scheduler_job_id")
TIMER_COLUMNS = TIMER_TABLE_COLUMNS
_JOB_REASONS = {
    JobState.TIMEOUT: "walltime exceeded (TIMEOUT)",
    JobState.OUT_OF_MEMORY: "out of memory (OUT_OF_MEMORY)",
    JobState.CANCELLED: "cancelled (CANCELLED)",
    JobState.NODE_FAIL: "node failure (NODE_FAIL)",
    JobState.PREEMPTED: "preempted (PREEMPTED)",
    JobState.FAILED: "job failed (FAILED)",
    JobState.COMPLETED: "job completed without finishing this run",
    JobState.UNKNOWN: "the scheduler no longer knows the job",
}


@dataclass
class Outcome:
    """How one attempt ended: `ok`, `failed` (with `reason`) or `running`; `result` when readable."""

    status: str
    reason: str | None = None
    result: dict[str, Any] | None = None
    corrupt: str | None = None


def job_reason(state: JobState | str | None, detail: str | None = None) -> str:
    state = JobState(state) if state else JobState.UNKNOWN
    words = _JOB_REASONS.get(state, state.value)
    return f"{words}: {detail}" if detail and detail not in words else words


def judge_attempt(
    folder: str | os.PathLike[str], job_state: JobState | str | None = None, job_detail: str | None = None
) -> Outcome:
    """Decide an attempt's outcome from exit.json, results.json and, when it did not finish, the job's state.

    `job_state` None means the job's fate is unknown (a collect without a state store); UNKNOWN means
    the job has ended but how is not known (an older attempt)."""
    state = JobState(job_state) if job_state else None
    folder = os.fspath(folder)
    try:
        with open(os.path.join(folder, "exit.json"), encoding="utf-8") as fh:
            exit_info = json.load(fh)
    except FileNotFoundError:
        exit_info = None
    except (OSError, ValueError):
        exit_info = {"exit_code": None}
    results_path = os.path.join(folder, "results.json")
    result, corrupt = None, None
    if os.path.exists(results_path):
        try:
            result = read_result(results_path)
        except ResultError as exc:
            corrupt = str(exc)
    if exit_info is None:
        if state is None and result is not None:
            return _from_result(result, None)
        if state is None or state in (JobState.PENDING, JobState.RUNNING):
            return Outcome("running")
        if state is JobState.UNKNOWN:
            return Outcome(
                "failed", "did not finish: no exit.json (killed, or its job was lost)", result, corrupt
            )
        return Outcome("failed", job_reason(state, job_detail) + "; no exit.json", result, corrupt)
    code = exit_info.get("exit_code")
    if code not in (0, None) or (code is None and not result):
        reason = exit_reason(code) if code is not None else "exit.json unreadable"
        if state in (
            JobState.TIMEOUT,
            JobState.OUT_OF_MEMORY,
            JobState.CANCELLED,
            JobState.NODE_FAIL,
            JobState.PREEMPTED,
        ):
            reason = f"{job_reason(state, job_detail)}; {reason}"
        if result is not None and result.get("status") == "failed":
            reason = f"{reason}; {result.get('error')}"
        elif corrupt:
            reason = f"{reason}; corrupt results: {corrupt}"
        elif result is None:
            reason = f"{reason}; missing results file {results_path}"
        return Outcome("failed", reason, result, corrupt)
    return _from_result(result, corrupt, results_path)


def _from_result(result: dict[str, Any] | None, corrupt: str | None, path: str | None = None) -> Outcome:
    if corrupt:
        return Outcome("failed", f"corrupt results: {corrupt}", None, corrupt)
    if result is None:
        return Outcome("failed", f"exit code 0 but missing results file {path}")
    if result["status"] == "failed":
        return Outcome("failed", f"results status failed: {result.get('error')}", result)
    return Outcome("ok", None, result)


@dataclass
class Collected:
    dataset: Any
    timers: Any
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # run id → (ok|failed, attempt, reason) for every run collect judged (pending and missing ones aside)
    verdicts: dict[str, tuple[str, int | None, str | None]] = field(default_factory=dict)
    # runs whose status in the state store collect corrected (the store said ok, the files say not)
    corrected: list[str] = field(default_factory=list)

    def summary(self) -> str:
        c = self.counts
        return (
            f"{c.get('ok', 0)} ok, {c.get('failed', 0)} failed, {c.get('missing', 0)} missing, "
            f"{c.get('pending', 0)} pending; {len(self.dataset)} rows, {len(self.timers)} timer rows"
        )


def system_columns(system_name: str | None, scheduler: str | None) -> dict[str, Any]:
    """system, interconnect, scheduler, gpu from the system file (None where it says nothing)."""
    cols: dict[str, Any] = {"system": system_name, "interconnect": None, "scheduler": scheduler, "gpu": None}
    if not system_name:
        return cols
    try:
        from study.systems import load_system

        system = load_system(system_name)
    except Exception:  # noqa: BLE001 - a missing or broken system file must not stop collection
        return cols
    cols["interconnect"] = system.interconnect.name if getattr(system, "interconnect", None) else None
    cols["gpu"] = system.gpu.model if getattr(system, "gpu", None) else None
    cols["scheduler"] = scheduler or system.scheduler
    return cols


def collect_workspace(
    workspace: str | os.PathLike[str],
    *,
    run_states: dict[str, tuple] | None = None,
    on_problem: Callable[[str], None] | None = None,
    write: bool = True,
) -> Collected:
    """Build (and by default write) dataset.* and timers.* for a workspace.

    `run_states` maps run id → (status, reason, attempt floor, attempt) from the state store; without it a
    run's fate is read from its folders alone."""
    import pandas as pd

    workspace = Path(workspace)
    plan = load_plan_json(workspace)
    from_store = run_states is None
    if run_states is None:
        run_states = _states_from_store(workspace)
    context = (
        str(workspace),
        system_columns(plan.get("system"), plan.get("scheduler")),
        plan.get("experiment"),
    )
    tasks = [(run, run_states.get(run["run_id"])) for run in plan.get("runs", [])]
    # Reading and validating thousands of JSON files is CPU-bound: spread it over the idle cores. On a
    # busy machine (a shared login node) workers only add pickling, so then stay in this process.
    workers = min(PARALLEL_WORKERS, int((os.cpu_count() or 1) - os.getloadavg()[0]))
    if len(tasks) >= PARALLEL_MIN_RUNS and workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            outputs = list(pool.map(partial(_collect_run, context), tasks, chunksize=PARALLEL_CHUNK))
    else:
        outputs = [_collect_run(context, task) for task in tasks]
    rows: list[dict[str, Any]] = []
    timer_rows: list[dict[str, Any]] = []
    counts = {"ok": 0, "failed": 0, "missing": 0, "pending": 0}
    problems: list[str] = []
    verdicts: dict[str, tuple[str, int | None, str | None]] = {}
    for (run, _), (kind, run_rows, run_timers, run_problems, verdict) in zip(tasks, outputs, strict=True):
        counts[kind] += 1
        rows.extend(run_rows)
        timer_rows.extend(run_timers)
        problems.extend(run_problems)
        if verdict is not None:
            verdicts[run["run_id"]] = verdict
    for problem in problems:
        if on_problem:
            on_problem(problem)
    dataset = _frame(pd, rows, BASE_COLUMNS)
    timers = _frame(pd, timer_rows, TIMER_COLUMNS)
    corrected: list[str] = []
    if write:
        remove_stale_temporaries(workspace)
        write_table(dataset, workspace / "dataset")
        write_table(timers, workspace / "timers")
        if from_store:
            corrected = _record_verdicts(workspace, run_states, verdicts)
    return Collected(dataset, timers, counts, problems, verdicts, corrected)


def _record_verdicts(
    workspace: Path, run_states: dict[str, tuple], verdicts: dict[str, tuple[str, int | None, str | None]]
) -> list[str]:
    """Runs the store calls ok whose files collect found not ok (a results file damaged or deleted
    after the run was judged) become failed in the store, with collect's reason, so that `status`
    and the dataset agree and `rerun --failed` reruns them. Runs still pending or running are left
    to refresh. Nothing is written on a store that cannot be (a read-only workspace)."""
    from study.state import State, has_state, read_only_folder

    changes = [
        (run_id, "failed", attempt, reason)
        for run_id, (status, attempt, reason) in verdicts.items()
        if status == "failed" and (run_states.get(run_id) or (None,))[0] == "ok"
    ]
    if not changes or not has_state(workspace) or read_only_folder(workspace):
        return []
    with State(workspace) as state:
        state.set_runs(changes)
    return [c[0] for c in changes]


TEMPORARY_RE = re.compile(r"^\.(?:dataset|timers)\.(?:parquet|csv)\.[^/]*\.tmp$")


def remove_stale_temporaries(workspace: Path, older_than_s: float = 3600.0) -> list[str]:
    """Delete the temporary files an interrupted collect left beside the tables (a kill between
    writing and renaming them). Only files older than `older_than_s` go: a collect running now in
    another process is writing its own, and none takes an hour. Returns the names removed."""
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(workspace))
    except OSError:
        return removed
    for entry in entries:
        if not TEMPORARY_RE.match(entry.name):
            continue
        try:
            if now - entry.stat().st_mtime > older_than_s:
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            continue
    return removed


def _collect_run(context: tuple[str, dict[str, Any], str | None], task: tuple[dict[str, Any], tuple | None]):
    """One run → (ok|failed|missing|pending, dataset rows, timer rows, problems, verdict). Runs in
    worker processes."""
    workspace, sys_cols, experiment = context
    run, store = task
    run_id = run["run_id"]
    base = {
        "experiment": experiment,
        "run_id": run_id,
        "repeat": run.get("repeat"),
        "attempt": None,
        **sys_cols,
        "kind": None,
        "status": None,
        "error": None,
        "nodes": run.get("nodes"),
        "gpus_per_node": run.get("gpus_per_node"),
        "world_size": run.get("world_size"),
    }
    params = {k: _cell(v) for k, v in (run.get("params") or {}).items() if k not in BASE_COLUMNS}
    store_status, store_reason, floor, store_attempt = store or (None, None, 0, None)
    active = store_status in ("pending", "running")
    problems: list[str] = []
    chosen, last = None, None
    for number, folder in reversed(attempt_folders(Path(workspace, "runs", run_id))):
        if active and number > floor:
            continue
        over = store_status is not None or number <= floor
        outcome = judge_attempt(folder, JobState.UNKNOWN if over else None)
        if outcome.corrupt:
            problems.append(outcome.corrupt)
        if outcome.status == "ok":
            chosen = (number, outcome)
            break
        if last is None:
            last = (number, outcome)
    if chosen is not None:
        number, outcome = chosen
    elif active or (last is not None and last[1].status == "running"):
        return "pending", [], [], problems, None
    elif last is not None:
        number, outcome = last
        if store_status == "failed" and store_reason and store_attempt in (number, None):
            outcome.reason = store_reason
    elif store_status == "failed":
        number, outcome = None, Outcome("failed", store_reason or "failed before any attempt started")
    else:
        return "missing", [], [], problems, None
    if store_status == "ok" and outcome.status != "ok" and not outcome.corrupt:  # corrupt: said above
        problems.append(f"run {run_id}: the state store says ok, but {outcome.reason}")
    base.update({"attempt": number, "status": outcome.status, "error": outcome.reason})
    result = outcome.result
    timer_rows = []
    if result is not None:
        topo = {
            "nodes": base["nodes"],
            "gpus_per_node": base["gpus_per_node"],
            "world_size": base["world_size"],
        }
        head = {"experiment": experiment, "run_id": run_id, "repeat": base["repeat"], "attempt": number}
        timer_rows = [{**head, **timer, **params, **topo} for timer in flatten_timers(result["timers"])]
    verdict = (outcome.status, number, outcome.reason)
    return outcome.status, _result_rows(base, params, result), timer_rows, problems, verdict


def _states_from_store(workspace: Path) -> dict[str, tuple]:
    from study.state import State, has_state

    if not has_state(workspace):
        return {}
    with State(workspace, read_only=True) as state:
        return {r.run_id: (r.status, r.reason, r.floor, r.attempt) for r in state.runs()}


_SCALARS = frozenset((bool, int, float, str, type(None)))


def _cell(value: Any) -> Any:
    """Scalars stay; lists and mappings become canonical JSON, so every column has one type."""
    if type(value) in _SCALARS or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _result_rows(base: dict[str, Any], params: dict[str, Any], result: dict[str, Any] | None) -> list[dict]:
    if result is None:
        return [{**base, **params}]
    prov = result.get("provenance") or {}
    head = {
        **base,
        "kind": result.get("kind"),
        "error": base["error"] if base["status"] == "failed" else result.get("error"),
    }
    topo = result.get("topology") or {}
    for key in ("nodes", "gpus_per_node", "world_size"):
        if head.get(key) is None and topo.get(key) is not None:
            head[key] = topo[key]
    metrics = {k: v for k, v in result["metrics"].items() if k not in head}
    tail = {k: _cell(prov.get(k)) for k in PROVENANCE_COLUMNS}
    samples = result["samples"] or [{}]
    return [
        {
            **head,
            **params,
            **metrics,
            **{k: v if type(v) in _SCALARS else _cell(v) for k, v in s.items() if k not in head},
            **tail,
        }
        for s in samples
    ]


def _frame(pd: Any, rows: list[dict[str, Any]], first: Iterable[str]):
    first = list(first)
    columns = list(first)
    seen = set(columns)
    for row in rows:
        for key in row:
            if key not in seen:
                seen.add(key)
                columns.append(key)
    tail = [c for c in columns if c in PROVENANCE_COLUMNS and c not in first]
    columns = [c for c in columns if c not in tail] + tail
    frame = pd.DataFrame.from_records(rows, columns=columns)
    for column in frame.columns:
        if frame[column].dtype == object:
            kinds = {type(v) for v in frame[column] if v is not None and v == v}
            if len(kinds) > 1 and not kinds <= {int, float}:
                frame[column] = [None if v is None or v != v else str(v) for v in frame[column]]
    return frame


def write_table(frame: Any, stem: Path) -> None:
    """stem.parquet and stem.csv, each through a temporary file in the same folder and a rename."""
    atomic_write(stem.with_suffix(".parquet"), lambda tmp: frame.to_parquet(tmp, index=False))
    atomic_write(stem.with_suffix(".csv"), lambda tmp: frame.to_csv(tmp, index=False))

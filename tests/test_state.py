"""The SQLite state store: idempotent job records, one winner per claim across processes, WAL mode."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from study.state import PLANNED, SUBMITTED, SUBMITTING, State


def _claim_all(workspace: str, names: list[str], queue) -> None:
    with State(workspace) as state:
        queue.put([n for n in names if state.claim(n)])


def test_add_job_is_idempotent_and_points_runs_at_the_newest_job(tmp_path: Path) -> None:
    with State(tmp_path) as state:
        assert state.add_job("j1", "jobs/j1.sh", ["a", "b"], 1)
        assert not state.add_job("j1", "jobs/other.sh", ["c"], 1)
        assert [j.script for j in state.jobs()] == ["jobs/j1.sh"]
        assert state.add_job("j2", "jobs/j2.sh", ["b"], 2, {"b": 1})
        assert state.run("a").job == "j1"
        assert state.run("b").job == "j2" and state.run("b").floor == 1
        assert state.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_claim_has_exactly_one_winner_across_processes(tmp_path: Path) -> None:
    names = [f"job{i}" for i in range(40)]
    with State(tmp_path) as state:
        for name in names:
            state.add_job(name, f"jobs/{name}.sh", [name], 1)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(str(tmp_path), names, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    won = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    flat = sorted(n for w in won for n in w)
    assert flat == sorted(names)
    with State(tmp_path) as state:
        assert {j.status for j in state.jobs()} == {SUBMITTING}


def test_unclaim_and_mark_submitted(tmp_path: Path) -> None:
    with State(tmp_path) as state:
        state.add_job("j", "jobs/j.sh", ["r"], 1)
        assert state.claim("j") and not state.claim("j")
        state.unclaim("j")
        assert state.job("j").status == PLANNED and state.claim("j")
        state.mark_submitted("j", "42")
        job = state.job("j")
        assert (job.status, job.job_id, job.state) == (SUBMITTED, "42", "PENDING")
        assert state.run("r").status == "pending"
    with State(tmp_path) as again:
        assert again.job("j").job_id == "42"

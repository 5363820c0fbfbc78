"""Collection: one tidy table, the last successful attempt, failures with reasons, never a crash or a loss."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from helpers import run_study as _study

from study.collect import collect_workspace
from study.submit import open_session, rerun_failed, submit_planned, wait

DOC_COLUMNS = [
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
]
TIMER_COLUMNS = [
    "experiment",
    "run_id",
    "repeat",
    "attempt",
    "path",
    "name",
    "type",
    "depth",
    "time_inc_ms",
    "time_ms",
    "calls",
]


def _run(ws: Path) -> None:
    with open_session(ws) as session:
        submit_planned(session)
        wait(session, interval_s=0.1)


def test_dataset_rows_columns_and_reasons(make_workspace) -> None:
    ws = make_workspace(
        {"good": "ok", "crash": "fail", "bad": "corrupt", "gave-up": "failed-result", "silent": "noresult"}
    )
    _run(ws)
    problems: list[str] = []
    got = collect_workspace(ws, on_problem=problems.append)
    df = pd.read_parquet(ws / "dataset.parquet")
    csv = pd.read_csv(ws / "dataset.csv")
    assert list(df.columns[: len(DOC_COLUMNS)]) == DOC_COLUMNS
    assert list(df.columns[-4:]) == ["git_sha", "start", "end", "scheduler_job_id"]
    assert {"behavior", "e2e_ms", "algorithm", "size_bytes", "latency_us"} <= set(df.columns)
    assert len(df) == len(csv) == 2 + 1 + 1 + 2 + 1  # samples of good and gave-up, one row per other run
    by_run = {run_id: rows for run_id, rows in df.groupby("run_id")}
    assert set(by_run["good"].status) == {"ok"} and list(by_run["good"].size_bytes) == [1024, 4096]
    assert by_run["crash"].error.iloc[0].startswith("exit code 3; missing results file")
    assert "corrupt results" in by_run["bad"].error.iloc[0] and "bad/attempt-1/results.json" in problems[0]
    assert (
        set(by_run["gave-up"].status) == {"failed"}
        and "the payload gave up" in by_run["gave-up"].error.iloc[0]
    )
    assert "missing results file" in by_run["silent"].error.iloc[0]
    assert got.counts == {"ok": 1, "failed": 4, "missing": 0, "pending": 0}
    timers = pd.read_parquet(ws / "timers.parquet")
    assert list(timers.columns[: len(TIMER_COLUMNS)]) == TIMER_COLUMNS
    good = timers[timers.run_id == "good"]
    assert list(good.path) == ["main", "main/allreduce"] and list(good.depth) == [0, 1]
    assert good.time_ms.iloc[0] == good.time_inc_ms.iloc[0] - good.time_inc_ms.iloc[1]


def test_collecting_twice_gives_the_same_files(make_workspace) -> None:
    ws = make_workspace({"a": "ok", "b": "fail"})
    _run(ws)
    collect_workspace(ws)
    first = [(ws / n).read_bytes() for n in ("dataset.csv", "timers.csv")]
    df1 = pd.read_parquet(ws / "dataset.parquet")
    collect_workspace(ws)
    assert [(ws / n).read_bytes() for n in ("dataset.csv", "timers.csv")] == first
    pd.testing.assert_frame_equal(df1, pd.read_parquet(ws / "dataset.parquet"))


def test_the_last_successful_attempt_is_used(make_workspace) -> None:
    ws = make_workspace({"flaky": "flaky"})
    with open_session(ws) as session:
        submit_planned(session)
        wait(session, interval_s=0.1)
        rerun_failed(session, echo=lambda _: None)
        wait(session, interval_s=0.1)
    got = collect_workspace(ws)
    assert set(got.dataset.attempt) == {2} and set(got.dataset.status) == {"ok"}
    assert set(got.dataset.e2e_ms) == {3.0}  # the payload reports 1.5 ms x attempt number


def test_missing_and_pending_runs_are_counted_not_invented(make_workspace) -> None:
    ws = make_workspace({"never": "ok", "later": "ok"})
    # "later" started an attempt that has not ended (no exit.json): without a state store it is pending
    attempt = ws / "runs" / "later" / "attempt-1"
    attempt.mkdir(parents=True)
    (attempt / "start.json").write_text(json.dumps({"start": "2026-01-01T00:00:00Z"}))
    got = collect_workspace(ws)
    assert got.counts == {"ok": 0, "failed": 0, "missing": 1, "pending": 1}
    assert len(got.dataset) == 0
    assert "0 ok, 0 failed, 1 missing, 1 pending" in got.summary()


def test_parallel_collection_gives_the_same_table(make_workspace, monkeypatch) -> None:
    import study.collect as collect_mod

    ws = make_workspace(
        {f"r{i}": ("ok", "fail", "corrupt", "failed-result")[i % 4] for i in range(8)}, runs_per_job=8
    )
    _run(ws)
    serial = collect_workspace(ws, write=False)
    monkeypatch.setattr(collect_mod, "PARALLEL_MIN_RUNS", 1)
    monkeypatch.setattr(collect_mod, "PARALLEL_CHUNK", 3)
    monkeypatch.setattr(collect_mod.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(collect_mod.os, "cpu_count", lambda: 4)
    parallel = collect_workspace(ws, write=False)
    pd.testing.assert_frame_equal(serial.dataset, parallel.dataset)
    pd.testing.assert_frame_equal(serial.timers, parallel.timers)
    assert serial.counts == parallel.counts and serial.problems == parallel.problems


def test_a_run_killed_mid_attempt_is_failed_with_the_stored_reason(make_workspace) -> None:
    from study.state import State

    ws = make_workspace({"killed": "ok", "older": "ok"})
    for run_id, k in (("killed", 1), ("older", 1), ("older", 2)):
        attempt = ws / "runs" / run_id / f"attempt-{k}"
        attempt.mkdir(parents=True)
        (attempt / "start.json").write_text("{}")
    with State(ws) as state:
        state.add_job("j1", "jobs/j1.sh", ["killed", "older"], 1)
        state.set_runs(
            [
                ("killed", "failed", 1, "walltime exceeded (TIMEOUT); no exit.json"),
                ("older", "failed", 2, "cancelled (CANCELLED); no exit.json"),
            ]
        )
    got = collect_workspace(ws)
    rows = got.dataset.set_index("run_id")
    assert got.counts == {"ok": 0, "failed": 2, "missing": 0, "pending": 0}
    assert rows.loc["killed", "error"] == "walltime exceeded (TIMEOUT); no exit.json"
    assert rows.loc["older", "attempt"] == 2 and rows.loc["older", "error"].startswith("cancelled")


def test_results_no_reader_can_parse_are_failed_with_a_reason_and_types_stay_numeric(make_workspace) -> None:
    ws = make_workspace({"good": "ok", "binary": "ok", "deep": "ok", "typed": "ok"})
    _run(ws)
    attempt = lambda run: ws / "runs" / run / "attempt-1" / "results.json"  # noqa: E731
    attempt("binary").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary")
    attempt("deep").write_text("[" * 100_000 + "]" * 100_000)
    typed = json.loads(attempt("typed").read_text())
    typed["samples"][0]["latency_us"] = "fast"
    attempt("typed").write_text(json.dumps(typed))
    problems: list[str] = []
    got = collect_workspace(ws, on_problem=problems.append)
    df = pd.read_parquet(ws / "dataset.parquet")
    errors = df.drop_duplicates("run_id").set_index("run_id")["error"]
    assert "not UTF-8" in errors["binary"]
    assert "nested too deeply" in errors["deep"]
    assert "samples[0].latency_us: expected a number" in errors["typed"]
    assert got.counts == {"ok": 1, "failed": 3, "missing": 0, "pending": 0}
    assert (
        pd.api.types.is_float_dtype(df["latency_us"])
        and df.loc[df.run_id == "good", "latency_us"].notna().all()
    )
    assert len(problems) == 3


def test_a_result_damaged_after_its_run_was_judged_reaches_the_store_and_is_rerun(make_workspace) -> None:
    """The store said ok when the run ended; then one results.json turned to binary bytes and another
    was deleted. Collect says so, records both as failed, and `rerun --failed` runs them again."""
    ws = make_workspace({"keep": "ok", "damaged": "ok", "deleted": "ok"})
    _run(ws)
    (ws / "runs" / "damaged" / "attempt-1" / "results.json").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    (ws / "runs" / "deleted" / "attempt-1" / "results.json").unlink()
    out = _study("collect", str(ws))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "run deleted: the state store says ok, but" in out.stderr and "missing results" in out.stderr
    assert "damaged/attempt-1/results.json: not UTF-8" in out.stderr
    assert "recorded 2 run(s)" in out.stderr
    status = json.loads(_study("status", str(ws), "--json").stdout)
    got = {r["run_id"]: r["status"] for r in status["runs"]}
    assert got == {"keep": "ok", "damaged": "failed", "deleted": "failed"}
    with open_session(ws) as session:
        chosen, _ = rerun_failed(session, echo=lambda _: None)
        assert sorted(chosen) == ["damaged", "deleted"]
        assert wait(session, interval_s=0.1)["ok"] == 3
    df = collect_workspace(ws).dataset
    assert dict(zip(df["run_id"], df["attempt"], strict=True)) == {"keep": 1, "damaged": 2, "deleted": 2}


def test_collect_removes_the_temporary_files_an_interrupted_collect_left(make_workspace) -> None:
    import os
    import time

    ws = make_workspace({"a": "ok"})
    _run(ws)
    stale = ws / ".dataset.parquet.host-123.x1y2.tmp"
    fresh = ws / ".timers.csv.host-456.z9.tmp"  # another collect's, being written now
    other = ws / ".notes.tmp"
    for path in (stale, fresh, other):
        path.write_bytes(b"partial")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    collect_workspace(ws)
    assert not stale.exists() and fresh.exists() and other.exists()

"""The run/submit/status/collect/rerun/cancel commands: summaries, exit codes 0 / 1 / 2, dry runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "study.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("command", ["status", "collect", "cancel", "submit", "run"])
def test_a_missing_workspace_is_bad_input(command: str, tmp_path: Path) -> None:
    out = _cli(command, str(tmp_path / "nope"))
    assert out.returncode == 2
    assert "nope" in out.stderr


def test_a_folder_without_plan_is_not_a_workspace(tmp_path: Path) -> None:
    out = _cli("status", str(tmp_path))
    assert out.returncode == 2 and "plan.json is missing" in out.stderr


def test_rerun_needs_failed_and_a_sane_limit(make_workspace) -> None:
    ws = make_workspace({"a": "ok"})
    assert _cli("rerun", str(ws)).returncode == 2
    out = _cli("rerun", str(ws), "--failed", "--max-attempts", "0")
    assert out.returncode == 2 and "--max-attempts" in out.stderr


def test_run_dry_run_of_an_experiment_writes_nothing(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    out = _cli("run", "experiments/examples/allreduce-local.yaml", "--workspace", str(ws), "--dry-run")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("dry run: ")
    assert not ws.exists()


def test_submit_dry_run_of_a_workspace_submits_nothing(make_workspace) -> None:
    ws = make_workspace({"a": "ok", "b": "ok"})
    out = _cli("submit", str(ws), "--dry-run")
    assert out.returncode == 0
    assert "dry run: would submit 2 of 2 jobs" in out.stdout
    assert not (ws / ".local").exists()


def test_run_status_collect_end_with_one_line_summaries_and_exit_1_on_failure(make_workspace) -> None:
    ws = make_workspace({"good": "ok", "bad": "fail"})
    run = _cli("run", str(ws), "--poll", "0.1")
    assert run.returncode == 1
    assert run.stdout.strip().splitlines()[-1].startswith("handmade: 1 ok, 1 failed, 0 missing, 0 pending")
    status = _cli("status", str(ws))
    assert status.returncode == 1
    assert status.stdout.strip().splitlines()[-1].startswith(f"{ws.name}: 1 ok, 1 failed")
    collect = _cli("collect", str(ws))
    assert collect.returncode == 1
    assert collect.stdout.strip().splitlines()[-1].startswith(f"collected {ws.name}: 1 ok, 1 failed")
    cancel = _cli("cancel", str(ws))
    assert cancel.returncode == 0 and cancel.stdout.startswith("cancelled 0 jobs")


def test_all_good_exits_0(make_workspace) -> None:
    ws = make_workspace({"a": "ok"})
    assert _cli("run", str(ws), "--poll", "0.1").returncode == 0
    assert _cli("status", str(ws)).returncode == 0

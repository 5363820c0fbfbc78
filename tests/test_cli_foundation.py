"""`study systems / validate / plan / render` as a user runs them: output, exit codes, no writes on error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "experiments" / "examples"


def study(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "STUDY_ACCOUNT"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "study.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=full_env,
        timeout=120,
    )


@pytest.fixture
def no_user_config(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "config")}


def test_systems_lists_the_catalogue():
    done = study("systems")
    assert done.returncode == 0, done.stderr
    for name in ("local", "perlmutter", "polaris", "vista", "generic-ib"):
        assert name in done.stdout
    listed = json.loads(study("systems", "--json").stdout)
    assert {s["name"] for s in listed} >= {"local", "perlmutter"}
    detail = study("systems", "perlmutter")
    assert detail.returncode == 0 and "Slingshot-11" in detail.stdout and "FI_PROVIDER" in detail.stdout


def test_validate_examples():
    done = study("validate", *map(str, sorted(EXAMPLES.glob("*.yaml"))))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("ok: ") == len(list(EXAMPLES.glob("*.yaml")))
    assert "54 runs (18 points x 3 repeats) on perlmutter" in done.stdout


def test_validate_error_exit_2_with_position(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nkind: collective\nresources:\n  nodse: 2\nfixed: {sizes: 1MiB, algorithms: nccl}\n"
    )
    done = study("validate", str(bad))
    assert done.returncode == 2
    assert f"{bad}:4:3: resources.nodse: unknown key `nodse` (did you mean `nodes`?)" in done.stderr


def test_plan_table_counts_and_node_hours():
    done = study("plan", str(EXAMPLES / "allreduce-latency.yaml"), "--limit", "3")
    assert done.returncode == 0, done.stderr
    # 5 node counts x 2 algorithms x 2 graph modes, minus nvrar on 1 node (2 points) = 18 points, 3 repeats.
    # Packed 8 runs per job: 6 runs at 1 node -> 1 job; 12 runs at each other count -> 2 jobs of 8 and 4.
    # Node-hours: per job nodes x runs x 10 min.
    hours = (1 * 6 + sum(n * 12 for n in (2, 4, 8, 16))) * 10 / 60
    assert f"54 runs (18 points x 3 repeats) in 9 jobs, {hours:.2f} node-hours on perlmutter" in done.stdout
    assert "51 more runs" in done.stdout


def test_plan_csv_and_json_need_no_account(no_user_config):
    done = study("plan", str(EXAMPLES / "inference-tp.yaml"), "--format", "csv", env=no_user_config)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("run_id,repeat,job,nodes") and len(lines) == 1 + 42
    plan = json.loads(study("plan", str(EXAMPLES / "inference-tp.yaml"), "--format", "json").stdout)
    assert plan["schema"] == "study.plan/1" and len(plan["runs"]) == 42


def test_plan_does_not_import_heavy_modules():
    example = str(EXAMPLES / "allreduce-latency.yaml")
    code = (
        f"import sys; from study.cli import main; main(['plan', {example!r}, '--format', 'csv']); "
        "print([m for m in ('torch', 'pandas', 'matplotlib', 'numpy') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_render_writes_workspace_and_summarizes(tmp_path, no_user_config):
    ws = tmp_path / "ws"
    done = study(
        "render",
        str(EXAMPLES / "allreduce-latency.yaml"),
        "--workspace",
        str(ws),
        "--account",
        "m1",
        env=no_user_config,
    )
    assert done.returncode == 0, done.stderr
    assert "rendered 54 runs in 9 slurm jobs" in done.stdout
    assert len(list((ws / "jobs").glob("*.sh"))) == 9 and len(list((ws / "runs").iterdir())) == 54


def test_render_default_workspace_is_under_cwd(tmp_path, no_user_config):
    done = study("render", str(EXAMPLES / "allreduce-local.yaml"), cwd=tmp_path, env=no_user_config)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "workspaces" / "allreduce-local" / "plan.json").exists()


def test_render_errors_exit_2_and_write_nothing(tmp_path, no_user_config):
    ws = tmp_path / "ws"
    done = study(
        "render", str(EXAMPLES / "allreduce-latency.yaml"), "--workspace", str(ws), env=no_user_config
    )
    assert done.returncode == 2 and "needs an account" in done.stderr and not ws.exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (EXAMPLES / "allreduce-local.yaml").read_text().replace("repeats: 2", "repeats: 2\nrepeat: 3")
    )
    done = study("render", str(bad), "--workspace", str(ws))
    assert done.returncode == 2 and "did you mean `repeats`?" in done.stderr and not ws.exists()
    done = study(
        "render",
        str(EXAMPLES / "allreduce-latency.yaml"),
        "--workspace",
        str(ws),
        "--account",
        "m1\n#SBATCH --qos=premium",
    )
    assert done.returncode == 2 and "refusing" in done.stderr and not ws.exists()
    done = study(
        "render", str(EXAMPLES / "allreduce-latency.yaml"), "--system", "local", "--workspace", str(ws)
    )
    assert done.returncode == 2 and "at most 1" in done.stderr and not ws.exists()


def test_render_dry_run(tmp_path):
    ws = tmp_path / "ws"
    done = study("render", str(EXAMPLES / "allreduce-local.yaml"), "--workspace", str(ws), "--dry-run")
    assert done.returncode == 0 and "would render 4 runs in 1 local jobs" in done.stdout and not ws.exists()


def test_account_from_environment_and_user_config(tmp_path):
    config = tmp_path / "config" / "study" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("accounts: {polaris: MyProj}\n")
    ws = tmp_path / "ws"
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = study(
        "render",
        str(EXAMPLES / "allreduce-local.yaml"),
        "--system",
        "polaris",
        "--workspace",
        str(ws),
        env=env,
    )
    assert done.returncode == 0, done.stderr
    script = next((ws / "jobs").glob("*.sh")).read_text()
    assert "#PBS -A MyProj" in script
    done = study(
        "render",
        str(EXAMPLES / "allreduce-local.yaml"),
        "--system",
        "polaris",
        "--workspace",
        str(ws),
        env={**env, "STUDY_ACCOUNT": "EnvProj"},
    )
    assert "#PBS -A EnvProj" in next((ws / "jobs").glob("*.sh")).read_text()

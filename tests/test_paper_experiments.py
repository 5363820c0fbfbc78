"""Every experiment of the study validates, plans and renders for each system it is meant for."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from study.config import load_experiment
from study.render import render_workspace

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "experiments" / "paper"

# experiment file -> systems it is rendered for in the study (its own system first)
TARGETS = {
    "strong-scaling-70b.yaml": ["perlmutter", "polaris", "generic-ib"],
    "strong-scaling-405b.yaml": ["perlmutter"],
    "breakdown.yaml": ["perlmutter", "polaris"],
    "nccl-algorithms.yaml": ["perlmutter", "polaris", "generic-ib"],
    "nvrar-vs-nccl.yaml": ["perlmutter", "polaris", "generic-ib"],
    "e2e-405b-nvrar.yaml": ["perlmutter"],
    "interconnect-comparison.yaml": ["vista"],
    "engines-70b.yaml": ["perlmutter", "polaris"],
}
CASES = [(name, system) for name, systems in TARGETS.items() for system in systems]


def test_every_paper_experiment_is_covered():
    assert sorted(p.name for p in PAPER.glob("*.yaml")) == sorted(TARGETS)


@pytest.mark.parametrize(("name", "system"), CASES)
def test_paper_experiment_renders(name, system, tmp_path):
    experiment = load_experiment(PAPER / name)
    plan = render_workspace(PAPER / name, system=system, workspace=tmp_path / "ws", account="m0000")
    assert plan.experiment == experiment.name
    assert plan.system == system
    assert plan.runs and plan.jobs
    assert plan.node_hours > 0
    # Every run of the sweep is in exactly one job, and every job script is valid bash.
    in_jobs = [run_id for job in plan.jobs for run_id in job.runs]
    assert sorted(in_jobs) == sorted(run.run_id for run in plan.runs)
    for job in plan.jobs:
        script = tmp_path / "ws" / job.script
        checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert checked.returncode == 0, f"{script}: {checked.stderr}"
    if experiment.kind == "inference":
        for run in plan.runs:
            assert run.params["tp"] * run.params["pp"] == run.world_size
            engine = run.params.get("engine", "bundled")
            assert ("-m engine.run" if engine == "bundled" else f"-m engine.external.{engine}") in run.command
    else:
        assert all("-m collectives.bench" in run.command for run in plan.runs)

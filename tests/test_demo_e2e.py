"""A smaller variant of `make demo`, end to end: the demo's own experiment files, restricted to 1-2 ranks,
rendered, run on the local system, collected, plotted and reported through the `study` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _smaller(name: str, tmp_path: Path, ranks: list[int]) -> Path:
    data = yaml.safe_load((ROOT / "experiments" / name).read_text())
    data["resources"]["gpus_per_node"] = ranks
    out = tmp_path / name
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def _study(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "study.cli", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def test_demo_inference_pipeline_end_to_end(tmp_path):
    experiment = _smaller("demo.yaml", tmp_path, [1, 2])
    ws = tmp_path / "ws-demo"
    done = _study("run", str(experiment), "--workspace", str(ws), "--report")
    assert done.returncode == 0, done.stdout + done.stderr
    plan = json.loads((ws / "plan.json").read_text())
    # 1 rank: TP=1; 2 ranks: TP=2 with gloo and with the reference, and PP=2.
    assert len(plan["runs"]) == 4
    dataset = pd.read_parquet(ws / "dataset.parquet")
    assert sorted(dataset["status"]) == ["ok"] * 4
    assert (dataset["tbt_ms"] > 0).all() and (dataset["e2e_ms"] >= dataset["ttft_ms"]).all()
    timers = pd.read_parquet(ws / "timers.parquet")
    assert {"allreduce", "p2p", "attention", "mlp"} <= set(timers["name"])
    # The findings are printed before the report path, which is the run's last lines.
    lines = done.stdout.strip().splitlines()
    assert any(line.startswith("  - ") and "% of" in line for line in lines)
    report_line = next(line for line in lines if line.startswith("report: "))
    report = Path(report_line.split(": ", 1)[1])
    assert report == ws / "report.html" and report.stat().st_size > 0
    assert (ws / "figures" / "strong_scaling.png").exists()
    assert (ws / "figures" / "strong_scaling.csv").exists()


def test_demo_allreduce_pipeline_end_to_end(tmp_path):
    experiment = _smaller("demo-allreduce.yaml", tmp_path, [2])
    ws = tmp_path / "ws-ar"
    done = _study("run", str(experiment), "--workspace", str(ws), "--report")
    assert done.returncode == 0, done.stdout + done.stderr
    dataset = pd.read_parquet(ws / "dataset.parquet")
    algorithms = yaml.safe_load(experiment.read_text())["fixed"]["algorithms"]
    assert sorted(dataset["algorithm"].unique()) == sorted(algorithms)
    assert (dataset["wrong"] == 0).all()
    assert (ws / "report.html").exists()
    assert any(p.suffix == ".png" for p in (ws / "figures").iterdir())

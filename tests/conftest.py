"""Shared fixtures: the real Slurm cluster (tests/slurm_cluster.py) and hand-made workspaces.

`make_workspace` writes a workspace whose runs execute a tiny payload (it writes its results through
study.results, or fails in a chosen way) inside job scripts rendered by study.render, so scheduler
and collection tests do not depend on the engine or the benchmark.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from slurm_cluster import slurm_cluster  # noqa: E402,F401 - a fixture, used by name

REPO = Path(__file__).resolve().parents[1]

PAYLOAD = r"""
import json, os, sys, time
from study import results as R
behavior = json.loads(os.environ["STUDY_PARAMS"])["behavior"]
attempt = int(os.environ["STUDY_ATTEMPT"])
print("payload", behavior, "attempt", attempt)
if behavior.startswith("sleep:"):
    time.sleep(float(behavior.split(":")[1]))
if behavior == "fail" or (behavior == "flaky" and attempt == 1):
    print("failing on purpose", file=sys.stderr)
    sys.exit(3)
if behavior == "noresult":
    sys.exit(0)
if behavior == "corrupt":
    open(os.environ["STUDY_RESULTS"], "w").write('{"schema": "study.result/1", "run_')
    sys.exit(0)
res = R.new_result(kind="collective", params={"behavior": behavior}, topology={"nodes": 1, "gpus_per_node": 1,
                   "world_size": 1})
res["metrics"] = {"e2e_ms": 1.5 * attempt}
res["samples"] = [{"algorithm": "gloo", "size_bytes": s, "latency_us": s / 100.0} for s in (1024, 4096)]
res["timers"] = R.timers_from_nested({"main": {"time_ms": 3.0, "children": {"allreduce": {"time_ms": 2.0,
                                      "type": "comm", "calls": 4}}}})
if behavior == "failed-result":
    res["status"], res["error"] = "failed", "the payload gave up"
R.write_result(res)
sys.exit(1 if behavior == "failed-result" else 0)
"""


def write_workspace(
    ws: Path,
    behaviors: dict[str, str],
    *,
    scheduler: str = "local",
    runs_per_job: int = 1,
    minutes: int = 2,
    experiment: str = "handmade",
) -> Path:
    """A workspace with one run per entry of `behaviors` (run id → payload behaviour).

    experiment.yaml and system.yaml are real (the CPU example and the `local` system, switched to
    `scheduler`), plan.json lists the runs with the payload as their command, and the job scripts
    come from study.render.render_jobs, so they are the scripts users get."""
    import yaml

    from study.config import load_experiment
    from study.render import render_jobs
    from study.systems import load_system

    ws = ws.resolve()
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "payload.py").write_text(PAYLOAD)
    system = load_system("local").model_dump(mode="json")
    system.update(name=f"test-{scheduler}", scheduler=scheduler, gpus_per_node=1)
    (ws / "system.yaml").write_text(yaml.safe_dump(system, sort_keys=False))
    exp = load_experiment(REPO / "experiments" / "examples" / "allreduce-local.yaml").model_dump(mode="json")
    exp["name"], exp["system"] = experiment, system["name"]
    exp["resources"]["runs_per_job"] = runs_per_job
    (ws / "experiment.yaml").write_text(yaml.safe_dump(exp, sort_keys=False))
    runs = [
        {
            "run_id": run_id,
            "repeat": 0,
            "params": {"behavior": behavior},
            "nodes": 1,
            "gpus_per_node": 1,
            "world_size": 1,
            "walltime_s": 60 * minutes,
            "command": f"{sys.executable} {ws / 'payload.py'}",
            "job": "",
        }
        for run_id, behavior in behaviors.items()
    ]
    plan = {
        "schema": "study.plan/1",
        "experiment": experiment,
        "system": system["name"],
        "scheduler": scheduler,
        "workspace": str(ws),
        "runs": runs,
        "jobs": [],
    }
    (ws / "plan.json").write_text(json.dumps(plan, indent=1))
    render_jobs(ws, list(behaviors), "t")
    return ws


@pytest.fixture
def make_workspace(tmp_path: Path):
    """Factory: make_workspace({"run-a": "ok", "run-b": "fail"}, scheduler="local") → workspace path."""
    counter = iter(range(1000))

    def make(behaviors: dict[str, str], **kwargs) -> Path:
        return write_workspace(tmp_path / f"ws{next(counter)}", behaviors, **kwargs)

    return make

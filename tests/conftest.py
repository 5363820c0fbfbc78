"""Shared fixtures: the real Slurm cluster (tests/slurm_cluster.py) and hand-made workspaces.

`make_workspace` writes plan.json and job scripts that follow the job-script contract of
docs/internals.md (atomic attempt folders, start.json, exit.json) around a tiny payload that writes
its results through study.results, so scheduler and collection tests do not depend on the engine.
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

SCRIPT_HEAD = {
    "local": "#!/bin/bash\nSTUDY_SCHEDULER_JOB_ID=${{STUDY_SCHEDULER_JOB_ID:-}}\n",
    "slurm": "#!/bin/bash\n#SBATCH --ntasks=1\n#SBATCH --time={minutes}\n"
    "#SBATCH --output={ws}/jobs/%x-%j.out\n"
    "STUDY_SCHEDULER_JOB_ID=${{SLURM_JOB_ID:-}}\n",
    "pbs": "#!/bin/bash\n#PBS -l select=1:ncpus=1\n#PBS -l walltime=00:{minutes:02d}:00\n"
    "STUDY_SCHEDULER_JOB_ID=${{PBS_JOBID:-${{SLURM_JOB_ID:-}}}}\n",
}

SCRIPT_RUN = """
run_dir="$STUDY_WORKSPACE/runs/{run_id}"; k=1; mkdir -p "$run_dir"
until mkdir "$run_dir/attempt-$k" 2>/dev/null; do k=$((k + 1)); done
export STUDY_RUN_ID={run_id} STUDY_ATTEMPT=$k STUDY_PARAMS='{params}'
export STUDY_RESULTS="$run_dir/attempt-$k/results.json"
start=$(date -u +%FT%TZ)
echo '{{"start": "'$start'"}}' > "$run_dir/attempt-$k/start.json"
( cd "$run_dir/attempt-$k" && exec {python} "$STUDY_WORKSPACE/payload.py" ) \
  > "$run_dir/attempt-$k/stdout" 2> "$run_dir/attempt-$k/stderr" < /dev/null
rc=$?
printf '{{"exit_code": %d, "start": "%s", "end": "%s", "host": "%s", "scheduler_job_id": "%s"}}\\n' \
  $rc "$start" "$(date -u +%FT%TZ)" "$(hostname)" "$STUDY_SCHEDULER_JOB_ID" \
  > "$run_dir/attempt-$k/exit.json.tmp"
mv -f "$run_dir/attempt-$k/exit.json.tmp" "$run_dir/attempt-$k/exit.json"
[ $rc -eq 0 ] || failed=1
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
    """A rendered-looking workspace: one run per entry of `behaviors` (run id → payload behaviour)."""
    ws = ws.resolve()
    (ws / "jobs").mkdir(parents=True, exist_ok=True)
    (ws / "payload.py").write_text(PAYLOAD)
    ids = list(behaviors)
    runs, jobs = [], []
    for j in range(0, len(ids), runs_per_job):
        members = ids[j : j + runs_per_job]
        name = f"{experiment}-j{j // runs_per_job}"
        text = SCRIPT_HEAD[scheduler].format(ws=ws, minutes=minutes)
        text += f"export STUDY_WORKSPACE={ws} PYTHONPATH={REPO}\nfailed=0\n"
        for run_id in members:
            params = json.dumps({"behavior": behaviors[run_id]})
            text += SCRIPT_RUN.format(run_id=run_id, params=params, python=sys.executable)
            runs.append(
                {
                    "run_id": run_id,
                    "repeat": 0,
                    "params": {"behavior": behaviors[run_id]},
                    "nodes": 1,
                    "gpus_per_node": 1,
                    "world_size": 1,
                    "walltime_s": 60 * minutes,
                    "command": "payload.py",
                    "job": name,
                }
            )
        text += "exit $failed\n"
        (ws / "jobs" / f"{name}.sh").write_text(text)
        jobs.append(
            {
                "name": name,
                "script": f"jobs/{name}.sh",
                "runs": members,
                "nodes": 1,
                "walltime_s": 60 * minutes,
            }
        )
    plan = {
        "schema": "study.plan/1",
        "experiment": experiment,
        "system": "local" if scheduler == "local" else None,
        "scheduler": scheduler,
        "workspace": str(ws),
        "runs": runs,
        "jobs": jobs,
    }
    (ws / "plan.json").write_text(json.dumps(plan, indent=1))
    return ws


@pytest.fixture
def make_workspace(tmp_path: Path):
    """Factory: make_workspace({"run-a": "ok", "run-b": "fail"}, scheduler="local") → workspace path."""
    counter = iter(range(1000))

    def make(behaviors: dict[str, str], **kwargs) -> Path:
        return write_workspace(tmp_path / f"ws{next(counter)}", behaviors, **kwargs)

    return make

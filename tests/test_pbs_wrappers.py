"""The pbs scheduler's qsub and qdel against Slurm's Torque-compatible wrappers (slurm-wlm-torque).

This is a test double, not PBS Pro: no PBS Pro server is packaged for this platform. It shows that
the module's qsub and qdel command lines work and that a `#PBS` script rendered by study.render is
accepted; the wrappers' qstat has no `-F json`, so states are read back through Slurm here, and the
PBS Pro `qstat -x -F json` parsing is tested on documents in PBS Pro's format
(tests/test_sched_parsing.py)."""

from __future__ import annotations

import shutil
import time

import pytest

from study.schedulers import JobState, get_scheduler

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]


@pytest.fixture
def wrappers(slurm_cluster):
    if not (shutil.which("qsub") and shutil.which("qdel")):
        pytest.skip("slurm-wlm-torque's qsub/qdel wrappers are not installed")
    return slurm_cluster


def _until_terminal(slurm, job_id: str) -> JobState:
    deadline = time.monotonic() + 60
    while True:
        state = slurm.poll([job_id])[job_id].state
        if state.terminal or time.monotonic() > deadline:
            return state
        time.sleep(0.3)


def test_qsub_runs_a_rendered_pbs_script_and_qdel_cancels(wrappers, make_workspace) -> None:
    ws = make_workspace({"quick": "ok", "long": "sleep:120"}, scheduler="pbs")
    pbs = get_scheduler("pbs", ws)
    slurm = get_scheduler("slurm", ws, poll_interval_s=0)
    scripts = {p.read_text().count("quick") > 0: p for p in (ws / "jobs").glob("*.sh")}
    quick_id = pbs.submit(scripts[True], ws, "pbs-quick", "")
    long_id = pbs.submit(scripts[False], ws, "pbs-long", "")
    assert quick_id.split(".")[0].isdigit() and long_id.split(".")[0].isdigit()
    assert _until_terminal(slurm, quick_id.split(".")[0]) is JobState.COMPLETED
    assert (ws / "runs" / "quick" / "attempt-1" / "results.json").is_file()
    found = {j.name for j in pbs_found(slurm)}
    assert {"pbs-quick", "pbs-long"} <= found
    pbs.cancel([long_id])
    assert _until_terminal(slurm, long_id.split(".")[0]) is JobState.CANCELLED


def pbs_found(slurm):
    """Jobs qsub named with -N, as Slurm sees them (the wrappers map -N to the Slurm job name)."""
    return slurm.find_jobs(["pbs-quick", "pbs-long"])

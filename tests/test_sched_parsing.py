"""Scheduler state mapping and output parsing, on text in the exact formats the tools print.

The Slurm lines are what `squeue -h -o %i|%T|%r` and `sacct -X -n -P --format=JobIDRaw,State,ExitCode,
Reason` print (Slurm 22.05); the PBS documents follow `qstat -x -F json -f` of PBS Pro 2021+ (a
test double: no PBS Pro server runs here)."""

from __future__ import annotations

import json

import pytest

from study.errors import InputError
from study.schedulers import JobState, get_scheduler
from study.schedulers import pbs as pbs_mod
from study.schedulers import slurm as slurm_mod


@pytest.mark.parametrize(
    ("native", "state"),
    [
        ("PENDING", JobState.PENDING),
        ("CONFIGURING", JobState.PENDING),
        ("RUNNING", JobState.RUNNING),
        ("COMPLETING", JobState.RUNNING),
        ("COMPLETED", JobState.COMPLETED),
        ("FAILED", JobState.FAILED),
        ("TIMEOUT", JobState.TIMEOUT),
        ("OUT_OF_MEMORY", JobState.OUT_OF_MEMORY),
        ("CANCELLED by 0", JobState.CANCELLED),
        ("NODE_FAIL", JobState.NODE_FAIL),
        ("BOOT_FAIL", JobState.NODE_FAIL),
        ("PREEMPTED", JobState.PREEMPTED),
        ("REQUEUED", JobState.PENDING),
        ("DEADLINE", JobState.TIMEOUT),
        ("SOMETHING_NEW", JobState.UNKNOWN),
    ],
)
def test_slurm_states_map_to_one_enum(native: str, state: JobState) -> None:
    assert slurm_mod.map_state(native) is state


def test_sacct_lines_give_state_exit_code_and_reason() -> None:
    text = "\n".join(
        [
            "101|COMPLETED|0:0|None",
            "102|FAILED|3:0|NonZeroExitCode",
            "103|TIMEOUT|0:15|None",
            "104|OUT_OF_MEMORY|0:125|None",
            "105|CANCELLED by 0|0:15|None",
            "106|NODE_FAIL|0:0|NodeDown",
        ]
    )
    got = slurm_mod.parse_sacct(text)
    assert got["101"].state is JobState.COMPLETED and got["101"].exit_code == 0
    assert got["102"].state is JobState.FAILED and "exit code 3" in got["102"].reason
    assert got["103"].state is JobState.TIMEOUT and "signal 15" in got["103"].reason
    assert got["104"].state is JobState.OUT_OF_MEMORY
    assert got["105"].state is JobState.CANCELLED and got["105"].native == "CANCELLED by 0"
    assert got["106"].state is JobState.NODE_FAIL and "NodeDown" in got["106"].reason


def test_squeue_lines_keep_the_pending_reason() -> None:
    got = slurm_mod.parse_squeue("7|PENDING|Resources\n8|RUNNING|None\n\n")
    assert got["7"].state is JobState.PENDING and got["7"].reason == "Resources"
    assert got["8"].state is JobState.RUNNING and got["8"].reason == ""


def test_squeue_and_sacct_lines_carry_the_job_name() -> None:
    """The name is what lets the harness notice an id the controller handed to another job."""
    queue = slurm_mod.parse_squeue("7|RUNNING|None|sweep-j0-3fa2c1\n")
    assert queue["7"].name == "sweep-j0-3fa2c1" and queue["7"].reason == ""
    acct = slurm_mod.parse_sacct("9|COMPLETED|0:0|None|other-j4-000aaa\n10|FAILED|1:0|None\n")
    assert acct["9"].name == "other-j4-000aaa" and acct["9"].state is JobState.COMPLETED
    assert acct["10"].name == "" and acct["10"].state is JobState.FAILED


def _qstat(jobs: dict) -> str:
    return json.dumps(
        {"timestamp": 1764400000, "pbs_version": "2022.1.3", "pbs_server": "polaris-pbs-01", "Jobs": jobs},
        indent=4,
    )


PBS_JOBS = {
    "1001.polaris-pbs-01": {
        "Job_Name": "a-1",
        "job_state": "Q",
        "comment": "Not Running: Insufficient amount of resource: ncpus",
    },
    "1002.polaris-pbs-01": {"Job_Name": "a-2", "job_state": "R", "comment": "Job run at Sat Nov 29 at 10:00"},
    "1003.polaris-pbs-01": {"Job_Name": "a-3", "job_state": "F", "Exit_status": 0},
    "1004.polaris-pbs-01": {
        "Job_Name": "a-4",
        "job_state": "F",
        "Exit_status": -29,
        "comment": "job killed: walltime 3630 exceeded limit 3600",
    },
    "1005.polaris-pbs-01": {
        "Job_Name": "a-5",
        "job_state": "F",
        "Exit_status": 271,
        "comment": "Job run at Sat Nov 29 and terminated",
    },
    "1006.polaris-pbs-01": {"Job_Name": "a-6", "job_state": "F", "Exit_status": -27},
    "1007.polaris-pbs-01": {"Job_Name": "a-7", "job_state": "F", "Exit_status": 2},
    "1008.polaris-pbs-01": {
        "Job_Name": "a-8",
        "job_state": "F",
        "comment": "Job deleted as result of dependency",
    },
    "1009.polaris-pbs-01": {"Job_Name": "a-9", "job_state": "H"},
    "1010.polaris-pbs-01": {"Job_Name": "a-10", "job_state": "F", "Exit_status": 265},
}


def test_pbs_qstat_json_maps_states_and_exit_codes() -> None:
    jobs = pbs_mod.parse_qstat_json(_qstat(PBS_JOBS))
    got = {k.split(".")[0]: pbs_mod.map_job(k, v) for k, v in jobs.items()}
    assert got["1001"].state is JobState.PENDING and "Insufficient" in got["1001"].reason
    assert got["1002"].state is JobState.RUNNING
    assert got["1003"].state is JobState.COMPLETED
    assert got["1004"].state is JobState.TIMEOUT
    assert got["1005"].state is JobState.CANCELLED and "SIGTERM" in got["1005"].reason
    assert got["1006"].state is JobState.OUT_OF_MEMORY
    assert got["1007"].state is JobState.FAILED and got["1007"].exit_code == 2
    assert got["1008"].state is JobState.CANCELLED
    assert got["1009"].state is JobState.PENDING
    assert got["1010"].state is JobState.FAILED and "SIGKILL" in got["1010"].reason


def test_pbs_qstat_json_tolerates_raw_control_characters() -> None:
    text = _qstat({"1.s": {"Job_Name": "x", "job_state": "R"}}).replace('"R"', '"R", "Output_Path": "a\tb"')
    assert pbs_mod.parse_qstat_json(text)["1.s"]["job_state"] == "R"


def test_pbs_qstat_garbage_is_a_clear_error() -> None:
    with pytest.raises(pbs_mod.SchedulerError, match="not JSON"):
        pbs_mod.parse_qstat_json("qstat: illegal -F value")


def test_unknown_scheduler_is_bad_input(tmp_path) -> None:
    with pytest.raises(InputError, match="unknown scheduler 'lsf'"):
        get_scheduler("lsf", tmp_path)


def test_every_scheduler_implements_the_interface(tmp_path) -> None:
    for name in ("local", "slurm", "pbs"):
        sched = get_scheduler(name, tmp_path)
        assert sched.name == name
        assert sched.poll([]) == {}

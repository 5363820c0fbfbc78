#!/usr/bin/env python3
"""A test double of PBS Pro's `qstat -x -F json -f [ids]`, answered from the test Slurm cluster.

No PBS Pro server is packaged for this platform. Slurm's Torque-compatible wrappers (slurm-wlm-torque)
give real `qsub` and `qdel`, but their `qstat` has no `-F json`; this script stands in for it so that
the scheduler conformance test (tests/test_scheduler_conformance.py) runs the pbs scheduler's whole
cycle. It prints what PBS Pro prints for the same jobs: `job_state` Q / R / F and, for finished jobs,
`Exit_status` as PBS Pro encodes it (the script's code, 256 + signal when killed, -29 past walltime).
The parsing of documents written by a real PBS Pro is tested in tests/test_sched_parsing.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

_LIVE = {"PENDING": "Q", "CONFIGURING": "Q", "RUNNING": "R", "COMPLETING": "E", "SUSPENDED": "S"}


def _exit_status(state: str, exit_code: str) -> int | None:
    code, _, sig = exit_code.partition(":")
    if state.startswith("CANCELLED"):
        return 256 + 15  # qdel: SIGTERM
    if state == "TIMEOUT":
        return -29  # JOB_EXEC_KILL_WALLTIME
    if sig and sig != "0":
        return 256 + int(sig)
    return int(code or 0)


def jobs() -> dict[str, dict]:
    out: dict[str, dict] = {}
    done = subprocess.run(
        ["sacct", "-X", "-n", "-P", "--starttime=now-1days", "-o", "JobIDRaw,JobName,State,ExitCode"],
        capture_output=True,
        text=True,
    ).stdout
    for line in done.splitlines():
        job_id, name, state, exit_code = (line.split("|") + ["", "", "", ""])[:4]
        state = state.split()[0] if state else ""
        if not job_id:
            continue
        info = {"Job_Name": name, "job_state": _LIVE.get(state, "F")}
        if info["job_state"] == "F":
            info["Exit_status"] = _exit_status(state, exit_code)
        out[f"{job_id}.test-server"] = info
    live = subprocess.run(
        ["squeue", "-h", "--states=all", "-o", "%i|%j|%T"], capture_output=True, text=True
    ).stdout
    for line in live.splitlines():
        job_id, name, state = (line.split("|") + ["", "", ""])[:3]
        if job_id and state in _LIVE:
            out[f"{job_id}.test-server"] = {"Job_Name": name, "job_state": _LIVE[state]}
    return out


def main(argv: list[str]) -> int:
    if argv[:4] != ["-x", "-F", "json", "-f"]:
        print(f"qstat (test double): only -x -F json -f [ids] is answered, got {argv}", file=sys.stderr)
        return 2
    wanted = {i.split(".", 1)[0] for i in argv[4:]}
    found = {k: v for k, v in jobs().items() if not wanted or k.split(".", 1)[0] in wanted}
    print(json.dumps({"pbs_version": "test double", "pbs_server": "test-server", "Jobs": found}))
    missing = wanted - {k.split(".", 1)[0] for k in found}
    for job_id in sorted(missing):
        print(f"qstat: Unknown Job Id {job_id}", file=sys.stderr)
    return 153 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

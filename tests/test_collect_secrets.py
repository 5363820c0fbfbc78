"""A secret planted in the environment (by name and by value) reaches no file the harness writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKEN_VALUE = "ghp_" + "Pl4nt3dS3cr3tV4lu3Zq9Xw8Yv7Ut6Sr5"
NAMED_VALUE = "plain-looking-but-named-secret-4711"


def test_planted_secrets_never_reach_a_file(make_workspace) -> None:
    ws = make_workspace({"a": "ok", "b": "failed-result"})
    env = {
        **os.environ,
        "STUDY_GH_TOKEN": TOKEN_VALUE,
        "NCCL_PLANTED": TOKEN_VALUE,
        "STUDY_DB_PASSWORD": NAMED_VALUE,
        "TORCH_API_KEY": NAMED_VALUE,
    }
    out = subprocess.run(
        [sys.executable, "-m", "study.cli", "run", str(ws), "--poll", "0.1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, out.stderr  # one run fails on purpose
    subprocess.run(
        [sys.executable, "-m", "study.cli", "collect", str(ws)],
        cwd=REPO,
        env=env,
        timeout=120,
        capture_output=True,
    )
    files = [p for p in ws.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"results.json", "exit.json", "state.sqlite", "dataset.parquet", "dataset.csv"} <= names
    # the harness did record the environment it may record
    assert b"STUDY_RUN_ID" in (ws / "runs" / "a" / "attempt-1" / "results.json").read_bytes()
    for path in files:
        data = path.read_bytes()
        for secret in (TOKEN_VALUE, NAMED_VALUE):
            assert secret.encode() not in data, f"{secret} leaked into {path}"
    assert TOKEN_VALUE not in out.stdout + out.stderr

"""Small helpers shared by tests that drive the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_study(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m study.cli ARGS` from the project root, as a user runs it (STUDY_DEBUG unset, so an
    OS error shows the user's one-line message, not a traceback)."""
    environ = {k: v for k, v in os.environ.items() if k != "STUDY_DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", "study.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        env={**environ, **(env or {})},
    )

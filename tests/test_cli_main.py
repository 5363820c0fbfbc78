"""The `study` entry point itself: help without a command, a reader that goes away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDY = [sys.executable, "-m", "study.cli"]


def test_no_command_prints_help_and_exits_2():
    done = subprocess.run(STUDY, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert "validate" in done.stdout and "collect" in done.stdout


@pytest.mark.parametrize("args", [["systems"], ["plan", "experiments/demo.yaml", "--format", "csv"]])
def test_a_closed_pipe_ends_without_a_traceback(args):
    # stdout is a pipe whose reader is already gone (`study … | head` after head exits); rich's tables
    # and plain prints both end with exit 1 and nothing on stderr.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(STUDY + args, cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 1

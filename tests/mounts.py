"""Real faulty file systems for tests: a tiny tmpfs (a full disk) and a read-only bind mount.

Both need mount(2), which root in a privileged container or on a plain machine has. Where it is
refused (an unprivileged container), the tests that need them are skipped with that reason: there is
no faithful substitute for a file system that refuses writes to root (permission bits do not stop
root), and a fake one would test the fake.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest


def _mount(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *argv], capture_output=True, text=True, check=False)


def _unmounter(path: Path) -> Callable[[], None]:
    def undo() -> None:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)

    return undo


def tmpfs_or_skip(path: Path, size: str = "64k") -> Callable[[], None]:
    """Mount a tmpfs of `size` on `path` (an existing empty folder); returns the unmount."""
    out = _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {out.stderr.strip()}")
    return _unmounter(path)


def read_only_or_skip(path: Path) -> Callable[[], None]:
    """Bind-mount `path` onto itself read-only; returns the unmount."""
    out = _mount("--bind", str(path), str(path))
    if out.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root with CAP_SYS_ADMIN): {out.stderr.strip()}")
    ro = _mount("-o", "remount,bind,ro", str(path))
    if ro.returncode != 0:
        _unmounter(path)()
        pytest.skip(f"cannot remount read-only here: {ro.stderr.strip()}")
    return _unmounter(path)

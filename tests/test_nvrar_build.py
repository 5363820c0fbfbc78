"""The NVRAR CUDA sources compile and link against NVSHMEM on a machine without a GPU (CI's too).

Skipped when nvcc or NVSHMEM is missing, except under CI=true, where a missing toolchain fails: the
point is to catch a broken CUDA build without a GPU. The library must export the C interface that
collectives/nvrar.py binds and nothing must be left to resolve except NVSHMEM, CUDA and the C++ runtime.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from collectives import build
from collectives.nvrar import describe_error

EXPORTS = {
    "nvrar_uniqueid_size",
    "nvrar_get_uniqueid",
    "nvrar_init",
    "nvrar_allreduce",
    "nvrar_error_word",
    "nvrar_last_error",
    "nvrar_finalize",
}


def toolchain_or_skip() -> None:
    reason = build.why_not_buildable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must build the CUDA sources: {reason}")
        pytest.skip(reason)


@pytest.mark.slow
def test_nvrar_compiles_and_links(tmp_path: Path) -> None:
    toolchain_or_skip()
    lib = build.build(arch="90", out_dir=tmp_path)
    assert lib == tmp_path / build.LIBRARY and lib.stat().st_size > 0
    if shutil.which("nm"):
        defined = subprocess.run(
            ["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True
        ).stdout
        names = {line.split()[-1] for line in defined.splitlines() if line.strip()}
        assert EXPORTS <= names
        assert not {n for n in names if n.startswith("nvrar_")} - EXPORTS, "unexpected exports"
    # A second build with the same inputs reuses the library instead of compiling again.
    assert build.build(arch="90", out_dir=tmp_path) == lib


def test_missing_toolchain_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NVSHMEM_HOME", str(tmp_path))
    with pytest.raises(build.NvrarBuildError, match="has no include/nvshmem.h"):
        build.find_nvshmem_home()
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("NVCC", str(tmp_path / "nvcc"))
    if not Path("/usr/local/cuda/bin/nvcc").exists():
        with pytest.raises(build.NvrarBuildError, match="nvcc not found"):
            build.find_nvcc()


def test_prebuilt_library_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NVRAR_LIBRARY", str(tmp_path / "missing.so"))
    assert build.why_not_buildable() == f"NVRAR_LIBRARY={tmp_path / 'missing.so'} is not a file"
    monkeypatch.delenv("NVRAR_LIBRARY")
    assert build.prebuilt_library() is None


def test_nvcc_command_links_the_device_archive_itself() -> None:
    toolchain_or_skip()
    tc = build.find_toolchain()
    cmd = build.nvcc_command(tc, "90", Path("/tmp/x.so"))
    assert "-rdc=true" in cmd and "-shared" in cmd
    assert str(tc.nvshmem_device_lib) in cmd  # the .a itself: -l: would leave device symbols undefined
    assert cmd[cmd.index(str(tc.nvshmem_host_lib)) - 1] == "-Xlinker"


def test_timeout_word_names_phase_and_peer() -> None:
    # bit 31, phase 3 (inter-node exchange) in bits 24-27, step 2 in bits 28-30, PE 5 in bits 0-23
    word = 0x80000000 | (3 << 24) | (2 << 28) | 5
    assert describe_error(word, 2) == (
        "NVRAR timed out in the inter-node exchange step 2 waiting for PE 5 (node 2, local rank 1)"
    )
    assert "intra-node all-gather" in describe_error(0x80000000 | (5 << 24) | 1, 4)

"""collectives.bench with real processes: torchrun (gloo) and Open MPI's mpirun, table and results.json."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from collectives.bench import main as bench_main
from collectives.bench import parse_size, sizes_between
from study.results import read_result

REPO = Path(__file__).resolve().parents[1]
COLUMNS = "#       size         count      type   redop    root     time   algbw   busbw #wrong"
ROW = re.compile(r"^\s+(\d+)\s+(\d+)\s+(\w+)\s+sum\s+-1\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+|N/A)$")
SAMPLE_KEYS = {
    "algorithm",
    "size_bytes",
    "count",
    "dtype",
    "redop",
    "graphs",
    "in_place",
    "latency_us",
    "latency_us_min",
    "latency_us_max",
    "algbw_GBps",
    "busbw_GBps",
    "wrong",
    "iterations",
    "warmup",
}


def env() -> dict[str, str]:
    e = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        OMP_NUM_THREADS="1",
        OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
    )
    e.pop("STUDY_RESULTS", None)
    return e


def rows(stdout: str) -> dict[str, list[tuple]]:
    """Rows of the table per algorithm block."""
    blocks: dict[str, list[tuple]] = {}
    current = None
    for line in stdout.splitlines():
        if line.startswith("# algorithm: "):
            current = line.split(": ", 1)[1]
            blocks[current] = []
        elif current and (m := ROW.match(line)):
            blocks[current].append(m.groups())
    return blocks


def check_busbw(world: int, row: tuple) -> None:
    size, _, _, time_us, algbw, busbw, _ = row
    assert float(algbw) == pytest.approx(int(size) / float(time_us) / 1e3, abs=0.006)
    assert float(busbw) == pytest.approx(float(algbw) * 2 * (world - 1) / world, abs=0.006)


def test_sizes_and_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_size("64K", "-b") == 65536 and parse_size("2MiB", "-e") == 2 << 20
    assert parse_size("1MB", "-e") == 1_000_000 and parse_size("8", "-b") == 8
    assert sizes_between(8, 64, 2) == [8, 16, 32, 64]
    for argv, flag in (
        (["-b", "lots"], "-b/--minbytes"),
        (["--algo", "nccl,bogus"], "--algo"),
        (["--dtype", "fp8"], "--dtype"),
        (["--graphs", "--device", "cpu"], "--graphs"),
        (["-b", "1M", "-e", "1K"], "-b/-e"),
        (["-n", "0"], "-n/--iters"),
    ):
        assert bench_main(argv) == 2
        assert f"error: {flag}" in capsys.readouterr().err


def test_torchrun_three_ranks(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "3",
        "-m",
        "collectives.bench",
        "-b",
        "8",
        "-e",
        "4K",
        "-f",
        "32",
        "-n",
        "3",
        "-w",
        "1",
        "--algo",
        "reference,reference-ring,gloo,nccl",
        "--dtype",
        "fp16",
        "--results",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert COLUMNS in proc.stdout
    assert "# skipped: nccl: no CUDA device" in proc.stdout
    blocks = rows(proc.stdout)
    assert set(blocks) == {"reference", "reference-ring", "gloo"}
    for algo_rows in blocks.values():
        assert [int(r[0]) for r in algo_rows] == [8, 256]
        assert all(r[2] == "half" and r[6] == "0" for r in algo_rows)
        for r in algo_rows:
            check_busbw(3, r)
    result = read_result(out)
    assert result["kind"] == "collective" and result["status"] == "ok"
    assert result["topology"]["world_size"] == 3
    assert len(result["samples"]) == 6
    for sample in result["samples"]:
        assert SAMPLE_KEYS <= set(sample)
        assert sample["wrong"] == 0 and sample["dtype"] == "fp16"
        assert sample["count"] * 2 == sample["size_bytes"]
    assert result["params"]["skipped"]["nccl"].startswith("nccl: no CUDA device")


@pytest.mark.mpi
def test_mpirun_compares_with_open_mpi(tmp_path: Path) -> None:
    if not shutil.which("mpirun"):
        if os.environ.get("CI") == "true":
            pytest.fail("mpirun missing in CI (apt-get install openmpi-bin libopenmpi-dev)")
        pytest.skip("mpirun not installed")
    pytest.importorskip("mpi4py")
    out = tmp_path / "results.json"
    cmd = [
        "mpirun",
        "--oversubscribe",
        "-n",
        "2",
        "-x",
        "PYTHONPATH",
        "-x",
        "OMP_NUM_THREADS",
        "-x",
        "MASTER_PORT=29517",
        sys.executable,
        "-m",
        "collectives.bench",
        "-b",
        "1K",
        "-e",
        "1K",
        "-n",
        "3",
        "-w",
        "1",
        "--algo",
        "reference-rd,mpi",
        "--dtype",
        "fp32",
        "--out-of-place",
        "--results",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    blocks = rows(proc.stdout)
    assert set(blocks) == {"reference-rd", "mpi"}
    assert all(r[6] == "0" for b in blocks.values() for r in b)
    result = read_result(out)
    assert {s["algorithm"] for s in result["samples"]} == {"reference-rd", "mpi"}
    assert all(s["in_place"] is False for s in result["samples"])
    assert result["params"]["launcher"] == "openmpi"

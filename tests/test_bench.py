"""collectives.bench with real processes: torchrun (gloo) and Open MPI's mpirun, table and results.json."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from collectives.bench import main as bench_main
from collectives.bench_cli import parse_size, sizes_between
from study.results import read_result

REPO = Path(__file__).resolve().parents[1]
# nccl-tests' all_reduce_perf header, from its printf formats (src/common.cu of nccl-tests 2.13).
_COLUMNS = "# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s %6s  %7s  %6s  %6s %6s"
HEADER_LINES = [
    "#" + " " * 51 + "           out-of-place                       in-place          ",
    _COLUMNS % ("size", "count", "type", "redop", "root", *("time", "algbw", "busbw", "#wrong") * 2),
    _COLUMNS % ("(B)", "(elements)", "", "", "", *("(us)", "(GB/s)", "(GB/s)", "") * 2),
]
PREAMBLE = re.compile(r"^\s+(\d+)\s+(\d+)\s+(\w+)\s+sum\s+-1$")
GROUP = re.compile(r"^\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+|N/A)$")
SAMPLE_KEYS = {
    "algorithm",
    "size_bytes",
    "count",
    "dtype",
    "redop",
    "graphs",
    "in_place",
    "statistic",
    "latency_us",
    "latency_us_min",
    "latency_us_max",
    "latency_us_mean",
    "latency_us_rank0",
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
    """Rows of the table per algorithm block: (size, count, type, out-of-place, in-place), each
    placement's (time, algbw, busbw, #wrong) read from its own columns, or None where they are blank."""
    blocks: dict[str, list[tuple]] = {}
    current = None
    for line in stdout.splitlines():
        if line.startswith("# algorithm: "):
            current = line.split(": ", 1)[1]
            blocks[current] = []
        elif current and (m := PREAMBLE.match(line[:52])):
            groups = []
            for part in (line[52:84], line[84:116]):
                g = GROUP.match(part)
                assert g or not part.strip(), f"unreadable columns {part!r} in {line!r}"
                groups.append(g.groups() if g else None)
            assert len(line) <= 116, line
            blocks[current].append((*m.groups(), *groups))
    return blocks


def check_busbw(world: int, size: str, group: tuple) -> None:
    time_us, algbw, busbw, _ = group
    assert float(algbw) == pytest.approx(int(size) / float(time_us) / 1e3, abs=0.006)
    assert float(busbw) == pytest.approx(float(algbw) * 2 * (world - 1) / world, abs=0.006)


def torchrun(tmp_path: Path, ranks: int, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "results.json"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(ranks),
        "-m",
        "collectives.bench",
        *args,
        "--results",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, out


def check_printed(text: str, value: float) -> None:
    """The time column shows `value` as nccl-tests does: 2 decimals, fewer where 7 characters cannot
    hold them."""
    decimals = len(text.partition(".")[2])
    assert decimals == 2 or len(f"{value:.{decimals + 1}f}") > 7, (text, value)
    assert float(text) == pytest.approx(value, abs=0.51 * 10**-decimals)


def check_statistics(sample: dict, statistic: str) -> None:
    """`latency_us` is the statistic asked for, the others bracket each other, bandwidths follow it."""
    assert sample["statistic"] == statistic
    assert sample["latency_us"] == sample[f"latency_us_{statistic}"]
    assert 0 < sample["latency_us_min"] <= sample["latency_us_mean"] <= sample["latency_us_max"]
    assert sample["latency_us_min"] <= sample["latency_us_rank0"] <= sample["latency_us_max"]
    assert sample["algbw_GBps"] == pytest.approx(sample["size_bytes"] / sample["latency_us"] / 1e3)


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
    for argv, message in (
        (["-a", "7"], "argument -a/--average: invalid choice: 7 (choose from 0, 1, 2, 3)"),
        (["--average", "max"], "argument -a/--average: invalid int value: 'max'"),
        (["--in-place", "--out-of-place"], "argument --out-of-place: not allowed with argument --in-place"),
    ):
        with pytest.raises(SystemExit) as exc:
            bench_main(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_a_module_run_refuses_a_bad_average_with_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "collectives.bench", "-a", "7"], capture_output=True, text=True, env=env()
    )
    assert proc.returncode == 2
    assert "-a/--average: invalid choice: 7" in proc.stderr and not proc.stdout


def test_torchrun_three_ranks_both_placements_mean_over_ranks(tmp_path: Path) -> None:
    proc, out = torchrun(
        tmp_path,
        3,
        *("-b", "8", "-e", "4K", "-f", "32", "-n", "3", "-w", "1"),
        *("--algo", "reference,reference-ring,gloo,nccl", "--dtype", "fp16"),
    )
    lines = proc.stdout.splitlines()
    assert (
        "# time: mean over ranks (-a 1) of each rank's mean time per call; algbw and busbw from it" in lines
    )
    assert "out-of-place, then in-place" in lines[0]
    for k in range(len(lines) - 2):
        if lines[k].startswith("# algorithm: "):
            assert lines[k + 1 : k + 4] == HEADER_LINES
    assert "# skipped: nccl: no CUDA device" in proc.stdout
    blocks = rows(proc.stdout)
    assert set(blocks) == {"reference", "reference-ring", "gloo"}
    result = read_result(out)
    assert result["kind"] == "collective" and result["status"] == "ok"
    assert result["topology"]["world_size"] == 3
    assert result["params"]["statistic"] == "mean" and result["params"]["average"] == 1
    # One sample per (algorithm, size, placement), out of place first, as the table's columns.
    samples = {(s["algorithm"], s["size_bytes"], s["in_place"]): s for s in result["samples"]}
    assert len(result["samples"]) == len(samples) == 12
    for algo, algo_rows in blocks.items():
        assert [int(r[0]) for r in algo_rows] == [8, 256]
        for size, count, type_name, outside, inside in algo_rows:
            assert type_name == "half" and outside is not None and inside is not None
            for in_place, group in ((False, outside), (True, inside)):
                check_busbw(3, size, group)
                sample = samples[(algo, int(size), in_place)]
                assert group[3] == "0" and sample["wrong"] == 0
                check_printed(group[0], sample["latency_us"])
                assert SAMPLE_KEYS <= set(sample)
                assert sample["dtype"] == "fp16" and sample["count"] == int(count)
                assert sample["count"] * 2 == sample["size_bytes"]
                check_statistics(sample, "mean")
    assert [s["in_place"] for s in result["samples"][:2]] == [False, True]
    assert result["params"]["skipped"]["nccl"].startswith("nccl: no CUDA device")


@pytest.mark.parametrize(
    ("flags", "statistic", "words", "placements"),
    [
        (["-a", "3"], "max", "maximum over ranks (-a 3)", [False, True]),
        (["-a", "3", "--in-place"], "max", "maximum over ranks (-a 3)", [True]),
        (["--average", "0", "--out-of-place"], "rank0", "rank 0's value (-a 0)", [False]),
    ],
)
def test_average_picks_the_statistic_and_placement_flags_the_columns(
    tmp_path: Path, flags: list[str], statistic: str, words: str, placements: list[bool]
) -> None:
    proc, out = torchrun(tmp_path, 2, "-b", "1K", "-e", "1K", "-n", "4", "-w", "1", "--algo", "gloo", *flags)
    assert f"# time: {words} of each rank's mean time per call" in proc.stdout
    (row,) = rows(proc.stdout)["gloo"]
    # A placement that did not run leaves its columns blank (out of place) or unprinted (in place).
    assert [row[3] is not None, row[4] is not None] == [False in placements, True in placements]
    result = read_result(out)
    assert [s["in_place"] for s in result["samples"]] == placements
    assert result["params"]["statistic"] == statistic
    for sample, group in zip(result["samples"], [g for g in row[3:] if g is not None], strict=True):
        check_statistics(sample, statistic)
        check_busbw(2, row[0], group)
        check_printed(group[0], sample["latency_us"])


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
    # Out of place only: its columns filled, the in-place ones not printed.
    assert all(r[3][3] == "0" and r[4] is None for b in blocks.values() for r in b)
    result = read_result(out)
    assert {s["algorithm"] for s in result["samples"]} == {"reference-rd", "mpi"}
    assert all(s["in_place"] is False for s in result["samples"])
    assert result["params"]["launcher"] == "openmpi"


def test_study_runs_the_benchmark_with_its_statistic_and_the_dataset_tells_the_samples_apart(
    tmp_path: Path,
) -> None:
    """The harness end to end on this machine: `statistic: max` renders to `-a 3`, the benchmark runs
    both placements, and the collected dataset carries `statistic` and `in_place` per sample."""
    import pandas as pd

    from analysis.dataset import load_workspace

    experiment = tmp_path / "exp.yaml"
    experiment.write_text(
        "version: 1\nname: bench-statistic\nkind: collective\nsystem: local\n"
        "resources: {nodes: 1, gpus_per_node: 2, walltime: 5m}\n"
        "fixed: {algorithms: [gloo], sizes: 1KiB, dtype: fp32, iterations: 3, warmup: 1, statistic: max}\n"
    )
    ws = tmp_path / "ws"
    cmd = [sys.executable, "-m", "study.cli", "run", str(experiment), "--workspace", str(ws)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = json.loads((ws / "plan.json").read_text())["runs"]
    assert " -a 3 " in run["command"] and "-place" not in run["command"]  # both placements: no flag
    dataset = pd.read_parquet(ws / "dataset.parquet")
    assert dataset["in_place"].tolist() == [False, True]
    assert dataset["statistic"].tolist() == ["max", "max"]
    assert (dataset["latency_us"] == dataset["latency_us_max"]).all()
    assert (dataset["latency_us_min"] <= dataset["latency_us_mean"]).all()
    assert (dataset["latency_us_mean"] <= dataset["latency_us_max"]).all()
    rows = load_workspace(ws).kind("collective")
    assert set(zip(rows["in_place"], rows["statistic"], strict=True)) == {(False, "max"), (True, "max")}

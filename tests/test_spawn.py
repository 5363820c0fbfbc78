"""collectives.spawn, the torch-free launcher of the local system: real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from study.errors import InputError
from study.systems import SYSTEMS_DIR, load_system

ROOT = Path(__file__).resolve().parents[1]


def spawn(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.Popen(
        [sys.executable, "-m", "collectives.spawn", *args], env=env, stderr=subprocess.PIPE, text=True, **kw
    )


def test_each_rank_gets_torchrun_variables_and_the_same_rendezvous(tmp_path: Path) -> None:
    code = (
        "import os, pathlib; e = os.environ; "
        f"pathlib.Path({str(tmp_path)!r}, e['RANK']).write_text("
        "' '.join(e[k] for k in "
        "('WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')))"
    )
    p = spawn(["--nproc-per-node=3", "-c", code])
    assert p.wait(timeout=60) == 0, p.stderr.read()
    seen = {f.name: f.read_text().split() for f in tmp_path.iterdir()}
    assert sorted(seen) == ["0", "1", "2"]
    assert {tuple(v[:1] + v[2:]) for v in seen.values()} == {tuple(["3", "3", "127.0.0.1", seen["0"][4]])}
    assert [seen[r][1] for r in ("0", "1", "2")] == ["0", "1", "2"]


def test_a_failing_rank_stops_the_others_and_gives_its_exit_code(tmp_path: Path) -> None:
    code = (
        "import os, sys, time, pathlib; r = int(os.environ['RANK'])\n"
        "if r == 1: sys.exit(3)\n"
        f"time.sleep(60); pathlib.Path({str(tmp_path)!r}, str(r)).write_text('survived')"
    )
    p = spawn(["--nproc-per-node", "3", "-c", code])
    assert p.wait(timeout=30) == 3
    assert "rank 1 exited with 3" in p.stderr.read()
    assert list(tmp_path.iterdir()) == []


def test_sigterm_reaches_every_rank(tmp_path: Path) -> None:
    code = (
        "import os, signal, sys, time, pathlib; r = os.environ['RANK']\n"
        f"d = pathlib.Path({str(tmp_path)!r})\n"
        "signal.signal(signal.SIGTERM, lambda *a: (d.joinpath('term' + r).write_text(''), sys.exit(0)))\n"
        "d.joinpath('up' + r).write_text('')\n"
        "time.sleep(60)"
    )
    p = spawn(["--nproc-per-node=2", "-c", code])
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("up*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 128 + signal.SIGTERM
    assert sorted(f.name for f in tmp_path.glob("term*")) == ["term0", "term1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "engine.run"], "--nproc-per-node is required"),
        (["--nproc-per-node=0", "-m", "engine.run"], "expected a whole number >= 1, got '0'"),
        (["--nproc-per-node", "two", "-m", "engine.run"], "got 'two'"),
        (["--nproc-per-node=2"], "no command given"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(args: list[str], message: str) -> None:
    p = spawn(args)
    assert p.wait(timeout=30) == 2
    assert message in p.stderr.read()


def test_spawn_launcher_is_refused_on_several_nodes(tmp_path: Path) -> None:
    text = (SYSTEMS_DIR / "local.yaml").read_text().replace("max_nodes: 1", "max_nodes: 2")
    path = tmp_path / "two.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match="launcher spawn starts the ranks of one node"):
        load_system(str(path))

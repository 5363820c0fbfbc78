"""collectives.api availability and construction; collectives.tuning tables (no GPU needed)."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist

from collectives.api import BACKENDS, AllReduceUnavailable, available_backends, make_allreduce
from collectives.tuning import LaunchParams, TuningTable, default_params, table_key, tune


@pytest.fixture
def single_process_group():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_every_backend_says_whether_it_runs_here() -> None:
    table = available_backends()
    assert set(table) == set(BACKENDS)
    for name, avail in table.items():
        assert avail.name == name
        assert avail.available == (avail.reason is None)
    assert table["gloo"].available and table["reference"].available
    if not torch.cuda.is_available():
        for name in ("nccl", "nvrar", "one-shot", "two-shot"):
            assert not table[name].available and "CUDA" in table[name].reason


def test_unknown_backend_and_missing_process_group() -> None:
    with pytest.raises(AllReduceUnavailable, match="unknown all-reduce backend 'bogus'.*known: nccl"):
        make_allreduce("bogus")
    if not dist.is_initialized():
        with pytest.raises(AllReduceUnavailable, match="init_distributed"):
            make_allreduce("gloo")


def test_construction_in_one_rank_group(single_process_group) -> None:
    ar = make_allreduce("gloo")
    x = torch.arange(6, dtype=torch.float32)
    assert ar(x) is x and torch.equal(x, torch.arange(6, dtype=torch.float32))
    assert ar.name == "gloo" and ar.world_size == 1
    ref = make_allreduce("reference-tree", gpus_per_node=1)
    assert ref.name == "reference-tree" and ref.executor.algorithm == "tree"
    with pytest.raises(ValueError, match="must be contiguous"):
        ar(torch.ones(4, 4).t())
    if not torch.cuda.is_available():
        with pytest.raises(AllReduceUnavailable, match="nvrar: no CUDA device"):
            make_allreduce("nvrar")


def test_launch_params_are_validated() -> None:
    with pytest.raises(ValueError, match="protocol"):
        LaunchParams("fast", 1, 256, 1024)
    with pytest.raises(ValueError, match="blocks"):
        LaunchParams("ll", 33, 256, 1024)
    with pytest.raises(ValueError, match="threads"):
        LaunchParams("ll", 1, 100, 1024)
    assert default_params(8, 4).protocol == "ll" and default_params(8, 4).blocks == 1
    big = default_params(16 << 20, 4)
    assert big.protocol == "simple" and big.blocks == 32


def test_tuning_table_round_trip_and_lookup(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STUDY_CACHE_DIR", str(tmp_path))
    key = table_key("NVIDIA H200", 8, 4, "bf16")
    timings = {("ll", 2): 5.0, ("simple", 8): 3.0}

    def time_call_us(size: int, p: LaunchParams) -> float:
        # LL with 2 blocks wins small sizes, SIMPLE with 8 blocks large ones, everything else is slow
        if size <= 4096:
            return timings.get((p.protocol, p.blocks), 50.0) if p.protocol == "ll" else 60.0
        return timings.get((p.protocol, p.blocks), 50.0) if p.protocol == "simple" else 60.0

    table = tune([4096, 1 << 20], time_call_us, TuningTable(key, 4))
    assert table.params(4096).protocol == "ll" and table.params(4096).blocks == 2
    assert table.params(5000).protocol == "simple" and table.params(5000).blocks == 8
    assert table.params(4 << 20) == default_params(4 << 20, 4)  # beyond the table: defaults
    path = table.save()
    assert json.loads(path.read_text())[key]["4096"]["protocol"] == "ll"
    other = TuningTable(table_key("NVIDIA H200", 8, 4, "fp16"), 4)
    other.save()
    again = TuningTable.load(key, 4)
    assert again.entries == table.entries
    assert TuningTable.load("absent", 4).entries == {}
    path.write_text("{not json")
    assert TuningTable.load(key, 4).entries == {}


def _compiled_worker(rank: int, port: int, queue) -> None:
    import torch.distributed as dist

    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
        results = {}
        for name in ("gloo", "reference"):
            ar = make_allreduce(name, gpus_per_node=1)

            def step(x: torch.Tensor, ar=ar) -> torch.Tensor:
                y = x * 2
                ar.op(y)
                return y + 1

            compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
            x = torch.arange(5, dtype=torch.float32) + rank
            results[name] = compiled(x).tolist()
            ar.close()
        dist.destroy_process_group()
        queue.put((rank, results))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        queue.put((rank, repr(exc)))


def test_custom_op_compiles_into_one_graph() -> None:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [ctx.Process(target=_compiled_worker, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    try:
        got = dict(queue.get(timeout=240) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    # 2*(x0 + x1) + 1 with x_r = arange(5) + r
    want = [2 * (2 * i + 1) + 1 for i in range(5)]
    for rank in (0, 1):
        assert got[rank] == {"gloo": want, "reference": want}, got[rank]

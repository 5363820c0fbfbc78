"""The CPU reference executor against torch.distributed.all_reduce, with real gloo processes.

Nine gloo processes; for each world size p = 2..9 the first p, as a subgroup, run every algorithm on
every topology of that size (1×p, 2×2, 2×3, 3×2, 4×2, 3×3), in place (small counts: 1, p − 1 and 7,
so fewer elements than ranks) and out of place (about 1000 elements, uneven); all four dtypes up to 4
ranks, one per algorithm (rotating) beyond. Integers must match exactly; floats (all positive, so
relative error is meaningful) within 1e-5 for fp32 and 2e-2 for fp16 / bf16, both against gloo's
all_reduce and against the float64 sum, because the schedule's reduction order differs from gloo's.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import traceback

import pytest
import torch

ALGORITHMS = ("reference", "reference-ring", "reference-rd", "reference-rabenseifner", "reference-tree")
TOPOLOGIES = {
    2: [(1, 2)],
    3: [(1, 3)],
    4: [(1, 4), (2, 2)],
    5: [(1, 5)],
    6: [(1, 6), (2, 3), (3, 2)],
    7: [(1, 7)],
    8: [(1, 8), (4, 2)],
    9: [(3, 3)],
}
DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.int32)
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-2, torch.int32: 0.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_input(rank: int, count: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed * 1000 + rank)
    if dtype == torch.int32:
        return torch.randint(-1000, 1000, (count,), generator=gen, dtype=torch.int32)
    return (torch.rand(count, generator=gen, dtype=torch.float64) + 0.5).to(dtype)


def check_one(
    rank: int,
    world: int,
    name: str,
    gpn: int,
    dtype: torch.dtype,
    count: int,
    seed: int,
    in_place: bool,
    group,
) -> str | None:
    import torch.distributed as dist

    from collectives.api import make_allreduce

    ar = make_allreduce(name, group=group, gpus_per_node=gpn)
    x = rank_input(rank, count, dtype, seed)
    theirs = x.clone()
    dist.all_reduce(theirs, group=group)
    if in_place:
        ours = ar(x)
        if ours.data_ptr() != x.data_ptr():
            return "in-place call returned another tensor"
    else:
        out = torch.full_like(x, -7)
        ours = ar.executor.all_reduce(x, out)
        if not torch.equal(x, rank_input(rank, count, dtype, seed)):
            return "out-of-place call changed its input"
    wide = torch.int64 if dtype == torch.int32 else torch.float64
    truth = sum(rank_input(r, count, dtype, seed).to(wide) for r in range(world))
    tol = TOLERANCE[dtype]
    for label, ref in (("gloo", theirs), ("float64 sum", truth)):
        if tol == 0:
            ok = torch.equal(ours.to(torch.int64), ref.to(torch.int64))
        else:
            ok = torch.allclose(ours.double(), ref.double(), rtol=tol, atol=0)
        if not ok:
            diff = (ours.double() - ref.double()).abs().max().item()
            return f"differs from {label}: max abs diff {diff}"
    return None


def worker(rank: int, size: int, port: int, queue) -> None:
    """One of `size` processes; runs the checks of each world size p <= size on the subgroup 0..p-1.

    Subgroups spare a process start-up per world size (torch imports dominate on small CI machines).
    """
    import torch.distributed as dist

    failures = []
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
        for world in sorted(TOPOLOGIES):
            group = dist.new_group(list(range(world)), backend="gloo")
            if rank >= world:
                continue
            seed = world * 10_000  # the same on every rank of the subgroup
            for nodes, gpn in TOPOLOGIES[world]:
                for a, name in enumerate(ALGORITHMS):
                    # all dtypes up to 4 ranks; beyond, one per algorithm, rotating, to keep CI within minutes
                    dtypes = DTYPES if world <= 4 else (DTYPES[(a + world) % len(DTYPES)],)
                    for k, dtype in enumerate(dtypes):
                        # a small count (fewer elements than ranks included) in place, a larger uneven one
                        # out of place; the small count rotates with the dtype
                        for count, in_place in (((1, world - 1, 7)[k % 3], True), (1001 + k, False)):
                            seed += 1
                            why = check_one(rank, world, name, gpn, dtype, count, seed, in_place, group)
                            if why:
                                failures.append(
                                    f"{nodes}x{gpn} {name} {dtype} count={count} "
                                    f"{'in' if in_place else 'out-of'}-place: {why}"
                                )
        dist.barrier()
        dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - reported to the parent, which fails the test
        failures.append(traceback.format_exc())
    queue.put((rank, failures))


def run_group(size: int) -> list[str]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=worker, args=(r, size, port, queue)) for r in range(size)]
    for p in procs:
        p.start()
    results = {}
    try:
        for _ in range(size):
            rank, failures = queue.get(timeout=600)
            results[rank] = failures
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return [f"rank {r}: {f}" for r in sorted(results) for f in results[r]]


def test_reference_matches_gloo_all_reduce() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    failures = run_group(max(TOPOLOGIES))
    assert not failures, "\n".join(failures[:20])


def test_reference_reports_topology_mismatch() -> None:
    import torch.distributed as dist

    from collectives.reference import ScheduleExecutor

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match="gpus_per_node=2 does not divide"):
            ScheduleExecutor("ring", gpus_per_node=2)
        single = ScheduleExecutor("nvrar")
        x = torch.arange(5, dtype=torch.float32)
        assert torch.equal(single.all_reduce(x.clone()), x)
    finally:
        dist.destroy_process_group()

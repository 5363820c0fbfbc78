"""All-reduce benchmark in the shape of nccl-tests' all_reduce_perf, for every backend of collectives.api.

    python -m collectives.bench -b 64K -e 2M -f 2 --algo nccl,nvrar --dtype bf16 -n 1000 -w 200 [-a 3]

Start it with one process per GPU (or per CPU rank) under torchrun, srun, mpirun or mpiexec. Each
algorithm prints one nccl-tests block: per size `size(B) count type redop root`, then the out-of-place
columns `time(us) algbw(GB/s) busbw(GB/s) #wrong` and the in-place ones, on one row. As nccl-tests,
each size runs out of place, then in place; `--out-of-place` or `--in-place` runs only that one (its
columns alone are filled). `time` is the mean time per call on each rank (CUDA events on GPUs, a
monotonic clock after a barrier on CPUs), reduced over ranks as nccl-tests' `-a/--average` says:
0 rank 0's value, 1 the mean over ranks (the default), 2 the minimum, 3 the maximum; a comment line
above the blocks names it. algbw = bytes / time and busbw = algbw · 2(n−1)/n follow from that time.
With `--graphs`, `--graph-calls` calls are captured in one CUDA graph and the graph is replayed.
`-c 1` (default) checks one call per size and placement against the exact sum: inputs are small
integers, exact in every dtype, and `#wrong` counts differing elements. On CPUs the default
algorithms are our reference schedules plus gloo's all_reduce and, when started by mpirun with mpi4py
present, Open MPI's Allreduce (`mpi`), as sanity data. Rank 0 writes results.json
(study/results.py): one sample per (algorithm, size, placement), `latency_us` the chosen statistic,
`latency_us_min/_max/_mean/_rank0` all four, and `statistic` naming the chosen one (docs/results.md).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from collectives.api import AllReduce, AllReduceUnavailable, make_allreduce
from collectives.bench_cli import (
    AVERAGE_WORDS,
    DTYPES,
    HEADER,
    NCCL_TYPE_NAMES,
    PLACEMENT_WORDS,
    BenchInputError,
    build_parser,
    check_args,
    sizes_between,
    table_row,
)
from collectives.launch import (
    LaunchInfo,
    gather_hosts,
    init_distributed,
    leave_process_group,
    runtime_versions,
)
from study import results as study_results


def pattern(rank: int, count: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Small integers per rank and element: every sum over up to 16 ranks is exact in every dtype."""
    idx = torch.arange(count, device=device, dtype=torch.int64)
    return ((idx * 7 + rank * 13) % 17 - 8).to(dtype)


def expected_sum(world: int, count: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    idx = torch.arange(count, device=device, dtype=torch.int64)
    return sum(((idx * 7 + r * 13) % 17 - 8) for r in range(world)).to(dtype)


class MpiAllReduce(AllReduce):
    """Open MPI's Allreduce through mpi4py on CPU tensors: sanity data beside gloo and our reference."""

    name = "mpi"

    def __init__(self) -> None:
        super().__init__(None)
        from mpi4py import MPI

        self.mpi = MPI
        self.comm = MPI.COMM_WORLD
        if self.comm.Get_size() != self.world_size:
            raise AllReduceUnavailable("mpi: MPI_COMM_WORLD differs from the torch.distributed world")

    def _run(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dtype not in (torch.float32, torch.int32):
            raise AllReduceUnavailable(f"mpi: MPI has no standard type for {tensor.dtype}")
        self.comm.Allreduce(self.mpi.IN_PLACE, tensor.numpy())
        return tensor


def mpi_unavailable(info: LaunchInfo) -> str | None:
    if info.launcher != "openmpi":
        return "not started by Open MPI's mpirun"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed"
    return None


class Timer:
    """Mean seconds per call of `fn` over `calls` calls, on this rank (events on GPUs, a clock on CPUs)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def measure(self, fn: Callable[[], None], calls: int) -> float:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(self.device)
            dist.barrier()
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / calls
        dist.barrier()
        t0 = time.monotonic()
        fn()
        return (time.monotonic() - t0) / calls


def reduce_over_ranks(value: float, op: Any, device: torch.device) -> float:
    on = device if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([value], dtype=torch.float64, device=on)
    dist.all_reduce(t, op=op)
    return float(t.item())


def statistics_over_ranks(value: float, device: torch.device) -> dict[str, float]:
    """This rank's value → every statistic of study.results.STATISTICS over the ranks, on every rank."""
    on = device if dist.get_backend() == "nccl" else torch.device("cpu")
    mine = torch.tensor([value], dtype=torch.float64, device=on)
    parts = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, mine)
    values = [float(t.item()) for t in parts]
    return {"rank0": values[0], "mean": sum(values) / len(values), "min": min(values), "max": max(values)}


class Measurement:
    """Runs one algorithm over all sizes: check, warm-up, timing; prints rows and returns samples."""

    def __init__(self, ar: AllReduce, args: argparse.Namespace, device: torch.device, world: int, rank: int):
        self.ar, self.args, self.device, self.world, self.rank = ar, args, device, world, rank
        self.dtype = DTYPES[args.dtype]
        self.timer = Timer(device)

    def call(self, x: torch.Tensor, out: torch.Tensor | None) -> None:
        if out is None:
            self.ar(x)
        elif hasattr(self.ar, "all_reduce_into"):
            self.ar.all_reduce_into(x, out)
        else:
            out.copy_(x)
            self.ar(out)

    def check(self, count: int, in_place: bool) -> int:
        x = pattern(self.rank, count, self.dtype, self.device)
        out = None if in_place else torch.full_like(x, -1)
        self.call(x, out)
        result = x if out is None else out
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        bad = int((result != expected_sum(self.world, count, self.dtype, self.device)).sum().item())
        return int(reduce_over_ranks(bad, dist.ReduceOp.SUM, self.device))

    def time_size(self, count: int, in_place: bool) -> float:
        args = self.args
        x = pattern(self.rank, count, self.dtype, self.device)
        out = None if in_place else torch.empty_like(x)
        for _ in range(args.warmup_iters):
            self.call(x, out)
        if not args.graphs:

            def run() -> None:
                for _ in range(args.iters):
                    self.call(x, out)

            return self.timer.measure(run, args.iters)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            for _ in range(args.graph_calls):
                self.call(x, out)
        replays = max(1, math.ceil(args.iters / args.graph_calls))
        graph.replay()

        def replay() -> None:
            for _ in range(replays):
                graph.replay()

        return self.timer.measure(replay, replays * args.graph_calls)

    def sample(self, count: int, nbytes: int, in_place: bool) -> dict[str, Any]:
        """Check, then time, one placement of one size; the sample of docs/results.md."""
        wrong = self.check(count, in_place) if self.args.check else None
        over = statistics_over_ranks(self.time_size(count, in_place), self.device)
        chosen = over[self.args.statistic]
        algbw = nbytes / chosen / 1e9
        return {
            "algorithm": self.ar.name,
            "size_bytes": nbytes,
            "count": count,
            "dtype": self.args.dtype,
            "redop": "sum",
            "graphs": bool(self.args.graphs),
            "in_place": in_place,
            "statistic": self.args.statistic,
            "latency_us": chosen * 1e6,
            "latency_us_min": over["min"] * 1e6,
            "latency_us_max": over["max"] * 1e6,
            "latency_us_mean": over["mean"] * 1e6,
            "latency_us_rank0": over["rank0"] * 1e6,
            "algbw_GBps": algbw,
            "busbw_GBps": algbw * 2 * (self.world - 1) / self.world,
            "wrong": wrong,
            "iterations": self.args.iters,
            "warmup": self.args.warmup_iters,
        }

    def run(self, sizes: list[int], emit: Callable[[str], None]) -> list[dict[str, Any]]:
        esize = torch.tensor([], dtype=self.dtype).element_size()
        samples = []
        for size in sizes:
            count = size // esize
            if count == 0:
                continue
            nbytes = count * esize
            measured = {in_place: self.sample(count, nbytes, in_place) for in_place in self.args.placements}
            emit(table_row(nbytes, count, NCCL_TYPE_NAMES[self.args.dtype], measured))
            samples.extend(measured.values())
        return samples


def tune_nvrar(ar: AllReduce, args: argparse.Namespace, device: torch.device, sizes: list[int]) -> str:
    """Measure nvrar's launch-parameter grid per size (collectively), cache it, and use it."""
    from collectives.nvrar import DTYPE_NAMES
    from collectives.tuning import TuningTable, table_key, tune

    dtype = DTYPES[args.dtype]
    key = table_key(torch.cuda.get_device_name(device), ar.world_size, ar.gpus_per_node, DTYPE_NAMES[dtype])
    table = TuningTable(key, ar.gpus_per_node)
    timer = Timer(device)

    def time_call_us(size: int, params: Any) -> float:
        x = pattern(ar.rank, max(1, size // dtype.itemsize), dtype, device)
        for _ in range(max(2, args.warmup_iters // 4)):
            ar.all_reduce_into(x, x, params)
        calls = max(5, args.iters // 4)
        mean_s = timer.measure(lambda: [ar.all_reduce_into(x, x, params) for _ in range(calls)], calls)
        return reduce_over_ranks(mean_s * 1e6, dist.ReduceOp.MAX, device)

    tune(sizes, time_call_us, table)
    ar.tuning = table
    return str(table.save()) if ar.rank == 0 else ""


def run(args: argparse.Namespace) -> int:
    info = init_distributed(_backend_for(args))
    device = torch.device("cpu")
    if args.device == "cuda":
        device = torch.device("cuda", info.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    world, rank = dist.get_world_size(), dist.get_rank()
    gpn = args.gpus_per_node or info.local_world_size
    if world % gpn:
        raise BenchInputError(f"--gpus-per-node: {gpn} does not divide {world} ranks")
    hosts = gather_hosts()
    emit = (lambda line: print(line, flush=True)) if rank == 0 else (lambda line: None)
    result = study_results.new_result(
        kind="collective",
        params={
            "collective": "all_reduce",
            "algorithms": args.algos,
            "dtype": args.dtype,
            "min_bytes": args.min_bytes,
            "max_bytes": args.max_bytes,
            "factor": args.stepfactor,
            "iterations": args.iters,
            "warmup": args.warmup_iters,
            "graphs": bool(args.graphs),
            "graph_calls": args.graph_calls if args.graphs else None,
            "placements": ["in-place" if in_place else "out-of-place" for in_place in args.placements],
            "average": args.average,
            "statistic": args.statistic,
            "check": bool(args.check),
            "device": args.device,
            "launcher": info.launcher,
        },
        topology={"nodes": world // gpn, "gpus_per_node": gpn, "world_size": world, "hosts": hosts},
    )
    result["provenance"]["versions"] = runtime_versions()
    result["provenance"]["hosts"] = hosts
    sizes = sizes_between(args.min_bytes, args.max_bytes, args.stepfactor)
    emit(
        f"# collectives.bench all_reduce: {world} ranks ({world // gpn} nodes x {gpn}), {args.device}, "
        f"{args.dtype}, {PLACEMENT_WORDS[tuple(args.placements)]}, "
        f"{f'{args.graph_calls} calls per CUDA graph' if args.graphs else 'plain launches'}, "
        f"{args.iters} iterations after {args.warmup_iters} warm-up"
    )
    emit(
        f"# time: {AVERAGE_WORDS[args.average]} (-a {args.average}) of each rank's mean time per call; "
        "algbw and busbw from it"
    )
    skipped, wrong_total = {}, 0
    for name in args.algos:
        try:
            if name == "mpi":
                reason = mpi_unavailable(info) or (None if args.device == "cpu" else "runs on CPU tensors")
                if reason:
                    raise AllReduceUnavailable(f"mpi: {reason}")
                ar: AllReduce = MpiAllReduce()
                if DTYPES[args.dtype] not in (torch.float32, torch.int32):
                    raise AllReduceUnavailable(f"mpi: MPI has no standard type for {args.dtype}")
            else:
                ar = make_allreduce(name, gpus_per_node=gpn, device=device, max_bytes=args.max_bytes)
        except AllReduceUnavailable as exc:
            skipped[name] = exc.reason
            emit(f"#\n# skipped: {exc.reason}")
            continue
        emit(f"#\n# algorithm: {name}")
        if args.autotune and name == "nvrar":
            where = tune_nvrar(ar, args, device, sizes)
            emit(f"# nvrar launch parameters tuned and cached in {where}")
        emit(HEADER)
        samples = Measurement(ar, args, device, world, rank).run(sizes, emit)
        ar.close()
        if samples:
            avg = sum(s["busbw_GBps"] for s in samples) / len(samples)
            emit(f"# Avg bus bandwidth    : {avg:.4g}")
        wrong_total += sum(s["wrong"] or 0 for s in samples)
        result["samples"].extend(samples)
    if skipped:
        result["metrics"]["algorithms_skipped"] = len(skipped)
        result["params"]["skipped"] = skipped
    result["metrics"]["wrong_total"] = wrong_total
    if wrong_total:
        result["status"], result["error"] = "failed", f"{wrong_total} wrong elements (see samples[].wrong)"
    if rank == 0:
        path = study_results.write_result(result, args.results)
        emit(f"# {len(result['samples'])} samples, {wrong_total} wrong, {len(skipped)} skipped -> {path}")
    leave_process_group()
    return 1 if wrong_total else 0


def _backend_for(args: argparse.Namespace) -> str:
    """NCCL when a GPU algorithm needs NCCL's group (nccl, one-shot, two-shot), else gloo.

    nvrar and the references need only gloo; several NVSHMEM PEs may then share one GPU, which an NCCL
    group refuses.
    """
    wants_nccl = {"nccl", "one-shot", "two-shot"} & set(args.algos)
    return "nccl" if args.device == "cuda" and wants_nccl else "gloo"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_args(args)
    except BenchInputError as exc:
        parser.print_usage(sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return run(args)
    except BenchInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - recorded as a failed result, then re-raised for the log
        if dist.is_initialized() and dist.get_rank() == 0:
            failed = study_results.new_result(
                kind="collective",
                params={"algorithms": args.algos},
                topology={"world_size": dist.get_world_size()},
            )
            failed["status"], failed["error"] = "failed", f"{type(exc).__name__}: {exc}"
            study_results.write_result(failed, args.results)
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Correctness of NVRAR on GPUs: every size, dtype and protocol against an exact sum, plain and in graphs.

Run one process per NVSHMEM PE (several may share one GPU: "virtual nodes"), e.g.

    mpirun --oversubscribe -n 8 python bench/nvrar_gpu.py --gpus-per-node 2      # 4 nodes x 2

Inputs are small integers that differ per rank, per call and per element, so every sum is exact in
fp32, fp16 and bf16 and a missing, doubled or stale contribution shows as a wrong element; each
output buffer is poisoned with NaN first so an element never written is wrong too. Checks:
in-place and out-of-place calls, both protocols, several launch shapes (one block one chunk, many
blocks and small chunks), `--calls` consecutive calls without synchronising (flow control across
calls, protocols interleaved), and `--graph-calls` calls captured in one CUDA graph replayed twice.
`--timeout-test` instead has the last rank skip a call and checks that the others raise NvrarTimeout
naming it. Timings of such runs say nothing about networks and are not printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist

from collectives.launch import init_distributed
from collectives.nvrar import NvrarAllReduce, NvrarTimeout
from collectives.tuning import LaunchParams

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SHAPES = (
    LaunchParams("ll", 1, 128, 1 << 20),
    LaunchParams("ll", 5, 256, 1024),
    LaunchParams("simple", 1, 128, 1 << 20),
    LaunchParams("simple", 7, 512, 2048),
)


def sizes_bytes(max_bytes: int) -> list[int]:
    """Powers of two from 8 B, plus sizes that leave slices, blocks and 16-bit words uneven."""
    out, s = [], 8
    while s <= max_bytes:
        out.append(s)
        s *= 2
    return sorted(set(out + [s for s in (6, 10, 1002, 65538, 1000002) if s <= max_bytes]))


def inputs(rank: int, call: int, count: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    idx = torch.arange(count, device=device, dtype=torch.int64)
    return ((idx * 7 + rank * 13 + call * 29) % 17 - 8).to(dtype)


def expected(world: int, call: int, count: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    total = sum(inputs(r, call, count, torch.float64, device) for r in range(world))
    return total.to(dtype)


def wrong(out: torch.Tensor, ref: torch.Tensor) -> int:
    return int((out.double() != ref.double()).sum().item())


def run_checks(ar: NvrarAllReduce, args: argparse.Namespace, device: torch.device) -> list[dict]:
    world, rank = ar.world_size, ar.rank
    failures: list[dict] = []
    call = 0

    def record(kind: str, dtype: str, size: int, params: LaunchParams | None, bad: int) -> None:
        if bad:
            failures.append(
                {
                    "rank": rank,
                    "kind": kind,
                    "dtype": dtype,
                    "size_bytes": size,
                    "params": None if params is None else params.__dict__,
                    "wrong": bad,
                }
            )

    for dname in args.dtypes.split(","):
        dtype = DTYPES[dname]
        esize = torch.tensor([], dtype=dtype).element_size()
        for size in sizes_bytes(args.max_bytes):
            count = size // esize
            if count == 0:
                continue
            for params in SHAPES:
                # in place
                call += 1
                x = inputs(rank, call, count, dtype, device)
                ar.all_reduce_into(x, x, params)
                record("in-place", dname, size, params, wrong(x, expected(world, call, count, dtype, device)))
                # out of place, poisoned output
                call += 1
                x = inputs(rank, call, count, dtype, device)
                out = torch.full_like(x, float("nan"))
                ar.all_reduce_into(x, out, params)
                record(
                    "out-of-place",
                    dname,
                    size,
                    params,
                    wrong(out, expected(world, call, count, dtype, device)),
                )
                ref_in = inputs(rank, call, count, dtype, device)
                record("input-untouched", dname, size, params, wrong(x, ref_in))
        # consecutive calls without synchronising, protocols and shapes interleaved
        for size in (8, 4096, 200_002, args.max_bytes):
            count = size // esize
            ins, outs, calls = [], [], []
            for _ in range(args.calls):
                call += 1
                calls.append(call)
                ins.append(inputs(rank, call, count, dtype, device))
                outs.append(torch.full_like(ins[-1], float("nan")))
            for k in range(args.calls):
                ar.all_reduce_into(ins[k], outs[k], SHAPES[k % len(SHAPES)])
            pairs = zip(outs, calls, strict=True)
            bad = sum(wrong(o, expected(world, c, count, dtype, device)) for o, c in pairs)
            record("consecutive", dname, size, None, bad)
        # CUDA graph of several calls, replayed twice
        for size in (64, 65536, args.max_bytes // 2):
            count = size // esize
            ins = [torch.empty(count, dtype=dtype, device=device) for _ in range(args.graph_calls)]
            outs = [torch.empty_like(t) for t in ins]
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.stream(stream):
                # warm-up call outside capture keeps every rank's sequence numbers in step
                call += 1
                t = inputs(rank, call, count, dtype, device)
                ar.all_reduce_into(t, t)
                stream.synchronize()
                bad = wrong(t, expected(world, call, count, dtype, device))
                record("graph-warmup", dname, size, None, bad)
                with torch.cuda.graph(graph, stream=stream):
                    for k in range(args.graph_calls):
                        ar.all_reduce_into(ins[k], outs[k], SHAPES[k % len(SHAPES)])
            for _ in range(2):
                calls = []
                for k in range(args.graph_calls):
                    call += 1
                    calls.append(call)
                    ins[k].copy_(inputs(rank, call, count, dtype, device))
                    outs[k].fill_(float("nan"))
                graph.replay()
                torch.cuda.synchronize(device)
                bad = sum(
                    wrong(outs[k], expected(world, calls[k], count, dtype, device))
                    for k in range(args.graph_calls)
                )
                record("graph", dname, size, None, bad)
        ar.check()
    return failures


def timeout_test(ar: NvrarAllReduce, device: torch.device) -> bool:
    """The last rank skips one call; every other rank must raise NvrarTimeout naming a peer."""
    x = torch.ones(1024, device=device)
    skipper = ar.world_size - 1
    if ar.rank == skipper:
        time.sleep(ar.timeout_s + 5)
        return True
    ar(x)
    try:
        ar.check()
    except NvrarTimeout as exc:
        print(f"rank {ar.rank}: raised as expected: {exc}", flush=True)
        return True
    print(f"rank {ar.rank}: no timeout raised", flush=True)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus-per-node", type=int, required=True)
    parser.add_argument("--max-bytes", type=int, default=4 << 20)
    parser.add_argument("--dtypes", default="bf16,fp16,fp32")
    parser.add_argument("--calls", type=int, default=64, help="consecutive calls without synchronising")
    parser.add_argument("--graph-calls", type=int, default=8, help="calls captured in one CUDA graph")
    parser.add_argument("--timeout-test", action="store_true")
    parser.add_argument("--report", help="write failures as JSON here (rank 0)")
    args = parser.parse_args(argv)

    info = init_distributed("gloo")
    device = torch.device("cuda", info.local_rank % torch.cuda.device_count())
    torch.cuda.set_device(device)
    t0 = time.monotonic()
    ar = NvrarAllReduce(
        gpus_per_node=args.gpus_per_node,
        device=device,
        max_bytes=args.max_bytes,
        timeout_s=5.0 if args.timeout_test else None,
    )
    world, nodes = ar.world_size, ar.world_size // args.gpus_per_node
    label = f"{nodes}x{args.gpus_per_node} ({world} PEs on {torch.cuda.device_count()} GPU(s))"
    if args.timeout_test:
        ok = timeout_test(ar, device)
        flags = [None] * world
        dist.all_gather_object(flags, ok)
        if info.rank == 0:
            print(f"timeout test {label}: {'PASS' if all(flags) else 'FAIL'}", flush=True)
        os._exit(0 if all(flags) else 1)  # the communicator is broken by design; skip NVSHMEM teardown
    failures = run_checks(ar, args, device)
    gathered: list[list[dict] | None] = [None] * world
    dist.all_gather_object(gathered, failures)
    all_failures = [f for per_rank in gathered for f in (per_rank or [])]
    if info.rank == 0:
        status = "PASS" if not all_failures else f"FAIL ({len(all_failures)} failing checks)"
        print(
            f"nvrar check {label}, sizes 6 B..{args.max_bytes} B, {args.dtypes}: {status} "
            f"[{time.monotonic() - t0:.0f} s]",
            flush=True,
        )
        for f in all_failures[:20]:
            print("  ", json.dumps(f), flush=True)
        if args.report:
            with open(args.report, "w", encoding="utf-8") as fh:
                json.dump({"topology": label, "failures": all_failures}, fh, indent=1)
    dist.barrier()
    os._exit(0 if not all_failures else 1)


if __name__ == "__main__":
    sys.exit(main())

"""Synthetic datasets with planted answers, in the documented shape (docs/results.md): test and
benchmark data, kept out of the installed packages. Timer trees are built and flattened by the
results contract's own helpers (study.results.timer_node, flatten_timers).

Tests and benchmarks need data whose right answer is known in advance: here the all-reduce time of a
tensor-parallel decode grows linearly with the GPU count while the GEMMs shrink as 1/GPUs (so
all-reduce is the planted bottleneck), NVRAR's speedup over NCCL is a planted power law of the
message size (so the crossover size is known in closed form), and repeats vary by ±1% around the
planted value (so the median of three is the planted value exactly).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from study.results import flatten_timers, timer_node

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

# Planted inference model (ms), per run at `g` GPUs; decode totals over `decode_len` steps.
DECODE_ALLREDUCE_MS_PER_GPU = 0.5  # all-reduce: 0.5·g  (log-log slope 1)
DECODE_MATMUL_MS_GPU = 400.0  # matmul: 400 / g  (slope −1)
DECODE_ATTENTION_MS_GPU = 80.0  # attention: 80 / g
DECODE_OTHER_MS = 2.0  # region exclusive time of decode
PREFILL_ALLREDUCE_MS_PER_GPU = 0.1
PREFILL_MATMUL_MS_GPU = 200.0
NVRAR_ALLREDUCE_FACTOR = 0.5  # NVRAR halves the all-reduce time in decode (prefill keeps NCCL)
REPEAT_FACTORS = (1.0, 0.99, 1.01)  # the first repeat, and the median of three, are exact

# Planted collective model: NCCL latency, and NVRAR speedup = (size / crossover) ** SPEEDUP_EXPONENT.
SPEEDUP_EXPONENT = 0.5


def crossover_bytes(nodes: int) -> float:
    """The planted size at which NVRAR and NCCL are equally fast on `nodes` nodes."""
    return 100_000.0 * nodes / 2


def nccl_latency_us(size_bytes: float, world_size: int) -> float:
    import math

    return 12.0 + 4.0 * math.log2(world_size) + size_bytes / 25_000.0


def run_id(*parts: Any) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:12]


def decode_components(gpus: int, allreduce: str, scheme: str = "TP") -> dict[str, float]:
    """The planted exclusive times (ms) under `decode` for one run."""
    comm = DECODE_ALLREDUCE_MS_PER_GPU * gpus * (NVRAR_ALLREDUCE_FACTOR if allreduce == "nvrar" else 1.0)
    if scheme == "PP":
        return {
            "send_recv": 0.2 * gpus,
            "matmul": DECODE_MATMUL_MS_GPU / 4 + gpus,
            "attention": DECODE_ATTENTION_MS_GPU / 4,
        }
    return {
        "allreduce": comm,
        "matmul": DECODE_MATMUL_MS_GPU / gpus,
        "attention": DECODE_ATTENTION_MS_GPU / gpus,
    }


def timer_tree(gpus: int, allreduce: str, scheme: str, factor: float) -> list[dict[str, Any]]:
    """A Hatchet literal tree (docs/results.md, Timers) with the planted times scaled by `factor`."""

    def node(name: str, typ: str, excl: float, calls: int, children: list | None = None) -> dict:
        inc = excl + sum(c["metrics"]["time (inc)"] for c in children or [])
        return timer_node(name, inc, children, type=typ, calls=calls, time_ms=excl)

    comm_type = "comm"
    dec = decode_components(gpus, allreduce, scheme)
    decode_children = [
        node(n, comm_type if n in ("allreduce", "send_recv") else "compute", t * factor, 64)
        for n, t in dec.items()
    ]
    prefill_children = [
        node(
            "allreduce" if scheme != "PP" else "send_recv",
            comm_type,
            PREFILL_ALLREDUCE_MS_PER_GPU * gpus * factor,
            2,
        ),
        node("matmul", "compute", PREFILL_MATMUL_MS_GPU / gpus * factor, 2),
    ]
    return [
        node(
            "generate",
            "region",
            0.5 * factor,
            1,
            [
                node("prefill", "region", 1.0 * factor, 1, prefill_children),
                node("decode", "region", DECODE_OTHER_MS * factor, 1, decode_children),
            ],
        )
    ]


def inference_frames(
    gpus: Sequence[int] = (4, 8, 16, 32),
    allreduces: Sequence[str] = ("nccl", "nvrar"),
    schemes: Sequence[str] = ("TP", "PP", "hybrid"),
    system: str = "perlmutter",
    interconnect: str = "slingshot-11",
    gpus_per_node: int = 4,
    repeats: int = 3,
    decode_len: int = 64,
    experiment: str = "scaling",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(dataset, timers) of a strong-scaling inference study with the planted model above."""
    import pandas as pd

    runs, timers = [], []
    for scheme in schemes:
        for g in gpus:
            tp, pp = {"TP": (g, 1), "PP": (1, g), "hybrid": (gpus_per_node, max(1, g // gpus_per_node))}[
                scheme
            ]
            if scheme == "hybrid" and g <= gpus_per_node:
                continue
            for ar in allreduces:
                if scheme == "PP" and ar != "nccl":
                    continue
                for r in range(repeats):
                    factor = REPEAT_FACTORS[r % len(REPEAT_FACTORS)]
                    tree = timer_tree(g, ar, "PP" if scheme == "PP" else "TP", factor)
                    rid = run_id(experiment, system, scheme, g, ar, r)
                    gen = tree[0]
                    prefill, decode = gen["children"]
                    params = {
                        "model": "llama-3.1-70b",
                        "tp": tp,
                        "pp": pp,
                        "batch_size": 16,
                        "prompt_len": 1024,
                        "decode_len": decode_len,
                        "allreduce": ar,
                    }
                    topo = {
                        "nodes": max(1, g // gpus_per_node),
                        "gpus_per_node": min(g, gpus_per_node),
                        "world_size": g,
                    }
                    runs.append(
                        {
                            "experiment": experiment,
                            "run_id": rid,
                            "repeat": r,
                            "attempt": 1,
                            "system": system,
                            "interconnect": interconnect,
                            "scheduler": "slurm",
                            "gpu": "A100",
                            "kind": "inference",
                            "status": "ok",
                            "error": None,
                            **topo,
                            **params,
                            "ttft_ms": prefill["metrics"]["time (inc)"],
                            "tbt_ms": decode["metrics"]["time (inc)"] / decode_len,
                            "e2e_ms": prefill["metrics"]["time (inc)"] + decode["metrics"]["time (inc)"],
                            "prefill_ms": prefill["metrics"]["time (inc)"],
                            "decode_ms": decode["metrics"]["time (inc)"],
                            "tokens_per_s": 16 * decode_len / (gen["metrics"]["time (inc)"] / 1000),
                            "git_sha": "0" * 40,
                            "start": "2026-01-01T00:00:00+00:00",
                            "end": None,
                            "scheduler_job_id": "1",
                        }
                    )
                    for row in flatten_timers(tree):
                        timers.append(
                            {
                                "experiment": experiment,
                                "run_id": rid,
                                "repeat": r,
                                "attempt": 1,
                                **row,
                                **params,
                                **topo,
                            }
                        )
    return pd.DataFrame(runs), pd.DataFrame(timers)


def collective_frame(
    nodes: Sequence[int] = (2, 4, 8),
    sizes: Sequence[int] = tuple(2**k for k in range(16, 22)),
    algorithms: Sequence[str] = ("nccl", "nvrar"),
    system: str = "perlmutter",
    interconnect: str = "slingshot-11",
    gpus_per_node: int = 4,
    repeats: int = 3,
    graphs: Sequence[bool] = (False,),
    experiment: str = "allreduce-latency",
    failed: int = 0,
) -> pd.DataFrame:
    """The dataset of an all-reduce latency sweep: one row per sample, planted latencies."""
    import pandas as pd

    rows = []
    for n in nodes:
        world = n * gpus_per_node
        for alg in algorithms:
            for graph in graphs:
                for r in range(repeats):
                    rid = run_id(experiment, system, n, alg, graph, r)
                    factor = REPEAT_FACTORS[r % len(REPEAT_FACTORS)]
                    base = {
                        "experiment": experiment,
                        "run_id": rid,
                        "repeat": r,
                        "attempt": 1,
                        "system": system,
                        "interconnect": interconnect,
                        "scheduler": "slurm",
                        "gpu": "A100",
                        "kind": "collective",
                        "status": "ok",
                        "error": None,
                        "nodes": n,
                        "gpus_per_node": gpus_per_node,
                        "world_size": world,
                        "git_sha": "0" * 40,
                        "start": "2026-01-01T00:00:00+00:00",
                        "end": None,
                        "scheduler_job_id": "1",
                    }
                    for size in sizes:
                        lat = nccl_latency_us(size, world)
                        if alg == "nvrar":
                            lat /= (size / crossover_bytes(n)) ** SPEEDUP_EXPONENT
                        elif alg != "nccl":
                            lat *= 1.3
                        lat *= factor
                        rows.append(
                            {
                                **base,
                                "algorithm": alg,
                                "size_bytes": size,
                                "count": size // 2,
                                "dtype": "bf16",
                                "redop": "sum",
                                "graphs": graph,
                                "in_place": True,
                                "statistic": "max",
                                "latency_us": lat,
                                "algbw_GBps": size / lat / 1e3,
                                "busbw_GBps": size / lat / 1e3 * 2 * (world - 1) / world,
                                "wrong": 0,
                                "iterations": 1000,
                                "warmup": 200,
                            }
                        )
    for i in range(failed):
        rows.append(
            {
                "experiment": experiment,
                "run_id": run_id("failed", i),
                "repeat": 0,
                "attempt": 1,
                "system": system,
                "interconnect": interconnect,
                "scheduler": "slurm",
                "gpu": "A100",
                "kind": "collective",
                "status": "failed",
                "error": "exit code 137 (out of memory?)",
                "nodes": nodes[-1],
                "gpus_per_node": gpus_per_node,
                "world_size": nodes[-1] * gpus_per_node,
            }
        )
    return pd.DataFrame(rows)


def write_workspace(folder, runs: pd.DataFrame, timers: pd.DataFrame | None = None) -> None:
    """Write dataset.parquet / timers.parquet as `study collect` does, for tests and benchmarks."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs.to_parquet(folder / "dataset.parquet", index=False)
    if timers is not None:
        timers.to_parquet(folder / "timers.parquet", index=False)

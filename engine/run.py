"""`python -m engine.run`: one inference run under srun, mpiexec, mpirun or torchrun; rank 0 writes results.

Exit codes: 0 done; 2 bad input (the message names the argument), checked before any allocation where it
can be; 1 any other failure after startup, with a `status: failed` result saying why.
"""

from __future__ import annotations

import argparse
import math
import sys
import traceback
from typing import Any

from engine.config import (
    ConfigError,
    RunConfig,
    choose_decode_kernels,
    read_prompt_file,
    resolve_model,
    validate,
)
from engine.flags import FLAGS, add_flags
from engine.workload import percentile
from study import results as study_results


def build_parser() -> argparse.ArgumentParser:
    """The command line: every flag of engine/flags.py, in its table's order."""
    return add_flags(
        argparse.ArgumentParser(prog="python -m engine.run", description=__doc__.splitlines()[0])
    )


def to_config(ns: argparse.Namespace) -> RunConfig:
    return RunConfig(**{flag.name: getattr(ns, flag.name) for flag in FLAGS})


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    from collectives.launch import detect_launch

    info = detect_launch()
    try:
        cfg = to_config(ns)
        args = resolve_model(cfg)
        validate(cfg, args, info.world_size)
        prompt_ids = (
            read_prompt_file(cfg.prompt_file, cfg.batch_size, cfg.prompt_len, args.vocab_size)
            if cfg.prompt_file
            else None
        )
    except ConfigError as exc:
        print(f"engine.run: error: {exc}", file=sys.stderr)
        return 2
    gpn = cfg.gpus_per_node or info.local_world_size
    topology = {
        "nodes": math.ceil(info.world_size / gpn),
        "gpus_per_node": gpn,
        "world_size": info.world_size,
        "hosts": [],
    }
    result = study_results.new_result(kind="inference", params=cfg.as_params(), topology=topology)
    try:
        run(cfg, args, info, prompt_ids, result, ns.tokens_out)
    except ConfigError as exc:
        return fail(result, cfg, info.rank, f"{exc}", 2)
    except Exception as exc:  # noqa: BLE001 - any failure after startup is recorded, then exit 1
        traceback.print_exc()
        return fail(result, cfg, info.rank, f"{type(exc).__name__}: {exc}", 1)
    from collectives.launch import leave_process_group

    leave_process_group()
    return 0


def fail(result: dict[str, Any], cfg: RunConfig, rank: int, error: str, code: int) -> int:
    print(f"engine.run: error (rank {rank}): {error}", file=sys.stderr)
    if rank == 0:
        result.update(status="failed", error=error)
        study_results.write_result(result, cfg.results)
    return code


def run(
    cfg: RunConfig,
    args: Any,
    info: Any,
    prompt_ids: list[list[int]] | None,
    result: dict[str, Any],
    tokens_out: str | None,
) -> None:
    import torch
    import torch.distributed as dist

    from collectives.launch import gather_hosts, init_distributed, runtime_versions
    from engine.generate import Engine
    from engine.parallel import make_parallel
    from engine.timers import Timers, literal_tree
    from engine.workload import random_prompts

    device_type = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device", "cuda asked for but torch sees no GPU")
    # Chosen once, here, before any process group or allocation: a choice that cannot run is refused
    # at no cost, and the engine is given the concrete choice.
    cfg.decode_kernels = choose_decode_kernels(
        cfg.decode_kernels, torch.device(device_type), cfg.batch_size // cfg.micro_batches
    )
    result["provenance"]["decode_kernels"] = cfg.decode_kernels
    if info.world_size > 1:
        init_distributed("nccl" if device_type == "cuda" else "gloo")
    device = (
        torch.device(device_type, info.local_rank % torch.cuda.device_count())
        if device_type == "cuda"
        else torch.device("cpu")
    )
    if device.type == "cuda":
        torch.cuda.set_device(device)
    result["topology"]["hosts"] = gather_hosts()
    result["provenance"]["versions"] = runtime_versions()
    result["provenance"]["hosts"] = result["topology"]["hosts"]
    par = make_parallel(
        cfg.tp,
        cfg.pp,
        device=device,
        allreduce=cfg.allreduce,
        prefill_allreduce=cfg.prefill_allreduce,
        gpus_per_node=result["topology"]["gpus_per_node"],
    )
    engine = Engine(args, par, cfg)
    prompts = (
        torch.tensor(prompt_ids)
        if prompt_ids is not None
        else random_prompts(cfg.batch_size, cfg.prompt_len, args.vocab_size, cfg.seed)
    )
    for _ in range(cfg.warmup):
        engine.generate(prompts)
    if info.world_size > 1:
        dist.barrier()
    timers = Timers(device)
    if cfg.breakdown:
        par.timer = timers.region
    gen = engine.generate(prompts, timers)
    par.timer = None
    mine = {
        "rank": info.rank,
        "last": par.layout.is_last and par.layout.tp_rank == 0,
        "ttft": gen.ttft_ms,
        "steps": gen.step_ms,
        "e2e": gen.e2e_ms,
        "totals": timers.totals(),
        "weight_bytes": engine.weight_bytes,
        "tokens": gen.tokens.tolist() if gen.tokens is not None and par.layout.tp_rank == 0 else None,
    }
    everyone = [mine]
    if info.world_size > 1:
        everyone = [None] * info.world_size
        dist.all_gather_object(everyone, mine)
    if info.rank != 0:
        return
    last = next(r for r in everyone if r["last"])
    steps = last["steps"]
    decode_ms = last["e2e"] - last["ttft"]
    result["metrics"] = {
        "ttft_ms": last["ttft"],
        "tbt_ms": sum(steps) / len(steps) if steps else None,
        "tbt_p50_ms": percentile(steps, 50),
        "tbt_p99_ms": percentile(steps, 99),
        "e2e_ms": last["e2e"],
        "tokens_per_s": cfg.batch_size * cfg.decode_len / (last["e2e"] / 1000.0),
        "prefill_ms": last["ttft"],
        "decode_ms": decode_ms,
        "weights_gb": everyone[0]["weight_bytes"] / 1e9,
        "weights_gb_max": max(r["weight_bytes"] for r in everyone) / 1e9,
    }
    result["timers"] = literal_tree([r["totals"] for r in everyone])
    if tokens_out:
        study_results.atomic_write_text(
            tokens_out, "".join(" ".join(map(str, row)) + "\n" for row in last["tokens"])
        )
    study_results.write_result(result, cfg.results)
    m = result["metrics"]
    print(
        f"engine.run: {f'checkpoint {cfg.weights}' if cfg.weights else cfg.model} tp={cfg.tp} pp={cfg.pp} "
        f"batch={cfg.batch_size}: "
        f"ttft {m['ttft_ms']:.2f} ms, "
        f"tbt {m['tbt_ms'] or 0:.3f} ms, e2e {m['e2e_ms']:.1f} ms, {m['tokens_per_s']:.1f} tok/s"
    )


if __name__ == "__main__":
    sys.exit(main())

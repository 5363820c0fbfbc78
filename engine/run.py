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

from collectives.dtypes import FLOAT_DTYPES
from engine.config import (
    ConfigError,
    RunConfig,
    choose_decode_kernels,
    read_prompt_file,
    resolve_model,
    validate,
)
from engine.workload import percentile
from study import results as study_results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.run", description=__doc__.splitlines()[0])
    p.add_argument(
        "--model", default="tiny", help="preset name (llama3.1-8b, llama3.1-70b, llama3.1-405b, tiny…)"
    )
    p.add_argument(
        "--weights",
        help="Hugging Face checkpoint folder (config.json + *.safetensors); its config.json sets the shape",
    )
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel degree (contiguous ranks)")
    p.add_argument("--pp", type=int, default=1, help="pipeline stages")
    p.add_argument("--pp-split", help="layers per stage, comma-separated (default: even, remainder first)")
    p.add_argument(
        "--micro-batches", type=int, default=1, help="micro-batches per step (divides --batch-size)"
    )
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument(
        "--decode-len", type=int, default=8, help="tokens generated per prompt (the first by prefill)"
    )
    p.add_argument("--prompt-file", help="token ids, one prompt a line (else random ids from --seed)")
    p.add_argument(
        "--allreduce",
        help="decode all-reduce: nccl, gloo, nvrar, one-shot, two-shot, reference "
        "(default: the process group's backend)",
    )
    p.add_argument("--prefill-allreduce", help="prefill all-reduce (default: the process group's backend)")
    p.add_argument("--vocab-parallel", action="store_true", help="shard the LM head over TP ranks")
    p.add_argument("--dtype", choices=FLOAT_DTYPES, help="default bf16 on GPUs, fp32 on CPUs")
    p.add_argument("--device", choices=("cuda", "cpu"), help="default cuda when available")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="torch.compile the decode step",
    )
    p.add_argument(
        "--cuda-graphs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --compile: mode reduce-overhead (CUDA graphs)",
    )
    p.add_argument(
        "--decode-kernels",
        default="auto",
        choices=("auto", "torch", "attention", "fused"),
        help="decode step: torch (SDPA, cuBLAS), attention (our Triton decode attention), fused (also our "
        "matrix-vector products for the attention-output and down projections, SwiGLU and residual adds "
        "fused in; up to 16 sequences per micro-batch); auto = fused for one sequence per micro-batch and "
        "attention for more on GPUs with Triton, torch elsewhere",
    )
    p.add_argument(
        "--breakdown", action="store_true", help="time each part of a layer (eager; max/mean over ranks)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of random weights and prompts")
    p.add_argument("--warmup", type=int, default=1, help="untimed generate passes first (compile, caches)")
    p.add_argument("--gpus-per-node", type=int, help="ranks per node (default: from the launcher)")
    p.add_argument("--tokens-out", help="write the generated token ids here, one sequence a line (rank 0)")
    p.add_argument("--results", help="results.json path (default: $STUDY_RESULTS, else ./results.json)")
    return p


def to_config(ns: argparse.Namespace) -> RunConfig:
    split = None
    if ns.pp_split:
        try:
            split = [int(x) for x in ns.pp_split.split(",")]
        except ValueError as exc:
            raise ConfigError(
                "--pp-split", f"{ns.pp_split!r} is not a comma-separated list of integers"
            ) from exc
    return RunConfig(
        model=ns.model,
        tp=ns.tp,
        pp=ns.pp,
        batch_size=ns.batch_size,
        prompt_len=ns.prompt_len,
        decode_len=ns.decode_len,
        allreduce=ns.allreduce,
        prefill_allreduce=ns.prefill_allreduce,
        dtype=ns.dtype,
        device=ns.device,
        compile=ns.compile,
        cuda_graphs=ns.cuda_graphs,
        micro_batches=ns.micro_batches,
        pp_split=split,
        vocab_parallel=ns.vocab_parallel,
        breakdown=ns.breakdown,
        seed=ns.seed,
        weights=ns.weights,
        prompt_file=ns.prompt_file,
        warmup=ns.warmup,
        gpus_per_node=ns.gpus_per_node,
        results=ns.results,
        decode_kernels=ns.decode_kernels,
    )


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
    from engine.generate import DTYPES, Engine
    from engine.parallel import make_parallel
    from engine.timers import Timers, literal_tree
    from engine.workload import random_prompts

    device_type = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device", "cuda asked for but torch sees no GPU")
    dtype = DTYPES[cfg.dtype or ("bf16" if device_type == "cuda" else "fp32")]
    # Refused here, before any process group or allocation, when the kernels asked for cannot run.
    kernels = choose_decode_kernels(
        cfg.decode_kernels, torch.device(device_type), cfg.batch_size // cfg.micro_batches
    )
    result["provenance"]["decode_kernels"] = kernels
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
    engine = Engine(
        args,
        par,
        batch_size=cfg.batch_size,
        prompt_len=cfg.prompt_len,
        decode_len=cfg.decode_len,
        micro_batches=cfg.micro_batches,
        dtype=dtype,
        pp_split=cfg.pp_split,
        vocab_parallel=cfg.vocab_parallel,
        seed=cfg.seed,
        weights=cfg.weights,
        compile=cfg.compile,
        cuda_graphs=cfg.cuda_graphs,
        decode_kernels=cfg.decode_kernels,
    )
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

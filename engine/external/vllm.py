"""`python -m engine.external.vllm`: one inference run of vLLM, measured like `engine.run`.

Method (docs/engines.md): vLLM's offline engine (`LLM`, whose `LLMEngine` is stepped by hand) with
its engine core in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0), so requests are scheduled only
when we step. All `batch_size` requests (token-id prompts, greedy, `ignore_eos`, exactly
`decode_len` new tokens each) are added, then `step()` is called until they finish, with a host
clock read after every step. TTFT is the time until every request has its first token (the whole
batch's prefill, as the bundled engine's `ttft_ms`); TBT is the time of each later step that gave
every running request one more token; E2E is the time until the last token; tokens/s is batch x
decode_len / E2E. `--warmup` untimed passes come first. Start-up (loading, compiling, the KV cache)
is reported apart as `startup_s`.

One process per node. On several nodes (vLLM's multi-node multiprocessing mode) node 0 runs the
engine with `nnodes`, `node_rank=0` and `master_addr` (the job's $MASTER_ADDR); every other node
runs vLLM's headless workers (`vllm serve --headless --node-rank R`) until node 0 writes the
done-file beside the results, then stops them.

Exit codes as engine.run: 0 done, 2 bad input (naming the argument), 1 a failure after start-up,
with a `status: failed` result saying why.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from collectives.dtypes import FLOAT_DTYPES, TORCH_NAMES
from engine.config import PRESETS, ConfigError, ModelArgs, model_args_from_hf, read_prompt_file
from engine.flags import add_flags
from engine.workload import percentile, random_prompts
from study import results as study_results

ENGINE = "vllm"
DONE_SUFFIX = ".vllm-done"
_DTYPES = {name: TORCH_NAMES[name] for name in FLOAT_DTYPES}  # vLLM spells them as torch does


# The bundled engine's flags (engine/flags.py) whose meaning vLLM shares, in vLLM's words where they differ.
SHARED_FLAGS = (
    "model",
    "weights",
    "tp",
    "pp",
    "batch_size",
    "prompt_len",
    "decode_len",
    "prompt_file",
    "dtype",
    "device",
    "cuda_graphs",
    "seed",
    "warmup",
    "gpus_per_node",
    "tokens_out",
    "results",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.external.vllm", description=__doc__.splitlines()[0])
    add_flags(
        p,
        only=SHARED_FLAGS,
        helps={
            "model": "preset name (random weights of that shape) ...",
            "weights": "Hugging Face checkpoint folder (wins over --model)",
            "device": "default: what vLLM's platform is",
            "cuda_graphs": "vLLM's CUDA graphs and compilation (--no-cuda-graphs: enforce_eager)",
            "seed": "seed of the prompts and of dummy weights",
            "warmup": "untimed passes first",
            "gpus_per_node": "GPUs per node (vLLM's workers per node)",
        },
        defaults={"gpus_per_node": 1},
    )
    p.add_argument(
        "--master-port",
        type=int,
        help="multi-node: vLLM's torch.distributed port (default: the job's $MASTER_PORT + 1)",
    )
    return p


def check(ns: argparse.Namespace) -> ModelArgs:
    """Bad input, refused before vLLM is imported: ConfigError naming the argument."""
    for key in ("tp", "pp", "batch_size", "prompt_len", "decode_len", "gpus_per_node"):
        if getattr(ns, key) < 1:
            raise ConfigError(f"--{key.replace('_', '-')}", f"must be at least 1, got {getattr(ns, key)}")
    if ns.weights:
        args = model_args_from_hf(ns.weights)
    elif ns.model in PRESETS:
        args = PRESETS[ns.model]
    else:
        raise ConfigError("--model", f"unknown preset {ns.model!r}; known: {', '.join(sorted(PRESETS))}")
    if args.n_heads % ns.tp:
        raise ConfigError("--tp", f"{ns.tp} does not divide the model's {args.n_heads} attention heads")
    if args.n_layers < ns.pp:
        raise ConfigError("--pp", f"{ns.pp} stages for {args.n_layers} layers")
    if (ns.tp * ns.pp) % ns.gpus_per_node:
        raise ConfigError("--gpus-per-node", f"{ns.gpus_per_node} does not divide tp x pp = {ns.tp * ns.pp}")
    if ns.prompt_len + ns.decode_len > args.max_seq_len:
        raise ConfigError("--prompt-len", f"prompt + decode exceeds the model's {args.max_seq_len} positions")
    return args


def hf_config(args: ModelArgs) -> dict[str, Any]:
    """A Llama config.json of the preset's shape, for vLLM's dummy (random) weights."""
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": args.rope_theta}
    if args.rope_scaling:
        rope = {"rope_type": "llama3", "rope_theta": args.rope_theta, **args.rope_scaling}
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": args.dim,
        "intermediate_size": args.ffn_dim,
        "num_hidden_layers": args.n_layers,
        "num_attention_heads": args.n_heads,
        "num_key_value_heads": args.n_kv_heads,
        "head_dim": args.head_dim,
        "vocab_size": args.vocab_size,
        "rms_norm_eps": args.norm_eps,
        "rope_theta": args.rope_theta,
        "rope_scaling": rope,
        "max_position_embeddings": args.max_seq_len,
        "tie_word_embeddings": args.tie_embeddings,
        "torch_dtype": "bfloat16",
        "bos_token_id": 0,
        "eos_token_id": 1,
    }


def model_folder(ns: argparse.Namespace, args: ModelArgs) -> tuple[str, str]:
    """(folder vLLM loads, load format): the checkpoint, or a config-only folder with dummy weights."""
    if ns.weights:
        return str(Path(ns.weights).resolve()), "auto"
    folder = Path(tempfile.mkdtemp(prefix=f"vllm-{ns.model}-"))
    (folder / "config.json").write_text(json.dumps(hf_config(args), indent=1))
    return str(folder), "dummy"


def engine_kwargs(ns: argparse.Namespace, folder: str, load_format: str, nodes: int, node_rank: int) -> dict:
    """The `LLM(...)` / `vllm serve` arguments of this run (its effective configuration is recorded)."""
    positions = ns.prompt_len + ns.decode_len
    kwargs: dict[str, Any] = {
        "model": folder,
        "load_format": load_format,
        "skip_tokenizer_init": True,
        "tensor_parallel_size": ns.tp,
        "pipeline_parallel_size": ns.pp,
        "max_model_len": 16 * ((positions + 15) // 16),
        "max_num_seqs": ns.batch_size,
        # the whole batch's prefill in one step, as the bundled engine does it
        "max_num_batched_tokens": max(ns.batch_size * ns.prompt_len, 2048),
        "enforce_eager": not ns.cuda_graphs,
        "seed": ns.seed,
    }
    if ns.dtype:
        kwargs["dtype"] = _DTYPES[ns.dtype]
    if nodes > 1:
        kwargs.update(
            distributed_executor_backend="mp",
            nnodes=nodes,
            node_rank=node_rank,
            master_addr=os.environ.get("MASTER_ADDR", "127.0.0.1"),
            master_port=ns.master_port or int(os.environ.get("MASTER_PORT", "29500")) + 1,
        )
    return kwargs


def node_rank_and_count() -> tuple[int, int]:
    """This process's node index and the node count, from the launcher (one process per node)."""
    from collectives.launch import detect_launch

    info = detect_launch()
    return info.rank, info.world_size


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        args = check(ns)
        prompt_ids = (
            read_prompt_file(ns.prompt_file, ns.batch_size, ns.prompt_len, args.vocab_size)
            if ns.prompt_file
            else None
        )
    except ConfigError as exc:
        print(f"engine.external.vllm: error: {exc}", file=sys.stderr)
        return 2
    node_rank, nodes = node_rank_and_count()
    results_path = study_results.default_results_path(ns.results)
    if node_rank > 0:
        return run_headless_workers(ns, args, nodes, node_rank, results_path)
    topology = {
        "nodes": nodes,
        "gpus_per_node": ns.gpus_per_node,
        "world_size": ns.tp * ns.pp,
        "hosts": [],
    }
    params = {
        "engine": ENGINE,
        "model": ns.model,
        "weights": ns.weights,
        "tp": ns.tp,
        "pp": ns.pp,
        "batch_size": ns.batch_size,
        "prompt_len": ns.prompt_len,
        "decode_len": ns.decode_len,
        "dtype": ns.dtype,
        "seed": ns.seed,
        "warmup": ns.warmup,
        "cuda_graphs": ns.cuda_graphs,
    }
    result = study_results.new_result(kind="inference", params=params, topology=topology)
    try:
        run(ns, args, prompt_ids, result, nodes)
    except Exception as exc:  # noqa: BLE001 - any failure after start-up is recorded, then exit 1
        traceback.print_exc()
        result.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        study_results.write_result(result, results_path)
        print(f"engine.external.vllm: error: {result['error']}", file=sys.stderr)
        return 1
    finally:
        if nodes > 1:
            Path(str(results_path) + DONE_SUFFIX).touch()
    return 0


def run(
    ns: argparse.Namespace, args: ModelArgs, prompt_ids: list[list[int]] | None, result: dict, nodes: int
) -> None:
    # Schedule only when we step (the engine core in this process), and keep vLLM's CPU KV cache
    # small unless the site set it: a benchmark of `batch_size` sequences needs little.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    import socket

    import torch
    import vllm
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    folder, load_format = model_folder(ns, args)
    kwargs = engine_kwargs(ns, folder, load_format, nodes, 0)
    started = time.perf_counter()
    llm = LLM(**kwargs)
    startup_s = time.perf_counter() - started
    engine = llm.llm_engine
    prompts = (
        prompt_ids
        if prompt_ids is not None
        else random_prompts(ns.batch_size, ns.prompt_len, args.vocab_size, ns.seed).tolist()
    )
    params = SamplingParams(
        temperature=0.0, max_tokens=ns.decode_len, min_tokens=ns.decode_len, ignore_eos=True, detokenize=False
    )
    for k in range(ns.warmup):
        _timed_pass(engine, prompts, params, f"warmup{k}", TokensPrompt)
    stamps, counts, tokens = _timed_pass(engine, prompts, params, "run", TokensPrompt)
    batch = len(prompts)
    first = next(i for i, c in enumerate(counts) if c >= batch)  # every request has its first token
    ttft = stamps[first]
    steps = [b - a for a, b in zip(stamps[first:], stamps[first + 1 :], strict=False)]
    e2e = stamps[-1]
    result["metrics"] = {
        "ttft_ms": ttft,
        "tbt_ms": sum(steps) / len(steps) if steps else None,
        "tbt_p50_ms": percentile(steps, 50),
        "tbt_p99_ms": percentile(steps, 99),
        "e2e_ms": e2e,
        "tokens_per_s": batch * ns.decode_len / (e2e / 1000.0),
        "prefill_ms": ttft,
        "decode_ms": e2e - ttft,
        "startup_s": startup_s,
        "steps": len(stamps),
    }
    result["timers"] = study_results.timers_from_nested(
        {
            "generate": {
                "time_ms": e2e,
                "children": {
                    "prefill": {"time_ms": ttft},
                    "decode": {"time_ms": e2e - ttft, "calls": max(1, len(steps))},
                },
            }
        }
    )
    config = engine.vllm_config
    result["topology"]["hosts"] = [socket.gethostname()]
    result["provenance"]["engine"] = ENGINE
    result["provenance"]["versions"] = {"vllm": vllm.__version__, "torch": torch.__version__}
    result["provenance"]["hosts"] = result["topology"]["hosts"]
    result["provenance"]["engine_config"] = effective_config(config, kwargs)
    if ns.tokens_out:
        study_results.atomic_write_text(
            ns.tokens_out, "".join(" ".join(map(str, row)) + "\n" for row in tokens)
        )
    study_results.write_result(result, study_results.default_results_path(ns.results))
    m = result["metrics"]
    print(
        f"engine.external.vllm: {f'checkpoint {ns.weights}' if ns.weights else ns.model} "
        f"tp={ns.tp} pp={ns.pp} "
        f"batch={batch}: ttft {m['ttft_ms']:.2f} ms, tbt {m['tbt_ms'] or 0:.3f} ms, "
        f"e2e {m['e2e_ms']:.1f} ms, {m['tokens_per_s']:.1f} tok/s (start-up {startup_s:.1f} s)"
    )


def _timed_pass(engine: Any, prompts: list[list[int]], params: Any, tag: str, tokens_prompt: Any):
    """Add every request, step until all finish; (ms after the start at each step's end, tokens made
    so far summed over requests at each step, the generated ids per request in batch order)."""
    for i, ids in enumerate(prompts):
        engine.add_request(f"{tag}-{i}", tokens_prompt(prompt_token_ids=list(ids)), params)
    made: dict[str, list[int]] = {}
    stamps: list[float] = []
    counts: list[int] = []
    start = time.perf_counter()
    while engine.has_unfinished_requests():
        outputs = engine.step()
        now = (time.perf_counter() - start) * 1000.0
        for out in outputs:
            made[out.request_id] = list(out.outputs[0].token_ids)
        stamps.append(now)
        counts.append(sum(1 for ids in made.values() if ids))
    tokens = [made[f"{tag}-{i}"] for i in range(len(prompts))]
    return stamps, counts, tokens


def effective_config(config: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What vLLM chose, beside what was asked: parallelism, dtype, scheduler and cache limits."""
    par, model, sched, cache = (
        config.parallel_config,
        config.model_config,
        config.scheduler_config,
        config.cache_config,
    )
    chosen = {
        "tensor_parallel_size": par.tensor_parallel_size,
        "pipeline_parallel_size": par.pipeline_parallel_size,
        "distributed_executor_backend": str(par.distributed_executor_backend),
        "nnodes": getattr(par, "nnodes", 1),
        "dtype": str(model.dtype),
        "max_model_len": model.max_model_len,
        "enforce_eager": model.enforce_eager,
        "max_num_seqs": sched.max_num_seqs,
        "max_num_batched_tokens": sched.max_num_batched_tokens,
        "block_size": cache.block_size,
        "device": str(config.device_config.device),
    }
    asked = {k: v for k, v in kwargs.items() if k != "model"}
    return {"asked": asked, "chosen": chosen}


def run_headless_workers(
    ns: argparse.Namespace, args: ModelArgs, nodes: int, node_rank: int, results_path: Path
) -> int:
    """Node `node_rank` > 0: vLLM's headless workers for node 0's engine, until its done-file appears
    (or they end by themselves); then stop them. Exit 0 once node 0 is done, else the workers' code."""
    folder, load_format = model_folder(ns, args)
    kwargs = engine_kwargs(ns, folder, load_format, nodes, node_rank)
    argv = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", kwargs.pop("model"), "--headless"]
    for key, value in kwargs.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False:
            argv += [flag, str(value)]
    workers = subprocess.Popen(argv)
    done = Path(str(results_path) + DONE_SUFFIX)
    while workers.poll() is None:
        if done.exists():
            workers.send_signal(signal.SIGTERM)
            try:
                workers.wait(timeout=60)
            except subprocess.TimeoutExpired:
                workers.kill()
            return 0
        time.sleep(1.0)
    return 0 if done.exists() else int(workers.returncode or 1)


if __name__ == "__main__":
    sys.exit(main())

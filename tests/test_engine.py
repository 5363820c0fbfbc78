"""The engine on CPU: TP / PP / TP x PP against one rank, logits against Hugging Face, the CLI contract.

Real processes with gloo throughout. Checks are grouped per process launch to keep the file short on
two cores: one spawn of four processes runs every parallel layout, one torchrun runs the CLI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from engine.config import (
    PRESETS,
    ConfigError,
    ModelArgs,
    RunConfig,
    model_args_from_hf,
    read_prompt_file,
    stage_layers,
    validate,
)
from engine.generate import Engine
from engine.model import StageModel
from engine.parallel import Layout, Parallel, make_parallel, shard_of
from engine.workload import random_prompts
from study.results import read_result

ROOT = Path(__file__).resolve().parents[1]
BATCH, PROMPT, DECODE = 4, 8, 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_checkpoint(folder: Path, sharded: bool) -> Path:
    """A random LlamaForCausalLM (GQA, Llama-3.1 rope scaling) written by save_pretrained."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=256,
        max_position_embeddings=1024,
        rms_norm_eps=1e-5,
        initializer_range=0.2,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 10000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    )
    torch.manual_seed(1)
    model = transformers.LlamaForCausalLM(cfg).eval()
    model.save_pretrained(folder, max_shard_size="100KB" if sharded else "1GB")
    return folder


def run_engine(args, tp: int, pp: int, ranks: list[int], *, allreduce: str | None = None, **kw) -> Engine:
    par = make_parallel(tp, pp, device=torch.device("cpu"), ranks=ranks, allreduce=allreduce, gpus_per_node=2)
    return Engine(args, par, RunConfig(batch_size=BATCH, prompt_len=PROMPT, decode_len=DECODE, **kw))


def _worker(rank: int, world: int, port: int, ckpt: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    args = PRESETS["tiny"]
    prompts = random_prompts(BATCH, PROMPT, args.vocab_size, seed=3)
    ref = run_engine(args, 1, 1, [rank], seed=7).generate(prompts, keep_logits=True)
    ck_args = model_args_from_hf(ckpt)
    ck_ref = run_engine(ck_args, 1, 1, [rank], weights=ckpt).generate(prompts, keep_logits=True)

    def check(name: str, gen, want) -> None:
        if gen.tokens is None:
            return
        assert torch.equal(gen.tokens, want.tokens), f"{name}: tokens differ from one rank on rank {rank}"
        diff = max((a - b).abs().max().item() for a, b in zip(gen.logits, want.logits, strict=True))
        assert diff < 1e-4, f"{name}: logits differ by {diff} on rank {rank}"

    everyone = list(range(world))
    layouts = [
        ("tp4", 4, 1, {}),
        ("pp4", 1, 4, {"micro_batches": 2}),
        ("tp2xpp2", 2, 2, {"micro_batches": 2}),
        ("tp4-vocab-parallel", 4, 1, {"vocab_parallel": True}),
        ("pp2x2-split", 2, 2, {"pp_split": [3, 1]}),
        # Decode all-reduce through collectives.api: the CPU reference of NVRAR's hierarchical schedule.
        ("tp4-reference-allreduce", 4, 1, {"allreduce": "reference"}),
    ]
    for name, tp, pp, kw in layouts:
        check(name, run_engine(args, tp, pp, everyone, seed=7, **kw).generate(prompts, keep_logits=True), ref)
    # The checkpoint loader: each rank reads only its slices (TP 4 replicates the 2 KV heads).
    for name, tp, pp in (("ckpt tp4", 4, 1), ("ckpt tp2xpp2", 2, 2)):
        check(
            name,
            run_engine(ck_args, tp, pp, everyone, weights=ckpt).generate(prompts, keep_logits=True),
            ck_ref,
        )
    # A backend collectives.api cannot run here is bad input naming the flag, not a crash.
    try:
        make_parallel(4, 1, device=torch.device("cpu"), allreduce="nvrar", gpus_per_node=4)
    except ConfigError as exc:
        assert exc.key == "--allreduce" and "nvrar" in str(exc), exc
    else:
        raise AssertionError("nvrar on CPUs was accepted")
    # Two engines side by side on halves of the world: TP 2 and PP 2 with micro-batches. Last, since the
    # halves then have created different numbers of groups.
    pair = [0, 1] if rank < 2 else [2, 3]
    tp, pp, kw = (2, 1, {}) if rank < 2 else (1, 2, {"micro_batches": 4})
    check(
        f"{tp=} {pp=} on {pair}",
        run_engine(args, tp, pp, pair, seed=7, **kw).generate(prompts, keep_logits=True),
        ref,
    )
    dist.barrier()
    dist.destroy_process_group()


def test_parallel_layouts_match_one_rank(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "ckpt", sharded=True)
    assert (ckpt / "model.safetensors.index.json").exists()
    mp.spawn(_worker, args=(4, free_port(), str(ckpt)), nprocs=4, join=True)


def test_logits_equal_hugging_face(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "ckpt", sharded=False)
    transformers = pytest.importorskip("transformers")
    args = model_args_from_hf(ckpt)
    assert args.rope_scaling and args.n_kv_heads == 2
    prompts = random_prompts(BATCH, PROMPT, args.vocab_size, seed=5)
    gen = run_engine(args, 1, 1, [0], weights=str(ckpt)).generate(prompts, keep_logits=True)
    hf = transformers.LlamaForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float32).eval()
    seq = torch.cat([prompts, gen.tokens[:, :-1]], dim=1)
    with torch.no_grad():
        want = hf(seq).logits[:, PROMPT - 1 :]
    got = torch.stack(gen.logits, dim=1)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-4
    assert torch.equal(gen.tokens, want.argmax(-1))


@pytest.mark.parametrize(
    ("change", "world", "key"),
    [
        ({"tp": 3}, 2, "--tp/--pp"),
        ({"tp": 16}, 16, "--tp"),
        ({"pp": 8}, 8, "--pp"),
        ({"pp": 2, "pp_split": [4, 1]}, 2, "--pp-split"),
        ({"batch_size": 3, "micro_batches": 2}, 1, "--micro-batches"),
        ({"decode_len": 0}, 1, "--decode-len"),
        ({"prompt_len": 1020}, 1, "--prompt-len"),
        ({"breakdown": True, "compile": True}, 1, "--breakdown"),
        ({"dtype": "int8"}, 1, "--dtype"),
    ],
)
def test_bad_configurations_name_the_argument(change: dict, world: int, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(RunConfig(**change), PRESETS["tiny"], world)
    assert info.value.key == key


def test_kv_heads_not_divisible_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        validate(RunConfig(tp=3), ModelArgs(dim=96, n_layers=2, n_heads=6, n_kv_heads=2, ffn_dim=96), 3)
    assert info.value.key == "--tp"


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "STUDY_RESULTS", "STUDY_RUN_ID"):
        env.pop(key, None)
    return env


def test_cli_bad_input_exits_2_before_starting(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.run",
            "--model",
            "tiny",
            "--tp",
            "2",
            "--results",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert "--tp/--pp" in out.stderr
    assert not (tmp_path / "r.json").exists()
    out = subprocess.run(
        [sys.executable, "-m", "engine.run", "--model", "nope"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "--model" in out.stderr


def test_cli_failure_after_start_writes_failed_result(tmp_path: Path) -> None:
    ckpt = tmp_path / "broken"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(
        json.dumps(
            {
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "intermediate_size": 128,
                "vocab_size": 256,
            }
        )
    )
    (ckpt / "model.safetensors").write_bytes(b"not a safetensors file")
    res = tmp_path / "r.json"
    out = subprocess.run(
        [sys.executable, "-m", "engine.run", "--weights", str(ckpt), "--results", str(res)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
    )
    assert out.returncode == 1, out.stderr
    data = read_result(res)
    assert data["status"] == "failed" and data["error"]


def test_cli_tp2_pp2_breakdown_result(tmp_path: Path) -> None:
    res, toks = tmp_path / "results.json", tmp_path / "tokens.txt"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "4",
        "-m",
        "engine.run",
        "--model",
        "tiny",
        "--tp",
        "2",
        "--pp",
        "2",
        "--batch-size",
        "4",
        "--micro-batches",
        "2",
        "--prompt-len",
        "8",
        "--decode-len",
        "5",
        "--allreduce",
        "gloo",
        "--breakdown",
        "--warmup",
        "0",
        "--results",
        str(res),
        "--tokens-out",
        str(toks),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    data = read_result(res)
    assert data["status"] == "ok" and data["topology"]["world_size"] == 4
    m = data["metrics"]
    for key in (
        "ttft_ms",
        "tbt_ms",
        "tbt_p50_ms",
        "tbt_p99_ms",
        "e2e_ms",
        "tokens_per_s",
        "prefill_ms",
        "decode_ms",
        "weights_gb",
    ):
        assert isinstance(m[key], float) and m[key] > 0, key
    assert m["e2e_ms"] >= m["ttft_ms"]
    assert data["provenance"]["versions"]["torch"] == torch.__version__

    def walk(node, path=()):
        yield path + (node["frame"]["name"],), node
        for child in node["children"]:
            yield from walk(child, path + (node["frame"]["name"],))

    nodes = {p: n for root in data["timers"] for p, n in walk(root)}
    decode = nodes[("generate", "decode")]
    assert decode["metrics"]["calls"] == 4
    for part, kind in (
        ("attention", "compute"),
        ("mlp", "compute"),
        ("allreduce", "comm"),
        ("p2p", "comm"),
        ("embed", "compute"),
        ("head", "compute"),
        ("sample", "compute"),
    ):
        node = nodes[("generate", "decode", part)]
        assert node["frame"]["type"] == kind
        assert node["metrics"]["time (max)"] >= node["metrics"]["time (mean)"] > 0
    assert nodes[("generate", "decode", "allreduce")]["metrics"]["ranks"] == 4
    assert nodes[("generate", "decode", "head")]["metrics"]["ranks"] == 2
    rows = [line.split() for line in toks.read_text().splitlines()]
    assert len(rows) == 4 and all(len(r) == 5 for r in rows)


def test_405b_shards_on_32_ranks_add_up_without_any_full_copy() -> None:
    """TP 8 x PP 4 of Llama-3.1-405B on the meta device: every rank holds only its slice, and the slices
    of all 32 ranks add up to the published parameter count (embedding and head counted once per TP rank)."""
    args = PRESETS["llama3.1-405b"]
    assert 405e9 < args.weight_count() < 406.1e9
    total = 0
    for index in range(32):
        layout = Layout(8, 4, tuple(range(32)), index)
        par = Parallel(layout, torch.device("meta"), None, None, None)
        layers = stage_layers(args.n_layers, 4, None)[layout.stage]
        with torch.device("meta"):
            model = StageModel(args, layers, shard_of(args, 8, layout.tp_rank, False), par)
        held = sum(p.numel() for p in model.parameters())
        assert held < args.weight_count() / 16
        total += held
    replicated = args.vocab_size * args.dim * 2 + args.dim  # embedding, head, final norm
    norms = 2 * args.dim * args.n_layers
    assert total == args.weight_count() + 7 * replicated + 7 * norms


def test_prompt_file_errors_name_file_and_line(tmp_path: Path) -> None:
    good = tmp_path / "prompts.txt"
    good.write_text("1 2 3\n4 5 6\n")
    assert read_prompt_file(good, 2, 3, 256) == [[1, 2, 3], [4, 5, 6]]
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3\n4 5\n")
    with pytest.raises(ConfigError, match=r"bad.txt:2"):
        read_prompt_file(bad, 2, 3, 256)
    bad.write_text("1 2 3\n4 5 999\n")
    with pytest.raises(ConfigError, match=r"bad.txt:2.*vocabulary"):
        read_prompt_file(bad, 2, 3, 256)
    with pytest.raises(ConfigError, match="--batch-size"):
        read_prompt_file(good, 3, 3, 256)


def test_published_llama31_8b_config_json_gives_the_preset(tmp_path: Path) -> None:
    """The config.json layout Meta published (rope_scaling spelling) parses to the preset's shape."""
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "hidden_size": 4096,
                "intermediate_size": 14336,
                "num_hidden_layers": 32,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "vocab_size": 128256,
                "rms_norm_eps": 1e-05,
                "rope_theta": 500000.0,
                "max_position_embeddings": 131072,
                "rope_scaling": {
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 8192,
                    "rope_type": "llama3",
                },
                "tie_word_embeddings": False,
                "torch_dtype": "bfloat16",
            }
        )
    )
    assert model_args_from_hf(tmp_path) == PRESETS["llama3.1-8b"]


def test_cli_summary_names_the_checkpoint_it_ran(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path / "ckpt", sharded=False)
    res = tmp_path / "r.json"
    argv = [sys.executable, "-m", "engine.run", "--weights", str(ckpt), "--results", str(res)]
    argv += ["--batch-size", "1", "--prompt-len", "4", "--decode-len", "2"]
    out = subprocess.run(argv, capture_output=True, text=True, env=_env(), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    summary = out.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"engine.run: checkpoint {ckpt} tp=1"), summary
    assert read_result(res)["status"] == "ok"

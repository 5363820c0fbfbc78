"""The fused decode attention (engine/kernels.py) against the SDPA path, on CPU through Triton's interpreter.

bf16 is not checked here: Triton's interpreter rounds bf16 wrongly (its own matrix product on bf16
inputs is off by orders of magnitude), so bf16 is checked on a GPU by `bench/bench_engine_gpu.py
attention` (bench/RESULTS-engine.md). fp32 and fp16 run the same code paths.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine import kernels
from engine.config import ConfigError, choose_decode_kernels

ROOT = Path(__file__).resolve().parents[1]
# Triton is part of the dev extra; engine.kernels imports it only with a GPU or under the interpreter.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")


def interpreted(kind: str, *args: object) -> dict:
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "kernel_checks.py"), kind, json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# (dtype, batch, heads, kv heads, head dim, cache length, position, SMs): group sizes 1, 4 and 8; one
# split and many; the position at a split boundary, just past one, the first decode position and the last.
CASES = [
    ("float32", 1, 8, 2, 64, 100, 37, 1),
    ("float32", 2, 4, 4, 32, 200, 64, 64),
    ("float32", 1, 16, 2, 32, 130, 129, 128),
    ("float32", 3, 8, 1, 64, 70, 1, 16),
    ("float16", 2, 8, 2, 64, 150, 65, 132),
]


@pytest.fixture(scope="module")
def kernel_results() -> dict[tuple, dict]:
    """Every kernel case below checked in one interpreted process (each process pays for importing
    torch and Triton); the tests then read their own case."""
    todo = [("kernel", c) for c in CASES] + [("matvec", c) for c in MATVEC_CASES]
    results = interpreted("many", *todo)
    return {(kind, tuple(c)): r for (kind, c), r in zip(todo, results, strict=True)}


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_fused_decode_attention_matches_the_sdpa_path(case: tuple, kernel_results: dict) -> None:
    r = kernel_results[("kernel", case)]
    tol = 1e-5 if case[0] == "float32" else 2e-3
    assert r["y_finite"]
    assert r["y_max_abs"] < tol, r
    assert r["k_written_max_abs"] < tol and r["v_written_equal"], r
    assert r["others_untouched"], r


def test_cases_cover_one_and_several_splits() -> None:
    splits = {-(-c[5] // kernels.split_len(c[1] * c[3], c[5], c[7])) for c in CASES}
    assert 1 in splits and max(splits) >= 4


# (dtype, rows, N, K, fusion): one row (multiply-and-sum) and several (tensor-core path); N and K not
# multiples of any block; the SwiGLU prologue and the residual epilogue, and neither.
MATVEC_CASES = [
    ("float32", 1, 70, 300, "none"),
    ("float32", 1, 33, 1100, "none"),
    ("float32", 3, 50, 200, "swiglu"),
    ("float16", 16, 40, 520, "none"),
    ("float16", 2, 24, 96, "swiglu"),
]


@pytest.mark.parametrize("case", MATVEC_CASES, ids=lambda c: "-".join(map(str, c)))
def test_fused_matvec_matches_torch(case: tuple, kernel_results: dict) -> None:
    r = kernel_results[("matvec", case)]
    assert r["shape"] == [case[1], case[2]]
    tol = 1e-5 if case[0] == "float32" else 4e-3
    assert r["max_abs"] <= tol * max(1.0, r["ref_max"]), r


def test_engine_with_fused_decode_gives_the_same_tokens() -> None:
    r = interpreted("engine", 2, 12, 6)
    assert r["chosen"] == ["torch", "attention", "fused"] and r["steps"] == 6
    for choice in ("attention", "fused"):
        assert r[choice]["tokens_equal"], r
        assert r[choice]["logits_max_abs"] < 1e-4, r


def test_fused_decode_under_tensor_and_pipeline_parallelism() -> None:
    r = interpreted("parallel")
    # Last-stage ranks report: TP 4 all four ranks, TP 2 x PP 2 the two ranks of the last stage.
    assert sorted(k.split(" ")[0] for k in r) == ["tp2xpp2", "tp2xpp2", "tp4", "tp4", "tp4", "tp4"], r
    for name, res in r.items():
        assert res["tokens_equal"], (name, res)
        assert res["logits_max_abs"] < 1e-4, (name, res)


def test_choice_of_decode_kernels() -> None:
    cpu = torch.device("cpu")
    assert choose_decode_kernels("auto", cpu, 1) == "torch"
    assert choose_decode_kernels("torch", cpu, 64) == "torch"
    if os.environ.get("TRITON_INTERPRET") != "1":
        with pytest.raises(ConfigError, match="--decode-kernels.*CUDA"):
            choose_decode_kernels("attention", cpu, 1)
    with pytest.raises(ConfigError, match="--decode-kernels"):
        choose_decode_kernels("flash", cpu, 1)
    if kernels.available(torch.device("cuda"))[0]:
        assert choose_decode_kernels("auto", torch.device("cuda"), 1) == "fused"
        assert choose_decode_kernels("auto", torch.device("cuda"), 2) == "attention"
        with pytest.raises(ConfigError, match="at most 16 sequences"):
            choose_decode_kernels("fused", torch.device("cuda"), 17)


def test_cli_refuses_fused_on_cpu_with_exit_2(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    env.pop("TRITON_INTERPRET", None)
    out = subprocess.run(
        [sys.executable, "-m", "engine.run", "--device", "cpu", "--decode-kernels", "fused",
         "--results", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "--decode-kernels" in out.stderr
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "failed"

"""The data types the payload and the harness name, in one place (torch-free at import: study reads
the names; the payload asks `torch_dtype` for torch's objects).

`bf16`, `fp16`, `fp32` are what the engines and the all-reduces take; the benchmark adds `int32`
(exact sums for correctness checks). Each name's torch attribute, which is also what Hugging Face
configs and vLLM call it, is in TORCH_NAMES.
"""

from __future__ import annotations

from typing import Any

FLOAT_DTYPES: tuple[str, ...] = ("bf16", "fp16", "fp32")
BENCH_DTYPES: tuple[str, ...] = (*FLOAT_DTYPES, "int32")
TORCH_NAMES: dict[str, str] = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "int32": "int32"}


def torch_dtype(name: str) -> Any:
    """torch's dtype object for one of BENCH_DTYPES."""
    import torch

    return getattr(torch, TORCH_NAMES[name])

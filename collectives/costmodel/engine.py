"""Engine step times: prefill and decode of Llama-family TP × PP inference from compute and all-reduces.

The model shapes are the engine's presets (engine/presets.json, read here as data: the harness side
never imports the engine).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from collectives.costmodel.params import CostModelError, CostParams


@dataclass(frozen=True)
class ModelShape:
    """Llama-family shape (the published Llama-3.1 configurations)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int = 128256

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


PRESETS_FILE = Path(__file__).resolve().parents[2] / "engine" / "presets.json"


def _shapes() -> dict[str, ModelShape]:
    """The Llama-3.1 presets of the engine (engine/presets.json), as the model's shapes."""
    presets = json.loads(PRESETS_FILE.read_text(encoding="utf-8"))["presets"]
    return {
        name: ModelShape(
            p["n_layers"], p["dim"], p["n_heads"], p["n_kv_heads"], p["ffn_dim"], p.get("vocab_size", 128256)
        )
        for name, p in presets.items()
        if name.startswith("llama3.1-") and name.count("-") == 1
    }


MODEL_SHAPES: dict[str, ModelShape] = _shapes()


@dataclass(frozen=True)
class GpuRates:
    """Datasheet rates and the fraction of them kernels reach (decode GEMMs are skinny)."""

    bf16_tflops: float
    hbm_TBps: float
    flop_efficiency: float = 0.6
    bandwidth_efficiency: float = 0.8


def _gemm_us(tokens: float, k: float, n: float, rates: GpuRates) -> float:
    flops = 2.0 * tokens * k * n
    nbytes = 2.0 * (k * n + tokens * k + tokens * n)
    return max(
        flops / (rates.bf16_tflops * rates.flop_efficiency * 1e6),
        nbytes / (rates.hbm_TBps * rates.bandwidth_efficiency * 1e6),
    )


def _layer_compute_us(
    shape: ModelShape,
    tp: int,
    tokens: float,
    batch: float,
    ctx_read: float,
    attn_flops_per_seq: float,
    rates: GpuRates,
) -> float:
    hd = shape.head_dim
    heads = shape.heads / tp
    kv = max(shape.kv_heads / tp, 1.0)  # KV heads are replicated beyond TP = kv_heads
    t = _gemm_us(tokens, shape.hidden, (heads + 2 * kv) * hd, rates)
    t += _gemm_us(tokens, heads * hd, shape.hidden, rates)
    t += _gemm_us(tokens, shape.hidden, 2 * shape.ffn / tp, rates)
    t += _gemm_us(tokens, shape.ffn / tp, shape.hidden, rates)
    attn_flops = batch * attn_flops_per_seq * heads * hd
    attn_bytes = 2.0 * 2.0 * batch * ctx_read * kv * hd
    t += max(
        attn_flops / (rates.bf16_tflops * rates.flop_efficiency * 1e6),
        attn_bytes / (rates.hbm_TBps * rates.bandwidth_efficiency * 1e6),
    )
    return t


def tp_topology(tp: int, gpus_per_node: int) -> tuple[int, int]:
    """(nodes, GPUs per node) spanned by one TP group of consecutive ranks."""
    if tp <= gpus_per_node:
        return 1, tp
    if tp % gpus_per_node:
        raise CostModelError(f"TP {tp} spans nodes but is not a multiple of {gpus_per_node} GPUs per node")
    return tp // gpus_per_node, gpus_per_node


def p2p_us(nbytes, crosses_node: bool, params: CostParams):
    link = params.inter if crosses_node else params.intra
    return link.alpha_us + np.asarray(nbytes, dtype=float) / (1e3 * link.beta_GBps)


@dataclass(frozen=True)
class Communication:
    """How the engine model prices communication: an all-reduce of one phase, and a stage-to-stage send.

    `allreduce_us(phase, algorithm, nodes, gpus_per_node, nbytes)` and `p2p_us(nbytes, crosses_node)`;
    `phase` is "decode" or "prefill" (the study captures decode in CUDA graphs, prefill runs plainly).
    """

    allreduce_us: Callable[[str, str, int, int, float], float]
    p2p_us: Callable[[float, bool], float]


def alpha_beta_communication(params: CostParams, *, ll128: bool = True) -> Communication:
    """Communication priced by the α-β-γ model (no launch costs, the same for both phases)."""
    from collectives.costmodel.alphabeta import predict

    return Communication(
        lambda phase, algo, n, g, nbytes: float(predict(algo, n, g, nbytes, params, ll128=ll128)),
        lambda nbytes, crosses: float(p2p_us(nbytes, crosses, params)),
    )


def engine_step(
    shape: ModelShape,
    tp: int,
    pp: int,
    gpus_per_node: int,
    batch: int,
    prompt_len: int,
    decode_len: int,
    params: CostParams | Communication,
    rates: GpuRates,
    *,
    decode_allreduce: str = "nccl",
    prefill_allreduce: str = "nccl",
    micro_batches: int = 1,
    ll128: bool = True,
) -> dict[str, float]:
    """Predicted prefill and decode step times (ms) of TP × PP inference, and their parts.

    Megatron TP: two all-reduces per layer of tokens × hidden × 2 bytes; PP sends tokens × hidden × 2
    bytes between consecutive stages; with m micro-batches a step takes (m + pp − 1) stage times.
    Decode reads all weights and the KV cache of the mean context (prompt + decode_len / 2).
    `params` prices communication: α-β-γ parameters, or a `Communication` (the grounded model's).
    """
    comm = params if isinstance(params, Communication) else alpha_beta_communication(params, ll128=ll128)
    for name, value in (
        ("tp", tp),
        ("pp", pp),
        ("batch", batch),
        ("prompt_len", prompt_len),
        ("decode_len", decode_len),
        ("micro_batches", micro_batches),
    ):
        if value < 1:
            raise CostModelError(f"{name} must be at least 1, got {value}")
    if pp > shape.layers:
        raise CostModelError(f"pp {pp} exceeds the model's {shape.layers} layers")
    if micro_batches > batch:
        raise CostModelError(f"micro_batches {micro_batches} exceeds batch {batch}")
    tp_nodes, tp_g = tp_topology(tp, gpus_per_node)
    stage_layers = math.ceil(shape.layers / pp)
    mb = batch / micro_batches
    crosses = tp >= gpus_per_node or any(
        (s * tp) // gpus_per_node != ((s + 1) * tp) // gpus_per_node for s in range(pp - 1)
    )
    ctx = prompt_len + decode_len / 2
    out: dict[str, float] = {}
    for phase, tokens, attn_per_seq, ctx_read, algo in (
        ("decode", mb, 4.0 * ctx, ctx, decode_allreduce),
        ("prefill", mb * prompt_len, 2.0 * prompt_len * prompt_len, prompt_len, prefill_allreduce),
    ):
        compute = stage_layers * _layer_compute_us(shape, tp, tokens, mb, ctx_read, attn_per_seq, rates)
        head_tokens = mb  # prefill samples only the last position of each sequence
        compute += _gemm_us(head_tokens, shape.hidden, shape.vocab, rates) / pp
        msg = tokens * shape.hidden * 2
        ar = comm.allreduce_us(phase, algo, tp_nodes, tp_g, msg) if tp > 1 else 0.0
        layer_comm = stage_layers * 2 * ar
        p2p = comm.p2p_us(msg, crosses) if pp > 1 else 0.0
        # Critical path of a pipeline of m micro-batches: m + pp − 1 stage times, one send fewer.
        stages = micro_batches + pp - 1
        sends = stages - 1 if pp > 1 else 0
        total = stages * (compute + layer_comm) + sends * p2p
        out.update(
            {
                f"{phase}_compute_ms": stages * compute / 1e3,
                f"{phase}_allreduce_ms": stages * layer_comm / 1e3,
                f"{phase}_p2p_ms": sends * p2p / 1e3,
                f"{phase}_ms": total / 1e3,
                f"{phase}_allreduce_bytes": msg,
                f"{phase}_allreduce_us": ar,
            }
        )
    out["e2e_ms"] = out["prefill_ms"] + decode_len * out["decode_ms"]
    # The largest stage: its layers, plus the embedding and head (both on one stage without PP).
    weights = (
        stage_layers
        * (
            2 * shape.hidden * shape.heads / tp * shape.head_dim
            + 2 * shape.hidden * max(shape.kv_heads / tp, 1) * shape.head_dim
            + 3 * shape.hidden * shape.ffn / tp
        )
        + (2 if pp == 1 else 1) * shape.vocab * shape.hidden
    )
    out["weights_gb_per_gpu"] = 2 * weights / 1e9
    return out

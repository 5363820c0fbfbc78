"""Checks of engine/kernels.py, run in a child process with TRITON_INTERPRET=1 (tests/test_engine_kernels.py).

Triton decides at import whether a kernel is compiled or interpreted, so these run in a process of their
own; each prints one JSON line. The reference is the engine's SDPA path: RoPE in fp32, the cache written
by index, masked scaled_dot_product_attention, computed in float64.
"""

from __future__ import annotations

import json
import sys

import torch
import torch.nn.functional as F

from engine import kernels
from engine.model import apply_rope


def reference(qkv, kc, vc, cos, sin, pos: int, n_heads: int):  # noqa: ANN001, ANN201 - tensors in, out
    b, n_kv, length, hd = kc.shape
    q, k, v = qkv.split([n_heads * hd, n_kv * hd, n_kv * hd], -1)
    c, s = cos[pos : pos + 1], sin[pos : pos + 1]
    q = apply_rope(q.view(b, 1, n_heads, hd).transpose(1, 2), c, s)
    k = apply_rope(k.view(b, 1, n_kv, hd).transpose(1, 2), c, s)
    kc, vc = kc.clone(), vc.clone()
    kc[:, :, pos : pos + 1] = k
    vc[:, :, pos : pos + 1] = v.view(b, 1, n_kv, hd).transpose(1, 2)
    mask = (torch.arange(length) <= pos).view(1, 1, 1, -1)
    rep = n_heads // n_kv
    y = F.scaled_dot_product_attention(
        q.view(b, n_kv, rep, hd).double(), kc.double(), vc.double(), attn_mask=mask
    )
    return y.reshape(b, n_heads * hd), kc, vc


def check_kernel(
    dtype: str, b: int, n_heads: int, n_kv: int, hd: int, length: int, pos: int, sms: int
) -> dict:
    """Largest errors of the fused kernels against the reference on fresh random data."""
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(hash((b, n_heads, n_kv, hd, length, pos)) % 2**31)
    qkv = torch.randn(b, 1, (n_heads + 2 * n_kv) * hd, generator=g).to(dt)
    kc = torch.randn(b, n_kv, length, hd, generator=g).to(dt)
    vc = torch.randn(b, n_kv, length, hd, generator=g).to(dt)
    freqs = torch.outer(torch.arange(length).float(), 1 / 10000 ** (torch.arange(0, hd, 2).float() / hd))
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = emb.cos(), emb.sin()
    y_ref, k_ref, v_ref = reference(qkv, kc, vc, cos, sin, pos, n_heads)
    before_k, before_v = kc.clone(), vc.clone()
    y = kernels.decode_attention(qkv, kc, vc, cos, sin, torch.tensor([pos]), n_heads, sms)
    others = torch.arange(length) != pos
    per = kernels.split_len(b * n_kv, length, sms)
    return {
        "splits": -(-length // per),
        "y_max_abs": (y.double() - y_ref).abs().max().item(),
        "y_finite": bool(torch.isfinite(y).all()),
        "k_written_max_abs": (kc[:, :, pos].double() - k_ref[:, :, pos].double()).abs().max().item(),
        "v_written_equal": bool(torch.equal(vc[:, :, pos], v_ref[:, :, pos])),
        "others_untouched": bool(
            torch.equal(kc[:, :, others], before_k[:, :, others])
            and torch.equal(vc[:, :, others], before_v[:, :, others])
        ),
    }


def check_matvec(dtype: str, rows: int, n: int, k: int, kind: str) -> dict:
    """engine.kernels.matvec with one fusion against torch's modules for the same work."""
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(rows * 1000 + n + k)
    w = (torch.randn(n, k, generator=g) / k**0.5).to(dt)
    res = torch.randn(rows, n, generator=g).to(dt)
    if kind == "swiglu":
        x = torch.randn(rows, 2 * k, generator=g).to(dt)
        gate, up = x.chunk(2, -1)
        y = kernels.matvec(x, w, swiglu=True, residual=res)
        ref = res.double() + F.linear(F.silu(gate) * up, w).double()
    else:
        x = torch.randn(rows, k, generator=g).to(dt)
        y = kernels.matvec(x, w)
        ref = x.double() @ w.double().T
    return {
        "shape": list(y.shape),
        "max_abs": (y.double() - ref).abs().max().item(),
        "ref_max": ref.abs().max().item(),
    }


def check_engine(batch: int, prompt: int, decode: int) -> dict:
    """Greedy tokens and logits of the tiny model with each --decode-kernels choice against `torch`."""
    from engine.config import PRESETS, RunConfig
    from engine.generate import Engine
    from engine.parallel import make_parallel
    from engine.workload import random_prompts

    args = PRESETS["tiny"]
    prompts = random_prompts(batch, prompt, args.vocab_size, seed=3)
    gens = {}
    for choice in ("torch", "attention", "fused"):
        par = make_parallel(1, 1, device=torch.device("cpu"))
        run = RunConfig(batch_size=batch, prompt_len=prompt, decode_len=decode, decode_kernels=choice)
        eng = Engine(args, par, run)
        gens[choice] = (eng.decode_kernels, eng.generate(prompts, keep_logits=True))
    base = gens["torch"][1]
    out: dict = {"chosen": [gens[c][0] for c in gens], "steps": len(base.logits)}
    for choice in ("attention", "fused"):
        gen = gens[choice][1]
        out[choice] = {
            "tokens_equal": bool(torch.equal(base.tokens, gen.tokens)),
            "logits_max_abs": max(
                (x - y).abs().max().item() for x, y in zip(base.logits, gen.logits, strict=True)
            ),
        }
    return out


def _parallel_worker(rank: int, world: int, port: int, queue) -> None:  # noqa: ANN001 - a multiprocessing queue
    import torch.distributed as dist

    from engine.config import PRESETS, RunConfig
    from engine.generate import Engine
    from engine.parallel import make_parallel
    from engine.workload import random_prompts

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    args = PRESETS["tiny"]
    prompts = random_prompts(4, 10, args.vocab_size, seed=5)

    def gen(tp: int, pp: int, ranks: list[int], kernels_: str, **kw):  # noqa: ANN202
        par = make_parallel(tp, pp, device=torch.device("cpu"), ranks=ranks, gpus_per_node=2)
        run = RunConfig(batch_size=4, prompt_len=10, decode_len=5, decode_kernels=kernels_, seed=2, **kw)
        eng = Engine(args, par, run)
        return eng.generate(prompts, keep_logits=True)

    ref = gen(1, 1, [rank], "torch")
    out = {}
    # TP 4 (KV heads replicated, residual adds after the all-reduce) and TP 2 x PP 2 with micro-batches.
    for name, tp, pp, kw in (("tp4", 4, 1, {}), ("tp2xpp2", 2, 2, {"micro_batches": 2})):
        g = gen(tp, pp, list(range(world)), "fused", **kw)
        if g.tokens is not None:
            diff = max((a - b).abs().max().item() for a, b in zip(g.logits, ref.logits, strict=True))
            out[name] = {"tokens_equal": bool(torch.equal(g.tokens, ref.tokens)), "logits_max_abs": diff}
    dist.barrier()
    dist.destroy_process_group()
    queue.put((rank, out))


def check_engine_parallel() -> dict:
    """The fused decode kernels under tensor and pipeline parallelism (4 gloo ranks) against one rank."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.start_processes(_parallel_worker, args=(4, port, queue), nprocs=4, start_method="spawn")
    results: dict = {}
    for _ in range(4):
        rank, out = queue.get()
        for name, r in out.items():
            results[f"{name} rank {rank}"] = r
    return results


if __name__ == "__main__":
    checks = {
        "kernel": check_kernel,
        "matvec": check_matvec,
        "engine": check_engine,
        "parallel": check_engine_parallel,
    }
    if sys.argv[1] == "many":  # [[kind, args], ...] in one process: Triton and torch load once
        print(json.dumps([checks[kind](*args) for kind, args in json.loads(sys.argv[2])]))
    else:
        print(json.dumps(checks[sys.argv[1]](*json.loads(sys.argv[2]))))

"""Engine speed on one GPU against the memory floor, the matmul rate and Hugging Face `generate`.

Modes (bench/bench_engine_gpu.sh runs them in one device call):
  ceilings        read bandwidth and bf16 matmul rate of this GPU
  engine          ms per decode step and prefill time of engine.generate at each --batches
  hf              Hugging Face LlamaForCausalLM.generate, same shape, random weights
  overhead        the breakdown timers' own cost: eager decode with and without --breakdown
  attention       the fused decode attention (engine/kernels.py) against the SDPA path it replaces:
                  largest difference on random bf16 data, and time per layer inside a CUDA graph
  matvec          engine.kernels.matvec with its fusions against torch (F.linear, SiLU, add) for each
                  projection of Llama-3.1-8B: largest difference, time, achieved bandwidth
Each writes one JSON file (--out); `report` prints the table from them.
The floor of a decode step is (weight bytes + KV-cache bytes of that step) / read bandwidth; weight
bytes count every parameter (16.06 GB for Llama-3.1-8B in bf16), as in the study's baseline. The
strict floor counts only what a step must read: every weight but the embedding table (one row per
sequence), plus the same KV bytes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from engine.config import PRESETS, RunConfig
from engine.generate import Engine
from engine.parallel import make_parallel
from engine.timers import Timers
from engine.workload import random_prompts

READ_TBPS = 4.26  # read-only pass measured on this H200 (GPU.md); `ceilings` measures it again


def cuda_ms(fn, iters: int) -> float:
    fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(iters):
        fn()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / iters


def ceilings() -> dict[str, float]:
    x = torch.randn(2**31 // 2, device="cuda", dtype=torch.bfloat16)  # 2 GiB
    read_ms = cuda_ms(lambda: x.sum(dtype=torch.float32), 20)
    y = torch.empty_like(x)
    copy_ms = cuda_ms(lambda: y.copy_(x), 20)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    mm_ms = cuda_ms(lambda: a @ b, 50)
    return {
        "read_TBps": x_bytes(2**30) / read_ms / 1e9,
        "copy_TBps": 2 * x_bytes(2**30) / copy_ms / 1e9,
        "bf16_mm_TFLOPs": 2 * 8192**3 / mm_ms / 1e9,
    }


def x_bytes(n_elements: int) -> int:
    return n_elements * 2


def kv_bytes_per_step(
    args: Any, batch: int, prompt: int, decode: int, cache_positions: int
) -> tuple[float, float]:
    """KV bytes a decode step must read (mean over steps) and what the masked kernel reads (full cache)."""
    per_pos = 2 * args.n_layers * args.n_kv_heads * args.head_dim * 2 * batch
    needed = statistics.mean(prompt + t for t in range(1, decode))
    return per_pos * needed, per_pos * cache_positions


def bench_engine(
    batch: int, prompt: int, decode: int, model: str, compile: bool, repeats: int, kernels: str = "auto"
) -> dict[str, Any]:
    args = PRESETS[model]
    par = make_parallel(1, 1, device=torch.device("cuda"))
    t0 = time.perf_counter()
    run = RunConfig(
        batch_size=batch,
        prompt_len=prompt,
        decode_len=decode,
        dtype="bf16",
        compile=compile,
        decode_kernels=kernels,
    )
    eng = Engine(args, par, run)
    torch.cuda.synchronize()
    init_s = time.perf_counter() - t0
    prompts = random_prompts(batch, prompt, args.vocab_size, seed=0)
    t0 = time.perf_counter()
    eng.generate(prompts)
    first_s = time.perf_counter() - t0
    eng.generate(prompts)
    runs = [eng.generate(prompts, Timers(par.device)) for _ in range(repeats)]
    tbt = statistics.median(statistics.mean(g.step_ms) for g in runs)
    p50 = statistics.median(statistics.median(g.step_ms) for g in runs)
    ttft = statistics.median(g.ttft_ms for g in runs)
    cache = eng.model.layers[0].attention.k_cache0.shape[2]
    kv_need, kv_read = kv_bytes_per_step(args, batch, prompt, decode, cache)
    wbytes = eng.weight_bytes
    # Layers on every prompt token, the LM head on the last one only, causal attention (half of L x L).
    layer_params = args.weight_count() - 2 * args.vocab_size * args.dim
    prefill_flop = (
        2 * layer_params * batch * prompt
        + 2 * args.vocab_size * args.dim * batch
        + 2 * args.n_layers * batch * prompt**2 * args.dim
    )
    out = {
        "batch": batch,
        "prompt": prompt,
        "decode": decode,
        "compile": compile,
        "decode_kernels": eng.decode_kernels,
        "init_s": init_s,
        "first_generate_s": first_s,
        "tbt_ms": tbt,
        "tbt_p50_ms": p50,
        "ttft_ms": ttft,
        "tbt_all_runs_ms": [statistics.mean(g.step_ms) for g in runs],
        "weight_bytes": wbytes,
        "kv_bytes_needed": kv_need,
        "kv_bytes_read": kv_read,
        "floor_ms": (wbytes + kv_need) / (READ_TBPS * 1e9),
        "floor_strict_ms": (wbytes - (args.vocab_size - batch) * args.dim * 2 + kv_need) / (READ_TBPS * 1e9),
        "prefill_tflop": prefill_flop / 1e12,
        "tokens_equal_across_runs": all(torch.equal(g.tokens, runs[0].tokens) for g in runs),
    }
    out["ratio_to_floor"] = out["tbt_ms"] / out["floor_ms"]
    out.update(profile_decode(eng, prompt, batch))
    print(json.dumps({k: v for k, v in out.items() if k != "tbt_all_runs_ms"}), flush=True)
    del eng
    torch._dynamo.reset()
    torch.cuda.empty_cache()
    return out


@torch.no_grad()
def profile_decode(eng: Engine, prompt: int, batch: int, steps: int = 20) -> dict[str, Any]:
    """Where a decode step's time goes: GPU kernel time per step by kernel, against the step's wall time."""
    x = torch.zeros(batch, 1, dtype=torch.long, device="cuda")
    pos = torch.tensor([prompt], device="cuda")
    run = eng.decode or eng._decode_step
    for _ in range(3):
        run(x, pos, 0)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            run(x, pos, 0)
        torch.cuda.synchronize()
    kernels: dict[str, list[float]] = {}
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            kernels.setdefault(ev.name, []).append(ev.device_time_total / 1000.0)
    rows = sorted(((sum(v) / steps, len(v) / steps, k) for k, v in kernels.items()), reverse=True)
    return {
        "kernel_ms_per_step": sum(r[0] for r in rows),
        "kernels_per_step": sum(r[1] for r in rows),
        "top_kernels": [{"ms_per_step": ms, "calls_per_step": n, "name": k[:120]} for ms, n, k in rows[:25]],
    }


def bench_attention(batch: int, cache: int, pos: int, layers: int = 32) -> dict[str, Any]:
    """Fused decode attention against the SDPA path (RoPE, cache write, masked SDPA), Llama-3.1-8B heads.

    Both run `layers` times (one cache pair each, as in a step) inside one CUDA graph; ms per layer is
    the graph's replay time divided by `layers`. The difference is taken on fresh random bf16 data
    against an fp32 SDPA over the same rounded inputs.
    """
    import torch.nn.functional as F

    from engine import kernels
    from engine.model import apply_rope

    h, kv, hd = 32, 8, 128
    rep = h // kv
    g = torch.Generator(device="cuda").manual_seed(batch * 7 + pos)
    qkv = [torch.randn(batch, 1, (h + 2 * kv) * hd, device="cuda", generator=g, dtype=torch.bfloat16)
           for _ in range(layers)]  # fmt: skip
    kcs = [
        torch.randn(batch, kv, cache, hd, device="cuda", generator=g, dtype=torch.bfloat16)
        for _ in range(layers)
    ]
    vcs = [
        torch.randn(batch, kv, cache, hd, device="cuda", generator=g, dtype=torch.bfloat16)
        for _ in range(layers)
    ]
    freqs = torch.outer(
        torch.arange(cache, device="cuda").float(), 1 / (500000 ** (torch.arange(0, hd, 2).cuda() / hd))
    )
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = emb.cos(), emb.sin()
    p = torch.tensor([pos], device="cuda")
    positions = torch.arange(cache, device="cuda")
    sms = torch.cuda.get_device_properties(0).multi_processor_count

    def sdpa(i: int) -> torch.Tensor:
        q, k, v = qkv[i].split([h * hd, kv * hd, kv * hd], -1)
        c, s = cos[p], sin[p]
        q = apply_rope(q.view(batch, 1, h, hd).transpose(1, 2), c, s)
        k = apply_rope(k.view(batch, 1, kv, hd).transpose(1, 2), c, s)
        kcs[i][:, :, p] = k
        vcs[i][:, :, p] = v.view(batch, 1, kv, hd).transpose(1, 2)
        mask = (positions <= p).view(1, 1, 1, -1)
        return F.scaled_dot_product_attention(q.view(batch, kv, rep, hd), kcs[i], vcs[i], attn_mask=mask)

    def fused(i: int) -> torch.Tensor:
        return kernels.decode_attention(qkv[i], kcs[i], vcs[i], cos, sin, p, h, sms)

    # Correctness: the fused output against fp32 attention over the caches the SDPA path wrote.
    y_fused = fused(0)
    k_fused, v_fused = kcs[0][:, :, pos].clone(), vcs[0][:, :, pos].clone()
    y_sdpa = sdpa(0).reshape(batch, h * hd)
    q = apply_rope(qkv[0][..., : h * hd].view(batch, 1, h, hd).transpose(1, 2), cos[p], sin[p])
    mask = (positions <= p).view(1, 1, 1, -1)
    y_ref = F.scaled_dot_product_attention(
        q.view(batch, kv, rep, hd).float(), kcs[0].float(), vcs[0].float(), attn_mask=mask
    ).reshape(batch, h * hd)
    out: dict[str, Any] = {
        "batch": batch,
        "cache": cache,
        "pos": pos,
        "max_abs_fused_vs_fp32": (y_fused.float() - y_ref).abs().max().item(),
        "max_abs_sdpa_vs_fp32": (y_sdpa.float() - y_ref).abs().max().item(),
        "cache_write_equal": bool(
            torch.equal(k_fused, kcs[0][:, :, pos]) and torch.equal(v_fused, vcs[0][:, :, pos])
        ),
    }
    for name, fn in (("sdpa", sdpa), ("fused", fused)):
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for i in range(layers):
                fn(i)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for i in range(layers):
                fn(i)
        out[f"{name}_us_per_layer"] = cuda_ms(graph.replay, 50) * 1000 / layers
    print(json.dumps(out), flush=True)
    return out


def _matvec_pair(kind: str, inp: torch.Tensor, w: torch.Tensor, res: torch.Tensor) -> tuple[Any, Any]:
    """The fused call and torch's kernels for the same work, as two closures."""
    import torch.nn.functional as F

    from engine import kernels

    if kind == "plain":
        return (lambda: kernels.matvec(inp, w), lambda: F.linear(inp, w))
    if kind == "res":
        return (lambda: kernels.matvec(inp, w, residual=res), lambda: res + F.linear(inp, w))
    gate, up = inp.chunk(2, -1)
    return (
        lambda: kernels.matvec(inp, w, swiglu=True, residual=res),
        lambda: res + F.linear(F.silu(gate) * up, w),
    )


def _graph_us(calls: list[Any]) -> float:
    """Microseconds per call of `calls` captured in one CUDA graph and replayed (as in a decode step)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for c in calls:
            c()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for c in calls:
            c()
    return cuda_ms(graph.replay, 20) * 1000 / len(calls)


def bench_matvec(rows: int) -> list[dict[str, Any]]:
    """Each decode projection of Llama-3.1-8B: engine.kernels.matvec with its fusion, cuBLAS alone
    (F.linear, no fused work) and torch's kernels for the same work, and every matvec launch shape.

    Each variant runs over several distinct copies of the weight (at least 400 MB in all, so the L2
    cache holds none of it) inside one CUDA graph, as in a decode step; µs per call = replay time /
    calls, GB/s counts the weight bytes only.
    """
    from engine import kernels

    d, f, v = 4096, 14336, 128256
    g = torch.Generator(device="cuda").manual_seed(rows)

    def rnd(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, device="cuda", generator=g) * scale).to(torch.bfloat16)

    x, res = rnd(rows, d), rnd(rows, d)
    out = []
    for name, n, k, kind in (
        ("qkv", 6144, d, "plain"),
        ("o (residual)", d, d, "res"),
        ("gate/up", 2 * f, d, "plain"),
        ("down (swiglu, residual)", d, f, "swiglu"),
        ("head", v, d, "plain"),
    ):
        copies = max(2, -(-400_000_000 // (n * k * 2)))
        ws = [rnd(n, k, scale=k**-0.5) for _ in range(copies)]
        inp = rnd(rows, 2 * k) if kind == "swiglu" else x[:, :k]
        pairs = [_matvec_pair(kind, inp, w, res) for w in ws]
        y, y_ref = pairs[0][0](), pairs[0][1]()
        key = (rows, n, k, kind == "swiglu", kind != "plain", torch.bfloat16, 0)
        tuned = kernels.MATVEC_CHOICE.get(key)
        shapes = {}
        for cfg in kernels.MATVEC_CONFIGS[1 if rows == 1 else kernels.MATVEC_MAX_ROWS]:
            kernels.MATVEC_CHOICE[key] = cfg
            try:
                shapes[str(cfg)] = _graph_us([p[0] for p in pairs])
            except Exception as exc:  # noqa: BLE001 - a launch shape this GPU cannot run
                shapes[str(cfg)] = repr(exc)[:80]
        kernels.MATVEC_CHOICE[key] = tuned
        best = min((t, c) for c, t in shapes.items() if isinstance(t, float))
        t_cublas = _graph_us([lambda w=w, a=inp[:, :k]: torch.nn.functional.linear(a, w) for w in ws])
        t_torch = _graph_us([p[1] for p in pairs])
        gb = n * k * 2 / 1e3
        row = {
            "rows": rows,
            "projection": name,
            "weight_MB": n * k * 2 / 1e6,
            "tuned_config": tuned,
            "tuned_us": shapes.get(str(tuned)),
            "best_config": best[1],
            "best_us": best[0],
            "cublas_alone_us": t_cublas,
            "torch_same_work_us": t_torch,
            "best_GBps": gb / best[0],
            "cublas_GBps": gb / t_cublas,
            "max_abs_diff_rel": (y.float() - y_ref.float()).abs().max().item()
            / y_ref.float().abs().max().item(),
            "all_configs_us": shapes,
        }
        print(json.dumps(row), flush=True)
        out.append(row)
        del ws, pairs
        torch.cuda.empty_cache()
    return out


def bench_hf(batch: int, prompt: int, new_tokens: int) -> dict[str, Any]:
    """HF generate, eager, greedy; ms/step from the difference of a 1-token and an n-token generate."""
    import transformers

    a = PRESETS["llama3.1-8b"]
    cfg = transformers.LlamaConfig(
        hidden_size=a.dim,
        intermediate_size=a.ffn_dim,
        num_hidden_layers=a.n_layers,
        num_attention_heads=a.n_heads,
        num_key_value_heads=a.n_kv_heads,
        vocab_size=a.vocab_size,
        rms_norm_eps=a.norm_eps,
        max_position_embeddings=a.max_seq_len,
        rope_parameters={"rope_type": "llama3", "rope_theta": a.rope_theta, **a.rope_scaling},
    )
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = transformers.LlamaForCausalLM(cfg).eval()
    torch.set_default_dtype(torch.float32)
    ids = random_prompts(batch, prompt, a.vocab_size, seed=0).cuda()
    mask = torch.ones_like(ids)

    def gen(n: int) -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.generate(
            ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0
        )
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) * 1000

    gen(2)
    one = statistics.median(gen(1) for _ in range(3))
    many = gen(new_tokens)
    out = {
        "batch": batch,
        "prompt": prompt,
        "new_tokens": new_tokens,
        "prefill_ms": one,
        "tbt_ms": (many - one) / (new_tokens - 1),
    }
    print(json.dumps(out), flush=True)
    return out


def bench_overhead(model: str, batch: int, prompt: int, decode: int) -> dict[str, Any]:
    """Eager decode with the breakdown timers on and off, alternated, median of each."""
    args = PRESETS[model]
    par = make_parallel(1, 1, device=torch.device("cuda"))
    eng = Engine(args, par, RunConfig(batch_size=batch, prompt_len=prompt, decode_len=decode, dtype="bf16"))
    prompts = random_prompts(batch, prompt, args.vocab_size, seed=0)
    eng.generate(prompts)
    plain, timed = [], []
    for _ in range(3):
        plain.append(statistics.mean(eng.generate(prompts, Timers(par.device)).step_ms))
        t = Timers(par.device)
        par.timer = t.region
        timed.append(statistics.mean(eng.generate(prompts, t).step_ms))
        par.timer = None
    regions = sum(calls for _, _, calls in t.totals().values()) / decode
    out = {
        "model": model,
        "batch": batch,
        "eager_tbt_ms": statistics.median(plain),
        "breakdown_tbt_ms": statistics.median(timed),
        "regions_per_step": regions,
    }
    out["overhead_us_per_region"] = (out["breakdown_tbt_ms"] - out["eager_tbt_ms"]) * 1000 / regions
    print(json.dumps(out), flush=True)
    return out


def report(files: list[str]) -> None:
    data: dict[str, Any] = {}
    for f in files:
        if Path(f).exists():
            for key, value in json.loads(Path(f).read_text()).items():
                if isinstance(value, list):
                    data.setdefault(key, []).extend(value)
                else:
                    data[key] = value
    ceil = data.get("ceilings", {})
    mm = ceil.get("bf16_mm_TFLOPs")
    hf = {r["batch"]: r for r in data.get("hf", [])}
    print("batch  engine_ms/step  floor_ms  ratio  hf_ms/step  speedup_vs_hf  ttft_ms  prefill_TFLOP/s  %mm")
    for r in sorted(data.get("engine", []), key=lambda r: r["batch"]):
        h = hf.get(r["batch"], {}).get("tbt_ms")
        rate = r["prefill_tflop"] / (r["ttft_ms"] / 1000)
        print(
            f"{r['batch']:5d}  {r['tbt_ms']:14.3f}  {r['floor_ms']:8.3f}  {r['ratio_to_floor']:5.2f}  "
            f"{h or float('nan'):10.2f}  {(h or float('nan')) / r['tbt_ms']:13.1f}  {r['ttft_ms']:7.1f}  "
            f"{rate:15.1f}  {100 * rate / mm if mm else float('nan'):4.0f}"
        )
    for r in sorted(data.get("engine", []), key=lambda r: r["batch"]):
        print(
            f"batch {r['batch']}: GPU kernels {r['kernel_ms_per_step']:.3f} ms/step in "
            f"{r['kernels_per_step']:.0f} kernels; step {r['tbt_ms']:.3f} ms"
        )
        for k in r["top_kernels"][:8]:
            print(f"   {k['ms_per_step']:7.3f} ms  x{k['calls_per_step']:5.0f}  {k['name'][:90]}")
    if ceil:
        print("ceilings:", json.dumps(ceil))
    if "overhead" in data:
        print("timer overhead:", json.dumps(data["overhead"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("ceilings", "engine", "hf", "overhead", "attention", "matvec", "report"))
    p.add_argument("--decode-kernels", default="auto", choices=("auto", "torch", "attention", "fused"))
    p.add_argument("--model", default="llama3.1-8b")
    p.add_argument("--batches", default="1,16,64")
    p.add_argument("--prompt-len", type=int, default=512)
    p.add_argument("--decode-len", type=int, default=128)
    p.add_argument("--hf-new-tokens", type=int, default=17)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default="bench-engine.json")
    p.add_argument("files", nargs="*", help="report: the JSON files to read")
    ns = p.parse_args()
    if ns.mode == "report":
        report(ns.files)
        return
    batches = [int(b) for b in ns.batches.split(",")]
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    if ns.mode == "ceilings":
        result["ceilings"] = ceilings()
    elif ns.mode == "engine":
        result["engine"] = []
        for b in batches:
            result["engine"].append(
                bench_engine(
                    b,
                    ns.prompt_len,
                    ns.decode_len,
                    ns.model,
                    not ns.no_compile,
                    ns.repeats,
                    ns.decode_kernels,
                )
            )
            Path(ns.out).write_text(json.dumps(result, indent=1))
    elif ns.mode == "attention":
        cache = ns.prompt_len + ns.decode_len
        result["attention"] = [
            bench_attention(b, c, c - 1 - ns.decode_len // 2) for c in (cache, 4 * cache) for b in batches
        ]
    elif ns.mode == "matvec":
        result["matvec"] = [r for b in batches for r in bench_matvec(b)]
    elif ns.mode == "hf":
        result["hf"] = [bench_hf(b, ns.prompt_len, ns.hf_new_tokens) for b in batches]
    else:
        result["overhead"] = bench_overhead(ns.model, batches[0], ns.prompt_len, ns.decode_len)
    Path(ns.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

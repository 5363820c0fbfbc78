"""One pipeline stage of one tensor-parallel shard of a Llama-family decoder.

The math follows Hugging Face's LlamaForCausalLM (RMSNorm in fp32, rotate-half RoPE with Llama-3.1
frequency scaling, SwiGLU), so its checkpoints load unpermuted. QKV and gate/up are fused, column-
parallel projections; attention output and down are row-parallel, each followed by the one
all-reduce of `Parallel` (the only line here that communicates).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine import kernels
from engine.config import ModelArgs
from engine.parallel import Parallel, Shard


def rope_inv_freq(args: ModelArgs) -> torch.Tensor:
    """RoPE inverse frequencies, with Llama-3.1's scaling: long wavelengths slowed by `factor`, smoothly."""
    inv = 1.0 / (
        args.rope_theta ** (torch.arange(0, args.head_dim, 2, dtype=torch.int64).float() / args.head_dim)
    )
    sc = args.rope_scaling
    if not sc:
        return inv
    factor, low, high = sc["factor"], sc["low_freq_factor"], sc["high_freq_factor"]
    orig = sc["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > orig / low, inv / factor, inv)
    smooth = (orig / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= orig / high) & (wavelen <= orig / low)
    return torch.where(medium, smoothed, scaled)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, heads, L, head_dim]; cos/sin: [L, head_dim] in fp32."""
    xf = x.float()
    half = xf.shape[-1] // 2
    rotated = torch.cat((-xf[..., half:], xf[..., :half]), dim=-1)
    return (xf * cos + rotated * sin).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs, shard: Shard, par: Parallel) -> None:
        super().__init__()
        self.hd = args.head_dim
        self.n_heads, self.n_kv = len(shard.heads), len(shard.kv_heads)
        self.wqkv = nn.Linear(args.dim, (self.n_heads + 2 * self.n_kv) * self.hd, bias=False)
        self.wo = nn.Linear(self.n_heads * self.hd, args.dim, bias=False)
        self.par = par
        self.fused_sms = 0  # > 0: decode attention through engine.kernels (set by StageModel.setup_cache)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        input_pos: torch.Tensor | None,
        mb: int,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        b, length, _ = x.shape
        qkv = self.wqkv(x)
        if input_pos is not None and self.fused_sms:
            return self.wo(self.decode_fused(qkv, cos, sin, input_pos, mb).view(b, 1, -1))
        kc, vc = getattr(self, f"k_cache{mb}"), getattr(self, f"v_cache{mb}")
        q, k, v = qkv.split([self.n_heads * self.hd, self.n_kv * self.hd, self.n_kv * self.hd], -1)
        q = apply_rope(q.view(b, length, self.n_heads, self.hd).transpose(1, 2), cos, sin)
        k = apply_rope(k.view(b, length, self.n_kv, self.hd).transpose(1, 2), cos, sin)
        v = v.view(b, length, self.n_kv, self.hd).transpose(1, 2)
        rep = self.n_heads // self.n_kv
        if input_pos is None:
            # Prefill from position 0: causal attention over the fresh keys; the cache is only written.
            kc[:, :, :length] = k
            vc[:, :, :length] = v
            y = F.scaled_dot_product_attention(
                q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), is_causal=True
            )
            y = y.transpose(1, 2).reshape(b, length, self.n_heads * self.hd)
        else:
            # One new token: its query heads of one KV group become the "query length" of SDPA, so the
            # cache is read once per KV head, with no repeated copy of it.
            kc[:, :, input_pos] = k
            vc[:, :, input_pos] = v
            y = F.scaled_dot_product_attention(q.view(b, self.n_kv, rep, self.hd), kc, vc, attn_mask=mask)
            y = y.reshape(b, 1, self.n_heads * self.hd)
        return self.wo(y)

    def decode_fused(
        self, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, input_pos: torch.Tensor, mb: int
    ) -> torch.Tensor:
        """RoPE, cache write and attention of one new token in two kernels; cos/sin are the whole tables."""
        kc, vc = getattr(self, f"k_cache{mb}"), getattr(self, f"v_cache{mb}")
        return kernels.decode_attention(qkv, kc, vc, cos, sin, input_pos, self.n_heads, self.fused_sms)


class FeedForward(nn.Module):
    def __init__(self, args: ModelArgs, shard: Shard) -> None:
        super().__init__()
        self.w13 = nn.Linear(args.dim, 2 * len(shard.ffn), bias=False)
        self.w2 = nn.Linear(len(shard.ffn), args.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, args: ModelArgs, shard: Shard, par: Parallel) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.attention = Attention(args, shard, par)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        self.feed_forward = FeedForward(args, shard)
        self.par = par
        self.matvec = False  # decode through engine.kernels.matvec too (set by StageModel.setup_cache)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        input_pos: torch.Tensor | None,
        mb: int,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        if input_pos is not None and self.matvec:
            return self.decode_fused(x, cos, sin, input_pos, mb)
        with self.par.region("attention", "compute"):
            a = self.attention(self.attention_norm(x), cos, sin, input_pos, mb, mask)
        h = x + self.par.all_reduce(a)
        with self.par.region("mlp", "compute"):
            m = self.feed_forward(self.ffn_norm(h))
        return h + self.par.all_reduce(m)

    def decode_fused(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, input_pos: torch.Tensor, mb: int
    ) -> torch.Tensor:
        """The same layer in eight kernels: the attention-output and down projections through
        engine.kernels.matvec, SwiGLU fused into the down projection and (one TP rank) each residual add
        into the projection before it. QKV and gate/up stay with cuBLAS, which streams those weights
        faster than our kernel does (bench/RESULTS-engine.md)."""
        b = x.shape[0]
        x = x.view(b, -1)
        at, ff = self.attention, self.feed_forward
        alone = self.par.layout.tp == 1  # no all-reduce between a projection and its residual add
        with self.par.region("attention", "compute"):
            y = at.decode_fused(at.wqkv(self.attention_norm(x)), cos, sin, input_pos, mb)
            a = kernels.matvec(y, at.wo.weight, residual=x if alone else None)
        h = a if alone else x + self.par.all_reduce(a)
        with self.par.region("mlp", "compute"):
            m = kernels.matvec(
                ff.w13(self.ffn_norm(h)), ff.w2.weight, swiglu=True, residual=h if alone else None
            )
        out = m if alone else h + self.par.all_reduce(m)
        return out.view(b, 1, -1)


class StageModel(nn.Module):
    """Layers `layers` of the model on this rank; the first stage embeds, the last one norms and projects."""

    def __init__(
        self, args: ModelArgs, layers: range, shard: Shard, par: Parallel, vocab_parallel: bool = False
    ) -> None:
        super().__init__()
        self.args, self.layer_ids, self.shard, self.par = args, layers, shard, par
        self.vocab_parallel = vocab_parallel
        first, last = par.layout.is_first, par.layout.is_last
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim) if first else None
        self.layers = nn.ModuleList(Block(args, shard, par) for _ in layers)
        self.norm = RMSNorm(args.dim, args.norm_eps) if last else None
        self.output = nn.Linear(args.dim, len(shard.vocab), bias=False) if last else None

    def setup_cache(
        self, micro_batches: int, mb_size: int, seq_len: int, decode_kernels: str = "torch"
    ) -> None:
        """Allocate the static KV cache (one slot per micro-batch) and the RoPE tables for `seq_len`.

        `decode_kernels`: `torch` (SDPA and cuBLAS), `attention` (decode attention through
        engine.kernels: RoPE, cache write, split-KV) or `fused` (also the attention-output and down
        projections through engine.kernels.matvec, with SwiGLU and the residual adds fused in).
        """
        p = next(self.parameters())
        sms = torch.cuda.get_device_properties(p.device).multi_processor_count if p.is_cuda else 1
        self.fused_decode = decode_kernels in ("attention", "fused")
        self.matvec = decode_kernels == "fused"
        for block in self.layers:
            block.attention.fused_sms = sms if self.fused_decode else 0
            block.matvec = self.matvec
            shape = (mb_size, block.attention.n_kv, seq_len, self.args.head_dim)
            # One buffer per micro-batch, written in place by index: a view of a shared buffer would make
            # the compiled step copy the whole cache at every token.
            for m in range(micro_batches):
                for name in (f"k_cache{m}", f"v_cache{m}"):
                    block.attention.register_buffer(
                        name, torch.zeros(shape, dtype=p.dtype, device=p.device), persistent=False
                    )
        freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), rope_inv_freq(self.args))
        emb = torch.cat((freqs, freqs), dim=-1).to(p.device)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        self.register_buffer("positions", torch.arange(seq_len, device=p.device), persistent=False)

    def forward(self, x: torch.Tensor, input_pos: torch.Tensor | None = None, mb: int = 0) -> torch.Tensor:
        """Token ids (first stage) or hidden states in; hidden states or last-position fp32 logits out.

        `input_pos` None means prefill of the whole prompt from position 0; else a one-element tensor,
        the position of the single new token (a tensor, so CUDA graphs replay for every position).
        """
        if self.tok_embeddings is not None:
            with self.par.region("embed", "compute"):
                x = self.tok_embeddings(x)
        if input_pos is None:
            length = x.shape[1]
            cos, sin, mask = self.cos[:length], self.sin[:length], None
        elif self.fused_decode:
            cos, sin, mask = self.cos, self.sin, None
        else:
            cos, sin = self.cos[input_pos], self.sin[input_pos]
            mask = (self.positions <= input_pos).view(1, 1, 1, -1)
        for block in self.layers:
            x = block(x, cos, sin, input_pos, mb, mask)
        if self.output is None:
            return x
        with self.par.region("head", "compute"):
            logits = self.output(self.norm(x[:, -1])).float()
        if self.vocab_parallel:
            logits = self.par.all_gather_last(logits)
        return logits

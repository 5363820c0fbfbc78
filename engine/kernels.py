"""Fused decode attention for one new token per sequence: RoPE, the KV-cache write and split-KV attention.

Why: at batch 1 a decode step of an 8B model is 32 layers of matrix-vector products at the weight floor
plus, per layer, a handful of small kernels whose fixed costs add up. The attention part alone was
five kernels (RoPE of q, RoPE of k, two cache writes, cuDNN attention at 16 µs over 2.6 MB); here it
is two, and the attention reads only the positions written so far, split over many blocks
(flash-decoding) so that 8 KV heads at batch 1 still spread over the GPU.

Kernel 1 (`_partial`), grid (batch × kv_heads, splits): each program ropes the query heads of one KV
group, attends over its slice of the cached positions before `pos`, and writes its running max, sum
and unnormalised output per query head. Kernel 2 (`_combine`), grid (batch × kv_heads, query heads per
group): merges the slices and the new token's own key and value (taken from the QKV projection, so no
program reads a cache slot another one writes), writes the output, and the group's first program
writes the roped key and the value into the cache at `pos`.

Needs Triton (shipped with CUDA builds of torch), imported only when a GPU is present or under the
interpreter; `available()` says whether the kernels can run. Under
`TRITON_INTERPRET=1` the same kernels run on CPU tensors, which is how the tests check them without a
GPU. Numerics follow the SDPA path of engine/model.py: RoPE in fp32, q and k rounded to the model's
dtype, scores and softmax in fp32, probabilities rounded to the model's dtype before the product with V.
"""

from __future__ import annotations

import math
import os

import torch

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
triton = tl = None
# Triton is imported only where the kernels can run: importing it costs every CPU-only process (the
# demo's many short ranks) time for nothing.
if torch.cuda.is_available() or INTERPRET:
    try:
        import triton
        import triton.language as tl
    except ImportError:  # CPU builds of torch come without Triton
        pass

BLOCK_S = 32  # cached positions per inner step of a split
MAX_SPLITS = 128  # the combine kernel loads every split of a group at once


def available(device: torch.device) -> tuple[bool, str]:
    """Whether the fused kernels can run on `device`, and why not."""
    if device.type != "cuda" and not INTERPRET:
        return False, f"the engine's decode kernels run on CUDA (or with TRITON_INTERPRET=1), not on {device}"
    if triton is None:
        return False, "Triton is not installed (CPU builds of torch come without it)"
    return True, ""


def split_len(batch_kv: int, max_len: int, sms: int) -> int:
    """Positions per split: enough splits for about two programs per SM, each a whole number of blocks."""
    want = max(1, (2 * sms) // max(batch_kv, 1))
    per = max(BLOCK_S, -(-max_len // want))
    per = -(-per // BLOCK_S) * BLOCK_S
    while -(-max_len // per) > MAX_SPLITS:
        per += BLOCK_S
    return per


if triton is not None:

    @triton.jit
    def _rope_rows(base, stride_row, rows, n_rows, c, s, HALF: tl.constexpr, OUT_DTYPE: tl.constexpr):
        """Load `rows` (masked to `n_rows`) of head vectors at `base`, apply rotate-half RoPE in fp32,
        and round to the model's dtype as the SDPA path does; returns the two halves in fp32."""
        d = tl.arange(0, HALF)
        mask = rows[:, None] < n_rows
        ptr = base + rows[:, None] * stride_row + d[None, :]
        a = tl.load(ptr, mask=mask, other=0.0).to(tl.float32)
        b = tl.load(ptr + HALF, mask=mask, other=0.0).to(tl.float32)
        ra = (a * c[None, :] - b * s[None, :]).to(OUT_DTYPE).to(tl.float32)
        rb = (b * c[None, :] + a * s[None, :]).to(OUT_DTYPE).to(tl.float32)
        return ra, rb

    @triton.jit
    def _partial(
        qkv_ptr,
        kc_ptr,
        vc_ptr,
        cos_ptr,
        sin_ptr,
        pos_ptr,
        m_ptr,
        l_ptr,
        acc_ptr,
        stride_qkv_b,
        stride_c_b,
        stride_c_h,
        stride_c_s,
        n_kv,
        n_splits,
        split_len,
        scale,
        REP: tl.constexpr,
        BLOCK_R: tl.constexpr,
        HD: tl.constexpr,
        BLOCK_S: tl.constexpr,
        PREC: tl.constexpr,
    ):
        pid, split = tl.program_id(0), tl.program_id(1)
        b, g = pid // n_kv, pid % n_kv
        pos = tl.load(pos_ptr)
        start = split * split_len
        if start < pos:
            HALF: tl.constexpr = HD // 2
            d = tl.arange(0, HALF)
            c = tl.load(cos_ptr + pos * HD + d)
            s = tl.load(sin_ptr + pos * HD + d)
            rows = tl.arange(0, BLOCK_R)
            dtype = kc_ptr.dtype.element_ty
            qa, qb = _rope_rows(qkv_ptr + b * stride_qkv_b + g * REP * HD, HD, rows, REP, c, s, HALF, dtype)
            qa, qb = qa.to(dtype), qb.to(dtype)
            m = tl.full([BLOCK_R], float("-inf"), tl.float32)
            lsum = tl.zeros([BLOCK_R], tl.float32)
            acc = tl.zeros([BLOCK_R, HD], tl.float32)
            end = tl.minimum(start + split_len, pos)
            cache = b * stride_c_b + g * stride_c_h
            dfull = tl.arange(0, HD)
            for s0 in range(start, end, BLOCK_S):
                p_idx = s0 + tl.arange(0, BLOCK_S)
                valid = p_idx < end
                kp = kc_ptr + cache + p_idx[:, None] * stride_c_s
                ka = tl.load(kp + d[None, :], mask=valid[:, None], other=0.0)
                kb = tl.load(kp + HALF + d[None, :], mask=valid[:, None], other=0.0)
                vp = vc_ptr + cache + p_idx[:, None] * stride_c_s + dfull[None, :]
                v = tl.load(vp, mask=valid[:, None], other=0.0)
                sc = tl.dot(qa, tl.trans(ka), input_precision=PREC)
                sc += tl.dot(qb, tl.trans(kb), input_precision=PREC)
                sc = tl.where(valid[None, :], sc * scale, float("-inf"))
                m_new = tl.maximum(m, tl.max(sc, 1))
                p = tl.exp(sc - m_new[:, None])
                alpha = tl.exp(m - m_new)
                lsum = lsum * alpha + tl.sum(p, 1)
                acc = acc * alpha[:, None] + tl.dot(p.to(dtype), v, input_precision=PREC)
                m = m_new
            out = (b * n_kv + g) * n_splits + split
            keep = rows < REP
            tl.store(m_ptr + out * REP + rows, m, mask=keep)
            tl.store(l_ptr + out * REP + rows, lsum, mask=keep)
            tl.store(acc_ptr + (out * REP + rows[:, None]) * HD + dfull[None, :], acc, mask=keep[:, None])

    @triton.jit
    def _combine(
        qkv_ptr,
        kc_ptr,
        vc_ptr,
        cos_ptr,
        sin_ptr,
        pos_ptr,
        m_ptr,
        l_ptr,
        acc_ptr,
        y_ptr,
        stride_qkv_b,
        stride_c_b,
        stride_c_h,
        stride_c_s,
        stride_y_b,
        n_heads,
        n_kv,
        n_splits,
        split_len,
        scale,
        REP: tl.constexpr,
        HD: tl.constexpr,
        SPLITS: tl.constexpr,
    ):
        pid, r = tl.program_id(0), tl.program_id(1)
        b, g = pid // n_kv, pid % n_kv
        pos = tl.load(pos_ptr)
        HALF: tl.constexpr = HD // 2
        d = tl.arange(0, HALF)
        dfull = tl.arange(0, HD)
        c = tl.load(cos_ptr + pos * HD + d)
        s = tl.load(sin_ptr + pos * HD + d)
        dtype = kc_ptr.dtype.element_ty
        one = tl.arange(0, 1)
        row = qkv_ptr + b * stride_qkv_b
        qa, qb = _rope_rows(row + (g * REP + r) * HD, HD, one, 1, c, s, HALF, dtype)
        k_off = row + (n_heads + g) * HD
        ka, kb = _rope_rows(k_off, HD, one, 1, c, s, HALF, dtype)
        v_new = tl.load(row + (n_heads + n_kv + g) * HD + dfull).to(tl.float32)
        s_new = (tl.sum(qa * ka, 1) + tl.sum(qb * kb, 1)) * scale  # [1]
        used = (pos + split_len - 1) // split_len
        sp = tl.arange(0, SPLITS)
        base = (b * n_kv + g) * n_splits
        ms = tl.load(m_ptr + (base + sp) * REP + r, mask=sp < used, other=float("-inf"))
        ls = tl.load(l_ptr + (base + sp) * REP + r, mask=sp < used, other=0.0)
        acc_rows = acc_ptr + ((base + sp[:, None]) * REP + r) * HD + dfull[None, :]
        accs = tl.load(acc_rows, mask=sp[:, None] < used, other=0.0)
        m_all = tl.maximum(tl.max(ms, 0), tl.max(s_new, 0))
        w = tl.where(sp < used, tl.exp(ms - m_all), 0.0)
        w_new = tl.exp(s_new - m_all)  # [1]
        # The new token's probability is rounded to the model's dtype before the product, like the others.
        p_new = w_new.to(dtype).to(tl.float32)
        num = tl.sum(w[:, None] * accs, 0) + tl.sum(p_new[:, None] * v_new[None, :], 0)
        den = tl.sum(w * ls, 0) + tl.sum(w_new, 0)
        tl.store(y_ptr + b * stride_y_b + (g * REP + r) * HD + dfull, (num / den).to(y_ptr.dtype.element_ty))
        if r == 0:
            cache = kc_ptr + b * stride_c_b + g * stride_c_h + pos * stride_c_s
            tl.store(cache + one[:, None] * 0 + d[None, :], ka.to(dtype))
            tl.store(cache + HALF + one[:, None] * 0 + d[None, :], kb.to(dtype))
            tl.store(vc_ptr + b * stride_c_b + g * stride_c_h + pos * stride_c_s + dfull, v_new.to(dtype))


def _launch(
    qkv: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    pos: torch.Tensor,
    n_heads: int,
    sms: int,
) -> torch.Tensor:
    batch, n_kv, max_len, hd = k_cache.shape
    rep = n_heads // n_kv
    per = split_len(batch * n_kv, max_len, sms)
    n_splits = -(-max_len // per)
    dev = qkv.device
    m = torch.empty(batch * n_kv * n_splits * rep, dtype=torch.float32, device=dev)
    lsum = torch.empty_like(m)
    acc = torch.empty(batch * n_kv * n_splits * rep * hd, dtype=torch.float32, device=dev)
    y = torch.empty(batch, n_heads * hd, dtype=qkv.dtype, device=dev)
    q2 = qkv.reshape(batch, -1)
    scale = 1.0 / math.sqrt(hd)
    strides = (k_cache.stride(0), k_cache.stride(1), k_cache.stride(2))
    block_r = max(16, triton.next_power_of_2(rep))
    # fp32 models keep fp32 products (Triton would use tf32); bf16/fp16 products accumulate in fp32 anyway.
    prec = "ieee" if qkv.dtype == torch.float32 else "tf32"
    # Both kernels take the same leading arguments: the inputs, the caches, the position and the partials.
    common = (q2, k_cache, v_cache, cos, sin, pos, m, lsum, acc)
    _partial[(batch * n_kv, n_splits)](
        *common, q2.stride(0), *strides, n_kv, n_splits, per, scale,
        REP=rep, BLOCK_R=block_r, HD=hd, BLOCK_S=BLOCK_S, PREC=prec, num_warps=4,
    )  # fmt: skip
    _combine[(batch * n_kv, rep)](
        *common, y, q2.stride(0), *strides, y.stride(0), n_heads, n_kv, n_splits, per, scale,
        REP=rep, HD=hd, SPLITS=triton.next_power_of_2(n_splits), num_warps=4,
    )  # fmt: skip
    return y


@torch.library.custom_op("engine::decode_attention", mutates_args=("k_cache", "v_cache"))
def decode_attention(
    qkv: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    pos: torch.Tensor,
    n_heads: int,
    sms: int,
) -> torch.Tensor:
    """Attention of one new token per sequence; writes its roped key and value into the caches at `pos`.

    qkv: [batch, 1, (n_heads + 2 kv) * head_dim], the fused projection's output (q, then k, then v);
    k_cache/v_cache: [batch, kv, max_len, head_dim], positions before `pos` filled; cos/sin: [max_len,
    head_dim] fp32 RoPE tables; pos: a one-element int tensor. Returns [batch, n_heads * head_dim].
    `sms` (the GPU's multiprocessor count) sizes the split; it is an argument so the graph stays pure.
    """
    return _launch(qkv, k_cache, v_cache, cos, sin, pos, n_heads, sms)


@decode_attention.register_fake
def _(qkv, k_cache, v_cache, cos, sin, pos, n_heads, sms):  # noqa: ANN001, ANN202 - the op's signature
    return qkv.new_empty(qkv.shape[0], n_heads * k_cache.shape[3])


# ---- matrix-vector products of decode, with the neighbouring elementwise work fused in ----
#
# y = x @ W.T for the few rows of a decode step (M <= 16) and W of nn.Linear's [N, K] layout, with an
# optional prologue and epilogue, so that the small kernels around a projection disappear:
#   swiglu:   x holds [gate | up] (2K wide) and is replaced by silu(gate) * up, rounded like F.silu * up;
#   residual: the output is rounded to the model's dtype and then `residual` is added, as `h = x + a` does.
# There is no split over K, so no second reduction kernel: each program owns BLOCK_N whole rows of W. One
# row (M = 1) uses plain multiply-and-sum; more rows use the tensor cores with M padded to 16.
# The engine uses both (attention-output and down projections). An RMSNorm prologue, measured on an H200,
# lost to cuBLAS plus torch.compile's norm kernel (bench/RESULTS-engine.md) and was removed.

MATVEC_MAX_ROWS = 16
MATVEC_FAST_ROWS = 1  # up to here it beat cuBLAS plus the kernels it replaces on an H200; auto stops here
# (BLOCK_N, BLOCK_K, num_warps, num_stages), tried in order on the first call of each shape; the
# fastest is kept for the process (MATVEC_CHOICE says which). The first one is used without timing.
MATVEC_CONFIGS = {
    1: [(8, 1024, 8, 2), (4, 1024, 4, 2), (16, 256, 4, 3), (2, 2048, 4, 2), (4, 2048, 8, 2), (8, 2048, 8, 2),
        (16, 1024, 8, 2), (4, 1024, 4, 3), (8, 1024, 8, 3), (8, 512, 4, 4), (16, 512, 8, 4), (32, 256, 8, 4)],
    16: [(32, 256, 4, 3), (16, 256, 4, 3), (64, 128, 4, 3), (32, 512, 8, 3)],
}  # fmt: skip
MATVEC_CHOICE: dict[tuple, tuple[int, int, int, int]] = {}

if triton is not None:

    @triton.jit
    def _matvec(
        x_ptr, w_ptr, y_ptr, r_ptr, M, N, K, stride_xm, stride_ym, stride_rm,
        SWIGLU: tl.constexpr, RES: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr, PREC: tl.constexpr,
    ):  # fmt: skip
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        ms = tl.arange(0, BLOCK_M)
        mmask = ms < M
        nmask = rows < N
        dtype = w_ptr.dtype.element_ty
        if BLOCK_M == 1:
            acc = tl.zeros([BLOCK_N, BLOCK_K], tl.float32)
        else:
            acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
        for k0 in range(0, K, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            kmask = ks < K
            xm = mmask[:, None] & kmask[None, :]
            xp = x_ptr + ms[:, None] * stride_xm + ks[None, :]
            if SWIGLU:
                g = tl.load(xp, mask=xm, other=0.0).to(tl.float32)
                u = tl.load(xp + K, mask=xm, other=0.0)
                xv = (g * tl.sigmoid(g)).to(dtype) * u
            else:
                xv = tl.load(xp, mask=xm, other=0.0)
            wm = nmask[:, None] & kmask[None, :]
            w = tl.load(w_ptr + rows[:, None] * K + ks[None, :], mask=wm, other=0.0)
            if BLOCK_M == 1:
                acc += w.to(tl.float32) * xv.to(tl.float32)
            else:
                acc += tl.dot(xv.to(dtype), tl.trans(w), input_precision=PREC)
        if BLOCK_M == 1:
            out = tl.sum(acc, 1)[None, :]
        else:
            out = acc
        out = out.to(dtype)
        om = mmask[:, None] & nmask[None, :]
        if RES:
            out += tl.load(r_ptr + ms[:, None] * stride_rm + rows[None, :], mask=om, other=0.0)
        tl.store(y_ptr + ms[:, None] * stride_ym + rows[None, :], out, mask=om)


def _matvec_launch(x, w, y, r, swiglu: bool, cfg: tuple[int, int, int, int]) -> None:  # noqa: ANN001
    m, k = x.shape[0], w.shape[1]
    bn, bk, warps, stages = cfg
    _matvec[(triton.cdiv(w.shape[0], bn),)](
        x, w, y, r if r is not None else y, m, w.shape[0], k, x.stride(0),
        y.stride(0), r.stride(0) if r is not None else 0, SWIGLU=swiglu, RES=r is not None,
        BLOCK_M=1 if m == 1 else MATVEC_MAX_ROWS, BLOCK_N=bn, BLOCK_K=bk,
        PREC="ieee" if w.dtype == torch.float32 else "tf32", num_warps=warps, num_stages=stages,
    )  # fmt: skip


def _matvec_config(x, w, y, r, swiglu: bool) -> tuple[int, int, int, int]:  # noqa: ANN001
    """The launch shape for this problem: timed once per shape on a GPU (never while a CUDA graph is being
    captured), the first listed one elsewhere."""
    configs = MATVEC_CONFIGS[1 if x.shape[0] == 1 else MATVEC_MAX_ROWS]
    key = (x.shape[0], w.shape[0], w.shape[1], swiglu, r is not None, w.dtype, x.device.index)
    if key in MATVEC_CHOICE:
        return MATVEC_CHOICE[key]
    if x.device.type != "cuda" or torch.cuda.is_current_stream_capturing():
        return configs[0]
    timed = []
    for cfg in configs:
        try:
            ms = triton.testing.do_bench(
                lambda c=cfg: _matvec_launch(x, w, y, r, swiglu, c), warmup=5, rep=20
            )
        except triton.runtime.errors.OutOfResources:
            continue
        timed.append((ms, cfg))
    MATVEC_CHOICE[key] = min(timed)[1] if timed else configs[0]
    return MATVEC_CHOICE[key]


@torch.library.custom_op("engine::matvec", mutates_args=())
def matvec(
    x: torch.Tensor,
    w: torch.Tensor,
    swiglu: bool = False,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """x [M, K] (or [M, 2K] with swiglu) times w.T, w [N, K]; M at most MATVEC_MAX_ROWS. See above."""
    if x.shape[0] > MATVEC_MAX_ROWS:
        raise ValueError(f"matvec takes at most {MATVEC_MAX_ROWS} rows, got {x.shape[0]}")
    x = x.contiguous()
    y = torch.empty(x.shape[0], w.shape[0], dtype=w.dtype, device=w.device)
    cfg = _matvec_config(x, w, y, residual, swiglu)
    _matvec_launch(x, w, y, residual, swiglu, cfg)
    return y


@matvec.register_fake
def _(x, w, swiglu=False, residual=None):  # noqa: ANN001, ANN202 - the op's signature
    return w.new_empty(x.shape[0], w.shape[0])

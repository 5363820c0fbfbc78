"""Fill a stage model's parameters, shard by shard: deterministic random weights or a safetensors checkpoint.

Both sources see the same list of pieces: (Hugging Face tensor name, sharded dimension, slice). A rank
only ever builds its own slices, so no rank holds the full model (405B on 32 GPUs starts). Random
weights are drawn in fixed blocks along the sharded dimension (one head, 256 MLP rows, 1024 vocabulary
rows), each block from a seed derived from (seed, tensor name, block index): a slice is the same
numbers whichever TP degree cut it, so one rank and eight ranks run the same model.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.config import ConfigError
from engine.model import StageModel


@dataclass(frozen=True)
class Piece:
    """Rows (dim 0) or columns (dim 1) [start, stop) of Hugging Face tensor `name`, drawn in `block`s."""

    name: str
    shape: tuple[int, ...]
    dim: int
    start: int
    stop: int
    block: int
    std: float


def pieces_of(model: StageModel) -> dict[str, list[Piece]]:
    """For each parameter of `model`, the pieces that, concatenated along its dimension 0 or 1, fill it."""
    a, s = model.args, model.shard
    hd, d, f, v = a.head_dim, a.dim, a.ffn_dim, a.vocab_size
    out: dict[str, list[Piece]] = {}

    def rows(name: str, shape: tuple[int, int], r: range, block: int, std: float) -> Piece:
        return Piece(name, shape, 0, r.start, r.stop, block, std)

    if model.tok_embeddings is not None:
        out["tok_embeddings.weight"] = [rows("model.embed_tokens.weight", (v, d), range(v), 1024, 1.0)]
    for j, i in enumerate(model.layer_ids):
        p, q = f"layers.{j}.", f"model.layers.{i}."
        heads = range(s.heads.start * hd, s.heads.stop * hd)
        kv = range(s.kv_heads.start * hd, s.kv_heads.stop * hd)
        out[p + "attention_norm.weight"] = [Piece(q + "input_layernorm.weight", (d,), 0, 0, d, d, 0.0)]
        out[p + "ffn_norm.weight"] = [Piece(q + "post_attention_layernorm.weight", (d,), 0, 0, d, d, 0.0)]
        out[p + "attention.wqkv.weight"] = [
            rows(q + "self_attn.q_proj.weight", (a.n_heads * hd, d), heads, hd, d**-0.5),
            rows(q + "self_attn.k_proj.weight", (a.n_kv_heads * hd, d), kv, hd, d**-0.5),
            rows(q + "self_attn.v_proj.weight", (a.n_kv_heads * hd, d), kv, hd, d**-0.5),
        ]
        out[p + "attention.wo.weight"] = [
            Piece(
                q + "self_attn.o_proj.weight",
                (d, a.n_heads * hd),
                1,
                heads.start,
                heads.stop,
                hd,
                (a.n_heads * hd) ** -0.5,
            )
        ]
        out[p + "feed_forward.w13.weight"] = [
            rows(q + "mlp.gate_proj.weight", (f, d), s.ffn, 256, d**-0.5),
            rows(q + "mlp.up_proj.weight", (f, d), s.ffn, 256, d**-0.5),
        ]
        out[p + "feed_forward.w2.weight"] = [
            Piece(q + "mlp.down_proj.weight", (d, f), 1, s.ffn.start, s.ffn.stop, 256, f**-0.5)
        ]
    if model.output is not None:
        out["norm.weight"] = [Piece("model.norm.weight", (d,), 0, 0, d, d, 0.0)]
        head = "model.embed_tokens.weight" if a.tie_embeddings else "lm_head.weight"
        out["output.weight"] = [rows(head, (v, d), s.vocab, 1024, 1.0 if a.tie_embeddings else d**-0.5)]
    return out


def block_seed(seed: int, name: str, block: int) -> int:
    digest = hashlib.blake2b(f"{seed}/{name}/{block}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def random_piece(piece: Piece, seed: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The slice of a random tensor that a full draw, block by block, would give; norms are ones."""
    if piece.std == 0.0:
        return torch.ones(piece.stop - piece.start, device=device, dtype=dtype)
    parts = []
    size = piece.shape[piece.dim]
    gen = torch.Generator(device=device)
    for b in range(piece.start // piece.block, math.ceil(piece.stop / piece.block)):
        lo, hi = b * piece.block, min((b + 1) * piece.block, size)
        shape = list(piece.shape)
        shape[piece.dim] = hi - lo
        gen.manual_seed(block_seed(seed, piece.name, b))
        full = torch.randn(shape, generator=gen, device=device, dtype=torch.float32).mul_(piece.std)
        parts.append(
            full.narrow(piece.dim, max(piece.start, lo) - lo, min(piece.stop, hi) - max(piece.start, lo))
        )
    return torch.cat(parts, dim=piece.dim).to(dtype)


class Checkpoint:
    """A Hugging Face safetensors folder; each read takes only the requested slice off the file."""

    def __init__(self, folder: str | Path) -> None:
        from safetensors import safe_open

        self.folder = Path(folder)
        index = self.folder / "model.safetensors.index.json"
        if index.exists():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            files = sorted(set(weight_map.values()))
        else:
            files = sorted(p.name for p in self.folder.glob("*.safetensors"))
            weight_map = None
        if not files:
            raise ConfigError("--weights", f"{self.folder}: no *.safetensors files")
        self.handles = {name: safe_open(str(self.folder / name), framework="pt") for name in files}
        if weight_map is None:
            weight_map = {key: name for name, h in self.handles.items() for key in h.keys()}
        self.weight_map = weight_map

    def read(self, piece: Piece) -> torch.Tensor:
        if piece.name not in self.weight_map:
            raise ConfigError("--weights", f"{self.folder}: tensor {piece.name} missing")
        sl = self.handles[self.weight_map[piece.name]].get_slice(piece.name)
        if tuple(sl.get_shape()) != piece.shape:
            raise ConfigError(
                "--weights",
                f"{self.folder}: tensor {piece.name} has shape {sl.get_shape()}, "
                f"config.json implies {list(piece.shape)}",
            )
        return sl[piece.start : piece.stop] if piece.dim == 0 else sl[:, piece.start : piece.stop]


@torch.no_grad()
def load_weights(model: StageModel, *, seed: int = 0, folder: str | None = None) -> None:
    """Fill every parameter of `model` (built on the meta device, then `to_empty`) from its pieces."""
    ckpt = Checkpoint(folder) if folder else None
    params = dict(model.named_parameters())
    specs = pieces_of(model)
    if set(specs) != set(params):
        raise RuntimeError(f"weight map out of step with the model: {sorted(set(specs) ^ set(params))}")
    for pname, pieces in specs.items():
        target = params[pname]
        offset = 0
        for piece in pieces:
            if ckpt is not None:
                data = ckpt.read(piece)
            else:
                data = random_piece(piece, seed, target.device, target.dtype)
            target.narrow(piece.dim, offset, piece.stop - piece.start).copy_(data)
            offset += piece.stop - piece.start
        if offset != target.shape[pieces[0].dim]:
            raise RuntimeError(f"{pname}: pieces fill {offset} of {target.shape[pieces[0].dim]}")

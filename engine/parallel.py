"""Everything that knows about other ranks: the TP x PP layout, shard ranges, all-reduce, point to point.

Ranks are laid out with tensor parallelism innermost: position `i` of the engine's ranks is pipeline
stage `i // tp`, tensor-parallel rank `i % tp`, so a TP group is contiguous ranks and stays inside a
node. The all-reduce goes through a `torch.library` custom op (`study_engine::all_reduce`) that calls
the backend chosen per phase (prefill, decode); an opaque op survives `torch.compile` and CUDA-graph
capture, where a Python-level collective would break the graph.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from collectives import api
from engine.config import ConfigError, ModelArgs

AllReduce = Callable[[torch.Tensor], torch.Tensor]
_HANDLES: list[AllReduce] = []
_GROUPS: list[tuple[dist.ProcessGroup, int]] = []


@torch.library.custom_op("study_engine::all_reduce", mutates_args=())
def all_reduce_op(x: torch.Tensor, handle: int) -> torch.Tensor:
    """Sum `x` over the tensor-parallel group with the backend registered under `handle`."""
    out = x.clone()
    _HANDLES[handle](out)
    return out


@all_reduce_op.register_fake
def _all_reduce_fake(x: torch.Tensor, handle: int) -> torch.Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("study_engine::all_gather_last", mutates_args=())
def all_gather_last_op(x: torch.Tensor, handle: int, world: int) -> torch.Tensor:
    """Concatenate `x` from every rank of the group along the last dimension (vocab-parallel head)."""
    group, _ = _GROUPS[handle]
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts, dim=-1)


@all_gather_last_op.register_fake
def _all_gather_fake(x: torch.Tensor, handle: int, world: int) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], x.shape[-1] * world))


def make_backend(
    name: str | None, group: dist.ProcessGroup, gpus_per_node: int, device: torch.device, flag: str
) -> AllReduce:
    """The all-reduce called `name` from collectives.api; the group's own backend when `name` is None."""
    name = name or str(dist.get_backend(group))
    try:
        return api.make_allreduce(name, group=group, gpus_per_node=gpus_per_node, device=device)
    except api.AllReduceUnavailable as exc:
        raise ConfigError(flag, f"all-reduce {name!r} is unavailable here: {exc}") from exc


@dataclass(frozen=True)
class Layout:
    """Where this rank sits: its stage, its TP rank, and the global ranks of the engine's world."""

    tp: int
    pp: int
    ranks: tuple[int, ...]
    index: int

    @property
    def stage(self) -> int:
        return self.index // self.tp

    @property
    def tp_rank(self) -> int:
        return self.index % self.tp

    @property
    def is_first(self) -> bool:
        return self.stage == 0

    @property
    def is_last(self) -> bool:
        return self.stage == self.pp - 1

    def rank_of(self, stage: int, tp_rank: int) -> int:
        return self.ranks[stage * self.tp + tp_rank]


@dataclass(frozen=True)
class Shard:
    """The slices of each sharded dimension this rank holds (global indices, end exclusive)."""

    heads: range
    kv_heads: range
    ffn: range
    vocab: range


def shard_of(args: ModelArgs, tp: int, tp_rank: int, vocab_parallel: bool) -> Shard:
    """Megatron split; with more TP ranks than KV heads each KV head is replicated on tp/n_kv ranks."""
    h = args.n_heads // tp
    if tp <= args.n_kv_heads:
        kv = args.n_kv_heads // tp
        kv_heads = range(tp_rank * kv, (tp_rank + 1) * kv)
    else:
        j = tp_rank // (tp // args.n_kv_heads)
        kv_heads = range(j, j + 1)
    f = args.ffn_dim // tp
    v = args.vocab_size // tp if vocab_parallel else args.vocab_size
    v0 = tp_rank * v if vocab_parallel else 0
    return Shard(
        range(tp_rank * h, (tp_rank + 1) * h),
        kv_heads,
        range(tp_rank * f, (tp_rank + 1) * f),
        range(v0, v0 + v),
    )


class Parallel:
    """The communication one rank does: TP all-reduce / all-gather and PP point to point, optionally timed."""

    def __init__(
        self,
        layout: Layout,
        device: torch.device,
        tp_group: dist.ProcessGroup | None,
        prefill_ar: AllReduce | None,
        decode_ar: AllReduce | None,
    ) -> None:
        self.layout = layout
        self.device = device
        self.tp_group = tp_group
        self.handles = {}
        self.gather_handle = -1
        for phase, ar in (("prefill", prefill_ar), ("decode", decode_ar)):
            if ar is not None:
                _HANDLES.append(ar)
                self.handles[phase] = len(_HANDLES) - 1
        if tp_group is not None:
            _GROUPS.append((tp_group, layout.tp))
            self.gather_handle = len(_GROUPS) - 1
        self.handle = self.handles.get("prefill", -1)
        self.timer: Callable[[str, str], contextlib.AbstractContextManager] | None = None

    def phase(self, name: str) -> None:
        """Use the prefill or the decode all-reduce from now on."""
        self.handle = self.handles.get(name, -1)

    def region(self, name: str, kind: str) -> contextlib.AbstractContextManager:
        return self.timer(name, kind) if self.timer is not None else contextlib.nullcontext()

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout.tp == 1:
            return x
        with self.region("allreduce", "comm"):
            return all_reduce_op(x, self.handle)

    def all_gather_last(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout.tp == 1:
            return x
        with self.region("allgather", "comm"):
            return all_gather_last_op(x, self.gather_handle, self.layout.tp)

    def send_next(self, x: torch.Tensor) -> dist.Work:
        """Hand activations to the same TP rank of the next stage (non-blocking)."""
        with self.region("p2p", "comm"):
            return dist.isend(x.contiguous(), self.layout.rank_of(self.layout.stage + 1, self.layout.tp_rank))

    def recv_prev(self, buf: torch.Tensor) -> torch.Tensor:
        with self.region("p2p", "comm"):
            dist.recv(buf, self.layout.rank_of(self.layout.stage - 1, self.layout.tp_rank))
        return buf

    def send_tokens_to_first(self, tokens: torch.Tensor) -> dist.Work:
        """The last stage hands sampled tokens back to the first stage, which embeds them next step."""
        with self.region("p2p", "comm"):
            return dist.isend(tokens.contiguous(), self.layout.rank_of(0, self.layout.tp_rank))

    def recv_tokens_from_last(self, buf: torch.Tensor) -> torch.Tensor:
        with self.region("p2p", "comm"):
            dist.recv(buf, self.layout.rank_of(self.layout.pp - 1, self.layout.tp_rank))
        return buf


def make_parallel(
    tp: int,
    pp: int,
    *,
    device: torch.device,
    ranks: Sequence[int] | None = None,
    allreduce: str | None = None,
    prefill_allreduce: str | None = None,
    gpus_per_node: int = 1,
) -> Parallel:
    """Build this rank's groups. `ranks` (default: the whole world) are the engine's global ranks in order.

    Only the members of a TP group take part in creating it, so several engines can share one world
    (the tests run TP 2 and PP 2 side by side on four processes).
    """
    me = dist.get_rank() if dist.is_initialized() else 0
    ranks = (
        tuple(ranks)
        if ranks is not None
        else tuple(range(dist.get_world_size() if dist.is_initialized() else 1))
    )
    if me not in ranks:
        raise ConfigError("ranks", f"rank {me} is not one of the engine's ranks {list(ranks)}")
    layout = Layout(tp, pp, ranks, ranks.index(me))
    if tp == 1:
        return Parallel(layout, device, None, None, None)
    members = [layout.rank_of(layout.stage, t) for t in range(tp)]
    group = dist.new_group(members, use_local_synchronization=True)
    # TP groups are contiguous ranks, so a group spans min(tp, gpus_per_node) GPUs of each of its nodes.
    group_gpn = min(tp, gpus_per_node)
    prefill = make_backend(prefill_allreduce, group, group_gpn, device, "--prefill-allreduce")
    decode = make_backend(allreduce, group, group_gpn, device, "--allreduce")
    return Parallel(layout, device, group, prefill, decode)

"""One interface to every all-reduce the project can run: the engine and the benchmark pick one by name.

`make_allreduce(name)` returns an `AllReduce`: a callable that sums a tensor in place over a process
group and returns it. Backends:

- `nccl`, `gloo`: `torch.distributed.all_reduce` on an NCCL / gloo group (gloo stages CUDA tensors
  through host memory).
- `reference`: our CPU executor (collectives.reference) of the hierarchical NVRAR schedule over gloo
  point-to-point; `reference-ring`, `reference-rd`, `reference-rabenseifner`, `reference-tree` run the
  ring, recursive-doubling, Rabenseifner and binomial-tree schedules (collectives.schedules).
- `nvrar`: our NVSHMEM GPU kernel (collectives/csrc, built on first use; needs nvcc and NVSHMEM).
- `one-shot`, `two-shot`: torch symmetric memory `one_shot_all_reduce` / `two_shot_all_reduce_`
  (GPUs that can map each other's memory, i.e. one node).

Every backend needs torch.distributed to be started (collectives.launch.init_distributed) because ranks
and groups come from it. `available_backends()` says, per backend, whether it can run here and why not,
without starting anything; `make_allreduce` raises `AllReduceUnavailable` with the same reason.
"""

from __future__ import annotations

import importlib.util
import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

REFERENCE_SCHEDULES = {
    "reference": "nvrar",
    "reference-ring": "ring",
    "reference-rd": "recursive-doubling",
    "reference-rabenseifner": "rabenseifner",
    "reference-tree": "tree",
}
BACKENDS = ("nccl", "gloo", *REFERENCE_SCHEDULES, "nvrar", "one-shot", "two-shot")


class AllReduceUnavailable(RuntimeError):
    """A backend that cannot run here; `reason` says why in one line a user can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Availability:
    name: str
    available: bool
    reason: str | None


# Live all-reduces by handle, so that the custom op below can find the one a compiled graph names.
_INSTANCES: dict[int, AllReduce] = {}
_NEXT_HANDLE = itertools.count(1)


@torch.library.custom_op("collectives::all_reduce_", mutates_args=("tensor",))
def _all_reduce_op(tensor: torch.Tensor, handle: int) -> None:
    _INSTANCES[handle](tensor)


@_all_reduce_op.register_fake
def _all_reduce_fake(tensor: torch.Tensor, handle: int) -> None:
    return None


class AllReduce:
    """In-place sum over `group` (the default group when None). Subclasses implement `_run`."""

    name: str = "?"

    def __init__(self, group: Any = None) -> None:
        _require_distributed()
        self.group = group
        self.world_size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self.handle = next(_NEXT_HANDLE)
        _INSTANCES[self.handle] = self

    def op(self, tensor: torch.Tensor) -> torch.Tensor:
        """The same in-place sum as a torch.library custom op (`collectives::all_reduce_`).

        torch.compile treats the op as opaque instead of breaking the graph at a ctypes or
        torch.distributed call, so a decode step with its all-reduces compiles into one graph and can be
        captured by mode="reduce-overhead" (the backend itself must be graph-capturable: nvrar, nccl).
        """
        torch.ops.collectives.all_reduce_(tensor, self.handle)
        return tensor

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        if not tensor.is_contiguous():
            raise ValueError(f"{self.name}: the tensor must be contiguous")
        if self.world_size == 1:
            return tensor
        return self._run(tensor)

    def _run(self, tensor: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def close(self) -> None:
        """Release buffers and groups this backend holds; calling it is optional."""
        _INSTANCES.pop(self.handle, None)

    def __repr__(self) -> str:
        return f"<AllReduce {self.name} world_size={self.world_size}>"


def _require_distributed() -> None:
    if not (dist.is_available() and dist.is_initialized()):
        raise AllReduceUnavailable(
            "torch.distributed is not started: call collectives.launch.init_distributed() first"
        )


def _group_with_backend(group: Any, backend: str) -> Any:
    """`group` if it already speaks `backend`, else a new group over the same ranks that does.

    A sub-group is made with local synchronisation, so only its own ranks need to call: under pipeline
    parallelism each stage builds its TP group's all-reduce without the other stages.
    """
    current = dist.get_backend(group)
    if backend in str(current):  # also matches mixed backends such as "cpu:gloo,cuda:nccl"
        return group
    if group is None:
        return dist.new_group(backend=backend)
    ranks = dist.get_process_group_ranks(group)
    return dist.new_group(ranks=ranks, backend=backend, use_local_synchronization=True)


class TorchDistributedAllReduce(AllReduce):
    """torch.distributed.all_reduce on an NCCL or gloo group."""

    def __init__(self, backend: str, group: Any = None) -> None:
        super().__init__(group)
        self.name = backend
        self.backend = backend
        self.group = _group_with_backend(group, backend)

    def _run(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.backend == "gloo" and tensor.is_cuda:
            staged = tensor.cpu()
            dist.all_reduce(staged, group=self.group)
            tensor.copy_(staged)
            return tensor
        dist.all_reduce(tensor, group=self.group)
        return tensor


class ReferenceAllReduce(AllReduce):
    """Our CPU executor of one schedule (collectives.reference) over gloo point-to-point."""

    def __init__(self, name: str, group: Any = None, gpus_per_node: int | None = None) -> None:
        super().__init__(group)
        from collectives.reference import ScheduleExecutor

        self.name = name
        self.group = _group_with_backend(group, "gloo")
        self.executor = ScheduleExecutor(
            REFERENCE_SCHEDULES[name], group=self.group, gpus_per_node=gpus_per_node or self.world_size
        )

    def _run(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.is_cuda:
            staged = tensor.cpu()
            self.executor.all_reduce(staged)
            tensor.copy_(staged)
            return tensor
        return self.executor.all_reduce(tensor)


class SymmetricMemoryAllReduce(AllReduce):
    """torch symmetric memory one-shot / two-shot: the input is copied into a symmetric buffer first."""

    def __init__(
        self, name: str, group: Any = None, device: torch.device | None = None, max_bytes: int | None = None
    ) -> None:
        super().__init__(group)
        import torch.distributed._symmetric_memory as symm_mem

        self.name = name
        self.group = _group_with_backend(group, "nccl")
        group_obj = self.group if self.group is not None else dist.group.WORLD
        self.group_name = group_obj.group_name
        enable = getattr(symm_mem, "enable_symm_mem_for_group", None)
        if enable is not None:  # needed by older torch; newer torch deprecates it as a no-op
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                enable(self.group_name)
        self.device = device or torch.device("cuda", torch.cuda.current_device())
        self.max_bytes = max_bytes or (32 << 20)
        self.buffer = symm_mem.empty(self.max_bytes, dtype=torch.uint8, device=self.device)
        symm_mem.rendezvous(self.buffer, self.group_name)

    def _run(self, tensor: torch.Tensor) -> torch.Tensor:
        nbytes = tensor.numel() * tensor.element_size()
        if nbytes > self.max_bytes:
            raise ValueError(
                f"{self.name}: {nbytes} B exceeds the symmetric buffer ({self.max_bytes} B); "
                "pass a larger max_bytes to make_allreduce"
            )
        staged = self.buffer[:nbytes].view(tensor.dtype).view(tensor.shape)
        staged.copy_(tensor)
        if self.name == "one-shot":
            tensor.copy_(torch.ops.symm_mem.one_shot_all_reduce(staged, "sum", self.group_name))
        else:
            torch.ops.symm_mem.two_shot_all_reduce_(staged, "sum", self.group_name)
            tensor.copy_(staged)
        return tensor


def _why_not(name: str) -> str | None:
    """None when `name` can run here, else the reason; never starts anything."""
    if name not in BACKENDS:
        return f"unknown all-reduce backend {name!r}; known: {', '.join(BACKENDS)}"
    if not dist.is_available():
        return "this torch was built without torch.distributed"
    if name == "nccl":
        if not torch.cuda.is_available():
            return "no CUDA device (NCCL needs GPUs)"
        if not dist.is_nccl_available():
            return "this torch was built without NCCL"
        return None
    if name == "gloo" or name in REFERENCE_SCHEDULES:
        if not dist.is_gloo_available():
            return "this torch was built without gloo"
        if name in REFERENCE_SCHEDULES and importlib.util.find_spec("collectives.schedules") is None:
            return "collectives.schedules is not installed"
        return None
    if not torch.cuda.is_available():
        return f"no CUDA device ({name} runs on GPUs)"
    if name == "nvrar":
        from collectives import build

        return build.why_not_buildable()
    # one-shot / two-shot
    op = "one_shot_all_reduce" if name == "one-shot" else "two_shot_all_reduce_"
    if not hasattr(torch.ops.symm_mem, op):
        return f"this torch has no torch.ops.symm_mem.{op}"
    if not dist.is_nccl_available():
        return "this torch was built without NCCL (symmetric memory rendezvous uses it)"
    return None


def available_backends() -> dict[str, Availability]:
    """For each backend: can it run on this machine, and if not, why not (no process group needed)."""
    out = {}
    for name in BACKENDS:
        reason = _why_not(name)
        out[name] = Availability(name, reason is None, reason)
    return out


def make_allreduce(
    name: str,
    *,
    group: Any = None,
    gpus_per_node: int | None = None,
    device: torch.device | str | None = None,
    max_bytes: int | None = None,
) -> AllReduce:
    """Build the all-reduce called `name` over `group`; collective: every rank of the group calls it.

    `gpus_per_node` gives the hierarchy to NVRAR and the reference (ranks r // gpus_per_node share a
    node; default: the launcher's ranks per node). `max_bytes` sizes the buffers of backends that
    need them (nvrar, one-shot, two-shot; default 32 MiB). Raises AllReduceUnavailable naming why.
    """
    reason = _why_not(name)
    if reason is not None:
        raise AllReduceUnavailable(f"{name}: {reason}")
    _require_distributed()
    if gpus_per_node is None:
        from collectives.launch import detect_launch

        gpus_per_node = detect_launch().local_world_size
    world = dist.get_world_size(group)
    if gpus_per_node < 1 or world % gpus_per_node:
        raise ValueError(f"gpus_per_node={gpus_per_node} does not divide the group size {world}")
    if device is not None:
        device = torch.device(device)
    factories: dict[str, Callable[[], AllReduce]] = {
        "nccl": lambda: TorchDistributedAllReduce("nccl", group),
        "gloo": lambda: TorchDistributedAllReduce("gloo", group),
        "one-shot": lambda: SymmetricMemoryAllReduce("one-shot", group, device, max_bytes),
        "two-shot": lambda: SymmetricMemoryAllReduce("two-shot", group, device, max_bytes),
    }
    if name in factories:
        return factories[name]()
    if name in REFERENCE_SCHEDULES:
        return ReferenceAllReduce(name, group, gpus_per_node)
    from collectives.nvrar import NvrarAllReduce

    return NvrarAllReduce(group=group, gpus_per_node=gpus_per_node, device=device, max_bytes=max_bytes)

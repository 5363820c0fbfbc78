"""NVRAR from Python: start NVSHMEM over a torch.distributed group and call the CUDA kernel through ctypes.

NVSHMEM is bootstrapped from a unique id that rank 0 creates and broadcasts over torch.distributed, so
it starts under torchrun, srun, mpirun or mpiexec alike, without MPI. One NVSHMEM instance per process:
a process holds at most one NvrarAllReduce at a time. The kernel is enqueued on torch's current CUDA
stream and is CUDA-graph capturable. A wait that times out inside the kernel writes an error word the
host reads without synchronising: the next call (or `check()`) raises NvrarTimeout naming the peer.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import torch
import torch.distributed as dist

from collectives import build
from collectives.api import AllReduce
from collectives.dtypes import FLOAT_DTYPES, torch_dtype
from collectives.tuning import LaunchParams, TuningTable, table_key

DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
DTYPE_NAMES = {torch_dtype(name): name for name in FLOAT_DTYPES}
PROTOCOL_CODES = {"ll": 0, "simple": 1}
PHASES = {
    1: "intra-node reduce-scatter",
    2: "fold-in",
    3: "inter-node exchange",
    4: "fold-out",
    5: "intra-node all-gather",
}
DEFAULT_MAX_BYTES = 32 << 20
# Symmetric-heap bookkeeping: these mirror the layout in csrc/nvrar.cu (kMaxBlocks, kMaxChunks).
_MAX_BLOCKS, _MAX_CHUNKS = 32, 64
_HEAP_MARGIN = 64 << 20

_ACTIVE: NvrarAllReduce | None = None


class NvrarError(RuntimeError):
    """NVRAR could not start or launch; the message is the library's reason."""


class NvrarTimeout(NvrarError):
    """A wait inside the kernel ran past the timeout: a peer never sent; the communicator is unusable."""


def describe_error(word: int, gpus_per_node: int) -> str:
    """Turn the kernel's error word into a sentence naming the phase and the peer (node, local rank)."""
    phase = (word >> 24) & 0xF
    step = (word >> 28) & 0x7
    pe = word & 0xFFFFFF
    where = PHASES.get(phase, f"phase {phase}")
    if phase == 3:
        where += f" step {step}"
    return (
        f"NVRAR timed out in the {where} waiting for PE {pe} "
        f"(node {pe // gpus_per_node}, local rank {pe % gpus_per_node})"
    )


def heap_bytes(max_bytes: int, world_size: int, gpus_per_node: int) -> int:
    """Symmetric memory one PE allocates for messages up to `max_bytes` (see nvrar_init)."""

    def ceil_div(a: int, b: int) -> int:
        return -(-a // b)

    nodes = world_size // gpus_per_node
    steps = max(0, nodes.bit_length() - 1)
    slice_words = ceil_div(ceil_div(max_bytes, 4), gpus_per_node)
    region = ceil_div(slice_words * 8, 256) * 256 + ceil_div(slice_words * 4, 256) * 256
    regions = 2 * (2 * gpus_per_node + 4 + 2 * steps)
    signals = 2 * _MAX_BLOCKS * (2 * gpus_per_node + 2 + steps) * _MAX_CHUNKS * 8
    return regions * region + signals


class NvrarAllReduce(AllReduce):
    """Hierarchical all-reduce over NVSHMEM on `gpus_per_node`-wide nodes of the group's ranks."""

    name = "nvrar"

    def __init__(
        self,
        *,
        group: Any = None,
        gpus_per_node: int | None = None,
        device: torch.device | None = None,
        max_bytes: int | None = None,
        timeout_s: float | None = None,
        tuning: TuningTable | None = None,
    ) -> None:
        global _ACTIVE
        super().__init__(group)
        if _ACTIVE is not None:
            raise NvrarError(
                "this process already holds an NVRAR communicator (one NVSHMEM instance per "
                "process); close() it first"
            )
        self.gpus_per_node = gpus_per_node or self.world_size
        if self.world_size % self.gpus_per_node:
            raise ValueError(f"gpus_per_node={self.gpus_per_node} does not divide {self.world_size} ranks")
        self.device = device or torch.device("cuda", torch.cuda.current_device())
        self.max_bytes = max_bytes or DEFAULT_MAX_BYTES
        self.timeout_s = timeout_s or float(os.environ.get("NVRAR_TIMEOUT_S", "30"))
        self.tuning = tuning
        self._lib = build.load_library()
        needed = heap_bytes(self.max_bytes, self.world_size, self.gpus_per_node) + _HEAP_MARGIN
        os.environ.setdefault("NVSHMEM_SYMMETRIC_SIZE", str(needed))
        uid = ctypes.create_string_buffer(self._lib.nvrar_uniqueid_size())
        if self.rank == 0 and self._lib.nvrar_get_uniqueid(uid) != 0:
            raise NvrarError(self._lib.nvrar_last_error().decode())
        box = [uid.raw]
        dist.broadcast_object_list(box, src=dist.get_global_rank(group, 0) if group else 0, group=group)
        rc = self._lib.nvrar_init(
            self.rank,
            self.world_size,
            box[0],
            self.gpus_per_node,
            self.device.index or 0,
            self.max_bytes,
            self.timeout_s,
        )
        if rc != 0:
            raise NvrarError(f"nvrar_init: {self._lib.nvrar_last_error().decode()}")
        # Nobody may write into a peer's buffers before that peer has zeroed them.
        dist.barrier(group=group)
        _ACTIVE = self
        self._closed = False

    def _table(self, dtype: torch.dtype) -> TuningTable:
        if self.tuning is None or not self.tuning.key.endswith("|" + DTYPE_NAMES[dtype]):
            gpu = torch.cuda.get_device_name(self.device)
            self.tuning = TuningTable.load(
                table_key(gpu, self.world_size, self.gpus_per_node, DTYPE_NAMES[dtype]), self.gpus_per_node
            )
        return self.tuning

    def raise_if_failed(self) -> None:
        """Raise NvrarTimeout if any earlier kernel gave up waiting (reads host memory, no sync)."""
        word = self._lib.nvrar_error_word()
        if word:
            raise NvrarTimeout(describe_error(word, self.gpus_per_node))

    def check(self) -> None:
        """Wait for the device, then raise if a call timed out."""
        torch.cuda.synchronize(self.device)
        self.raise_if_failed()

    def _run(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.all_reduce_into(tensor, tensor)

    def all_reduce_into(
        self, inp: torch.Tensor, out: torch.Tensor, params: LaunchParams | None = None
    ) -> torch.Tensor:
        """out = sum over ranks of inp (out may be inp); `params` overrides the tuned launch parameters."""
        if self._closed:
            raise NvrarError("this NVRAR communicator is closed")
        if inp.dtype not in DTYPE_CODES:
            raise TypeError(f"nvrar supports {', '.join(DTYPE_NAMES.values())}, not {inp.dtype}")
        if not (inp.is_cuda and out.is_cuda and inp.is_contiguous() and out.is_contiguous()):
            raise ValueError("nvrar needs contiguous CUDA tensors")
        if out.dtype != inp.dtype or out.numel() != inp.numel():
            raise ValueError("nvrar: output must match the input's dtype and size")
        self.raise_if_failed()
        nbytes = inp.numel() * inp.element_size()
        params = params or self._table(inp.dtype).params(nbytes)
        stream = torch.cuda.current_stream(inp.device).cuda_stream
        rc = self._lib.nvrar_allreduce(
            inp.data_ptr(),
            out.data_ptr(),
            inp.numel(),
            DTYPE_CODES[inp.dtype],
            PROTOCOL_CODES[params.protocol],
            params.blocks,
            params.threads,
            params.chunk_bytes,
            stream,
        )
        if rc != 0:
            raise NvrarError(self._lib.nvrar_last_error().decode())
        return out

    def close(self) -> None:
        """Free the symmetric buffers and stop NVSHMEM (collective)."""
        global _ACTIVE
        if self._closed:
            return
        super().close()
        self._closed = True
        _ACTIVE = None
        if self._lib.nvrar_finalize() != 0:
            raise NvrarError(self._lib.nvrar_last_error().decode())

"""The CPU reference: execute any schedule of collectives.schedules over torch.distributed point-to-point.

Each step follows the schedule's semantics exactly: every rank copies the slices it sends as they are at
the start of the step, posts all its sends and receives (isend / irecv), waits for them, then applies
each receive: add into the buffer (reduce) or overwrite. Several messages between the same pair in one
step are told apart by a tag, their rank among that pair's messages ordered by (offset, count), which
both sides compute alike. Running the very plan that the cost model and the GPU tests reason about
over real messages checks the schedules and gives sanity timings on CPUs (gloo).

Sums are formed in the tensor's dtype, one addition per received slice, so the reduction order is the
schedule's and differs from gloo's or MPI's: integer results are exact, float results agree within
rounding (tests use a relative tolerance of 1e-5 for fp32 and 2e-2 for fp16 / bf16 on values of one sign).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from collectives.schedules import Op, Schedule, Topology, schedule


class ScheduleExecutor:
    """All-reduce by one named algorithm of collectives.schedules on a `gpus_per_node`-wide topology."""

    def __init__(self, algorithm: str, *, group: Any = None, gpus_per_node: int | None = None) -> None:
        self.algorithm = algorithm
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        gpn = gpus_per_node or self.world_size
        if self.world_size % gpn:
            raise ValueError(f"gpus_per_node={gpn} does not divide the group size {self.world_size}")
        self.topology = Topology(self.world_size // gpn, gpn)
        self._plans: dict[int, list[tuple[list[tuple[Op, int]], list[tuple[Op, int]]]]] = {}

    def _global(self, peer: int) -> int:
        return peer if self.group is None else dist.get_global_rank(self.group, peer)

    def plan(self, count: int) -> list[tuple[list[tuple[Op, int]], list[tuple[Op, int]]]]:
        """This rank's (sends, receives) per step, each op with its tag; cached per element count."""
        if count not in self._plans:
            sched: Schedule = schedule(self.algorithm, self.topology, count)
            steps = []
            for step in sched.steps:
                mine = [op for op in step.ops if op.rank == self.rank]
                steps.append(
                    (
                        self._tagged([op for op in mine if op.kind == "send"]),
                        self._tagged([op for op in mine if op.kind == "recv"]),
                    )
                )
            self._plans[count] = steps
        return self._plans[count]

    @staticmethod
    def _tagged(ops: list[Op]) -> list[tuple[Op, int]]:
        seen: dict[int, int] = {}
        out = []
        for op in sorted(ops, key=lambda o: (o.peer, o.offset, o.count)):
            out.append((op, seen.get(op.peer, 0)))
            seen[op.peer] = seen.get(op.peer, 0) + 1
        return out

    def all_reduce(self, tensor: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Sum `tensor` over the group into `out` (default: in place) and return it."""
        if out is not None and out is not tensor:
            out.copy_(tensor)
            tensor = out
        if self.world_size == 1:
            return tensor
        flat = tensor.view(-1)
        for sends, recvs in self.plan(flat.numel()):
            works, staged = [], []
            outgoing = [(op, tag, flat[op.offset : op.offset + op.count].clone()) for op, tag in sends]
            for op, tag, data in outgoing:
                works.append(dist.isend(data, self._global(op.peer), group=self.group, tag=tag))
            for op, tag in recvs:
                buf = torch.empty(op.count, dtype=flat.dtype)
                staged.append((op, buf))
                works.append(dist.irecv(buf, self._global(op.peer), group=self.group, tag=tag))
            for work in works:
                work.wait()
            for op, buf in staged:
                region = flat[op.offset : op.offset + op.count]
                if op.reduce:
                    region.add_(buf)
                else:
                    region.copy_(buf)
        return tensor

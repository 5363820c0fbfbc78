"""Step-by-step plans of the all-reduce family on an explicit topology: the one source of truth for steps.

A schedule says, for every step, which rank sends which slice of the buffer to which peer and whether
the receiver adds the slice into its buffer (reduce) or overwrites it. The CPU reference executes
schedules over point-to-point messages, the GPU tests check NVRAR's phases against them and the cost
model reduces them to per-step traffic. Standard library only: imported on compute nodes and in CI.

Semantics of one step: every rank posts all its sends and receives; each send (rank → peer, offset,
count) matches exactly one receive on the peer with the same (offset, count); sends read the buffer as
it was at the start of the step; a receive with ``reduce=True`` adds the slice into the buffer at
``offset``, ``reduce=False`` overwrites it. Ops of zero elements are left out, but the step stays, so
the number of steps depends on the algorithm and the topology only (an empty step is a no-op).

Step counts (p ranks, p' the largest power of two ≤ p, G GPUs per node, N nodes, N' likewise):

=====================  =================================================================
ring                   2(p − 1)
recursive-doubling     log2(p') + 2 when p ≠ p' (fold in, fold out)
rabenseifner           2·log2(p') + 2 when p ≠ p'
tree                   2·⌈log2 p⌉ (binomial reduce to rank 0, binomial broadcast)
nvrar                  2(G − 1) + log2(N') + 2 when N ≠ N' (intra ring RS, inter RD, intra ring AG)
=====================  =================================================================
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

ALGORITHMS: tuple[str, ...] = ("ring", "recursive-doubling", "rabenseifner", "tree", "nvrar")
LEVELS: tuple[str, ...] = ("intra", "inter")


class ScheduleError(ValueError):
    """A schedule is malformed or was asked for with bad arguments."""


@dataclass(frozen=True)
class Topology:
    """`nodes` × `gpus_per_node` ranks; rank r lives on node r // gpus_per_node (block placement)."""

    nodes: int
    gpus_per_node: int

    def __post_init__(self) -> None:
        for name in ("nodes", "gpus_per_node"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ScheduleError(f"Topology.{name} must be a positive integer, got {value!r}")

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node

    def node_of(self, rank: int) -> int:
        return rank // self.gpus_per_node

    def local_rank(self, rank: int) -> int:
        return rank % self.gpus_per_node

    def level(self, a: int, b: int) -> str:
        """'intra' when both ranks share a node, else 'inter'."""
        return "intra" if self.node_of(a) == self.node_of(b) else "inter"


@dataclass(frozen=True)
class Op:
    """One half of a message. On a send, `reduce` repeats what the matching receive does with the data."""

    kind: str  # 'send' | 'recv'
    rank: int
    peer: int
    offset: int
    count: int
    reduce: bool
    level: str  # 'intra' | 'inter'


@dataclass(frozen=True)
class Step:
    ops: list[Op]
    phase: str = ""


@dataclass(frozen=True)
class Schedule:
    algorithm: str
    topology: Topology
    count: int
    steps: list[Step] = field(default_factory=list)


def largest_power_of_two(n: int) -> int:
    """The largest power of two ≤ n (n ≥ 1)."""
    return 1 << (n.bit_length() - 1)


def split(count: int, parts: int) -> list[tuple[int, int]]:
    """(offset, count) of `parts` contiguous slices, as even as possible (the first count % parts longer)."""
    base, extra = divmod(count, parts)
    out, offset = [], 0
    for i in range(parts):
        n = base + (1 if i < extra else 0)
        out.append((offset, n))
        offset += n
    return out


# -- phases over a group of ranks and a region of the buffer -------------------------------------------
# Each phase returns a list of steps (lists of (src, dst, offset, count, reduce) tuples) so that phases
# of several groups can run in the same steps (NVRAR's inter-node phase runs G groups at once).

Message = tuple[int, int, int, int, bool]


def _ring_reduce_scatter(group: list[int], offset: int, count: int) -> list[list[Message]]:
    """After g − 1 steps, group[i] holds the full sum of slice i of the region."""
    g = len(group)
    slices = [(offset + o, n) for o, n in split(count, g)]
    steps = []
    for s in range(g - 1):
        msgs = []
        for i in range(g):
            o, n = slices[(i - s - 1) % g]
            msgs.append((group[i], group[(i + 1) % g], o, n, True))
        steps.append(msgs)
    return steps


def _ring_all_gather(group: list[int], offset: int, count: int) -> list[list[Message]]:
    """group[i] starts owning slice i of the region; after g − 1 steps everyone has every slice."""
    g = len(group)
    slices = [(offset + o, n) for o, n in split(count, g)]
    steps = []
    for s in range(g - 1):
        msgs = []
        for i in range(g):
            o, n = slices[(i - s) % g]
            msgs.append((group[i], group[(i + 1) % g], o, n, False))
        steps.append(msgs)
    return steps


def _fold_in(group: list[int], offset: int, count: int) -> tuple[list[int], list[list[Message]]]:
    """Members beyond the largest power of two add their buffer into member i − p'; returns the core."""
    p2 = largest_power_of_two(len(group))
    extra = group[p2:]
    if not extra:
        return group, []
    return group[:p2], [[(r, group[i], offset, count, True) for i, r in enumerate(extra)]]


def _fold_out(group: list[int], offset: int, count: int) -> list[list[Message]]:
    p2 = largest_power_of_two(len(group))
    extra = group[p2:]
    if not extra:
        return []
    return [[(group[i], r, offset, count, False) for i, r in enumerate(extra)]]


def _recursive_doubling(group: list[int], offset: int, count: int) -> list[list[Message]]:
    """Full-region exchange-and-add with partner i xor 2^s; any group size through folding."""
    core, steps = _fold_in(group, offset, count)
    distance = 1
    while distance < len(core):
        steps.append([(core[i], core[i ^ distance], offset, count, True) for i in range(len(core))])
        distance <<= 1
    return steps + _fold_out(group, offset, count)


def _rabenseifner(group: list[int], offset: int, count: int) -> list[list[Message]]:
    """Reduce-scatter by recursive halving, then all-gather by recursive doubling, on the folded core."""
    core, steps = _fold_in(group, offset, count)
    p2 = len(core)
    bounds = [offset + o for o, _ in split(count, p2)] + [offset + count]

    def region(lo: int, hi: int) -> tuple[int, int]:
        return bounds[lo], bounds[hi] - bounds[lo]

    owned = [(0, p2) for _ in range(p2)]  # range of slices each core member is responsible for
    distance = p2 >> 1
    while distance >= 1:
        msgs = []
        for i in range(p2):
            lo, hi = owned[i]
            mid = (lo + hi) // 2
            keep, give = ((lo, mid), (mid, hi)) if i & distance == 0 else ((mid, hi), (lo, mid))
            msgs.append((core[i], core[i ^ distance], *region(*give), True))
            owned[i] = keep
        steps.append(msgs)
        distance >>= 1
    distance = 1
    while distance < p2:
        msgs = [(core[i], core[i ^ distance], *region(*owned[i]), False) for i in range(p2)]
        owned = [
            (min(owned[i][0], owned[i ^ distance][0]), max(owned[i][1], owned[i ^ distance][1]))
            for i in range(p2)
        ]
        steps.append(msgs)
        distance <<= 1
    return steps + _fold_out(group, offset, count)


def _binomial_tree(group: list[int], offset: int, count: int) -> list[list[Message]]:
    """Binomial reduce to group[0] then binomial broadcast: 2·⌈log2 g⌉ steps."""
    g = len(group)
    levels = (g - 1).bit_length()
    steps = []
    for s in range(levels):
        half = 1 << s
        steps.append(
            [(group[i], group[i - half], offset, count, True) for i in range(g) if i % (2 * half) == half]
        )
    for s in reversed(range(levels)):
        half = 1 << s
        steps.append(
            [(group[i], group[i + half], offset, count, False) for i in range(0, g, 2 * half) if i + half < g]
        )
    return steps


def _merge(per_group: list[list[list[Message]]]) -> list[list[Message]]:
    """Run the sub-plans of several groups side by side, step by step."""
    n = max((len(p) for p in per_group), default=0)
    return [[m for p in per_group if i < len(p) for m in p[i]] for i in range(n)]


def _nvrar(topology: Topology, count: int) -> list[tuple[str, list[Message]]]:
    g, n = topology.gpus_per_node, topology.nodes
    nodes = [list(range(k * g, (k + 1) * g)) for k in range(n)]
    reduce_scatter = _merge([_ring_reduce_scatter(ranks, 0, count) for ranks in nodes])
    # After the intra-node reduce-scatter local rank l holds node-slice l; ranks with the same local rank
    # run recursive doubling over that slice across nodes.
    slices = split(count, g)
    inter = _merge([_recursive_doubling([k * g + lr for k in range(n)], *slices[lr]) for lr in range(g)])
    all_gather = _merge([_ring_all_gather(ranks, 0, count) for ranks in nodes])
    return (
        [("intra-reduce-scatter", m) for m in reduce_scatter]
        + [("inter-recursive-doubling", m) for m in inter]
        + [("intra-all-gather", m) for m in all_gather]
    )


def _plan(algorithm: str, topology: Topology, count: int) -> list[tuple[str, list[Message]]]:
    """(phase, messages) per step: what `schedule` and `plan_traffic` both expand."""
    if algorithm not in ALGORITHMS:
        raise ScheduleError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ScheduleError(f"count must be a non-negative integer, got {count!r}")
    ranks = list(range(topology.world_size))
    if algorithm == "ring":
        return [("reduce-scatter", m) for m in _ring_reduce_scatter(ranks, 0, count)] + [
            ("all-gather", m) for m in _ring_all_gather(ranks, 0, count)
        ]
    if algorithm == "recursive-doubling":
        return [("recursive-doubling", m) for m in _recursive_doubling(ranks, 0, count)]
    if algorithm == "rabenseifner":
        return [("rabenseifner", m) for m in _rabenseifner(ranks, 0, count)]
    if algorithm == "tree":
        return [("tree", m) for m in _binomial_tree(ranks, 0, count)]
    return _nvrar(topology, count)


def schedule(algorithm: str, topology: Topology, count: int) -> Schedule:
    """The plan of one all-reduce of `count` elements over every rank of `topology`."""
    steps = []
    for phase, messages in _plan(algorithm, topology, count):
        ops = []
        for src, dst, offset, n, reduce in messages:
            if n > 0:
                level = topology.level(src, dst)
                ops.append(Op("send", src, dst, offset, n, reduce, level))
                ops.append(Op("recv", dst, src, offset, n, reduce, level))
        steps.append(Step(ops, phase))
    return Schedule(algorithm, topology, count, steps)


def expected_steps(algorithm: str, topology: Topology) -> int:
    """The step count of the module docstring's table, written independently of the builders."""
    p, g, n = topology.world_size, topology.gpus_per_node, topology.nodes
    if algorithm == "ring":
        return 2 * (p - 1)
    fold = 2 if p != largest_power_of_two(p) else 0
    if algorithm == "recursive-doubling":
        return largest_power_of_two(p).bit_length() - 1 + fold
    if algorithm == "rabenseifner":
        return 2 * (largest_power_of_two(p).bit_length() - 1) + fold
    if algorithm == "tree":
        return 2 * (p - 1).bit_length()
    if algorithm == "nvrar":
        node_fold = 2 if n != largest_power_of_two(n) else 0
        return 2 * (g - 1) + largest_power_of_two(n).bit_length() - 1 + node_fold
    raise ScheduleError(f"unknown algorithm {algorithm!r}")


def validate(sched: Schedule) -> None:
    """Raise ScheduleError unless every send has exactly one matching receive and no write is ambiguous.

    Within a step a rank may receive overlapping ranges only when every one of them reduces (addition
    commutes); an overwrite that overlaps any other receive would make the result order-dependent.
    """
    topo, p = sched.topology, sched.topology.world_size
    for index, step in enumerate(sched.steps):
        where = f"{sched.algorithm} step {index}"
        sends: Counter = Counter()
        recvs: Counter = Counter()
        writes: dict[int, list[tuple[int, int, bool]]] = {}
        for op in step.ops:
            if op.kind not in ("send", "recv"):
                raise ScheduleError(f"{where}: op kind {op.kind!r}")
            if not (0 <= op.rank < p and 0 <= op.peer < p) or op.rank == op.peer:
                raise ScheduleError(f"{where}: bad ranks in {op}")
            if op.count <= 0 or op.offset < 0 or op.offset + op.count > sched.count:
                raise ScheduleError(f"{where}: slice outside the buffer in {op}")
            if op.level != topo.level(op.rank, op.peer):
                raise ScheduleError(f"{where}: level {op.level!r} wrong for ranks {op.rank}, {op.peer}")
            if op.kind == "send":
                sends[(op.rank, op.peer, op.offset, op.count, op.reduce)] += 1
            else:
                recvs[(op.peer, op.rank, op.offset, op.count, op.reduce)] += 1
                writes.setdefault(op.rank, []).append((op.offset, op.offset + op.count, op.reduce))
        if sends != recvs:
            missing = (sends - recvs) or (recvs - sends)
            src, dst, o, n, _ = next(iter(missing))
            raise ScheduleError(f"{where}: message {src}→{dst} [{o}, {o + n}) has no match")
        for rank, ranges in writes.items():
            for i, (a0, a1, ared) in enumerate(ranges):
                for b0, b1, bred in ranges[i + 1 :]:
                    if b0 < a1 and a0 < b1 and not (ared and bred):
                        raise ScheduleError(
                            f"{where}: rank {rank} overwrites an overlapping range "
                            f"[{max(a0, b0)}, {min(a1, b1)})"
                        )


def simulate(sched: Schedule, inputs: list[list[int]], check: bool = True) -> list[list[int]]:
    """Execute a schedule on plain lists (one per rank); returns the final buffers. Exact for integers."""
    p = sched.topology.world_size
    if len(inputs) != p:
        raise ScheduleError(f"simulate: {len(inputs)} input buffers for {p} ranks")
    for r, buf in enumerate(inputs):
        if len(buf) != sched.count:
            raise ScheduleError(
                f"simulate: rank {r} buffer has {len(buf)} elements, the schedule {sched.count}"
            )
    if check:
        validate(sched)
    bufs = [list(b) for b in inputs]
    for step in sched.steps:
        start = [list(b) for b in bufs]
        for op in step.ops:
            if op.kind != "recv":
                continue
            data = start[op.peer][op.offset : op.offset + op.count]
            target = bufs[op.rank]
            if op.reduce:
                for k, v in enumerate(data, op.offset):
                    target[k] += v
            else:
                target[op.offset : op.offset + op.count] = data
    return bufs


@dataclass(frozen=True)
class StepTraffic:
    """What one step asks of the ranks: the distinct per-rank traffic, in elements.

    `profiles` lists the distinct (intra_sent, intra_received, intra_reduced, inter_sent,
    inter_received, inter_reduced) tuples over the ranks that take part in the step: the exact input
    of a model whose step time is the slowest rank's time.
    """

    phase: str
    profiles: tuple[tuple[int, int, int, int, int, int], ...]


def step_traffic(sched: Schedule) -> list[StepTraffic]:
    """Reduce a schedule to the distinct per-rank traffic of each step (elements, per level)."""
    out = []
    for step in sched.steps:
        per_rank: dict[int, list[int]] = {}
        for op in step.ops:
            row = per_rank.setdefault(op.rank, [0, 0, 0, 0, 0, 0])
            col = 0 if op.level == "intra" else 3
            if op.kind == "send":
                row[col] += op.count
            else:
                row[col + 1] += op.count
                if op.reduce:
                    row[col + 2] += op.count
        out.append(StepTraffic(step.phase, tuple(sorted({tuple(v) for v in per_rank.values()}))))
    return out


def plan_traffic(algorithm: str, topology: Topology, count: int) -> list[StepTraffic]:
    """`step_traffic(schedule(...))` computed from the same plan without building Op objects (fast)."""
    g = topology.gpus_per_node
    out = []
    for phase, messages in _plan(algorithm, topology, count):
        per_rank: dict[int, list[int]] = {}
        for src, dst, _offset, n, reduce in messages:
            if n <= 0:
                continue
            col = 0 if src // g == dst // g else 3
            row = per_rank.get(src)
            if row is None:
                row = per_rank[src] = [0, 0, 0, 0, 0, 0]
            row[col] += n
            row = per_rank.get(dst)
            if row is None:
                row = per_rank[dst] = [0, 0, 0, 0, 0, 0]
            row[col + 1] += n
            if reduce:
                row[col + 2] += n
        out.append(StepTraffic(phase, tuple(sorted({tuple(v) for v in per_rank.values()}))))
    return out


def traffic(sched: Schedule) -> dict[str, dict[str, int]]:
    """Elements sent per level: the total over all ranks and the most any single rank sends."""
    total = {level: 0 for level in LEVELS}
    per_rank: dict[tuple[str, int], int] = {}
    for step in sched.steps:
        for op in step.ops:
            if op.kind == "send":
                total[op.level] += op.count
                per_rank[(op.level, op.rank)] = per_rank.get((op.level, op.rank), 0) + op.count
    most = {level: max((v for (lv, _), v in per_rank.items() if lv == level), default=0) for level in LEVELS}
    return {"total": total, "max_per_rank": most}

"""Schedules of the all-reduce family: exact sums, step counts and per-level traffic against theory."""

from __future__ import annotations

import math

import pytest

from collectives.schedules import (
    ALGORITHMS,
    Op,
    Schedule,
    ScheduleError,
    Step,
    Topology,
    plan_traffic,
    schedule,
    simulate,
    split,
    step_traffic,
    traffic,
    validate,
)

TOPOLOGIES = [Topology(1, p) for p in range(1, 17)] + [
    Topology(2, 2),
    Topology(2, 3),
    Topology(3, 2),
    Topology(4, 2),
    Topology(3, 3),
    Topology(5, 2),
]


def _inputs(p: int, count: int) -> list[list[int]]:
    # Distinct values per rank and element, so a slice added twice or dropped shows in the sum.
    return [[(r + 1) * 1000 + 7 * i + r * r for i in range(count)] for r in range(p)]


def _is_pow2(n: int) -> bool:
    return n & (n - 1) == 0


@pytest.mark.parametrize("topology", TOPOLOGIES, ids=lambda t: f"{t.nodes}x{t.gpus_per_node}")
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_rank_ends_with_the_exact_sum(algorithm: str, topology: Topology) -> None:
    p = topology.world_size
    for count in sorted({0, 1, max(p - 1, 0), p, 1000}):
        sched = schedule(algorithm, topology, count)
        inputs = _inputs(p, count)
        expected = [sum(col) for col in zip(*inputs, strict=True)]
        out = simulate(sched, inputs)
        for r in range(p):
            assert out[r] == expected, f"{algorithm} {topology} count={count} rank {r}"


@pytest.mark.parametrize("topology", TOPOLOGIES, ids=lambda t: f"{t.nodes}x{t.gpus_per_node}")
def test_step_counts_match_theory(topology: Topology) -> None:
    p, g, n = topology.world_size, topology.gpus_per_node, topology.nodes
    log2_floor = int(math.floor(math.log2(p)))
    fold = 0 if _is_pow2(p) else 2
    node_fold = 0 if _is_pow2(n) else 2
    theory = {
        "ring": 2 * (p - 1),
        "recursive-doubling": log2_floor + fold,
        "rabenseifner": 2 * log2_floor + fold,
        "tree": 2 * math.ceil(math.log2(p)) if p > 1 else 0,
        "nvrar": 2 * (g - 1) + int(math.floor(math.log2(n))) + node_fold,
    }
    for algorithm, steps in theory.items():
        # The step count is structural: the same for an empty buffer and a large one.
        for count in (0, 1000):
            assert len(schedule(algorithm, topology, count).steps) == steps, (algorithm, topology, count)


def test_split_is_as_even_as_possible() -> None:
    assert split(10, 4) == [(0, 3), (3, 3), (6, 2), (8, 2)]
    assert split(2, 4) == [(0, 1), (1, 1), (2, 0), (2, 0)]
    assert split(0, 3) == [(0, 0), (0, 0), (0, 0)]


def test_zero_element_ops_are_left_out_but_steps_stay() -> None:
    sched = schedule("ring", Topology(1, 4), 2)
    assert all(op.count > 0 for step in sched.steps for op in step.ops)
    assert len(sched.steps) == 6
    assert all(not step.ops for step in schedule("rabenseifner", Topology(1, 8), 0).steps)


# -- bytes per level against the closed forms (count chosen to divide evenly) ------------------------


@pytest.mark.parametrize("nodes,gpus", [(1, 4), (1, 8), (2, 4), (4, 2), (8, 1), (3, 2), (2, 3)])
def test_ring_traffic(nodes: int, gpus: int) -> None:
    p = nodes * gpus
    k = 12
    t = traffic(schedule("ring", Topology(nodes, gpus), p * k))
    # 2(p-1) steps, each rank sends one slice of k elements per step; one boundary per node crosses.
    boundary = nodes if nodes > 1 else 0
    assert t["total"]["inter"] == 2 * (p - 1) * boundary * k
    assert t["total"]["intra"] == 2 * (p - 1) * (p - boundary) * k
    # The last rank of a node sends everything across the network; interior ranks never do.
    assert t["max_per_rank"]["inter"] == (2 * (p - 1) * k if nodes > 1 else 0)
    assert t["max_per_rank"]["intra"] == (2 * (p - 1) * k if gpus > 1 else 0)


@pytest.mark.parametrize("nodes,gpus", [(1, 8), (2, 4), (4, 2), (8, 1), (1, 16), (4, 4)])
def test_recursive_doubling_traffic_power_of_two(nodes: int, gpus: int) -> None:
    p, count = nodes * gpus, 96
    t = traffic(schedule("recursive-doubling", Topology(nodes, gpus), count))
    # log2(p) steps of the whole buffer; the first log2(G) partners share the node.
    assert t["total"]["intra"] == p * int(math.log2(gpus)) * count
    assert t["total"]["inter"] == p * int(math.log2(nodes)) * count
    assert t["max_per_rank"]["inter"] == int(math.log2(nodes)) * count


@pytest.mark.parametrize("p", [3, 5, 6, 7, 12])
def test_recursive_doubling_traffic_folded(p: int) -> None:
    count = 50
    p2 = 1 << int(math.floor(math.log2(p)))
    t = traffic(schedule("recursive-doubling", Topology(1, p), count))
    assert t["total"]["intra"] == (p2 * int(math.log2(p2)) + 2 * (p - p2)) * count


@pytest.mark.parametrize("nodes,gpus", [(1, 8), (2, 4), (4, 4), (8, 2)])
def test_rabenseifner_traffic(nodes: int, gpus: int) -> None:
    p = nodes * gpus
    count = p * 5
    t = traffic(schedule("rabenseifner", Topology(nodes, gpus), count))
    # Halving sends count/2, count/4, ...: (p-1)/p of the buffer, then the same again to gather.
    per_rank = 2 * (p - 1) * count // p
    assert t["total"]["intra"] + t["total"]["inter"] == p * per_rank
    # The farthest partners (distance >= G) are on other nodes: the first log2(N) halving steps and the
    # last log2(N) doubling steps cross the network: count/2 + ... + count/2^log2(N), twice.
    inter_per_rank = 2 * sum(count >> (s + 1) for s in range(int(math.log2(nodes))))
    assert t["max_per_rank"]["inter"] == inter_per_rank
    assert t["total"]["inter"] == p * inter_per_rank


@pytest.mark.parametrize("p", [2, 3, 4, 5, 8, 13])
def test_tree_traffic(p: int) -> None:
    count = 40
    t = traffic(schedule("tree", Topology(1, p), count))
    # Every non-root sends its partial sum once and receives the result once.
    assert t["total"]["intra"] == 2 * (p - 1) * count
    # The root sends in each of the ceil(log2 p) broadcast steps.
    assert t["max_per_rank"]["intra"] == math.ceil(math.log2(p)) * count


@pytest.mark.parametrize("nodes,gpus", [(2, 4), (4, 4), (8, 2), (4, 1), (1, 4), (3, 4), (5, 2), (6, 3)])
def test_nvrar_traffic(nodes: int, gpus: int) -> None:
    p = nodes * gpus
    k = 7
    count = gpus * k
    n2 = 1 << int(math.floor(math.log2(nodes)))
    t = traffic(schedule("nvrar", Topology(nodes, gpus), count))
    # Intra: ring reduce-scatter + all-gather inside each node, 2(G-1)/G of the buffer per rank.
    assert t["total"]["intra"] == p * 2 * (gpus - 1) * k
    # Inter: recursive doubling on a 1/G slice, log2(N') steps, plus fold in/out of the extra nodes.
    assert t["total"]["inter"] == n2 * gpus * int(math.log2(n2)) * k + 2 * (nodes - n2) * gpus * k
    assert t["max_per_rank"]["intra"] == 2 * (gpus - 1) * k


def test_nvrar_inter_node_partners_share_local_rank() -> None:
    topo = Topology(4, 4)
    sched = schedule("nvrar", topo, 64)
    for step in sched.steps:
        for op in step.ops:
            if op.level == "inter":
                assert topo.local_rank(op.rank) == topo.local_rank(op.peer)
            else:
                assert topo.node_of(op.rank) == topo.node_of(op.peer)
    phases = [s.phase for s in sched.steps]
    assert phases == (
        ["intra-reduce-scatter"] * 3 + ["inter-recursive-doubling"] * 2 + ["intra-all-gather"] * 3
    )


def test_step_traffic_profiles_of_ring_across_nodes() -> None:
    prof = step_traffic(schedule("ring", Topology(2, 2), 40))
    # Ranks 0 and 2 send 10 elements inside the node and receive (and reduce) 10 from the network;
    # ranks 1 and 3 the other way round. The all-gather steps reduce nothing.
    assert len(prof) == 6
    for step in prof[:3]:
        assert set(step.profiles) == {(10, 0, 0, 0, 10, 10), (0, 10, 10, 10, 0, 0)}
    for step in prof[3:]:
        assert set(step.profiles) == {(10, 0, 0, 0, 10, 0), (0, 10, 0, 10, 0, 0)}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_plan_traffic_equals_the_traffic_of_the_built_schedule(algorithm: str) -> None:
    for topology in TOPOLOGIES:
        for count in (0, 1, 7, 96):
            expected = step_traffic(schedule(algorithm, topology, count))
            assert plan_traffic(algorithm, topology, count) == expected, (topology, count)


# -- validate catches broken plans -------------------------------------------------------------------


def test_validate_rejects_unmatched_send() -> None:
    topo = Topology(1, 2)
    bad = Schedule("ring", topo, 4, [Step([Op("send", 0, 1, 0, 2, True, "intra")])])
    with pytest.raises(ScheduleError, match="no match"):
        validate(bad)


def test_validate_rejects_mismatched_slice() -> None:
    topo = Topology(1, 2)
    bad = Schedule(
        "ring",
        topo,
        4,
        [Step([Op("send", 0, 1, 0, 2, True, "intra"), Op("recv", 1, 0, 1, 2, True, "intra")])],
    )
    with pytest.raises(ScheduleError, match="no match"):
        validate(bad)


def test_validate_rejects_overlapping_overwrite() -> None:
    topo = Topology(1, 3)
    ops = [
        Op("send", 0, 2, 0, 2, False, "intra"),
        Op("recv", 2, 0, 0, 2, False, "intra"),
        Op("send", 1, 2, 1, 2, True, "intra"),
        Op("recv", 2, 1, 1, 2, True, "intra"),
    ]
    with pytest.raises(ScheduleError, match="overlapping"):
        validate(Schedule("ring", topo, 4, [Step(ops)]))


def test_validate_rejects_overwrite_inside_a_larger_range() -> None:
    topo = Topology(1, 4)
    ops = [
        Op("send", 0, 3, 0, 10, True, "intra"),
        Op("recv", 3, 0, 0, 10, True, "intra"),
        Op("send", 1, 3, 0, 2, True, "intra"),
        Op("recv", 3, 1, 0, 2, True, "intra"),
        Op("send", 2, 3, 5, 1, False, "intra"),
        Op("recv", 3, 2, 5, 1, False, "intra"),
    ]
    with pytest.raises(ScheduleError, match="overlapping"):
        validate(Schedule("ring", topo, 10, [Step(ops)]))


def test_validate_rejects_wrong_level_and_out_of_range() -> None:
    topo = Topology(2, 1)
    wrong_level = [Op("send", 0, 1, 0, 1, True, "intra"), Op("recv", 1, 0, 0, 1, True, "intra")]
    with pytest.raises(ScheduleError, match="level"):
        validate(Schedule("ring", topo, 2, [Step(wrong_level)]))
    outside = [Op("send", 0, 1, 1, 4, True, "inter"), Op("recv", 1, 0, 1, 4, True, "inter")]
    with pytest.raises(ScheduleError, match="outside"):
        validate(Schedule("ring", topo, 2, [Step(outside)]))


def test_sends_read_the_buffer_as_it_was_at_the_start_of_the_step() -> None:
    # A swap in one step: both ranks must send their old values.
    topo = Topology(1, 2)
    ops = [
        Op("send", 0, 1, 0, 1, False, "intra"),
        Op("recv", 1, 0, 0, 1, False, "intra"),
        Op("send", 1, 0, 0, 1, False, "intra"),
        Op("recv", 0, 1, 0, 1, False, "intra"),
    ]
    assert simulate(Schedule("ring", topo, 1, [Step(ops)]), [[1], [2]]) == [[2], [1]]


def test_bad_arguments() -> None:
    with pytest.raises(ScheduleError, match="unknown algorithm"):
        schedule("butterfly", Topology(1, 2), 4)
    with pytest.raises(ScheduleError, match="count"):
        schedule("ring", Topology(1, 2), -1)
    with pytest.raises(ScheduleError, match="nodes"):
        Topology(0, 2)
    with pytest.raises(ScheduleError, match="input buffers"):
        simulate(schedule("ring", Topology(1, 2), 1), [[1]])

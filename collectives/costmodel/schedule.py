"""α-β-γ models of the all-reduce family, derived from the step schedules, and the closed forms.

How a schedule becomes a model: `collectives.schedules.plan_traffic` reduces each step to the distinct
per-rank traffic (elements sent, received and reduced on each level). A rank's time on one level in
one step is

    α_level + max(sent, received)·M/β_level + reduced·M/γ_level

(links are full duplex, so sending and receiving overlap, and a rank drives its NVLink and its NIC at
once); the step lasts as long as the largest of these terms over ranks and levels, and the all-reduce
is the sum over steps. Traffic is kept as fractions of the message (the schedule is built with a count
that every split divides), so one profile per (algorithm, topology) serves every message size;
identical steps are merged with a multiplicity, which keeps evaluation vectorised over sizes and
parameters. The inter-node bytes of NVRAR are multiplied by η (its LL protocol puts a 4-byte flag
beside every 4 bytes of data, η = 2; put-with-signal, η ≈ 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from collectives.costmodel.params import CostModelError, CostParams, Params, as_arrays
from collectives.schedules import ALGORITHMS, Topology, largest_power_of_two, plan_traffic

# Above this many ranks the flat ring (2(p−1) steps of p messages) is summarised by its closed form,
# which tests check against the schedule on topologies of up to 64 ranks.
RING_SCHEDULE_LIMIT = 256


# -- profiles: the schedule reduced to per-step traffic fractions --------------------------------------


@dataclass(frozen=True)
class Profile:
    """Merged steps of one algorithm on one topology.

    `multiplicity[s]` steps share the terms `terms[s]`; a term (level, x, reduced) is one rank's work
    on one level (0 intra, 1 inter) with x = max(sent, received), as fractions of the message. A rank
    drives both levels at once, so a step lasts as long as its largest term.
    """

    algorithm: str
    nodes: int
    gpus_per_node: int
    steps: int
    multiplicity: tuple[int, ...]
    terms: tuple[tuple[tuple[int, float, float], ...], ...] = field(repr=False)


def _fraction_count(topology: Topology) -> int:
    p, g = topology.world_size, topology.gpus_per_node
    return math.lcm(p, largest_power_of_two(p), g)


def _terms_from_elements(profiles, count: int) -> tuple[tuple[int, float, float], ...]:
    terms = set()
    for row in profiles:
        for level in (0, 1):
            sent, received, reduced = row[3 * level : 3 * level + 3]
            if sent or received:
                terms.add((level, max(sent, received) / count, reduced / count))
    return tuple(sorted(terms))


def _merge_steps(algorithm: str, topology: Topology, per_step: list[tuple]) -> Profile:
    counts: dict[tuple, int] = {}
    for terms in per_step:
        if terms:
            counts[terms] = counts.get(terms, 0) + 1
    keys = list(counts)
    return Profile(
        algorithm,
        topology.nodes,
        topology.gpus_per_node,
        len(per_step),
        tuple(counts[k] for k in keys),
        tuple(keys),
    )


def ring_closed_form(topology: Topology) -> Profile:
    """The flat ring's traffic without building p² ops: one slice of 1/p per rank and step.

    With more than one node, the last rank of a node sends over the network and the first receives
    from it; every other rank sends and receives inside its node.
    """
    g, n = topology.gpus_per_node, topology.nodes
    f = 1.0 / topology.world_size

    def terms(reduce: bool) -> tuple[tuple[int, float, float], ...]:
        out = set()
        for local in {0, g - 1, min(1, g - 1)}:
            send_level = 1 if n > 1 and local == g - 1 else 0
            recv_level = 1 if n > 1 and local == 0 else 0
            for level in {send_level, recv_level}:
                out.add((level, f, f if reduce and level == recv_level else 0.0))
        return tuple(sorted(out))

    p = topology.world_size
    return _merge_steps("ring", topology, [terms(True)] * (p - 1) + [terms(False)] * (p - 1))


@lru_cache(maxsize=512)
def profile(algorithm: str, nodes: int, gpus_per_node: int) -> Profile:
    """Per-step traffic of `algorithm` on nodes × gpus_per_node, from its schedule (cached)."""
    if algorithm not in ALGORITHMS:
        raise CostModelError(
            f"no schedule for algorithm {algorithm!r}; schedules exist for {', '.join(ALGORITHMS)}"
        )
    topology = Topology(nodes, gpus_per_node)
    if algorithm == "ring" and topology.world_size > RING_SCHEDULE_LIMIT:
        return ring_closed_form(topology)
    count = _fraction_count(topology)
    per_step = [_terms_from_elements(st.profiles, count) for st in plan_traffic(algorithm, topology, count)]
    return _merge_steps(algorithm, topology, per_step)


# -- evaluation ----------------------------------------------------------------------------------------


def _level_coefficients(p: Params, eta_applies: bool):
    """Per level: (α µs, µs per byte sent, µs per byte reduced)."""
    eta = p["eta"] if eta_applies else 1.0
    return (
        (
            p["alpha_intra_us"],
            1e-3 / np.asarray(p["beta_intra_GBps"]),
            1e-3 / np.asarray(p["gamma_intra_GBps"]),
        ),
        (
            p["alpha_inter_us"],
            eta * 1e-3 / np.asarray(p["beta_inter_GBps"]),
            1e-3 / np.asarray(p["gamma_inter_GBps"]),
        ),
    )


def _schedule_time(prof: Profile, size_bytes, p: Params, eta_applies: bool):
    coef = _level_coefficients(p, eta_applies)
    m = np.asarray(size_bytes, dtype=float)
    total = 0.0 * (m + coef[0][0] + coef[1][0] + coef[0][1] + coef[1][1])
    for mult, terms in zip(prof.multiplicity, prof.terms, strict=True):
        step = None
        for level, x, r in terms:
            alpha, per_byte, per_reduced = coef[level]
            t = alpha + m * (x * per_byte + r * per_reduced)
            step = t if step is None else np.maximum(step, t)
        total = total + mult * step
    return total


def schedule_time(algorithm: str, nodes: int, gpus_per_node: int, size_bytes, params: CostParams | Params):
    """Latency (µs) of one schedule-modelled all-reduce; broadcasts over sizes and parameter arrays."""
    if algorithm not in ALGORITHMS:
        raise CostModelError(
            f"no schedule for algorithm {algorithm!r}; schedules exist for {', '.join(ALGORITHMS)}"
        )
    return np.asarray(
        _schedule_time(
            profile(algorithm, nodes, gpus_per_node), size_bytes, as_arrays(params), algorithm == "nvrar"
        ),
        dtype=float,
    )


# -- the published and the classic closed forms (homogeneous checks and comparisons) -------------------


def nvrar_published(nodes: int, gpus_per_node: int, size_bytes, params: CostParams | Params):
    """The NVRAR model as its authors reported it (reduction cost not modelled)."""
    p = as_arrays(params)
    g, n, m = gpus_per_node, nodes, np.asarray(size_bytes, dtype=float)
    bw = 2 * (g - 1) * 1e-3 / np.asarray(p["beta_intra_GBps"]) + (n - 1) * p["eta"] * 1e-3 / (
        n * np.asarray(p["beta_inter_GBps"])
    )
    return 2 * (g - 1) * p["alpha_intra_us"] + math.log2(n) * p["alpha_inter_us"] + m / g * bw


def classic(algorithm: str, ranks: int, size_bytes, alpha_us: float, beta_GBps: float, gamma_GBps: float):
    """Thakur–Rabenseifner–Gropp (2005) formulas for p ranks on one homogeneous link (power-of-two p)."""
    n = np.asarray(size_bytes, dtype=float)
    b, c = 1e-3 / beta_GBps, 1e-3 / gamma_GBps
    lg, frac = math.log2(ranks), (ranks - 1) / ranks
    if algorithm == "ring":
        return 2 * (ranks - 1) * alpha_us + 2 * frac * n * b + frac * n * c
    if algorithm == "recursive-doubling":
        return lg * (alpha_us + n * b + n * c)
    if algorithm == "rabenseifner":
        return 2 * lg * alpha_us + 2 * frac * n * b + frac * n * c
    if algorithm == "tree":
        return 2 * lg * (alpha_us + n * b) + lg * n * c
    raise CostModelError(f"no classic formula for {algorithm!r}")

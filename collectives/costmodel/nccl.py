"""NCCL's tuner as a model: which (algorithm, protocol) NCCL picks for an all-reduce, and its estimate.

NCCL (src/graph/tuning.cc, 2.19–2.27) predicts time = latency + bytes / algorithm bandwidth for every
(algorithm, protocol) and takes the fastest. Latencies in µs: a base per (algorithm, protocol) plus a
per-hop latency per link type; bandwidths are the topology's bus bandwidth scaled by the protocol's
efficiency. NCCL's constants are data (nccl_tuning.json, with the tag they were read from); link
speeds and the scale of the hop latencies come from the caller: the α-β model's α and β here, the
grounded model's fitted transports in `collectives.costmodel.grounded`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from collectives.costmodel.params import CostParams, Params, as_arrays

NCCL_ALGORITHMS = ("tree", "ring")
NCCL_PROTOCOLS = ("LL", "LL128", "Simple")
TUNING_FILE = Path(__file__).with_name("nccl_tuning.json")
TUNING = json.loads(TUNING_FILE.read_text(encoding="utf-8"))
NCCL_BASE_LAT_US = {a: tuple(v) for a, v in TUNING["base_latency_us"].items()}
NCCL_HOP_LAT_US = {
    "intra": {a: tuple(v) for a, v in TUNING["hop_latency_us"]["nvlink"].items()},
    "inter": {a: tuple(v) for a, v in TUNING["hop_latency_us"]["net"].items()},
}
# The LL hops NCCL assumes (ring row): a system's α over these scales every protocol's hops alike.
NCCL_REFERENCE_ALPHA_US = {
    "intra": NCCL_HOP_LAT_US["intra"]["ring"][0],
    "inter": NCCL_HOP_LAT_US["inter"]["ring"][0],
}
NCCL_TREE_CORRECTION = tuple(tuple(TUNING["tree_correction"][p]) for p in NCCL_PROTOCOLS)


def ll_max_GBps(nodes: int, sm: int, cpu: str) -> float:
    """NCCL's cap on LL bandwidth: by GPU generation on one node, by CPU vendor across nodes."""
    cap = TUNING["ll_max_GBps"]
    if nodes == 1:
        return cap["one_node"]["sm90" if sm >= 90 else "sm80"]
    return cap["nodes"].get(cpu, cap["nodes"]["intel"])[0 if nodes == 2 else 1]


def nccl_bus_bandwidth(nodes: int, gpus_per_node: int, p: Params):
    """GB/s: NVLink alone on one node; across nodes NCCL spreads channels over the node's NICs."""
    if nodes == 1:
        return np.asarray(p["beta_intra_GBps"], dtype=float)
    return np.minimum(p["beta_intra_GBps"], gpus_per_node * np.asarray(p["beta_inter_GBps"], dtype=float))


def nccl_times(
    nodes: int,
    gpus_per_node: int,
    size_bytes,
    bus_GBps,
    *,
    intra_scale=1.0,
    net_scale=1.0,
    base_scale=1.0,
    ll128: bool = True,
    sm: int = 80,
    cpu: str = "intel",
    algorithms: tuple[str, ...] = NCCL_ALGORITHMS,
) -> dict[tuple[str, str], np.ndarray]:
    """µs of every (algorithm, protocol) by NCCL 2.27's formulas (nccl_tuning.json).

    `intra_scale` and `net_scale` multiply NCCL's NVLink and network hop latencies, `base_scale` its
    base latencies; with all three at 1 and NCCL's bus bandwidth this is NCCL's own estimate, which
    is how it chooses. Arguments broadcast (parameter arrays against sizes).
    """
    ranks, g, n = nodes * gpus_per_node, gpus_per_node, nodes
    m = np.asarray(size_bytes, dtype=float)
    bus = np.asarray(bus_GBps, dtype=float)
    bw = TUNING["protocol_bandwidth"]
    log_size = np.floor(np.log2(np.maximum(m, 64) / 64)).astype(int)
    corrected = log_size < len(NCCL_TREE_CORRECTION[0])  # NCCL corrects 64 B .. 256 MiB only
    ll_cap = ll_max_GBps(n, sm, cpu)
    overhead = TUNING["net_overhead_us"].get(cpu, 1.0) if n > 1 else 0.0
    out = {}
    for algo in algorithms:
        for k, proto in enumerate(NCCL_PROTOCOLS):
            if proto == "LL128" and not ll128:
                continue
            intra_hop = NCCL_HOP_LAT_US["intra"][algo][k] * np.asarray(intra_scale, dtype=float)
            net_row = "tree" if g == 1 else algo  # one GPU per node: NCCL charges the tree row
            inter_hop = NCCL_HOP_LAT_US["inter"][net_row][k] * np.asarray(net_scale, dtype=float)
            lat = NCCL_BASE_LAT_US[algo][k] * np.asarray(base_scale, dtype=float)
            if algo == "ring":
                intra_hop = np.maximum(intra_hop, overhead * (3 if proto == "Simple" else 1))
                steps, inter_steps = 2 * (ranks - 1), 2 * (n - 1)
                lat = lat + (steps - inter_steps) * intra_hop + inter_steps * inter_hop
                if proto == "LL":
                    busbw = np.minimum(ll_cap, bw["ring_ll"] * bus)
                elif proto == "LL128":
                    busbw = bw["ll128"] * bus
                else:
                    busbw = bus
                algbw = busbw * ranks / (2 * (ranks - 1))
                if proto == "Simple" and n > 1:
                    lat = np.where(m >= ranks * 64 * 16, lat * TUNING["ring_simple_plateau_factor"], lat)
            else:
                lat = lat + 2 * ((g - 1) * intra_hop + int(math.log2(n)) * inter_hop)
                busbw = bw["tree"] * bus
                if proto == "LL":
                    busbw = np.minimum(busbw / bw["tree_ll_divisor"], ll_cap)
                elif proto == "LL128":
                    busbw = busbw * (bw["tree_ll128_one_node"] if n == 1 else bw["tree_ll128_nodes"])
                if g == 1:
                    busbw = busbw * bw["tree_one_gpu_per_node"]
                table = np.asarray(NCCL_TREE_CORRECTION[k])
                factor = np.where(corrected, table[np.minimum(log_size, len(table) - 1)], 1.0)
                algbw = busbw * 0.5 * factor
            out[(algo, proto)] = lat + m / (1e3 * algbw)
    return out


def nccl_candidates(
    nodes: int,
    gpus_per_node: int,
    size_bytes,
    params: CostParams | Params,
    *,
    ll128: bool = True,
    algorithms: tuple[str, ...] = NCCL_ALGORITHMS,
) -> dict[tuple[str, str], np.ndarray]:
    """Predicted µs for every (algorithm, protocol) NCCL would consider, from α-β parameters: the
    hop latencies scale with the system's α over the LL hop NCCL assumes (0.6 µs NVLink, 2.7 µs net)."""
    p = as_arrays(params)
    return nccl_times(
        nodes,
        gpus_per_node,
        size_bytes,
        nccl_bus_bandwidth(nodes, gpus_per_node, p),
        intra_scale=np.asarray(p["alpha_intra_us"], dtype=float) / NCCL_REFERENCE_ALPHA_US["intra"],
        net_scale=np.asarray(p["alpha_inter_us"], dtype=float) / NCCL_REFERENCE_ALPHA_US["inter"],
        ll128=ll128,
        algorithms=algorithms,
    )


def choose(cands: dict[tuple[str, str], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(fastest µs, 'algorithm/protocol') over the candidates."""
    names = [f"{a}/{p}" for a, p in cands]
    stacked = np.stack(np.broadcast_arrays(*cands.values()))
    best = np.argmin(stacked, axis=0)
    return np.min(stacked, axis=0), np.asarray(names, dtype=object)[best]


def nccl_predict(
    nodes: int,
    gpus_per_node: int,
    size_bytes,
    params: CostParams | Params,
    *,
    ll128: bool = True,
    algorithms: tuple[str, ...] = NCCL_ALGORITHMS,
) -> tuple[np.ndarray, np.ndarray]:
    """(µs, chosen 'algorithm/protocol') of NCCL's default choice; zero time for one rank."""
    if nodes * gpus_per_node == 1:
        m = np.asarray(size_bytes, dtype=float)
        return np.zeros_like(m), np.full(m.shape, "none", dtype=object)
    return choose(
        nccl_candidates(nodes, gpus_per_node, size_bytes, params, ll128=ll128, algorithms=algorithms)
    )

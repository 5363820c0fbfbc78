"""The grounded all-reduce model: what a call costs on a GPU platform, with parameters per transport.

The α-β-γ schedule model (`collectives.costmodel.schedule`) describes data movement; on GPU systems a
small all-reduce is dominated by what it leaves out: kernel launches (plain or replayed from a CUDA
graph), the latency of each transport (a GPU-initiated store and flag over NVLink; NCCL's network
hops; NVSHMEM's puts through a CPU proxy over libfabric or IB verbs, or GPU-initiated over IBGDA),
and the fraction of link bandwidth each protocol keeps (NCCL LL / LL128 / Simple, NVRAR's LL cells
of 4 data bytes and a 4-byte flag). This model adds exactly those, with one parameter per physical
effect, shared by every platform that has the same part:

    launch_plain_us, launch_graph_us, nccl_base_scale           (global)
    fabric.<class>.latency_us, fabric.<class>.efficiency        (intra-node NVLink fabric)
    network.<class>.latency_us, .nccl_hop_us, .efficiency       (inter-node network)
    nvshmem.<transport>.overhead_us                             (NVSHMEM's proxy or IBGDA, added to
                                                                the network's own latency)

Parameter values are dicts name → float or numpy array; arrays (one value per bootstrap draw, shaped
(draws, 1)) broadcast against message sizes, so one call predicts every draw at once.
Docs: docs/costmodel.md ("The grounded model").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from collectives.costmodel.nccl import NCCL_REFERENCE_ALPHA_US, nccl_times
from collectives.costmodel.params import CostModelError
from collectives.costmodel.schedule import schedule_time
from collectives.schedules import ALGORITHMS as SCHEDULE_ALGORITHMS

# name → (unit, meaning); the classes' parameters are named <group>.<class>.<name>.
GLOBAL_PARAMETERS: dict[str, tuple[str, str]] = {
    "launch_plain_us": ("µs", "host-side cost of one kernel launch outside a CUDA graph, per kernel"),
    "launch_graph_us": ("µs", "cost of one kernel node replayed from a CUDA graph, per kernel"),
    "nccl_base_scale": ("—", "multiplies NCCL's base latency of every (algorithm, protocol)"),
    "mpi_gpu_buffer_us": (
        "µs",
        "extra one-way MPI latency with GPU buffers over host buffers (GPUDirect path)",
    ),
}
FABRIC_PARAMETERS: dict[str, tuple[str, str]] = {
    "latency_us": ("µs", "one GPU-initiated step over NVLink: stores plus a flag the peer sees"),
    "efficiency": ("—", "fraction of the datasheet NVLink bandwidth per GPU that transfers reach"),
}
NETWORK_PARAMETERS: dict[str, tuple[str, str]] = {
    "latency_us": ("µs", "host-initiated one-way small-message latency (MPI ping-pong / 2)"),
    "nccl_hop_us": (
        "µs",
        "NCCL's latency per network hop of ring/LL; its other hops scale with NCCL's ratios",
    ),
    "efficiency": ("—", "fraction of the NICs' line rate that large transfers reach"),
}
TRANSPORT_PARAMETERS: dict[str, tuple[str, str]] = {
    "overhead_us": ("µs", "what NVSHMEM's transport adds to the network's one-way latency for a small put"),
}
GROUPS = {"fabric": FABRIC_PARAMETERS, "network": NETWORK_PARAMETERS, "nvshmem": TRANSPORT_PARAMETERS}

# Algorithms the grounded model predicts. The in-node custom all-reduces: one-shot (every GPU reads
# all peers and reduces; vLLM's one-stage custom all-reduce), two-shot (reduce-scatter then
# all-gather over peer memory), multimem (NVLink SHARP: the switch reduces), mscclpp (one-shot with
# LL packets). Point to point: nvshmem-put and mpi-p2p, one way.
IN_NODE = ("one-shot", "two-shot", "multimem", "mscclpp")
POINT_TO_POINT = ("nvshmem-put", "mpi-p2p", "mpi-p2p-gpu")
ALGORITHMS: tuple[str, ...] = ("nccl", *SCHEDULE_ALGORITHMS, *IN_NODE, *POINT_TO_POINT)
LAUNCHES = ("plain", "graph")
LL_CELL_FACTOR = 2.0  # NVRAR's LL protocol: 4 bytes of data and a 4-byte flag in every 8-byte store


@dataclass(frozen=True)
class Platform:
    """The hardware of one machine as the model sees it, and the parameter classes of its parts."""

    name: str
    gpus_per_node: int
    hbm_TBps: float
    sm: int = 80
    cpu: str = "intel"
    fabric: str | None = None  # NVLink class; None when a node has one GPU
    fabric_GBps: float = 0.0  # datasheet NVLink bandwidth per GPU and direction, summed over its links
    fabric_switched: bool = False  # NVSwitch: one peer can take it all; direct links split it over peers
    network: str | None = None
    nics_per_node: int = 0
    nic_Gbps: float = 0.0
    nvshmem: str | None = None  # NVSHMEM's remote transport: libfabric | ibrc | ibgda

    def parameter_names(self) -> list[str]:
        """The parameters predictions on this platform can depend on."""
        names = list(GLOBAL_PARAMETERS)
        for group, cls in (("fabric", self.fabric), ("network", self.network), ("nvshmem", self.nvshmem)):
            if cls:
                names += [f"{group}.{cls}.{p}" for p in GROUPS[group]]
        return names


Theta = dict[str, "float | np.ndarray"]


def _get(theta: Theta, name: str, platform: Platform):
    try:
        return np.asarray(theta[name], dtype=float)
    except KeyError:
        raise CostModelError(
            f"no value for parameter {name!r} (needed by platform {platform.name})"
        ) from None


def _launch(theta: Theta, launch: str, kernels: int, platform: Platform):
    if launch not in LAUNCHES:
        raise CostModelError(f"launch must be one of {', '.join(LAUNCHES)}, got {launch!r}")
    return kernels * _get(theta, f"launch_{launch}_us", platform)


@dataclass(frozen=True)
class Links:
    """Effective latencies (µs) and bandwidths (GB/s) of one platform under one parameter set."""

    nvlink_us: np.ndarray
    nvlink_gpu_GBps: np.ndarray  # a GPU's NVLink bandwidth to all peers together
    nvlink_peer_GBps: np.ndarray  # to one peer
    net_us: np.ndarray
    nccl_hop_us: np.ndarray
    nvshmem_us: np.ndarray
    nic_GBps: np.ndarray  # one NIC
    net_gpu_GBps: np.ndarray  # a GPU's share of its node's NICs when all send at once
    reduce_GBps: float


def links(platform: Platform, theta: Theta, gpus_per_node: int) -> Links:
    nan = np.asarray(np.nan)
    g = gpus_per_node
    if platform.fabric and g > 1:
        eff = _get(theta, f"fabric.{platform.fabric}.efficiency", platform)
        gpu_bw = platform.fabric_GBps * eff
        peer_bw = gpu_bw if platform.fabric_switched else gpu_bw / max(g - 1, 1)
        nvlink_us = _get(theta, f"fabric.{platform.fabric}.latency_us", platform)
    else:
        gpu_bw = peer_bw = nvlink_us = nan
    if platform.network:
        eff = _get(theta, f"network.{platform.network}.efficiency", platform)
        nic = platform.nic_Gbps / 8 * eff
        net_gpu = nic * platform.nics_per_node / g
        net_us = _get(theta, f"network.{platform.network}.latency_us", platform)
        hop = _get(theta, f"network.{platform.network}.nccl_hop_us", platform)
    else:
        nic = net_gpu = net_us = hop = nan
    nvshmem_us = (
        net_us + _get(theta, f"nvshmem.{platform.nvshmem}.overhead_us", platform) if platform.nvshmem else nan
    )
    return Links(
        nvlink_us, gpu_bw, peer_bw, net_us, hop, nvshmem_us, nic, net_gpu, platform.hbm_TBps * 1e3 / 3
    )


def _check_topology(platform: Platform, algorithm: str, nodes: int, g: int) -> None:
    if nodes < 1 or g < 1:
        raise CostModelError(f"nodes and GPUs per node must be at least 1, got {nodes} × {g}")
    if nodes > 1 and not platform.network:
        raise CostModelError(f"platform {platform.name} has no network: it runs on one node only")
    if g > 1 and not platform.fabric:
        raise CostModelError(f"platform {platform.name} has no NVLink fabric for {g} GPUs per node")
    if algorithm in IN_NODE and nodes > 1:
        raise CostModelError(f"{algorithm} runs inside one node (peer memory), not across {nodes} nodes")


def nccl_bus_GBps(platform: Platform, nodes: int, g: int, gpu_bw, node_net_bw):
    """NCCL's bus bandwidth: NVLink on one node; across nodes the smaller of NVLink and the node's NICs."""
    if nodes == 1:
        return gpu_bw
    return node_net_bw if g == 1 else np.minimum(gpu_bw, node_net_bw)


def nccl_choice(platform: Platform, nodes: int, g: int, size_bytes) -> np.ndarray:
    """'algorithm/protocol' NCCL picks: its own tuner with its own constants and datasheet bandwidths."""
    m = np.asarray(size_bytes, dtype=float)
    if nodes * g == 1:
        return np.full(m.shape, "none", dtype=object)
    node_net = platform.nics_per_node * platform.nic_Gbps / 8
    bus = nccl_bus_GBps(platform, nodes, g, platform.fabric_GBps, node_net)
    cands = nccl_times(nodes, g, m, bus, sm=platform.sm, cpu=platform.cpu)
    names = np.asarray([f"{a}/{p}" for a, p in cands], dtype=object)
    stacked = np.stack(np.broadcast_arrays(*cands.values()))
    return names[np.argmin(stacked, axis=0)]


def _nccl(platform: Platform, nodes: int, g: int, m, launch: str, theta: Theta, lk: Links):
    if nodes * g == 1:
        return np.zeros_like(m)
    node_net = lk.nic_GBps * platform.nics_per_node
    bus = nccl_bus_GBps(platform, nodes, g, lk.nvlink_gpu_GBps, node_net)
    intra_scale = lk.nvlink_us / NCCL_REFERENCE_ALPHA_US["intra"] if g > 1 else 1.0
    net_scale = lk.nccl_hop_us / NCCL_REFERENCE_ALPHA_US["inter"] if nodes > 1 else 1.0
    cands = nccl_times(
        nodes,
        g,
        m,
        bus,
        intra_scale=intra_scale,
        net_scale=net_scale,
        base_scale=_get(theta, "nccl_base_scale", platform),
        sm=platform.sm,
        cpu=platform.cpu,
    )
    chosen = nccl_choice(platform, nodes, g, m)
    names = [f"{a}/{p}" for a, p in cands]
    stacked = np.stack(np.broadcast_arrays(*cands.values()))
    index = np.asarray([names.index(c) for c in np.ravel(chosen)]).reshape(np.shape(chosen))
    picked = np.take_along_axis(stacked, np.broadcast_to(index, stacked.shape[1:])[None], axis=0)[0]
    return _launch(theta, launch, 1, platform) + picked


def nvrar_kernels(nodes: int, g: int) -> int:
    """Kernels of one NVRAR call: intra-node reduce-scatter and all-gather, inter-node exchange."""
    return (2 if g > 1 else 0) + (1 if nodes > 1 else 0)


def _schedule(algorithm: str, nodes: int, g: int, m, launch: str, theta: Theta, lk: Links, platform):
    one = np.asarray(1.0)
    params = {
        "alpha_intra_us": lk.nvlink_us if g > 1 else one,
        "beta_intra_GBps": lk.nvlink_peer_GBps if g > 1 else one,
        "gamma_intra_GBps": lk.reduce_GBps,
        "alpha_inter_us": lk.nvshmem_us if nodes > 1 else one,
        "beta_inter_GBps": lk.net_gpu_GBps if nodes > 1 else one,
        "gamma_inter_GBps": lk.reduce_GBps,
        "eta": LL_CELL_FACTOR,
    }
    if nodes > 1 and not platform.nvshmem:
        raise CostModelError(
            f"platform {platform.name} names no NVSHMEM transport for {algorithm} across nodes"
        )
    kernels = nvrar_kernels(nodes, g) if algorithm == "nvrar" else 1
    return _launch(theta, launch, max(kernels, 1), platform) + schedule_time(algorithm, nodes, g, m, params)


def predict(
    platform: Platform,
    algorithm: str,
    nodes: int,
    gpus_per_node: int,
    size_bytes,
    launch: str,
    theta: Theta,
) -> np.ndarray:
    """Latency (µs) of one call of `algorithm` on nodes × gpus_per_node of `platform`.

    Point-to-point algorithms take nodes = 2 for two nodes (one GPU each) and nodes = 1 for two GPUs
    of one node; their time is one way, as the sources report it.
    """
    g = gpus_per_node
    if algorithm not in ALGORITHMS:
        raise CostModelError(
            f"the grounded model has no algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}"
        )
    m = np.asarray(size_bytes, dtype=float)
    lk = links(platform, theta, max(g, 2) if algorithm in POINT_TO_POINT and nodes == 1 else g)
    if algorithm in POINT_TO_POINT:
        if nodes == 1:
            if algorithm != "nvshmem-put" or not platform.fabric:
                raise CostModelError(f"{algorithm} inside one node is not modelled on {platform.name}")
            return np.asarray(lk.nvlink_us + m / (1e3 * lk.nvlink_peer_GBps))
        if not platform.network or (algorithm == "nvshmem-put" and not platform.nvshmem):
            raise CostModelError(f"platform {platform.name} has no transport for {algorithm}")
        start = {
            "nvshmem-put": lk.nvshmem_us,
            "mpi-p2p": lk.net_us,
            "mpi-p2p-gpu": lk.net_us + _get(theta, "mpi_gpu_buffer_us", platform),
        }[algorithm]
        return np.asarray(start + m / (1e3 * lk.nic_GBps))
    _check_topology(platform, algorithm, nodes, g)
    if algorithm == "nccl":
        return np.asarray(_nccl(platform, nodes, g, m, launch, theta, lk))
    if algorithm in SCHEDULE_ALGORITHMS:
        return np.asarray(_schedule(algorithm, nodes, g, m, launch, theta, lk, platform))
    if g == 1:
        return np.zeros(np.broadcast_shapes(m.shape, np.shape(lk.reduce_GBps)))
    call = _launch(theta, launch, 1, platform)
    frac = (g - 1) / g
    reduce_us = m / (1e3 * lk.reduce_GBps)
    bw = 1e3 * lk.nvlink_gpu_GBps
    if algorithm == "one-shot":
        return np.asarray(call + 2 * lk.nvlink_us + (g - 1) * m / bw + (g - 1) * reduce_us)
    if algorithm == "mscclpp":
        return np.asarray(call + 2 * lk.nvlink_us + LL_CELL_FACTOR * (g - 1) * m / bw + (g - 1) * reduce_us)
    if algorithm == "two-shot":
        return np.asarray(call + 4 * lk.nvlink_us + 2 * frac * m / bw + frac * reduce_us)
    # multimem: each GPU loads its reduced 1/G through the switch and multicasts it back.
    return np.asarray(call + 2 * lk.nvlink_us + 2 * m / (g * bw))


def is_power_of_two(n: int) -> bool:
    return n >= 1 and 2 ** int(math.log2(n)) == n

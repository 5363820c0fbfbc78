"""The grounded all-reduce model: what a call costs on a GPU platform, with parameters per transport.

The α-β-γ schedule model (`collectives.costmodel.schedule`) describes data movement; on GPU systems a
small all-reduce is dominated by what it leaves out: kernel launches (plain or replayed from a CUDA
graph), the latency of each transport (a GPU-initiated store and flag over NVLink; NCCL's network
hops; NVSHMEM's puts through a CPU proxy over libfabric or IB verbs, or GPU-initiated over IBGDA),
and the fraction of link bandwidth each protocol keeps (NCCL LL / LL128 / Simple, NVRAR's LL cells
of 4 data bytes and a 4-byte flag). This model adds exactly those, with one parameter per physical
effect, shared by every platform that has the same part:

    launch_plain_us, launch_graph_us, nccl_base_scale,
    mpi_gpu_buffer_us                                           (global)
    host.<harness>.call_us                                      (host time to issue one call)
    fabric.<class>.latency_us, .nccl_hop_us, .efficiency        (intra-node NVLink fabric)
    network.<class>.latency_us, .nccl_hop_us, .efficiency       (inter-node network)
    nvshmem.<transport>.overhead_us                             (NVSHMEM's proxy or IBGDA, added to
                                                                the network's own latency)

Launches: inside a CUDA graph a call costs its device time plus launch_graph_us per kernel. Plainly,
calls issued back to back overlap the host's work with the GPU's, so a call costs the larger of the
host's time to issue it (per harness: nccl-tests' C loop, or Python through torch) and its device time
plus launch_plain_us per kernel.

Parameter values are dicts name → float or numpy array; arrays (one value per bootstrap draw, shaped
(draws, 1)) broadcast against message sizes, so one call predicts every draw at once.
Docs: docs/costmodel.md ("The grounded model").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collectives.costmodel.nccl import NCCL_REFERENCE_ALPHA_US, choose, nccl_times
from collectives.costmodel.params import CostModelError
from collectives.costmodel.schedule import schedule_time
from collectives.schedules import ALGORITHMS as SCHEDULE_ALGORITHMS

# name → (unit, meaning); the classes' parameters are named <group>.<class>.<name>.
GLOBAL_PARAMETERS: dict[str, tuple[str, str]] = {
    "launch_plain_us": (
        "µs",
        "device-side cost of one kernel launched on its own (not from a graph), per kernel",
    ),
    "launch_graph_us": ("µs", "cost of one kernel node replayed from a CUDA graph, per kernel"),
    "nccl_base_scale": ("—", "multiplies NCCL's base latency of every (algorithm, protocol)"),
    "host_op_us": (
        "µs",
        "host time of each further operation of a call that issues several (a copy, a phase)",
    ),
    "nccl_graph_us": (
        "µs",
        "extra cost of an NCCL call replayed from a CUDA graph while NCCL_GRAPH_MIXING_SUPPORT=1 "
        "(NCCL's default)",
    ),
    "c10d_call_us": ("µs", "extra host time of torch.distributed's NCCL all_reduce over a custom op's call"),
    "mpi_gpu_buffer_us": (
        "µs",
        "extra one-way MPI latency with GPU buffers over host buffers (GPUDirect path)",
    ),
}
HOST_PARAMETERS: dict[str, tuple[str, str]] = {
    "call_us": (
        "µs",
        "host time to issue one all-reduce call from this harness (hidden while the GPU is busier)",
    ),
}
HARNESSES = ("nccl-tests", "torch")
FABRIC_PARAMETERS: dict[str, tuple[str, str]] = {
    "latency_us": ("µs", "one GPU-initiated step over NVLink: stores plus a flag the peer sees"),
    "nccl_hop_us": (
        "µs",
        "NCCL's latency per NVLink hop of ring/LL; its other hops scale with NCCL's ratios",
    ),
    "efficiency": (
        "—",
        "fraction of the datasheet NVLink bandwidth per GPU that NCCL's and NVSHMEM's transfers reach",
    ),
    "peer_efficiency": (
        "—",
        "fraction of it the peer-memory all-reduces of one node reach (one-shot, two-shot, ...)",
    ),
}
NETWORK_PARAMETERS: dict[str, tuple[str, str]] = {
    "latency_us": ("µs", "host-initiated one-way small-message latency (MPI ping-pong / 2)"),
    "nccl_hop_us": (
        "µs",
        "NCCL's latency per network hop of ring/LL; its other hops scale with NCCL's ratios",
    ),
    "efficiency": ("—", "fraction of the NICs' line rate that large transfers reach"),
    "nccl_cap_GBps": (
        "GB/s",
        "bus bandwidth NCCL's network pipeline sustains per node, in series with the NICs' (1/bw adds)",
    ),
}
TRANSPORT_PARAMETERS: dict[str, tuple[str, str]] = {
    "overhead_us": ("µs", "what NVSHMEM's transport adds to the network's one-way latency for a small put"),
    "efficiency": ("—", "fraction of the NICs' line rate NVSHMEM's puts reach over this transport"),
}
GROUPS = {
    "host": HOST_PARAMETERS,
    "fabric": FABRIC_PARAMETERS,
    "network": NETWORK_PARAMETERS,
    "nvshmem": TRANSPORT_PARAMETERS,
}

# Algorithms the grounded model predicts. The in-node custom all-reduces: one-shot (every GPU reads
# all peers and reduces; vLLM's one-stage custom all-reduce), two-shot (reduce-scatter then
# all-gather over peer memory), multimem (NVLink SHARP: the switch reduces), mscclpp (MSCCL++'s
# all-reduce in LL packets: reduce-scatter then all-gather). Point to point: nvshmem-put and mpi-p2p, one way.
IN_NODE = ("one-shot", "two-shot", "multimem", "mscclpp")
POINT_TO_POINT = ("nvshmem-put", "mpi-p2p", "mpi-p2p-gpu")
ALGORITHMS: tuple[str, ...] = ("nccl", *SCHEDULE_ALGORITHMS, *IN_NODE, *POINT_TO_POINT)
LAUNCHES = ("plain", "graph")
OVERLAP_NORM = 8.0
# Barriers and traffic per GPU of the in-node algorithms: one-shot reads the whole message from every
# peer; the others move 2(G-1)/G of it (reduce-scatter, then all-gather). Each waits twice for its
# peers: barriers (one-shot, two-shot, multimem) or the flags of its two rounds of LL packets (mscclpp).
# mscclpp's packets carry a flag beside their data, but the published times fit better without
# doubling its bytes (docs/costmodel.md, "Modelling decisions").
IN_NODE_SHAPE = {
    "one-shot": (2, "all"),
    "two-shot": (2, "halves"),
    "multimem": (2, "halves"),
    "mscclpp": (2, "halves"),
}
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
    nvshmem: str | None = None  # NVSHMEM's remote transport: proxy (libfabric, IB verbs) | ibgda
    nccl_graph_mixing: bool = True  # NCCL_GRAPH_MIXING_SUPPORT, NCCL's default 1; the study sets 0
    nic_path: str = "pxb"  # GPU to NIC: pxb (through a PCIe switch) or phb (through the CPU's host bridge)

    def ll128(self, nodes: int) -> bool:
        """Whether NCCL 2.27 enables LL128: across nodes only when the NIC path stays within a PCIe
        switch (PXB), or on Hopper (whose PXN and C2C paths also qualify)."""
        return nodes == 1 or self.nic_path == "pxb" or self.sm >= 90

    def parameter_names(self) -> list[str]:
        """The parameters predictions on this platform can depend on."""
        names = list(GLOBAL_PARAMETERS) + [f"host.{h}.call_us" for h in HARNESSES]
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


def _launched(
    device_us, theta: Theta, launch: str, kernels: int, harness: str, platform: Platform, algorithm: str
):
    """A call's time from its device time: graph replay, or plain calls whose host work overlaps."""
    if launch not in LAUNCHES:
        raise CostModelError(f"launch must be one of {', '.join(LAUNCHES)}, got {launch!r}")
    device = device_us + kernels * _get(theta, f"launch_{launch}_us", platform)
    if launch == "graph":
        if algorithm == "nccl" and platform.nccl_graph_mixing:
            device = device + _get(theta, "nccl_graph_us", platform)
        return device
    if harness not in HARNESSES:
        raise CostModelError(f"harness must be one of {', '.join(HARNESSES)}, got {harness!r}")
    host = _get(theta, f"host.{harness}.call_us", platform) + (kernels - 1) * _get(
        theta, "host_op_us", platform
    )
    if harness == "torch" and algorithm == "nccl":
        host = host + _get(theta, "c10d_call_us", platform)
    # The larger of the two, softened (a p-norm): near the crossover host and GPU work only partly
    # overlap, and a smooth transition keeps both parameters visible to a fit.
    return (device**OVERLAP_NORM + host**OVERLAP_NORM) ** (1 / OVERLAP_NORM)


@dataclass(frozen=True)
class Links:
    """Effective latencies (µs) and bandwidths (GB/s) of one platform under one parameter set."""

    nvlink_us: np.ndarray
    nccl_nvlink_hop_us: np.ndarray
    nvlink_gpu_GBps: np.ndarray  # a GPU's NVLink bandwidth to all peers together
    peer_gpu_GBps: np.ndarray  # the same for peer-memory loads and stores
    nvlink_peer_GBps: np.ndarray  # to one peer
    net_us: np.ndarray
    nccl_hop_us: np.ndarray
    nvshmem_us: np.ndarray
    nvshmem_gpu_GBps: np.ndarray  # a GPU's share of its node's NICs for NVSHMEM puts
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
        nccl_nvlink = _get(theta, f"fabric.{platform.fabric}.nccl_hop_us", platform)
        peer_mem = platform.fabric_GBps * _get(theta, f"fabric.{platform.fabric}.peer_efficiency", platform)
    else:
        gpu_bw = peer_bw = nvlink_us = nccl_nvlink = peer_mem = nan
    if platform.network:
        eff = _get(theta, f"network.{platform.network}.efficiency", platform)
        nic = platform.nic_Gbps / 8 * eff
        net_gpu = nic * platform.nics_per_node / g
        net_us = _get(theta, f"network.{platform.network}.latency_us", platform)
        hop = _get(theta, f"network.{platform.network}.nccl_hop_us", platform)
    else:
        nic = net_gpu = net_us = hop = nan
    if platform.nvshmem and platform.network:
        nvshmem_us = net_us + _get(theta, f"nvshmem.{platform.nvshmem}.overhead_us", platform)
        put_eff = _get(theta, f"nvshmem.{platform.nvshmem}.efficiency", platform)
        nvshmem_gpu = platform.nic_Gbps / 8 * put_eff * platform.nics_per_node / g
    else:
        nvshmem_us = nvshmem_gpu = nan
    return Links(
        nvlink_us,
        nccl_nvlink,
        gpu_bw,
        peer_mem,
        peer_bw,
        net_us,
        hop,
        nvshmem_us,
        nvshmem_gpu,
        nic,
        net_gpu,
        platform.hbm_TBps * 1e3 / 3,
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
    _check_topology(platform, "nccl", nodes, g)
    if nodes * g == 1:
        return np.full(m.shape, "none", dtype=object)
    node_net = platform.nics_per_node * platform.nic_Gbps / 8
    bus = nccl_bus_GBps(platform, nodes, g, platform.fabric_GBps, node_net)
    cands = nccl_times(nodes, g, m, bus, sm=platform.sm, cpu=platform.cpu, ll128=platform.ll128(nodes))
    return choose(cands)[1]


def _nccl(platform: Platform, nodes: int, g: int, m, theta: Theta, lk: Links):
    """Device time of NCCL's chosen (algorithm, protocol) under the fitted transports."""
    node_net = lk.nic_GBps * platform.nics_per_node
    if nodes > 1:
        cap = _get(theta, f"network.{platform.network}.nccl_cap_GBps", platform)
        node_net = 1.0 / (1.0 / node_net + 1.0 / cap)
    bus = nccl_bus_GBps(platform, nodes, g, lk.nvlink_gpu_GBps, node_net)
    intra_scale = lk.nccl_nvlink_hop_us / NCCL_REFERENCE_ALPHA_US["intra"] if g > 1 else 1.0
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
        ll128=platform.ll128(nodes),
    )
    chosen = nccl_choice(platform, nodes, g, m)
    names = [f"{a}/{p}" for a, p in cands]
    stacked = np.stack(np.broadcast_arrays(*cands.values()))
    index = np.asarray([names.index(c) for c in np.ravel(chosen)]).reshape(np.shape(chosen))
    return np.take_along_axis(stacked, np.broadcast_to(index, stacked.shape[1:])[None], axis=0)[0]


def nvrar_kernels(nodes: int, g: int) -> int:
    """Kernels of one NVRAR call: intra-node reduce-scatter and all-gather, inter-node exchange."""
    return (2 if g > 1 else 0) + (1 if nodes > 1 else 0)


def _schedule(algorithm: str, nodes: int, g: int, m, lk: Links, platform: Platform):
    """Device time of a schedule-modelled algorithm with GPU-initiated transports (NVRAR's)."""
    one = np.asarray(1.0)
    params = {
        "alpha_intra_us": lk.nvlink_us if g > 1 else one,
        "beta_intra_GBps": lk.nvlink_peer_GBps if g > 1 else one,
        "gamma_intra_GBps": lk.reduce_GBps,
        "alpha_inter_us": lk.nvshmem_us if nodes > 1 else one,
        "beta_inter_GBps": lk.nvshmem_gpu_GBps if nodes > 1 else one,
        "gamma_inter_GBps": lk.reduce_GBps,
        "eta": LL_CELL_FACTOR,
    }
    if nodes > 1 and not platform.nvshmem:
        raise CostModelError(
            f"platform {platform.name} names no NVSHMEM transport for {algorithm} across nodes"
        )
    return schedule_time(algorithm, nodes, g, m, params)


def default_kernels(algorithm: str, nodes: int, g: int) -> int:
    """Kernels per call when a source does not say: NVRAR as its authors built it, else one."""
    return max(nvrar_kernels(nodes, g), 1) if algorithm == "nvrar" else 1


def predict(
    platform: Platform,
    algorithm: str,
    nodes: int,
    gpus_per_node: int,
    size_bytes,
    launch: str,
    theta: Theta,
    *,
    harness: str = "torch",
    kernels: int | None = None,
) -> np.ndarray:
    """Latency (µs) of one call of `algorithm` on nodes × gpus_per_node of `platform`.

    `kernels` is the number of kernels one call launches when the implementation is known (our
    one-shot stages its input and output: 3); by default NVRAR launches its authors' three phases
    and everything else one. Point-to-point algorithms take nodes = 2 for two nodes (one GPU each)
    and nodes = 1 for two GPUs of one node; their time is one way, as the sources report it.
    """
    g = gpus_per_node
    if algorithm not in ALGORITHMS:
        raise CostModelError(
            f"the grounded model has no algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}"
        )
    m = np.asarray(size_bytes, dtype=float)
    if algorithm in POINT_TO_POINT:
        return _point_to_point(platform, algorithm, nodes, m, theta)
    _check_topology(platform, algorithm, nodes, g)
    if nodes * g == 1:
        return np.zeros(np.broadcast_shapes(m.shape, *(np.shape(v) for v in theta.values())))
    lk = links(platform, theta, g)
    if algorithm == "nccl":
        device = _nccl(platform, nodes, g, m, theta, lk)
    elif algorithm in SCHEDULE_ALGORITHMS:
        device = _schedule(algorithm, nodes, g, m, lk, platform)
    else:
        device = _in_node(algorithm, g, m, lk)
    k = default_kernels(algorithm, nodes, g) if kernels is None else kernels
    return np.asarray(_launched(device, theta, launch, k, harness, platform, algorithm))


def _point_to_point(platform: Platform, algorithm: str, nodes: int, m, theta: Theta):
    lk = links(platform, theta, 2 if nodes == 1 else platform.gpus_per_node)
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


def _in_node(algorithm: str, g: int, m, lk: Links):
    """Device time of the peer-memory all-reduces of one node: their barriers (one GPU-initiated
    NVLink step each) and their NVLink traffic per GPU. Loads from peers are the reduction's operands,
    so the adds hide under the traffic and are not charged apart."""
    frac = (g - 1) / g
    bw = 1e3 * lk.peer_gpu_GBps
    barriers, traffic = IN_NODE_SHAPE[algorithm]
    moved = (g - 1) * m if traffic == "all" else 2 * frac * m
    return barriers * lk.nvlink_us + moved / bw


def stage_send_us(platform: Platform, nbytes, crosses_node: bool, theta: Theta, gpus_per_node: int):
    """One pipeline stage's activations to the next (an NCCL send): over the network or NVLink."""
    lk = links(platform, theta, max(gpus_per_node, 2) if platform.fabric else 1)
    m = np.asarray(nbytes, dtype=float)
    if crosses_node:
        return lk.nccl_hop_us + lk.net_us + m / (1e3 * lk.nic_GBps)
    return lk.nccl_nvlink_hop_us + m / (1e3 * lk.nvlink_peer_GBps)

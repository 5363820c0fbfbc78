"""α-β-γ cost models of the all-reduce family, derived from the step schedules; an NCCL-like tuner model;
least-squares calibration; engine step-time predictions; sensitivities. numpy only (runs anywhere).

How a schedule becomes a model: `collectives.schedules.plan_traffic` reduces each step to the distinct
per-rank traffic (elements sent, received and reduced on each level). A rank's time on one level in
one step is

    α_level + max(sent, received)·M/β_level + reduced·M/γ_level

(links are full duplex, so sending and receiving overlap, and a rank drives its NVLink and its NIC at
once); the step lasts as long as the largest of these terms over ranks and levels, and the all-reduce
is the sum over steps. Traffic is kept as fractions of the message (the schedule
is built with a count that every split divides), so one profile per (algorithm, topology) serves every
message size; identical steps are merged with a multiplicity, which keeps evaluation vectorised over
sizes and parameters. The inter-node bytes of NVRAR are multiplied by η (its LL protocol puts a 4-byte
flag beside every 4 bytes of data, η = 2; put-with-signal, η ≈ 1).

Units: α in µs, β and γ in GB/s (10^9 B/s), sizes in bytes, times in µs. β_inter is the bandwidth one
GPU gets from the network when every GPU of its node sends at once (node injection / GPUs per node).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from collectives.schedules import ALGORITHMS, Topology, largest_power_of_two, plan_traffic

MODELS: tuple[str, ...] = (*ALGORITHMS, "nccl")
PARAM_NAMES: tuple[str, ...] = (
    "alpha_intra_us",
    "beta_intra_GBps",
    "gamma_intra_GBps",
    "alpha_inter_us",
    "beta_inter_GBps",
    "gamma_inter_GBps",
    "eta",
)
# Benchmark backend names (collectives.api, docs/results.md) → the model that predicts them. The CPU
# reference backends execute the schedules themselves; nccl-ring / nccl-tree are NCCL forced to one.
MODEL_OF_BACKEND: dict[str, str] = {
    **{name: name for name in MODELS},
    "reference": "nvrar",
    "reference-ring": "ring",
    "reference-rd": "recursive-doubling",
    "reference-rabenseifner": "rabenseifner",
    "reference-tree": "tree",
    "nccl-ring": "nccl",
    "nccl-tree": "nccl",
}
# Above this many ranks the flat ring (2(p−1) steps of p messages) is summarised by its closed form,
# which tests check against the schedule on topologies of up to 64 ranks.
RING_SCHEDULE_LIMIT = 256


class CostModelError(ValueError):
    """Bad arguments to the model (unknown algorithm, non-physical parameters)."""


class FitError(ValueError):
    """The data cannot determine the parameters; `missing` says what data would."""

    def __init__(self, message: str, missing: str = ""):
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True)
class LinkParams:
    alpha_us: float
    beta_GBps: float
    gamma_GBps: float


@dataclass(frozen=True)
class CostParams:
    """Per-level α, β, γ and NVRAR's inter-node traffic factor η."""

    intra: LinkParams
    inter: LinkParams
    eta: float = 1.0

    def flat(self) -> dict[str, float]:
        return {
            "alpha_intra_us": self.intra.alpha_us,
            "beta_intra_GBps": self.intra.beta_GBps,
            "gamma_intra_GBps": self.intra.gamma_GBps,
            "alpha_inter_us": self.inter.alpha_us,
            "beta_inter_GBps": self.inter.beta_GBps,
            "gamma_inter_GBps": self.inter.gamma_GBps,
            "eta": self.eta,
        }

    @classmethod
    def from_flat(cls, values: dict[str, float]) -> CostParams:
        unknown = set(values) - set(PARAM_NAMES)
        if unknown:
            raise CostModelError(
                f"unknown parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(PARAM_NAMES)}"
            )
        missing = set(PARAM_NAMES) - set(values)
        if missing:
            raise CostModelError(f"missing parameter(s) {', '.join(sorted(missing))}")
        params = cls(
            LinkParams(values["alpha_intra_us"], values["beta_intra_GBps"], values["gamma_intra_GBps"]),
            LinkParams(values["alpha_inter_us"], values["beta_inter_GBps"], values["gamma_inter_GBps"]),
            values["eta"],
        )
        params.check()
        return params

    def with_values(self, **values: float) -> CostParams:
        return CostParams.from_flat({**self.flat(), **values})

    def check(self) -> None:
        for name, value in self.flat().items():
            if not math.isfinite(value) or value < 0 or (value == 0 and not name.startswith("alpha")):
                raise CostModelError(f"{name} = {value} is not physical (α ≥ 0, β, γ, η > 0)")


Params = dict[str, "np.ndarray | float"]


def _as_arrays(params: CostParams | Params) -> Params:
    return params.flat() if isinstance(params, CostParams) else params


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


def _ring_closed_form(topology: Topology) -> Profile:
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
        return _ring_closed_form(topology)
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


def predict(
    algorithm: str,
    nodes: int,
    gpus_per_node: int,
    size_bytes,
    params: CostParams | Params,
    *,
    ll128: bool = True,
) -> np.ndarray:
    """Predicted latency (µs) of one all-reduce; broadcasts over sizes and array-valued parameters."""
    p = _as_arrays(params)
    if algorithm == "nccl":
        return nccl_predict(nodes, gpus_per_node, size_bytes, p, ll128=ll128)[0]
    if algorithm not in ALGORITHMS:
        raise CostModelError(f"unknown algorithm {algorithm!r}; choose from {', '.join(MODELS)}")
    return np.asarray(
        _schedule_time(profile(algorithm, nodes, gpus_per_node), size_bytes, p, algorithm == "nvrar"),
        dtype=float,
    )


# -- the published and the classic closed forms (homogeneous checks and comparisons) -------------------


def nvrar_published(nodes: int, gpus_per_node: int, size_bytes, params: CostParams | Params):
    """The NVRAR model as its authors reported it (reduction cost not modelled)."""
    p = _as_arrays(params)
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


# -- NCCL's tuner, as a model --------------------------------------------------------------------------
# NCCL (src/graph/tuning.cc, 2.19–2.27) predicts time = latency + bytes / algorithm bandwidth for every
# (algorithm, protocol) and takes the fastest. Latencies in µs: a base per (algorithm, protocol) plus a
# per-hop latency per link type; bandwidths are the topology's bus bandwidth scaled by the protocol's
# efficiency. We keep NCCL's constants and take link speeds from the system's β; the per-hop latencies
# move with the system's α relative to the hop latency NCCL assumes for the LL protocol.

NCCL_ALGORITHMS = ("tree", "ring")
NCCL_PROTOCOLS = ("LL", "LL128", "Simple")
NCCL_BASE_LAT_US = {"tree": (6.8, 14.0, 8.4), "ring": (6.6, 14.0, 8.4)}
NCCL_HOP_LAT_US = {
    "intra": {"tree": (0.6, 1.25, 4.0), "ring": (0.6, 1.9, 3.4)},
    "inter": {"tree": (5.0, 8.5, 14.0), "ring": (2.7, 4.0, 14.0)},
}
NCCL_REFERENCE_ALPHA_US = {"intra": 0.6, "inter": 2.7}
# NCCL's tree correction, powers of two from 64 B (index = log2(bytes / 64)).
NCCL_TREE_CORRECTION = (
    (
        1.0,
        1.0,
        1.0,
        1.0,
        0.9,
        0.8,
        0.7,
        0.7,
        0.7,
        0.7,
        0.6,
        0.5,
        0.4,
        0.4,
        0.5,
        0.6,
        0.7,
        0.8,
        0.9,
        1.0,
        1.0,
        1.0,
    ),
    (
        1.0,
        1.0,
        1.0,
        1.0,
        1.0,
        0.9,
        0.8,
        0.8,
        0.8,
        0.7,
        0.6,
        0.6,
        0.6,
        0.5,
        0.6,
        0.6,
        0.7,
        0.7,
        0.8,
        0.9,
        0.9,
        1.0,
    ),
    (
        0.9,
        0.9,
        0.9,
        0.9,
        0.9,
        0.9,
        0.9,
        0.8,
        0.7,
        0.6,
        0.6,
        0.5,
        0.5,
        0.5,
        0.5,
        0.5,
        0.5,
        0.6,
        0.6,
        0.7,
        0.8,
        0.9,
    ),
)


def nccl_bus_bandwidth(nodes: int, gpus_per_node: int, p: Params):
    """GB/s: NVLink alone on one node; across nodes NCCL spreads channels over the node's NICs."""
    if nodes == 1:
        return np.asarray(p["beta_intra_GBps"], dtype=float)
    return np.minimum(p["beta_intra_GBps"], gpus_per_node * np.asarray(p["beta_inter_GBps"], dtype=float))


def nccl_candidates(
    nodes: int,
    gpus_per_node: int,
    size_bytes,
    params: CostParams | Params,
    *,
    ll128: bool = True,
    algorithms: tuple[str, ...] = NCCL_ALGORITHMS,
) -> dict[tuple[str, str], np.ndarray]:
    """Predicted µs for every (algorithm, protocol) NCCL would consider (NCCL_ALGO narrows `algorithms`)."""
    p = _as_arrays(params)
    ranks, g, n = nodes * gpus_per_node, gpus_per_node, nodes
    m = np.asarray(size_bytes, dtype=float)
    bus = nccl_bus_bandwidth(n, g, p)
    log_size = np.floor(np.log2(np.maximum(m, 64) / 64)).astype(int)
    corrected = log_size < len(NCCL_TREE_CORRECTION[0])  # NCCL corrects 64 B .. 128 MiB only
    shift = {
        lvl: np.asarray(p[f"alpha_{lvl}_us"], dtype=float) - NCCL_REFERENCE_ALPHA_US[lvl]
        for lvl in ("intra", "inter")
    }
    out = {}
    for algo in algorithms:
        for k, proto in enumerate(NCCL_PROTOCOLS):
            if proto == "LL128" and not ll128:
                continue
            intra_hop = np.maximum(NCCL_HOP_LAT_US["intra"][algo][k] + shift["intra"], 0.0)
            inter_hop = np.maximum(NCCL_HOP_LAT_US["inter"][algo][k] + shift["inter"], 0.0)
            if n > 1 and proto == "LL":
                intra_hop = intra_hop * 1.8
            lat = NCCL_BASE_LAT_US[algo][k]
            if algo == "ring":
                steps, inter_steps = 2 * (ranks - 1), 2 * (n - 1)
                lat = lat + (steps - inter_steps) * intra_hop + inter_steps * inter_hop
                eff = {"LL": 0.25, "LL128": 0.92 if g >= 2 else 0.7, "Simple": 1.0}[proto]
                algbw = bus * eff * ranks / (2 * (ranks - 1))
                if proto == "Simple" and n > 1:
                    lat = np.where(m >= ranks / 16 * 65536, lat * 1.9, lat)
            else:
                lat = lat + 2 * ((g - 1) * intra_hop + int(math.log2(n)) * inter_hop)
                eff = {"LL": 0.92 / 3.8, "LL128": 0.92 * (7 / 9 if n == 1 else 0.915), "Simple": 0.92}[proto]
                table = np.asarray(NCCL_TREE_CORRECTION[k])
                factor = np.where(corrected, table[np.minimum(log_size, len(table) - 1)], 1.0)
                algbw = bus * eff * 0.5 * factor
            out[(algo, proto)] = lat + m / (1e3 * algbw)
    return out


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
    cands = nccl_candidates(nodes, gpus_per_node, size_bytes, params, ll128=ll128, algorithms=algorithms)
    names = [f"{a}/{p}" for a, p in cands]
    stacked = np.stack(np.broadcast_arrays(*cands.values()))
    best = np.argmin(stacked, axis=0)
    return np.min(stacked, axis=0), np.asarray(names, dtype=object)[best]


# -- sensitivity ---------------------------------------------------------------------------------------


def elasticities(
    algorithm: str, nodes: int, gpus_per_node: int, size_bytes, params: CostParams, *, rel_step: float = 1e-4
) -> dict[str, np.ndarray]:
    """∂T/∂θ · θ/T for every parameter (central differences): which one dominates at each size.

    +1 for a pure latency term in α, −1 for a pure bandwidth term in β; parameters a model does not
    use come out 0 (η outside NVRAR, γ in NCCL's model).
    """
    base = params.flat()
    t0 = predict(algorithm, nodes, gpus_per_node, size_bytes, base)
    out = {}
    for name, value in base.items():
        if value == 0:
            out[name] = np.zeros_like(t0)
            continue
        hi = predict(algorithm, nodes, gpus_per_node, size_bytes, {**base, name: value * (1 + rel_step)})
        lo = predict(algorithm, nodes, gpus_per_node, size_bytes, {**base, name: value * (1 - rel_step)})
        out[name] = np.where(t0 > 0, (hi - lo) / (2 * rel_step * np.where(t0 > 0, t0, 1)), 0.0)
    return out


# -- calibration ---------------------------------------------------------------------------------------

FIT_PARAMS: tuple[str, ...] = ("alpha_intra_us", "beta_intra_GBps", "alpha_inter_us", "beta_inter_GBps")


@dataclass(frozen=True)
class FitResult:
    params: CostParams
    stderr: dict[str, float]
    fitted: tuple[str, ...]
    predicted_us: np.ndarray
    relative_residuals: np.ndarray
    rms_relative: float
    samples: int
    iterations: int
    theta_names: tuple[str, ...] = ()
    theta_covariance: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    converged: bool = True


# The fit's linear coordinates: latencies and inverse bandwidths (µs per byte).
THETA_NAMES = ("alpha_intra_us", "alpha_inter_us", "inv_beta_intra_us_per_B", "inv_beta_inter_us_per_B")
_THETA_OF_PARAM = {
    "alpha_intra_us": "alpha_intra_us",
    "alpha_inter_us": "alpha_inter_us",
    "inv_beta_intra_us_per_B": "beta_intra_GBps",
    "inv_beta_inter_us_per_B": "beta_inter_GBps",
}


def _with_theta(params: CostParams, name: str, value: float) -> dict[str, float]:
    flat = params.flat()
    target = _THETA_OF_PARAM[name]
    flat[target] = value if name.startswith("alpha") else 1e-3 / value
    return flat


def _theta_value(params: CostParams, name: str) -> float:
    value = params.flat()[_THETA_OF_PARAM[name]]
    return value if name.startswith("alpha") else 1e-3 / value


def prediction_stderr(
    algorithm: str,
    nodes: int,
    gpus_per_node: int,
    size_bytes,
    params: CostParams,
    theta_names: tuple[str, ...],
    theta_covariance: np.ndarray,
    *,
    ll128: bool = True,
) -> np.ndarray:
    """Standard error (µs) of a prediction from the fit's covariance: sqrt(gᵀ Σ g), g = ∂T/∂θ.

    Extrapolating to node counts that were never measured widens it when the data constrained the
    network poorly, which is the point of reporting it.
    """
    grads = []
    for name in theta_names:
        theta = _theta_value(params, name)
        h = max(abs(theta) * 1e-4, 1e-12)
        hi = predict(
            algorithm, nodes, gpus_per_node, size_bytes, _with_theta(params, name, theta + h), ll128=ll128
        )
        lo = predict(
            algorithm, nodes, gpus_per_node, size_bytes, _with_theta(params, name, theta - h), ll128=ll128
        )
        grads.append((hi - lo) / (2 * h))
    if not grads:
        return np.zeros_like(predict(algorithm, nodes, gpus_per_node, size_bytes, params, ll128=ll128))
    g = np.stack(np.broadcast_arrays(*grads))
    return np.sqrt(np.maximum(np.einsum("i...,ij,j...->...", g, np.asarray(theta_covariance), g), 0.0))


def _design(algorithms, nodes, gpus, sizes, theta: np.ndarray, fixed: CostParams):
    """Rows over θ = (α_intra, α_inter, 1/β_intra, 1/β_inter) in µs and µs/B, taking in each step the
    term that is largest under the current θ; plus the reduction time, which does not depend on θ."""
    n = len(sizes)
    x = np.zeros((n, 4))
    const = np.zeros(n)
    per_reduced = (1e-3 / fixed.intra.gamma_GBps, 1e-3 / fixed.inter.gamma_GBps)
    for j in range(n):
        prof = profile(str(algorithms[j]), int(nodes[j]), int(gpus[j]))
        eta = fixed.eta if algorithms[j] == "nvrar" else 1.0
        m = float(sizes[j])
        for mult, terms in zip(prof.multiplicity, prof.terms, strict=True):
            best, best_t = None, -np.inf
            for level, xf, rf in terms:
                row = np.zeros(4)
                row[level] = 1.0
                row[2 + level] = xf * m * (eta if level == 1 else 1.0)
                c = rf * m * per_reduced[level]
                t = row @ theta + c
                if t > best_t:
                    best, best_t = (row, c), t
            x[j] += mult * best[0]
            const[j] += mult * best[1]
    return x, const


def fit(
    algorithms,
    nodes,
    gpus_per_node,
    size_bytes,
    latency_us,
    prior: CostParams,
    *,
    fixed: tuple[str, ...] = (),
    max_iterations: int = 25,
    min_samples_per_parameter: int = 2,
) -> FitResult:
    """Weighted least squares of α and β per level (relative residuals), holding γ, η and `fixed`.

    The step time is a maximum over ranks, so the model is piecewise linear in (α, 1/β): pick each
    step's slowest rank under the current estimate, solve, and repeat until the choice settles; if it
    keeps switching, keep the iterate whose exact model fits best (`converged` = False).
    Uncertainty is the covariance of the linear solve at the kept estimate (σ² (XᵀWX)⁻¹), with β's
    standard error by the delta method. Raises FitError when the data cannot separate the free
    parameters.
    """
    algorithms = np.asarray(algorithms, dtype=object)
    nodes, gpus = np.asarray(nodes, dtype=int), np.asarray(gpus_per_node, dtype=int)
    sizes, measured = np.asarray(size_bytes, dtype=float), np.asarray(latency_us, dtype=float)
    bad = sorted({str(a) for a in algorithms} - set(ALGORITHMS))
    if bad:
        raise FitError(
            f"no schedule model for algorithm(s) {', '.join(bad)}",
            missing=f"samples of {', '.join(ALGORITHMS)}",
        )
    unknown = set(fixed) - set(FIT_PARAMS)
    if unknown:
        raise FitError(f"cannot hold {', '.join(sorted(unknown))} fixed; choose from {', '.join(FIT_PARAMS)}")
    free = [k for k, name in enumerate(FIT_PARAMS) if name not in fixed]
    if not free:
        raise FitError("every parameter is held fixed: nothing to fit")
    needed = min_samples_per_parameter * len(free) + 1
    if len(sizes) < needed:
        raise FitError(
            f"{len(sizes)} sample(s) cannot determine {len(free)} parameter(s)",
            missing=f"at least {needed} samples (several sizes and node counts)",
        )
    if np.any(measured <= 0) or np.any(sizes <= 0):
        raise FitError("latencies and sizes must be positive", missing="positive latency_us and size_bytes")
    keys = ("a_i", "a_e", "ib_i", "ib_e")
    theta = np.array(
        [
            prior.intra.alpha_us,
            prior.inter.alpha_us,
            1e-3 / prior.intra.beta_GBps,
            1e-3 / prior.inter.beta_GBps,
        ]
    )
    order = (0, 2, 1, 3)  # FIT_PARAMS order -> theta column
    free_cols = [order[k] for k in free]
    held = [c for c in range(4) if c not in free_cols]
    weights = 1.0 / measured

    def linearise(at: np.ndarray):
        """The exact model at `at` (each step's largest term under `at`) and its weighted residual."""
        x, const = _design(algorithms, nodes, gpus, sizes, at, prior)
        return x, const, float(np.sum(((x @ at + const - measured) * weights) ** 2))

    best, previous, converged = None, None, False
    iteration = 0
    while iteration < max_iterations:
        iteration += 1
        x, const, rss = linearise(theta)
        if best is None or rss < best[0]:
            best = (rss, theta.copy())
        if previous is not None and np.allclose(previous, x):
            converged = True
            break
        previous = x
        y = measured - const - x[:, held] @ theta[held]
        xw = x[:, free_cols] * weights[:, None]
        _check_identifiable(xw, [FIT_PARAMS[k] for k in free])
        theta[free_cols] = np.linalg.lstsq(xw, y * weights, rcond=None)[0]
    if not converged:
        # The active set kept switching: keep the iterate whose exact model fits best.
        _, _, rss = linearise(theta)
        if rss < best[0]:
            best = (rss, theta.copy())
    theta = best[1]
    x, const, _ = linearise(theta)
    y = measured - const - x[:, held] @ theta[held]
    xw = x[:, free_cols] * weights[:, None]
    solution = theta[free_cols]
    theta = dict(zip(keys, (float(v) for v in theta), strict=True))
    resid_w = xw @ solution - y * weights
    dof = max(len(sizes) - len(free), 1)
    sigma2 = float(resid_w @ resid_w) / dof
    cov = sigma2 * np.linalg.inv(xw.T @ xw)
    se_theta = dict(zip([keys[c] for c in free_cols], np.sqrt(np.diag(cov)), strict=True))
    for name, key in (
        ("alpha_intra_us", "a_i"),
        ("alpha_inter_us", "a_e"),
        ("beta_intra_GBps", "ib_i"),
        ("beta_inter_GBps", "ib_e"),
    ):
        if key in se_theta and theta[key] <= 0 and (name.startswith("beta") or theta[key] < 0):
            raise FitError(
                f"the fit gives a non-physical {name} (θ = {theta[key]:.3g} ± {se_theta[key]:.2g})",
                missing=f"data that constrains {name}, or hold it fixed",
            )
    params = replace(
        prior,
        intra=replace(prior.intra, alpha_us=theta["a_i"], beta_GBps=1e-3 / theta["ib_i"]),
        inter=replace(prior.inter, alpha_us=theta["a_e"], beta_GBps=1e-3 / theta["ib_e"]),
    )
    stderr = {}
    for name, key in (("alpha_intra_us", "a_i"), ("alpha_inter_us", "a_e")):
        if key in se_theta:
            stderr[name] = float(se_theta[key])
    for name, key in (("beta_intra_GBps", "ib_i"), ("beta_inter_GBps", "ib_e")):
        if key in se_theta:
            stderr[name] = float(1e-3 * se_theta[key] / theta[key] ** 2)
    predicted = np.array(
        [
            float(predict(str(a), int(n), int(g), s, params))
            for a, n, g, s in zip(algorithms, nodes, gpus, sizes, strict=True)
        ]
    )
    rel = (predicted - measured) / measured
    theta_order = [c for c in range(4) if c in free_cols]
    position = {c: i for i, c in enumerate(free_cols)}
    cov_sorted = cov[np.ix_([position[c] for c in theta_order], [position[c] for c in theta_order])]
    return FitResult(
        params,
        stderr,
        tuple(FIT_PARAMS[k] for k in free),
        predicted,
        rel,
        float(np.sqrt(np.mean(rel**2))),
        len(sizes),
        iteration,
        tuple(THETA_NAMES[c] for c in theta_order),
        cov_sorted,
        converged,
    )


_WHAT_SEPARATES = {
    "alpha_intra_us": "runs whose intra-node steps are the slowest (single-node runs, or NVRAR with G > 1)",
    "alpha_inter_us": "runs on two or more nodes",
    "beta_intra_GBps": "intra-node runs at several message sizes",
    "beta_inter_GBps": "multi-node runs at several message sizes",
}


def _check_identifiable(xw: np.ndarray, names: list[str]) -> None:
    scale = np.linalg.norm(xw, axis=0)
    for name, s in zip(names, scale, strict=True):
        if s == 0:
            raise FitError(f"no sample depends on {name}", missing=_WHAT_SEPARATES[name])
    _, sv, vt = np.linalg.svd(xw / scale, full_matrices=False)
    if sv[-1] < 1e-9 * sv[0]:
        null = vt[-1]
        tangled = [n for n, v in zip(names, null, strict=True) if abs(v) > 0.1]
        raise FitError(
            f"the data cannot separate {' and '.join(tangled)}",
            missing="; ".join(_WHAT_SEPARATES[n] for n in tangled),
        )


# -- engine step times ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelShape:
    """Llama-family shape (the published Llama-3.1 configurations)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int = 128256

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


MODEL_SHAPES: dict[str, ModelShape] = {
    "llama3.1-8b": ModelShape(32, 4096, 32, 8, 14336),
    "llama3.1-70b": ModelShape(80, 8192, 64, 8, 28672),
    "llama3.1-405b": ModelShape(126, 16384, 128, 8, 53248),
}


@dataclass(frozen=True)
class GpuRates:
    """Datasheet rates and the fraction of them kernels reach (decode GEMMs are skinny)."""

    bf16_tflops: float
    hbm_TBps: float
    flop_efficiency: float = 0.6
    bandwidth_efficiency: float = 0.8


def _gemm_us(tokens: float, k: float, n: float, rates: GpuRates) -> float:
    flops = 2.0 * tokens * k * n
    nbytes = 2.0 * (k * n + tokens * k + tokens * n)
    return max(
        flops / (rates.bf16_tflops * rates.flop_efficiency * 1e6),
        nbytes / (rates.hbm_TBps * rates.bandwidth_efficiency * 1e6),
    )


def _layer_compute_us(
    shape: ModelShape,
    tp: int,
    tokens: float,
    batch: float,
    ctx_read: float,
    attn_flops_per_seq: float,
    rates: GpuRates,
) -> float:
    hd = shape.head_dim
    heads = shape.heads / tp
    kv = max(shape.kv_heads / tp, 1.0)  # KV heads are replicated beyond TP = kv_heads
    t = _gemm_us(tokens, shape.hidden, (heads + 2 * kv) * hd, rates)
    t += _gemm_us(tokens, heads * hd, shape.hidden, rates)
    t += _gemm_us(tokens, shape.hidden, 2 * shape.ffn / tp, rates)
    t += _gemm_us(tokens, shape.ffn / tp, shape.hidden, rates)
    attn_flops = batch * attn_flops_per_seq * heads * hd
    attn_bytes = 2.0 * 2.0 * batch * ctx_read * kv * hd
    t += max(
        attn_flops / (rates.bf16_tflops * rates.flop_efficiency * 1e6),
        attn_bytes / (rates.hbm_TBps * rates.bandwidth_efficiency * 1e6),
    )
    return t


def tp_topology(tp: int, gpus_per_node: int) -> tuple[int, int]:
    """(nodes, GPUs per node) spanned by one TP group of consecutive ranks."""
    if tp <= gpus_per_node:
        return 1, tp
    if tp % gpus_per_node:
        raise CostModelError(f"TP {tp} spans nodes but is not a multiple of {gpus_per_node} GPUs per node")
    return tp // gpus_per_node, gpus_per_node


def p2p_us(nbytes, crosses_node: bool, params: CostParams):
    link = params.inter if crosses_node else params.intra
    return link.alpha_us + np.asarray(nbytes, dtype=float) / (1e3 * link.beta_GBps)


def engine_step(
    shape: ModelShape,
    tp: int,
    pp: int,
    gpus_per_node: int,
    batch: int,
    prompt_len: int,
    decode_len: int,
    params: CostParams,
    rates: GpuRates,
    *,
    decode_allreduce: str = "nccl",
    prefill_allreduce: str = "nccl",
    micro_batches: int = 1,
    ll128: bool = True,
) -> dict[str, float]:
    """Predicted prefill and decode step times (ms) of TP × PP inference, and their parts.

    Megatron TP: two all-reduces per layer of tokens × hidden × 2 bytes; PP sends tokens × hidden × 2
    bytes between consecutive stages; with m micro-batches a step takes (m + pp − 1) stage times.
    Decode reads all weights and the KV cache of the mean context (prompt + decode_len / 2).
    """
    for name, value in (
        ("tp", tp),
        ("pp", pp),
        ("batch", batch),
        ("prompt_len", prompt_len),
        ("decode_len", decode_len),
        ("micro_batches", micro_batches),
    ):
        if value < 1:
            raise CostModelError(f"{name} must be at least 1, got {value}")
    if pp > shape.layers:
        raise CostModelError(f"pp {pp} exceeds the model's {shape.layers} layers")
    if micro_batches > batch:
        raise CostModelError(f"micro_batches {micro_batches} exceeds batch {batch}")
    tp_nodes, tp_g = tp_topology(tp, gpus_per_node)
    stage_layers = math.ceil(shape.layers / pp)
    mb = batch / micro_batches
    crosses = tp >= gpus_per_node or any(
        (s * tp) // gpus_per_node != ((s + 1) * tp) // gpus_per_node for s in range(pp - 1)
    )
    ctx = prompt_len + decode_len / 2
    out: dict[str, float] = {}
    for phase, tokens, attn_per_seq, ctx_read, algo in (
        ("decode", mb, 4.0 * ctx, ctx, decode_allreduce),
        ("prefill", mb * prompt_len, 2.0 * prompt_len * prompt_len, prompt_len, prefill_allreduce),
    ):
        compute = stage_layers * _layer_compute_us(shape, tp, tokens, mb, ctx_read, attn_per_seq, rates)
        head_tokens = mb  # prefill samples only the last position of each sequence
        compute += _gemm_us(head_tokens, shape.hidden, shape.vocab, rates) / pp
        msg = tokens * shape.hidden * 2
        ar = float(predict(algo, tp_nodes, tp_g, msg, params, ll128=ll128)) if tp > 1 else 0.0
        comm = stage_layers * 2 * ar
        p2p = float(p2p_us(msg, crosses, params)) if pp > 1 else 0.0
        # Critical path of a pipeline of m micro-batches: m + pp − 1 stage times, one send fewer.
        stages = micro_batches + pp - 1
        sends = stages - 1 if pp > 1 else 0
        total = stages * (compute + comm) + sends * p2p
        out.update(
            {
                f"{phase}_compute_ms": stages * compute / 1e3,
                f"{phase}_allreduce_ms": stages * comm / 1e3,
                f"{phase}_p2p_ms": sends * p2p / 1e3,
                f"{phase}_ms": total / 1e3,
                f"{phase}_allreduce_bytes": msg,
                f"{phase}_allreduce_us": ar,
            }
        )
    out["e2e_ms"] = out["prefill_ms"] + decode_len * out["decode_ms"]
    # The largest stage: its layers, plus the embedding and head (both on one stage without PP).
    weights = (
        stage_layers
        * (
            2 * shape.hidden * shape.heads / tp * shape.head_dim
            + 2 * shape.hidden * max(shape.kv_heads / tp, 1) * shape.head_dim
            + 3 * shape.hidden * shape.ffn / tp
        )
        + (2 if pp == 1 else 1) * shape.vocab * shape.hidden
    )
    out["weights_gb_per_gpu"] = 2 * weights / 1e9
    return out

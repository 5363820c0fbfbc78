"""Sensitivities of the α-β-γ model, and its least-squares calibration to one measured sweep.

`study model fit WORKSPACE` fits α and β per level of the schedule models to a collected benchmark
sweep of the reference algorithms (or NVRAR); docs/costmodel.md has the method.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from collectives.costmodel.alphabeta import predict
from collectives.costmodel.params import CostParams, FitError
from collectives.costmodel.schedule import profile
from collectives.schedules import ALGORITHMS

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


def _free_parameters(algorithms, sizes, measured, fixed, min_samples_per_parameter: int) -> list[int]:
    """The indices (in FIT_PARAMS) of the parameters to fit; FitError when the data cannot fit them."""
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
    return free


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
    free = _free_parameters(algorithms, sizes, measured, fixed, min_samples_per_parameter)
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

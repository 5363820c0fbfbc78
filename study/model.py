"""The harness side of the cost model: system parameters, fitted overrides, ranges, datasets and tables.

`collectives.costmodel` holds the physics (numpy only, importable on compute nodes); this module reads
system files and workspaces, parses command-line ranges and builds the tables `study model` prints.
A system's parameters come from `jobs/systems/fitted/<system>.yaml` when a fit was written there,
else from the `cost_model:` block of its system file; `--set name=value` overrides either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from collectives import costmodel as cm
from study.errors import InputError
from study.systems import SYSTEMS_DIR, System, load_system
from study.units import parse_size

FITTED_DIR = SYSTEMS_DIR / "fitted"


# -- ranges ----------------------------------------------------------------------------------------------


def _geometric(start: int, stop: int, step: str | None, arg: str, text: str) -> list[int]:
    if step is not None and not step.startswith(("*", "x")):
        raise InputError(f"step {step!r} in {text!r} must be +N (arithmetic) or *N (geometric)", key=arg)
    try:
        factor = 2 if step is None else int(step[1:])
    except ValueError as exc:
        raise InputError(f"factor in {text!r} must be a whole number", key=arg) from exc
    if factor <= 1:
        raise InputError(f"factor in {text!r} must be greater than 1", key=arg)
    out, value = [], start
    while value <= stop:
        out.append(value)
        value *= factor
    return out


def parse_int_range(text: str, arg: str, *, minimum: int = 1) -> list[int]:
    """`2..1024` (doubling), `2..16:+2` (arithmetic), `2..64:*4` (geometric), `2,3,4` or `8`."""
    return [int(v) for v in _parse_range(text, arg, int, minimum)]


def parse_size_range(text: str, arg: str) -> list[int]:
    """`64KiB..2MiB` (doubling), `64KiB..1MiB:+64KiB`, `64KiB..2MiB:*4`, `64KiB,1MiB` or `1MiB`."""

    def size(value: str) -> int:
        try:
            return parse_size(value)
        except ValueError as exc:
            raise InputError(str(exc), key=arg) from exc

    return [int(v) for v in _parse_range(text, arg, size, 1)]


def _parse_range(text: str, arg: str, convert, minimum: int) -> list[int]:
    def one(value: str) -> int:
        try:
            number = convert(value.strip())
        except (TypeError, ValueError) as exc:
            raise InputError(f"{value.strip()!r} is not a whole number", key=arg) from exc
        if number < minimum:
            raise InputError(f"{number} is below the minimum {minimum}", key=arg)
        return number

    text = str(text).strip()
    if not text:
        raise InputError("empty range", key=arg)
    if ".." not in text:
        return sorted({one(part) for part in text.split(",") if part.strip()})
    match = re.fullmatch(r"([^.:]+)\.\.([^:]+)(?::(.+))?", text)
    if not match:
        raise InputError(f"cannot read range {text!r}; write A..B, A..B:+S, A..B:*F or a list A,B,C", key=arg)
    start, stop, step = one(match.group(1)), one(match.group(2)), match.group(3)
    if start > stop:
        raise InputError(f"range {text!r} runs backwards", key=arg)
    if step is not None and step.startswith("+"):
        return list(range(start, stop + 1, one(step[1:])))
    return _geometric(start, stop, step, arg, text)


def parse_assignments(
    items: list[str] | None, known: tuple[str, ...] | list[str] | None = None
) -> dict[str, float]:
    """`--set alpha_inter_us=2.5` (repeatable) → {"alpha_inter_us": 2.5}; names checked against `known`."""
    known = tuple(known) if known is not None else (*cm.PARAM_NAMES, *grounded_parameter_names())
    out: dict[str, float] = {}
    for item in items or []:
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in known:
            raise InputError(f"unknown parameter {name!r}; known: {', '.join(known)}", key="--set")
        try:
            out[name] = float(value)
        except ValueError as exc:
            raise InputError(f"{item!r}: {value!r} is not a number", key="--set") from exc
    return out


# -- parameters per system ---------------------------------------------------------------------------


def grounded_parameter_names() -> list[str]:
    from study.measurements import parameter_names

    return parameter_names()


@dataclass(frozen=True)
class Prediction:
    """Predicted µs with its interval (5–95 %; NaN where the parameters carry no uncertainty)."""

    latency_us: np.ndarray
    low_us: np.ndarray
    high_us: np.ndarray


@dataclass(frozen=True)
class SystemModel:
    """What the model knows about one system: parameters, where they came from, and its GPUs.

    Two kinds: the grounded model (`platform` set: a GPU system whose cost_model block names its
    classes, with values and draws from the calibration on published measurements), or the α-β-γ
    schedule model (`params` set: CPU systems, and any system fitted to a workspace).
    """

    system: System
    params: cm.CostParams | None
    source: str
    gpus_per_node_override: int | None = None
    theta_names: tuple[str, ...] = ()
    theta_covariance: Any = None  # np.ndarray from a fit, else None
    platform: Any = None  # collectives.costmodel.grounded.Platform
    theta: dict[str, float] | None = None
    calibration: Any = None  # study.calibration.Calibration
    overrides: dict[str, float] = field(default_factory=dict)  # --set: they hold in every draw too
    harness: str = "torch"

    @property
    def grounded(self) -> bool:
        return self.platform is not None

    def grounded_latency_us(self, algorithm: str, nodes: int, sizes, launch: str, theta) -> np.ndarray:
        from collectives.costmodel import grounded as gm

        return gm.predict(
            self.platform, algorithm, nodes, self.gpus_per_node, sizes, launch, theta, harness=self.harness
        )

    def latency(self, algorithm: str, nodes: int, sizes, launch: str = "graph") -> Prediction:
        """Latency of one all-reduce over sizes, with its interval."""
        sizes = np.asarray(sizes, dtype=float)
        try:
            if not self.grounded:
                t = np.broadcast_to(
                    cm.predict(algorithm, nodes, self.gpus_per_node, sizes, self.params, ll128=self.ll128),
                    sizes.shape,
                )
                if self.theta_covariance is None:
                    nan = np.full(sizes.shape, np.nan)
                    return Prediction(t, nan, nan)
                se = cm.prediction_stderr(
                    algorithm,
                    nodes,
                    self.gpus_per_node,
                    sizes,
                    self.params,
                    self.theta_names,
                    self.theta_covariance,
                    ll128=self.ll128,
                )
                return Prediction(t, t - 1.645 * se, t + 1.645 * se)
            from study.calibration import interval

            t = self.grounded_latency_us(algorithm, nodes, sizes, launch, self.theta)
            draws = self.draws()
            lo, hi = interval(
                lambda th: self.grounded_latency_us(algorithm, nodes, sizes, launch, th),
                draws,
                self.calibration.ratios,
            )
            return Prediction(np.broadcast_to(t, sizes.shape), lo, hi)
        except cm.CostModelError as exc:
            raise InputError(str(exc), key="--algorithms/--nodes") from exc

    def draws(self) -> dict[str, np.ndarray]:
        """The calibration's bootstrap draws, shaped (draws, 1), with the --set values held in each."""
        draws = self.calibration.theta_draws()
        return draws | {k: np.full_like(draws[k], v) for k, v in self.overrides.items() if k in draws}

    def nccl_choice(self, nodes: int, sizes) -> np.ndarray:
        sizes = np.asarray(sizes, dtype=float)
        if not self.grounded:
            return cm.nccl_predict(nodes, self.gpus_per_node, sizes, self.params, ll128=self.ll128)[1]
        from collectives.costmodel import grounded as gm

        try:
            return gm.nccl_choice(self.platform, nodes, self.gpus_per_node, sizes)
        except cm.CostModelError as exc:
            raise InputError(str(exc), key="--nodes/--gpus-per-node") from exc

    def extrapolation(self, algorithm: str, nodes: int, size: float) -> str:
        """Why a prediction lies outside the published data ('' inside; always '' for α-β systems)."""
        if not self.grounded:
            return ""
        from study.calibration import extrapolation

        network = self.platform.network
        return extrapolation(self.calibration.coverage, algorithm, network, nodes, self.gpus_per_node, size)

    def elasticities(self, algorithm: str, nodes: int, sizes, launch: str = "graph") -> dict[str, np.ndarray]:
        """∂T/∂θ · θ/T of every parameter the prediction depends on (central differences)."""
        sizes = np.asarray(sizes, dtype=float)
        if not self.grounded:
            return cm.elasticities(algorithm, nodes, self.gpus_per_node, sizes, self.params)
        base = dict(self.theta)
        t0 = self.grounded_latency_us(algorithm, nodes, sizes, launch, base)
        out = {}
        for name in self.platform.parameter_names():
            if name not in base:
                continue
            hi = self.grounded_latency_us(algorithm, nodes, sizes, launch, base | {name: base[name] * 1.0001})
            lo = self.grounded_latency_us(algorithm, nodes, sizes, launch, base | {name: base[name] * 0.9999})
            e = (hi - lo) / (2e-4 * t0)
            if np.any(np.abs(e) > 1e-6):
                out[name] = e
        return out

    def communication(self, theta=None):
        """How the engine model prices communication on this system (decode in CUDA graphs)."""
        if not self.grounded:
            return cm.engine.alpha_beta_communication(self.params, ll128=self.ll128)
        from collectives.costmodel import grounded as gm

        theta = self.theta if theta is None else theta
        g = self.gpus_per_node

        def allreduce(phase: str, algorithm: str, nodes: int, tp_g: int, nbytes: float):
            launch = "graph" if phase == "decode" else "plain"
            t = gm.predict(self.platform, algorithm, nodes, tp_g, nbytes, launch, theta, harness=self.harness)
            return t if np.ndim(t) else float(t)

        def p2p(nbytes: float, crosses: bool):
            return gm.stage_send_us(self.platform, nbytes, crosses, theta, g)

        return cm.engine.Communication(allreduce, p2p)

    @property
    def name(self) -> str:
        return self.system.name

    @property
    def gpus_per_node(self) -> int:
        """The system's GPUs per node, unless a what-if asked for another node shape."""
        return self.gpus_per_node_override or self.system.gpus_per_node

    def gpu_rates(self, flop_efficiency: float, bandwidth_efficiency: float) -> cm.GpuRates:
        if self.system.gpu is None:
            raise InputError(
                f"system {self.name} has no GPUs (no `gpu:` block); the engine model needs "
                "bf16_tflops and hbm_TBps",
                file=self.system.path,
                key="gpu",
            )
        return cm.GpuRates(
            self.system.gpu.bf16_tflops, self.system.gpu.hbm_TBps, flop_efficiency, bandwidth_efficiency
        )

    @property
    def ll128(self) -> bool:
        """NCCL enables LL128 by default on NVLink systems only."""
        link = self.system.intra_node.name.lower() if self.system.intra_node else ""
        return "nvlink" in link


def fitted_path(system: str) -> Path:
    return FITTED_DIR / f"{system}.yaml"


def _params_from_block(block: dict[str, Any], where: str) -> cm.CostParams:
    try:
        flat = {
            "alpha_intra_us": block["intra"]["alpha_us"],
            "beta_intra_GBps": block["intra"]["beta_GBps"],
            "gamma_intra_GBps": block["intra"]["gamma_GBps"],
            "alpha_inter_us": block["inter"]["alpha_us"],
            "beta_inter_GBps": block["inter"]["beta_GBps"],
            "gamma_inter_GBps": block["inter"]["gamma_GBps"],
            "eta": block.get("eta", 1.0),
        }
        return cm.CostParams.from_flat({k: float(v) for k, v in flat.items()})
    except (KeyError, TypeError) as exc:
        raise InputError(
            f"incomplete cost_model block (missing {exc})", file=where, key="cost_model"
        ) from exc
    except (ValueError, cm.CostModelError) as exc:
        raise InputError(str(exc), file=where, key="cost_model") from exc


def system_model(
    name: str,
    overrides: dict[str, float] | None = None,
    *,
    use_fitted: bool = True,
    gpus_per_node: int | None = None,
) -> SystemModel:
    """Parameters of `name`: fitted file, else the system file's cost_model block; then overrides."""
    import yaml

    system = load_system(name)
    fitted = fitted_path(system.name)
    if use_fitted and fitted.is_file():
        try:
            data = yaml.safe_load(fitted.read_text())
        except yaml.YAMLError as exc:
            raise InputError(f"cannot read YAML: {exc}", file=str(fitted)) from exc
        if not isinstance(data, dict) or not isinstance(data.get("cost_model"), dict):
            raise InputError("expected a mapping with a cost_model block", file=str(fitted), key="cost_model")
        params, source = _params_from_block(data["cost_model"], str(fitted)), f"fitted ({fitted})"
        theta_names, theta_cov = _covariance_from_fit(data.get("fit"), str(fitted))
    elif system.cost_model is not None and (system.cost_model.network or system.cost_model.fabric):
        return _grounded_model(system, overrides or {}, gpus_per_node)
    elif system.cost_model is not None:
        params = _params_from_block(system.cost_model.model_dump(), system.path)
        source = f"defaults ({system.path})"
        theta_names, theta_cov = (), None
    else:
        raise InputError(
            f"system {system.name} has no cost_model block and no fit",
            file=system.path,
            key="cost_model",
            hint=f"add one, run `study model fit WORKSPACE --write-system`, or pass --set for all of "
            f"{', '.join(cm.PARAM_NAMES)}",
        )
    if overrides:
        unknown = [k for k in overrides if k not in cm.PARAM_NAMES]
        if unknown:
            raise InputError(
                f"{', '.join(unknown)} belong to the grounded model; {system.name} uses the α-β-γ model "
                f"({', '.join(cm.PARAM_NAMES)})",
                key="--set",
            )
        try:
            params = params.with_values(**overrides)
        except cm.CostModelError as exc:
            raise InputError(str(exc), key="--set") from exc
        source += " with --set " + ", ".join(f"{k}={v:g}" for k, v in overrides.items())
    if gpus_per_node is not None:
        source += f" with {gpus_per_node} GPUs per node"
    return SystemModel(system, params, source, gpus_per_node, theta_names, theta_cov)


def _grounded_model(system: System, overrides: dict[str, float], gpus_per_node: int | None) -> SystemModel:
    """A GPU system under the grounded model: its classes, the calibrated values, the --set values."""
    from study.calibration import load_calibration
    from study.measurements import CALIBRATION_FILE, platform_of_system

    platform = platform_of_system(system)
    calibration = load_calibration(CALIBRATION_FILE)
    theta = dict(calibration.parameters)
    fitted = system.cost_model.fitted or {}
    theta.update(fitted)
    wrong = [k for k in overrides if k not in theta]
    if wrong:
        raise InputError(
            f"{', '.join(wrong)}: not a parameter of the grounded model; {system.name}'s are "
            f"{', '.join(platform.parameter_names())}",
            key="--set",
        )
    for name, value in overrides.items():
        upper = 1.0 if name.endswith("efficiency") else np.inf
        if not (np.isfinite(value) and 0 < value <= upper):
            raise InputError(
                f"{name}={value:g} is not physical (positive{', at most 1' if upper == 1 else ''})",
                key="--set",
            )
    theta.update(overrides)
    source = (
        f"calibrated on {calibration.holdout.get('sources', '?')} published sources "
        f"({system.path if fitted else calibration.path})"
    )
    if overrides:
        source += " with --set " + ", ".join(f"{k}={v:g}" for k, v in overrides.items())
    if gpus_per_node is not None:
        source += f" with {gpus_per_node} GPUs per node"
    if gpus_per_node is not None:
        from dataclasses import replace as dc_replace

        platform = dc_replace(platform, gpus_per_node=gpus_per_node)
    return SystemModel(
        system,
        None,
        source,
        gpus_per_node,
        platform=platform,
        theta=theta,
        calibration=calibration,
        overrides=dict(overrides),
    )


def _covariance_from_fit(fit: Any, where: str) -> tuple[tuple[str, ...], Any]:
    """The fit's covariance of (α, 1/β) if the fitted file carries one (older files may not)."""
    block = fit.get("theta_covariance") if isinstance(fit, dict) else None
    if block is None:
        return (), None
    try:
        names = tuple(str(n) for n in block["names"])
        matrix = np.asarray(block["matrix"], dtype=float)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"unreadable covariance ({exc})", file=where, key="fit.theta_covariance") from exc
    if matrix.shape != (len(names), len(names)) or any(n not in cm.THETA_NAMES for n in names):
        raise InputError(
            f"expected a {len(names)}×{len(names)} matrix over {', '.join(cm.THETA_NAMES)}",
            file=where,
            key="fit.theta_covariance",
        )
    return names, matrix

"""The harness side of the cost model: system parameters, fitted overrides, ranges, datasets and tables.

`collectives.costmodel` holds the physics (numpy only, importable on compute nodes); this module reads
system files and workspaces, parses command-line ranges and builds the tables `study model` prints.
A system's parameters come from `jobs/systems/fitted/<system>.yaml` when a fit was written there,
else from the `cost_model:` block of its system file; `--set name=value` overrides either.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from collectives import costmodel as cm
from study.errors import InputError, StudyError
from study.results import LEGACY_STATISTIC, STATISTICS, atomic_write_text
from study.systems import SYSTEMS_DIR, System, load_system
from study.units import format_size, parse_size

FITTED_DIR = SYSTEMS_DIR / "fitted"
DATASET_COLUMNS = ("algorithm", "size_bytes", "latency_us", "nodes", "gpus_per_node", "system")


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


# -- prediction tables ---------------------------------------------------------------------------------


def predict_table(
    models: list[SystemModel],
    nodes: list[int],
    sizes: list[int],
    algorithms: list[str],
    launch: str = "graph",
):
    """One row per (system, algorithm, nodes, size): predicted µs with its 5–95 % interval, NCCL's
    choice, the fastest algorithm, and why a prediction extrapolates beyond the published data.
    Algorithms that cannot run on a topology (a one-node all-reduce across nodes) are left out and
    listed in `df.attrs["skipped"]`."""
    import pandas as pd

    size_arr = np.asarray(sizes, dtype=float)
    rows, skipped = [], []
    for sm in models:
        g = sm.gpus_per_node
        for n in nodes:
            choice = sm.nccl_choice(n, size_arr)
            for algorithm in algorithms:
                try:
                    p = sm.latency(algorithm, n, size_arr, launch)
                except InputError as exc:
                    skipped.append(f"{sm.name} {algorithm} on {n} node(s): {exc}")
                    continue
                for i, size in enumerate(sizes):
                    rows.append(
                        {
                            "system": sm.name,
                            "algorithm": algorithm,
                            "launch": launch if sm.grounded else "",
                            "nodes": n,
                            "gpus_per_node": g,
                            "world_size": n * g,
                            "size_bytes": size,
                            "size": format_size(size),
                            "latency_us": float(p.latency_us[i]),
                            "latency_us_low": float(p.low_us[i]),
                            "latency_us_high": float(p.high_us[i]),
                            "nccl_choice": str(choice[i]) if algorithm == "nccl" else "",
                            "extrapolation": sm.extrapolation(algorithm, n, size),
                        }
                    )
    df = pd.DataFrame(rows)
    if not df.empty:
        best = df.loc[df.groupby(["system", "nodes", "size_bytes"])["latency_us"].idxmin()]
        key = best.set_index(["system", "nodes", "size_bytes"])["algorithm"]
        df["fastest"] = [
            key[(s, n, b)] for s, n, b in zip(df["system"], df["nodes"], df["size_bytes"], strict=True)
        ]
    df.attrs["skipped"] = skipped
    return df


def sensitivity_table(
    models: list[SystemModel],
    nodes: list[int],
    sizes: list[int],
    algorithms: list[str],
    launch: str = "graph",
):
    """Elasticities ∂T/∂θ·θ/T of every parameter, and which one dominates, per configuration."""
    import pandas as pd

    rows = []
    for sm in models:
        for algorithm in algorithms:
            for n in nodes:
                try:
                    p = sm.latency(algorithm, n, sizes, launch)
                except InputError:
                    continue
                el = sm.elasticities(algorithm, n, sizes, launch)
                for i, size in enumerate(sizes):
                    row = {
                        "system": sm.name,
                        "algorithm": algorithm,
                        "nodes": n,
                        "size_bytes": size,
                        "size": format_size(size),
                        "latency_us": float(p.latency_us[i]),
                    }
                    values = {k: float(np.broadcast_to(v, (len(sizes),))[i]) for k, v in el.items()}
                    row |= {f"e_{k}": v for k, v in values.items()}
                    ranked = sorted(values, key=lambda k: -abs(values[k]))
                    row["dominant"] = ranked[0] if ranked else ""
                    row["next"] = ranked[1] if len(ranked) > 1 else ""
                    rows.append(row)
    return pd.DataFrame(rows)


ENGINE_STRATEGIES = ("tp", "tp-pp")


def engine_pair(
    sm: SystemModel, shape, tp, pp, batch, prompt_len, decode_len, rates, micro_batches, theta=None
):
    """Engine step times with NCCL and with NVRAR for decode (prefill always NCCL, as in the study)."""
    comm = sm.communication(theta) if sm.grounded else sm.params
    return tuple(
        cm.engine_step(
            shape,
            tp,
            pp,
            sm.gpus_per_node,
            batch,
            prompt_len,
            decode_len,
            comm,
            rates,
            decode_allreduce=algorithm,
            micro_batches=micro_batches,
            ll128=sm.ll128,
        )
        for algorithm in ("nccl", "nvrar")
    )


def engine_intervals(sm: SystemModel, shape, tp, pp, batch, prompt_len, decode_len, rates, micro_batches):
    """5–95 % of decode step, E2E and NVRAR's E2E gain over the calibration's bootstrap draws (the
    fit's uncertainty of the communication; compute comes from datasheet rates, without an interval)."""
    keys = ("decode_ms", "e2e_ms", "decode_ms_nvrar", "e2e_ms_nvrar", "e2e_speedup_nvrar")
    if not sm.grounded:
        return {f"{k}_{end}": float("nan") for k in keys for end in ("low", "high")}
    draws = sm.draws()
    nccl, nvrar = engine_pair(sm, shape, tp, pp, batch, prompt_len, decode_len, rates, micro_batches, draws)
    values = {
        "decode_ms": nccl["decode_ms"],
        "e2e_ms": nccl["e2e_ms"],
        "decode_ms_nvrar": nvrar["decode_ms"],
        "e2e_ms_nvrar": nvrar["e2e_ms"],
        "e2e_speedup_nvrar": nccl["e2e_ms"] / nvrar["e2e_ms"],
    }
    out = {}
    for k, v in values.items():
        lo, hi = np.quantile(np.ravel(v), (0.05, 0.95))
        out[f"{k}_low"], out[f"{k}_high"] = float(lo), float(hi)
    return out


def engine_table(
    models: list[SystemModel],
    model: str,
    nodes: list[int],
    tps: list[int] | None,
    pps: list[int] | None,
    batches: list[int],
    prompt_len: int,
    decode_len: int,
    micro_batches: int,
    flop_efficiency: float,
    bandwidth_efficiency: float,
):
    """Decode / prefill / E2E predictions with NCCL and with NVRAR for decode, per configuration.

    Without --tp/--pp each node count gets the study's two layouts: TP over every GPU, and TP inside a
    node with PP across nodes. Layouts that do not fill the nodes exactly are skipped.
    """
    import pandas as pd

    if model not in cm.MODEL_SHAPES:
        raise InputError(f"unknown model {model!r}; known: {', '.join(cm.MODEL_SHAPES)}", key="--model")
    shape = cm.MODEL_SHAPES[model]
    rows = []
    for sm in models:
        rates = sm.gpu_rates(flop_efficiency, bandwidth_efficiency)
        g = sm.gpus_per_node
        for n in nodes:
            world = n * g
            layouts = []
            if tps is None and pps is None:
                layouts = [(world, 1), (g, n)] if n > 1 else [(world, 1)]
            else:
                for tp in tps or [None]:
                    for pp in pps or [None]:
                        tp_ = tp if tp is not None else (world // pp if pp and world % pp == 0 else None)
                        pp_ = pp if pp is not None else (world // tp if tp and world % tp == 0 else None)
                        if tp_ and pp_ and tp_ * pp_ == world:
                            layouts.append((tp_, pp_))
            for tp, pp in dict.fromkeys(layouts):
                if pp > shape.layers or (tp > g and tp % g):
                    continue
                for batch in batches:
                    base = {
                        "system": sm.name,
                        "model": model,
                        "nodes": n,
                        "gpus_per_node": g,
                        "tp": tp,
                        "pp": pp,
                        "batch_size": batch,
                        "prompt_len": prompt_len,
                        "decode_len": decode_len,
                    }
                    try:
                        nccl, nvrar = engine_pair(
                            sm, shape, tp, pp, batch, prompt_len, decode_len, rates, micro_batches
                        )
                    except cm.CostModelError as exc:
                        raise InputError(str(exc), key="--tp/--pp/--batch-size") from exc
                    row = base | {f"{k}": float(v) for k, v in nccl.items()}
                    row |= {
                        "decode_ms_nvrar": float(nvrar["decode_ms"]),
                        "e2e_ms_nvrar": float(nvrar["e2e_ms"]),
                        "decode_allreduce_ms_nvrar": float(nvrar["decode_allreduce_ms"]),
                        "e2e_speedup_nvrar": float(nccl["e2e_ms"] / nvrar["e2e_ms"]),
                        "decode_comm_share": float(
                            (nccl["decode_allreduce_ms"] + nccl["decode_p2p_ms"]) / nccl["decode_ms"]
                        ),
                    }
                    row |= engine_intervals(
                        sm, shape, tp, pp, batch, prompt_len, decode_len, rates, micro_batches
                    )
                    if sm.system.gpu is not None:
                        row["fits_memory"] = nccl["weights_gb_per_gpu"] < sm.system.gpu.memory_gb
                    rows.append(row)
    if not rows:
        raise InputError("no TP × PP layout fills the requested nodes", key="--tp/--pp")
    return pd.DataFrame(rows)


# -- calibration -----------------------------------------------------------------------------------------


def load_measurements(workspace: str | Path):
    """The ok rows of a workspace's collected dataset (or of a dataset file), read and checked by
    analysis.dataset like every other reader of datasets, with the columns the fit needs."""
    from analysis.dataset import load_workspace

    data = load_workspace(workspace)
    path = data.sources[0]
    df = data.ok
    missing = [c for c in DATASET_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            f"the dataset lacks column(s) {', '.join(missing)} (a collective benchmark sweep has them)",
            file=str(path),
            key=missing[0],
        )
    return df.dropna(subset=["latency_us", "size_bytes"]), path


PLACEMENTS = ("in-place", "out-of-place")


def one_measurement(
    df, path: Path, placement: str | None = None, statistic: str | None = None
) -> tuple[Any, str | None, str]:
    """The rows of one placement and one statistic over ranks (study.results SAMPLE_DISTINCTIONS),
    never the two placements or two statistics pooled as if they were repeats.

    `placement` defaults to in-place where the data has it (the all-reduce the engine makes; every
    backend, without the copy an out-of-place call may add), else out-of-place; a dataset without
    `in_place` is taken as it is. `statistic` defaults to the only one the data holds; a dataset
    without the column is the maximum over ranks (study.results LEGACY_STATISTIC). Returns the rows,
    the placement used (None without the column) and the statistic."""
    if placement is not None and placement not in PLACEMENTS:
        raise InputError(f"expected one of {', '.join(PLACEMENTS)}, got {placement!r}", key="--placement")
    if statistic is not None and statistic not in STATISTICS:
        raise InputError(f"expected one of {', '.join(STATISTICS)}, got {statistic!r}", key="--statistic")
    used = None
    if "in_place" in df.columns:
        # CSV gives strings ("True"/"False"), parquet booleans: compare on the spelled-out value.
        in_place = df["in_place"].map(lambda v: str(v).strip().lower() in ("true", "1"))
        used = placement or ("in-place" if in_place.any() else "out-of-place")
        df = df[in_place == (used == "in-place")]
        if df.empty:
            raise InputError(f"no {used} samples", file=str(path), key="--placement")
    if "statistic" not in df.columns:
        if statistic not in (None, LEGACY_STATISTIC):
            raise InputError(
                f"the dataset's latencies are the {LEGACY_STATISTIC} over ranks (it has no statistic column)",
                file=str(path),
                key="--statistic",
            )
        return df, used, LEGACY_STATISTIC
    # Rows of results older than the column (collected beside newer ones) are the maximum over ranks.
    stats = df["statistic"].where(df["statistic"].notna(), LEGACY_STATISTIC).astype(str)
    found = sorted(stats.unique())
    if statistic is None:
        if len(found) > 1:
            raise InputError(
                f"the samples hold latencies of {len(found)} statistics over ranks ({', '.join(found)}); "
                "choose one with --statistic",
                file=str(path),
                key="--statistic",
            )
        statistic = found[0] if found else LEGACY_STATISTIC
    df = df[stats == statistic]
    if df.empty:
        raise InputError(
            f"no samples of statistic {statistic!r} (found: {', '.join(found) or 'none'})",
            file=str(path),
            key="--statistic",
        )
    return df, used, statistic


@dataclass
class WorkspaceFit:
    system: str
    result: cm.FitResult
    prior: SystemModel
    data: Any  # the rows used, with predictions and residuals
    dropped: dict[str, int]
    dataset: Path
    placement: str | None = None  # in-place or out-of-place; None where the data does not say
    statistic: str = LEGACY_STATISTIC  # over ranks, of the latencies fitted


def fit_workspace(
    workspace: str | Path,
    system: str | None = None,
    fixed: tuple[str, ...] = (),
    graphs: bool | None = None,
    placement: str | None = None,
    statistic: str | None = None,
) -> WorkspaceFit:
    """Fit α and β per level of one system from a workspace's collective samples of one placement and
    one statistic over ranks (`one_measurement` says which by default)."""
    df, path = load_measurements(workspace)
    systems = sorted(df["system"].dropna().astype(str).unique())
    if system is None:
        if len(systems) != 1:
            raise InputError(
                f"the dataset holds {len(systems)} systems ({', '.join(systems) or 'none'}); "
                "choose one with --system",
                key="--system",
            )
        system = systems[0]
    elif system not in systems:
        raise InputError(
            f"no samples of system {system!r} (found: {', '.join(systems) or 'none'})", key="--system"
        )
    df = df[df["system"].astype(str) == system]
    if graphs is not None and "graphs" in df.columns:
        # CSV gives strings ("True"/"False"), parquet booleans: compare on the spelled-out value.
        timed_in_graphs = df["graphs"].map(lambda v: str(v).strip().lower() in ("true", "1", "yes"))
        df = df[timed_in_graphs == graphs]
    df, placement, statistic = one_measurement(df, path, placement, statistic)
    df = df.assign(model=df["algorithm"].astype(str).map(cm.MODEL_OF_BACKEND))
    usable = df["model"].isin(cm.ALGORITHMS)
    dropped = df.loc[~usable, "algorithm"].astype(str).value_counts().to_dict()
    df = df[usable].copy()
    prior = system_model(system, use_fitted=False)
    if df.empty:
        raise InputError(
            f"no samples of an algorithm with a schedule model ({', '.join(cm.ALGORITHMS)}) for {system}; "
            f"found only {', '.join(f'{k} ({v})' for k, v in dropped.items()) or 'nothing'}",
            file=str(path),
            key="algorithm",
        )
    try:
        result = cm.fit(
            df["model"].astype(str).to_numpy(),
            df["nodes"].astype(int).to_numpy(),
            df["gpus_per_node"].astype(int).to_numpy(),
            df["size_bytes"].astype(float).to_numpy(),
            df["latency_us"].astype(float).to_numpy(),
            prior.params,
            fixed=fixed,
        )
    except cm.FitError as exc:
        missing = f"; needed: {exc.missing}" if exc.missing else ""
        if "non-physical" in str(exc):
            raise StudyError(f"{exc}{missing}") from exc
        raise InputError(f"cannot fit {system} from {path}: {exc}{missing}", key="dataset") from exc
    df["predicted_us"] = result.predicted_us
    df["relative_residual"] = result.relative_residuals
    return WorkspaceFit(system, result, prior, df, dropped, path, placement, statistic)


def fit_document(fit: WorkspaceFit) -> dict[str, Any]:
    """The YAML written for a fit: a cost_model block the model reads, plus the fit's provenance."""
    p, r = fit.result.params, fit.result

    def level(link: cm.LinkParams, name: str) -> dict[str, Any]:
        fitted_here = any(f"_{name}_" in k for k in r.fitted)
        source = f"least-squares fit of {fit.dataset}" if fitted_here else fit.prior.source
        return {
            "alpha_us": round(link.alpha_us, 6),
            "beta_GBps": round(link.beta_GBps, 6),
            "gamma_GBps": link.gamma_GBps,
            "source": source,
        }

    return {
        "cost_model": {
            "intra": level(p.intra, "intra"),
            "inter": level(p.inter, "inter"),
            "eta": p.eta,
            "source": f"fitted from {fit.dataset}; γ and η from {fit.prior.source}",
        },
        "fit": {
            "system": fit.system,
            "dataset": str(fit.dataset),
            "placement": fit.placement,
            "statistic": fit.statistic,
            "samples": r.samples,
            "iterations": r.iterations,
            "converged": r.converged,
            "fitted": list(r.fitted),
            "stderr": {k: round(v, 6) for k, v in r.stderr.items()},
            "theta_covariance": {
                "names": list(r.theta_names),
                "matrix": [[float(v) for v in row] for row in r.theta_covariance],
            },
            "rms_relative_residual": round(r.rms_relative, 6),
            "max_abs_relative_residual": round(float(np.max(np.abs(r.relative_residuals))), 6),
            "prior": fit.prior.params.flat(),
            "prior_source": fit.prior.source,
            "dropped_algorithms": fit.dropped,
            "algorithms": sorted(fit.data["algorithm"].astype(str).unique()),
            "nodes": sorted(int(n) for n in fit.data["nodes"].unique()),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    }


def write_yaml(path: Path, document: dict[str, Any]) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, yaml.safe_dump(document, sort_keys=False))

"""Fitting the α-β model to a collected workspace: the dataset read through analysis.dataset, one
placement and one statistic over ranks chosen, the fit, and its document (`cost_model.fit.yaml`, or
jobs/systems/fitted/<system>.yaml with `--write-system`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.dataset import is_true, load_workspace
from collectives import costmodel as cm
from study.errors import InputError, StudyError
from study.model import SystemModel, system_model
from study.results import LEGACY_STATISTIC, STATISTICS, atomic_write_text

# The columns a fit needs in a collected dataset.
DATASET_COLUMNS = ("algorithm", "size_bytes", "latency_us", "nodes", "gpus_per_node", "system")


def load_measurements(workspace: str | Path):
    """The ok rows of a workspace's collected dataset (or of a dataset file), read and checked by
    analysis.dataset like every other reader of datasets, with the columns the fit needs."""
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
        in_place = df["in_place"].map(is_true)  # analysis.dataset reads switch columns as booleans
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
        timed_in_graphs = df["graphs"].map(is_true)
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

"""Fitting the grounded model to published measurements, validating it on sources it never saw, bootstrapping.

Method (docs/costmodel.md, "Calibration against published measurements"):
- Parameters are fitted in log space by regularised least squares (scipy's trust-region reflective
  solver): residuals are ln(predicted / published) over σ per point, plus (ln θ − ln θ₀)/σ₀ per
  parameter from its prior, so a parameter no measurement constrains stays at its prior.
  Efficiencies are bounded by 1. A source with more than SOURCE_WEIGHT_POINTS points has each point
  down-weighted so the source counts as that many: one long table cannot outvote five short ones.
- Validation leaves one source out at a time: fit on all the others, predict the held-out source.
  Split by source, never by point, so no held-out point shares a table with a training point.
- Intervals: a bootstrap over points, resampled within each source, refits the parameters; a
  prediction's interval is the draws' 5–95 % range widened by the 5–95 % range of the held-out
  ratios published / predicted, so it carries the model's error on unseen data, not only the fit's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from collectives.costmodel import grounded as gm
from study.measurements import Prior

POINT_SIGMA = 0.15  # σ of ln(latency) of one published point: read-out and run-to-run spread
SOURCE_WEIGHT_POINTS = 12
DERIVATIVE_STEP = 1e-4  # in ln θ
INTERVAL = (0.05, 0.95)


@dataclass(frozen=True)
class Group:
    """Rows that differ only in message size: one vectorised prediction."""

    platform: gm.Platform
    algorithm: str
    nodes: int
    gpus_per_node: int
    launch: str
    harness: str
    kernels: int | None
    rows: np.ndarray
    sizes: np.ndarray


def launch_of(value: str) -> str:
    """A row's launch mode as the model takes it: `unknown` counts as plain (a framework call)."""
    return "graph" if value == "graph" else "plain"


def make_groups(df, platforms: dict[str, gm.Platform]) -> list[Group]:
    keys = ["system", "algorithm", "nodes", "gpus_per_node", "launch_mode", "harness", "kernels"]
    df = df.assign(launch_mode=[launch_of(v) for v in df["launch"]], _row=np.arange(len(df)))
    return [
        Group(
            platforms[system],
            str(algorithm),
            int(nodes),
            int(g),
            str(launch),
            "torch" if harness == "osu" else str(harness),
            int(kernels) or None,
            part["_row"].to_numpy(),
            part["size_bytes"].to_numpy(dtype=float),
        )
        for (system, algorithm, nodes, g, launch, harness, kernels), part in df.groupby(keys, sort=True)
    ]


def predict_groups(theta: dict[str, Any], groups: list[Group], n_rows: int) -> np.ndarray:
    """Predictions of every row; parameter arrays of shape (k, 1) give k rows of predictions."""
    width = max((np.shape(v)[0] for v in theta.values() if np.ndim(v)), default=None)
    out = np.empty((n_rows,) if width is None else (width, n_rows))
    for grp in groups:
        t = gm.predict(
            grp.platform,
            grp.algorithm,
            grp.nodes,
            grp.gpus_per_node,
            grp.sizes,
            grp.launch,
            theta,
            harness=grp.harness,
            kernels=grp.kernels,
        )
        out[..., grp.rows] = t
    return out


@dataclass
class FitOutcome:
    theta: dict[str, float]  # every parameter: fitted where free, the prior elsewhere
    free: list[str]
    depends: dict[str, np.ndarray]  # parameter → rows whose prediction moves with it
    predicted_us: np.ndarray
    success: bool
    message: str
    iterations: int


def _point_sigma(df) -> np.ndarray:
    counts = df.groupby("source_id")["source_id"].transform("size").to_numpy(dtype=float)
    return POINT_SIGMA * np.sqrt(np.maximum(counts / SOURCE_WEIGHT_POINTS, 1.0))


def _dependencies(groups, n_rows, priors: dict[str, Prior], names: list[str]) -> dict[str, np.ndarray]:
    base = {k: p.value for k, p in priors.items()}
    theta = {k: np.full((len(names) + 1, 1), v) for k, v in base.items()}
    for i, name in enumerate(names, start=1):
        theta[name][i, 0] *= 1.1
    pred = predict_groups(theta, groups, n_rows)
    moved = np.abs(pred[1:] - pred[0]) > 1e-9 * np.abs(pred[0])
    return {name: np.flatnonzero(moved[i]) for i, name in enumerate(names)}


def fit(df, platforms: dict[str, gm.Platform], priors: dict[str, Prior], *, start=None) -> FitOutcome:
    """MAP estimate of the grounded model's parameters from the rows of `df` (see the module doc)."""
    from scipy.optimize import least_squares

    groups = make_groups(df, platforms)
    n = len(df)
    measured = np.log(df["latency_us"].to_numpy(dtype=float))
    sigma = _point_sigma(df)
    names = sorted(priors)
    depends = _dependencies(groups, n, priors, names)
    free = [k for k in names if len(depends[k])]
    fixed = {k: priors[k].value for k in names if k not in free}
    x0 = np.log([priors[k].value for k in free])
    prior_sigma = np.array([priors[k].sigma for k in free])
    upper = np.log([priors[k].upper for k in free])
    start_x = np.clip(np.log([start[k] for k in free]) if start else x0, -np.inf, upper - 1e-9)
    cache: dict[bytes, np.ndarray] = {}

    def batch(x: np.ndarray) -> np.ndarray:
        key = x.tobytes()
        if key not in cache:
            rows = np.vstack([x, x + DERIVATIVE_STEP * np.eye(len(x))])
            theta = {k: np.full((len(rows), 1), v) for k, v in fixed.items()}
            theta |= {k: np.exp(rows[:, [i]]) for i, k in enumerate(free)}
            cache.clear()
            cache[key] = np.log(np.maximum(predict_groups(theta, groups, n), 1e-9))
        return cache[key]

    def residuals(x: np.ndarray) -> np.ndarray:
        return np.concatenate([(batch(x)[0] - measured) / sigma, (x - x0) / prior_sigma])

    def jacobian(x: np.ndarray) -> np.ndarray:
        logs = batch(x)
        data = ((logs[1:] - logs[0]) / DERIVATIVE_STEP).T / sigma[:, None]
        return np.vstack([data, np.diag(1.0 / prior_sigma)])

    result = least_squares(
        residuals,
        start_x,
        jac=jacobian,
        bounds=(np.full(len(free), -np.inf), upper),
        method="trf",
        max_nfev=200,
    )
    theta = dict(fixed) | {k: float(np.exp(v)) for k, v in zip(free, result.x, strict=True)}
    predicted = np.exp(batch(result.x)[0])
    return FitOutcome(
        theta, free, depends, predicted, bool(result.success), str(result.message), int(result.nfev)
    )


@dataclass
class Validation:
    """Every held-out prediction: each source predicted by the fit of all the others."""

    table: Any  # DataFrame: the corpus rows with predicted_us and error (predicted / published − 1)

    def summary(self, by: str):
        t = self.table.assign(abs_error=self.table["error"].abs())
        return (
            t.groupby(by)
            .agg(
                points=("error", "size"),
                sources=("source_id", "nunique"),
                median_abs_error=("abs_error", "median"),
                max_abs_error=("abs_error", "max"),
                within_35=("abs_error", lambda s: float((s <= 0.35).mean())),
            )
            .reset_index()
        )


def leave_one_source_out(
    df, platforms, priors, *, progress: Callable[[str], None] | None = None
) -> Validation:
    parts = []
    for source in sorted(df["source_id"].unique()):
        if progress:
            progress(source)
        train, held = df[df["source_id"] != source], df[df["source_id"] == source]
        outcome = fit(train, platforms, priors)  # from the priors: nothing of the held-out source
        predicted = predict_groups(outcome.theta, make_groups(held, platforms), len(held))
        parts.append(held.assign(predicted_us=predicted, error=predicted / held["latency_us"].to_numpy() - 1))
    import pandas as pd

    return Validation(pd.concat(parts).sort_values(["source_id", "file", "line"]).reset_index(drop=True))


def bootstrap(
    df, platforms, priors, start: dict[str, float], *, draws: int, seed: int = 0, progress=None
) -> dict[str, np.ndarray]:
    """Parameter draws from refits on points resampled with replacement within each source."""
    rng = np.random.default_rng(seed)
    by_source = [np.flatnonzero(df["source_id"].to_numpy() == s) for s in sorted(df["source_id"].unique())]
    out: dict[str, list[float]] = {k: [] for k in priors}
    for i in range(draws):
        if progress:
            progress(i)
        pick = np.concatenate([rng.choice(rows, size=len(rows), replace=True) for rows in by_source])
        outcome = fit(df.iloc[pick].reset_index(drop=True), platforms, priors, start=start)
        for k in out:
            out[k].append(outcome.theta[k])
    return {k: np.asarray(v) for k, v in out.items()}


def ratio_quantiles(validation: Validation) -> tuple[float, float]:
    """5 % and 95 % quantiles of published / predicted over every held-out point."""
    ratio = 1.0 / (1.0 + validation.table["error"].to_numpy())
    lo, hi = np.quantile(ratio, INTERVAL)
    return float(lo), float(hi)


def coverage(df) -> list[dict[str, Any]]:
    """Where the corpus has data: per (algorithm, network), node counts, GPUs per node and sizes."""
    rows = []
    key = df["network"].where(df["nodes"] > 1, "nvlink")
    for (algorithm, network), part in df.assign(_net=key).groupby(["algorithm", "_net"]):
        rows.append(
            {
                "algorithm": str(algorithm),
                "network": str(network),
                "nodes": [int(part["nodes"].min()), int(part["nodes"].max())],
                "gpus_per_node": [int(part["gpus_per_node"].min()), int(part["gpus_per_node"].max())],
                "sizes": [int(part["size_bytes"].min()), int(part["size_bytes"].max())],
            }
        )
    return rows


def extrapolation(
    cover: list[dict[str, Any]], algorithm: str, network: str | None, nodes: int, g: int, size: float
) -> str:
    """Why a prediction lies outside the published data ('' when inside)."""
    where = network if nodes > 1 and network else "nvlink"
    match = [c for c in cover if c["algorithm"] == algorithm and c["network"] == where]
    if not match:
        return f"no published {algorithm} on {where}"
    c = match[0]
    reasons = []
    if not c["nodes"][0] <= nodes <= c["nodes"][1]:
        reasons.append(f"published on {c['nodes'][0]}–{c['nodes'][1]} nodes")
    if not c["gpus_per_node"][0] <= g <= c["gpus_per_node"][1]:
        reasons.append(f"published with {c['gpus_per_node'][0]}–{c['gpus_per_node'][1]} GPUs per node")
    if not c["sizes"][0] <= size <= c["sizes"][1]:
        reasons.append(f"published for {c['sizes'][0]}–{c['sizes'][1]} B")
    return f"{algorithm} on {where}: " + ", ".join(reasons) if reasons else ""


def interval(
    predict: Callable[[dict[str, Any]], np.ndarray], draws: dict[str, np.ndarray], ratios: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of a prediction: the draws' 5–95 % range widened by the held-out ratio range.
    `draws` are parameter arrays shaped (draws, 1) (Calibration.theta_draws)."""
    values = np.asarray(predict(draws))
    lo, hi = np.quantile(values, INTERVAL, axis=0)
    return lo * min(ratios[0], 1.0), hi * max(ratios[1], 1.0)


# -- the calibration file ----------------------------------------------------------------------------------

CALIBRATION_SCHEMA = "study.calibration/1"


@dataclass
class Calibration:
    """What `study model calibrate` wrote: fitted values, bootstrap draws, held-out error, coverage."""

    parameters: dict[str, float]
    draws: dict[str, np.ndarray]
    ratios: tuple[float, float]
    coverage: list[dict[str, Any]]
    fitted_to: dict[str, list[str]]
    holdout: dict[str, Any]
    path: str = ""

    def theta_draws(self) -> dict[str, np.ndarray]:
        """The draws shaped (draws, 1), to broadcast against message sizes."""
        return {k: np.asarray(v, dtype=float)[:, None] for k, v in self.draws.items()}


def calibrate(
    df, platforms, priors, *, draws: int, seed: int = 0, progress=None
) -> tuple[Calibration, Validation]:
    """Fit on every source, validate leaving each source out, bootstrap the fit: the whole calibration."""
    say = progress or (lambda _text: None)
    say("fit on every source")
    full = fit(df, platforms, priors)
    # Held-out fits start from the priors, not from the full fit, which has seen the held-out source.
    validation = leave_one_source_out(df, platforms, priors, progress=lambda s: say(f"hold out {s}"))
    boot = bootstrap(
        df,
        platforms,
        priors,
        full.theta,
        draws=draws,
        seed=seed,
        progress=lambda i: say(f"bootstrap {i + 1}/{draws}"),
    )
    sources = df["source_id"].to_numpy()
    fitted_to = {k: sorted(set(sources[rows])) for k, rows in full.depends.items() if len(rows)}
    t = validation.table
    holdout = {
        "points": int(len(t)),
        "sources": int(t["source_id"].nunique()),
        "median_abs_error": float(t["error"].abs().median()),
        "within_35_percent": float((t["error"].abs() <= 0.35).mean()),
    }
    return (
        Calibration(full.theta, boot, ratio_quantiles(validation), coverage(df), fitted_to, holdout),
        validation,
    )


def write_calibration(calibration: Calibration, path, corpus_files: dict[str, int]) -> None:
    import datetime as dt
    import json

    from study.results import atomic_write_text

    doc = {
        "schema": CALIBRATION_SCHEMA,
        "about": "Written by `study model calibrate`; docs/costmodel.md. Do not edit by hand.",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "corpus": corpus_files,
        "parameters": {k: round(v, 6) for k, v in sorted(calibration.parameters.items())},
        "fitted_to": calibration.fitted_to,
        "holdout": calibration.holdout | {"ratio_published_over_predicted_5_95": list(calibration.ratios)},
        "coverage": calibration.coverage,
        "draws": {k: [round(float(x), 6) for x in v] for k, v in sorted(calibration.draws.items())},
    }
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def load_calibration(path) -> Calibration:
    import json

    from study.errors import InputError

    try:
        doc = json.loads(open(path, encoding="utf-8").read())
    except FileNotFoundError:
        raise InputError(
            "no calibration of the grounded model", file=str(path), hint="run `study model calibrate --write`"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not a calibration file ({exc})", file=str(path)) from None
    if not isinstance(doc, dict) or doc.get("schema") != CALIBRATION_SCHEMA:
        raise InputError(f"expected schema {CALIBRATION_SCHEMA}", file=str(path), key="schema")
    try:
        draws = {k: np.asarray(v, dtype=float) for k, v in doc["draws"].items()}
        ratios = tuple(float(x) for x in doc["holdout"]["ratio_published_over_predicted_5_95"])
        return Calibration(
            {k: float(v) for k, v in doc["parameters"].items()},
            draws,
            (ratios[0], ratios[1]),
            list(doc["coverage"]),
            {k: list(v) for k, v in doc["fitted_to"].items()},
            dict(doc["holdout"]),
            str(path),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError(f"incomplete calibration ({exc})", file=str(path)) from None


def system_block_lines(names: list[str], calibration: Calibration) -> list[str]:
    """The `fitted:` and `fitted_to:` lines of a system's cost_model block."""
    lines = ["  fitted:                 # written by `study model calibrate --write`; do not edit by hand"]
    lines += [f"    {k}: {calibration.parameters[k]:.6g}" for k in names]
    lines.append(
        "  fitted_to:              # the published sources each value was fitted to (jobs/measurements/)"
    )
    for k in names:
        sources = calibration.fitted_to.get(k, [])
        lines.append(f"    {k}: [{', '.join(sources)}]" if sources else f"    {k}: []   # no data: the prior")
    return lines


def rewrite_system_file(path, names: list[str], calibration: Calibration) -> str:
    """The system file's text with its cost_model block's fitted values replaced (comments elsewhere kept)."""
    import re

    text = open(path, encoding="utf-8").read()
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"cost_model:", line)), None)
    if start is None:
        from study.errors import InputError

        raise InputError("no cost_model block", file=str(path), key="cost_model")
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), len(lines)
    )
    block, skipping = [], False
    for line in lines[start + 1 : end]:
        if re.match(r"  (fitted|fitted_to):", line):
            skipping = True
            continue
        if skipping and (line.startswith("    ") or not line.strip()):
            continue
        skipping = False
        block.append(line)
    while block and not block[-1].strip():
        block.pop()
    out = lines[: start + 1] + block + system_block_lines(names, calibration) + lines[end:]
    return "\n".join(out) + "\n"

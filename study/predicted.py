"""The study's experiments as predictions: a dataset shaped like a collected one, made by the model alone.

Each experiment of experiments/paper/ is expanded exactly as `study plan` would on the chosen system;
every run is then priced by the calibrated model instead of being run. The rows have the collected
dataset's columns (docs/results.md), so every figure of `analysis` draws them unchanged, with
`origin = predicted`. A prediction's interval enters as five repeats of its run — the interval's low
end twice, the prediction, its high end twice — so the figures' median line is the prediction and
their interquartile band is exactly the 5–95 % interval. Measured rows from a collected workspace of
the same experiment can join with `origin = measured` and "(measured)" after their algorithm, so they
plot beside the predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from study.errors import InputError

PAPER_DIR = Path(__file__).resolve().parents[1] / "experiments" / "paper"
REPEATS = 5  # low, low, central, high, high: quantiles 0.25 / 0.5 / 0.75 land on low / central / high


def _scalar_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if isinstance(v, str | int | float | bool)}


def _five(low: float, central: float, high: float) -> list[float]:
    if not (np.isfinite(low) and np.isfinite(high)):
        return [central] * REPEATS
    return [low, low, central, high, high]


def _base(experiment, run, sm, k: int) -> dict[str, Any]:
    return {
        "experiment": experiment.name,
        "run_id": f"{run.run_id}-p{k}",
        "repeat": k,
        "kind": experiment.kind,
        "status": "ok",
        "nodes": run.nodes,
        "gpus_per_node": run.gpus_per_node,
        "world_size": run.world_size,
        "system": sm.name,
        "interconnect": sm.system.interconnect.name if sm.system.interconnect else "none",
        "origin": "predicted",
    }


def _sizes(params: dict[str, Any]) -> list[int]:
    sizes = params.get("sizes")
    if isinstance(sizes, dict):
        out, value = [], int(sizes["from"])
        while value <= int(sizes["to"]):
            out.append(value)
            value *= int(sizes.get("factor", 2))
        return out
    if isinstance(sizes, list):
        return [int(s) for s in sizes]
    return [int(sizes)]


def _collective_rows(experiment, runs, sm) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        if run.world_size < 2:
            continue  # one GPU: nothing to reduce
        params = run.params
        algorithms = params.get("algorithms") or [params.get("algorithm")]
        launch = "graph" if params.get("graphs") else "plain"
        sizes = _sizes(params)
        for algorithm in algorithms:
            p = sm.latency(str(algorithm), run.nodes, sizes, launch)
            for i, size in enumerate(sizes):
                values = _five(float(p.low_us[i]), float(p.latency_us[i]), float(p.high_us[i]))
                for k, latency in enumerate(values):
                    rows.append(
                        _base(experiment, run, sm, k)
                        | _scalar_params(params)
                        | {"algorithm": str(algorithm), "size_bytes": size, "latency_us": latency}
                    )
    return rows


def _inference_rows(experiment, runs, sm, flop_efficiency: float, bandwidth_efficiency: float):
    from collectives import costmodel as cm
    from study.model_tables import engine_pair

    rates = sm.gpu_rates(flop_efficiency, bandwidth_efficiency)
    rows = []
    draws = sm.draws() if sm.grounded else None
    for run in runs:
        p = run.params
        shape = cm.MODEL_SHAPES.get(str(p.get("model")))
        if shape is None:
            continue
        args = (
            shape,
            int(p["tp"]),
            int(p["pp"]),
            int(p["batch_size"]),
            int(p["prompt_len"]),
            int(p["decode_len"]),
            rates,
            int(p.get("micro_batches", 1)),
        )
        pick = 1 if p.get("allreduce") == "nvrar" else 0
        central = engine_pair(sm, *args)[pick]
        spread = engine_pair(sm, *args, theta=draws)[pick] if draws is not None else None
        metrics = {}
        for name, key in (("ttft_ms", "prefill_ms"), ("tbt_ms", "decode_ms"), ("e2e_ms", "e2e_ms")):
            low, high = (
                np.quantile(np.ravel(spread[key]), (0.05, 0.95)) if spread is not None else (np.nan, np.nan)
            )
            metrics[name] = _five(float(low), float(central[key]), float(high))
        tokens = int(p["batch_size"]) * int(p["decode_len"])
        metrics["tokens_per_s"] = [tokens / (e / 1e3) for e in metrics["e2e_ms"]]
        for k in range(REPEATS):
            rows.append(
                _base(experiment, run, sm, k) | _scalar_params(p) | {m: metrics[m][k] for m in metrics}
            )
    return rows


def predicted_dataset(
    experiment_path: Path, sm, *, flop_efficiency: float = 0.6, bandwidth_efficiency: float = 0.8
):
    """The rows an experiment would collect on `sm`'s system, predicted (see the module doc)."""
    import pandas as pd

    from study.config import load_experiment
    from study.sweep import expand

    experiment = load_experiment(experiment_path)
    runs = [r for r in expand(experiment, sm.system) if r.repeat == 0]
    if experiment.kind == "collective":
        rows = _collective_rows(experiment, runs, sm)
    else:
        rows = _inference_rows(experiment, runs, sm, flop_efficiency, bandwidth_efficiency)
    return pd.DataFrame(rows)


def nccl_decisions(df, sm):
    """NCCL's (algorithm, protocol) per size and GPU count of a predicted collective dataset, in the
    columns of analysis.nccl_log (what the algorithm-map figure reads from NCCL_DEBUG logs)."""
    import pandas as pd

    from analysis.nccl_log import COLUMNS

    rows = []
    nccl = (
        df[(df["kind"] == "collective") & (df["algorithm"] == "nccl")] if "algorithm" in df else df.iloc[:0]
    )
    for (nodes, world), part in nccl.groupby(["nodes", "world_size"]):
        sizes = sorted(part["size_bytes"].unique())
        for size, choice in zip(sizes, sm.nccl_choice(int(nodes), sizes), strict=True):
            algorithm, _, protocol = str(choice).partition("/")
            rows.append(
                {
                    "source": "model",
                    "host": "predicted",
                    "pid": 0,
                    "collective": "AllReduce",
                    "size_bytes": int(size),
                    "nranks": int(world),
                    "algorithm": algorithm.capitalize(),
                    "protocol": protocol,
                    "predicted_us": np.nan,
                    "channels": np.nan,
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def published_rows(predicted, corpus, system: str):
    """Published points of `system` (jobs/measurements) that a predicted collective figure covers: the
    same algorithm, node count, GPUs per node and launch mode. Each copies the scalar parameters of a
    predicted row of its configuration (so it lands on the same page and panel), with its algorithm
    marked "(published)" and `origin = published`."""
    import pandas as pd

    if predicted.empty or "algorithm" not in predicted.columns:
        return predicted.iloc[:0]
    mine = corpus[corpus["system"] == system]
    rows = []
    for r in mine.itertuples(index=False):
        graphs = r.launch == "graph"
        match = predicted[
            (predicted["algorithm"] == r.algorithm)
            & (predicted["nodes"] == r.nodes)
            & (predicted["gpus_per_node"] == r.gpus_per_node)
            & (predicted["graphs"].astype(bool) == graphs)
        ]
        if match.empty:
            continue
        template = match.iloc[0].to_dict()
        rows.append(
            template
            | {
                "run_id": f"published-{r.source_id}-{r.line}",
                "repeat": 0,
                "algorithm": f"{r.algorithm} (published)",
                "size_bytes": int(r.size_bytes),
                "latency_us": float(r.latency_us),
                "origin": "published",
            }
        )
    return pd.DataFrame(rows)


def measured_rows(workspace: Path):
    """A collected workspace's rows, marked as measured and renamed to sit beside the predictions."""
    from analysis.dataset import load_workspace

    ds = load_workspace(workspace)
    df = ds.ok.copy()
    df["origin"] = "measured"
    for column in ("algorithm", "allreduce"):
        if column in df.columns:
            df[column] = df[column].map(lambda v: f"{v} (measured)" if isinstance(v, str) else v)
    return df


def experiments(folder: Path = PAPER_DIR) -> list[Path]:
    files = sorted(Path(folder).glob("*.yaml"))
    if not files:
        raise InputError("no experiment files (*.yaml)", file=str(folder))
    return files

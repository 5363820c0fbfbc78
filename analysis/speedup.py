"""NVRAR against NCCL: all-reduce speedup tables, the crossover size, and end-to-end batch speedup.

Speedup = median latency of the baseline (NCCL) / median latency of the candidate (NVRAR), at the same
system, GPU count, message size, dtype and CUDA-graph setting; above 1 the candidate is faster.
The crossover size is where the speedup crosses 1, interpolated linearly in log(speedup) against
log2(size) between the two measured sizes that bracket it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analysis.dataset import config_columns, summarize

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

BASELINE = "nccl"
CANDIDATE = "nvrar"


def latency_table(df: pd.DataFrame) -> pd.DataFrame:
    """Median (IQR, CI) latency per configuration, algorithm and size over repeats."""
    import pandas as pd

    need = {"algorithm", "size_bytes", "latency_us"}
    if not need <= set(df.columns):
        return pd.DataFrame()
    data = df[df["latency_us"].notna() & df["algorithm"].notna()]
    # `algorithms` is the run's parameter (the list the benchmark ran, one algorithm per run when swept);
    # each sample's `algorithm` names its series. Kept as a key, it would keep NCCL's rows and NVRAR's
    # from ever sharing a configuration.
    exclude = ("kind", "algorithms", "gpu", "scheduler")
    keys = config_columns(data, exclude=exclude)
    return summarize(data, keys, ["latency_us"])


def fastest_by_size(latencies: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (every column but algorithm and size), the fastest algorithm at each size,
    its median latency, the runner-up and how much slower it is. Empty unless two or more algorithms
    were measured at a size."""
    import pandas as pd

    med = "latency_us_median"
    if latencies.empty or latencies["algorithm"].nunique() < 2:
        return pd.DataFrame()
    keys = _series_keys(latencies, drop=("algorithm", "size_bytes"))
    rows = []
    for values, part in latencies.groupby([*keys, "size_bytes"], dropna=False, sort=True):
        ranked = part.sort_values(med)
        if len(ranked) < 2:
            continue
        first, second = ranked.iloc[0], ranked.iloc[1]
        values = values if isinstance(values, tuple) else (values,)
        rows.append(
            dict(zip([*keys, "size_bytes"], values, strict=True))
            | {
                "fastest": first["algorithm"],
                "fastest_us": float(first[med]),
                "runner_up": second["algorithm"],
                "margin": float(second[med] / first[med]),
                "algorithms": len(ranked),
            }
        )
    return pd.DataFrame(rows)


def _series_keys(table: pd.DataFrame, drop: tuple[str, ...]) -> list[str]:
    return [
        c
        for c in table.columns
        if not c.startswith("latency_us_") and c not in drop and c not in ("experiment",)
    ]


def speedup_table(
    df: pd.DataFrame,
    baseline: str = BASELINE,
    candidate: str = CANDIDATE,
    latencies: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (configuration, size) measured with both algorithms: both latencies and speedup.

    `latencies` is `latency_table(df)` when the caller has it already.
    """
    import pandas as pd

    table = latency_table(df) if latencies is None else latencies
    if table.empty:
        return pd.DataFrame()
    keys = _series_keys(table, drop=("algorithm",))
    med = "latency_us_median"
    # Two experiments with the same configuration (one sweep in two workspaces) share a key: their
    # medians are combined, not paired twice.
    base = (
        table[table["algorithm"] == baseline]
        .groupby(keys, dropna=False)[med]
        .median()
        .rename(f"{baseline}_us")
    )
    cand = (
        table[table["algorithm"] == candidate]
        .groupby(keys, dropna=False)[med]
        .median()
        .rename(f"{candidate}_us")
    )
    if base.empty or cand.empty:
        return pd.DataFrame()
    both = pd.concat([base, cand], axis=1, join="inner").reset_index()
    both["speedup"] = both[f"{baseline}_us"] / both[f"{candidate}_us"]
    return both.sort_values(keys).reset_index(drop=True)


def crossovers(speedups: pd.DataFrame) -> pd.DataFrame:
    """Sizes where the speedup crosses 1, per series (everything but the size), interpolated.

    `direction` says which side the candidate wins: "below" (faster for smaller messages) or "above".
    """
    import numpy as np
    import pandas as pd

    if speedups.empty:
        return pd.DataFrame(columns=["crossover_bytes", "direction"])
    keys = [c for c in speedups.columns if c not in ("size_bytes", "speedup") and not c.endswith("_us")]
    rows = []
    for values, s in speedups.groupby(keys, dropna=False, sort=True):
        s = s.sort_values("size_bytes")
        x = np.log2(s["size_bytes"].to_numpy(float))
        y = np.log(s["speedup"].to_numpy(float))
        values = values if isinstance(values, tuple) else (values,)
        for i in range(len(x) - 1):
            y0, y1 = y[i], y[i + 1]
            crosses = (y0 < 0 < y1) or (y0 > 0 > y1) or (y1 == 0 and y0 != 0)
            if not crosses:
                continue
            x_cross = x[i] + (0.0 - y0) * (x[i + 1] - x[i]) / (y1 - y0)
            rows.append(
                {
                    **dict(zip(keys, values, strict=True)),
                    "crossover_bytes": float(2.0**x_cross),
                    "direction": "below" if y0 > y1 else "above",
                    "size_lo": int(s["size_bytes"].iloc[i]),
                    "size_hi": int(s["size_bytes"].iloc[i + 1]),
                }
            )
    return pd.DataFrame(rows)


def e2e_speedup(
    df: pd.DataFrame, metric: str = "e2e_ms", baseline: str = BASELINE, candidate: str = CANDIDATE
) -> pd.DataFrame:
    """End-to-end (or TBT) speedup of inference runs that differ only in the `allreduce` column."""
    import pandas as pd

    if "allreduce" not in df.columns or metric not in df.columns:
        return pd.DataFrame()
    data = df[df[metric].notna() & df["allreduce"].isin([baseline, candidate])]
    if data["allreduce"].nunique() < 2:
        return pd.DataFrame()
    keys = [k for k in config_columns(data, exclude=("kind", "gpu", "scheduler"))]
    table = summarize(data, keys, [metric])
    series = [k for k in keys if k != "allreduce"]
    med = f"{metric}_median"
    base = table[table["allreduce"] == baseline].set_index(series)[med].rename(f"{baseline}_ms")
    cand = table[table["allreduce"] == candidate].set_index(series)[med].rename(f"{candidate}_ms")
    both = pd.concat([base, cand], axis=1, join="inner").reset_index()
    both["speedup"] = both[f"{baseline}_ms"] / both[f"{candidate}_ms"]
    both["metric"] = metric
    return both

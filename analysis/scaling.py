"""Strong scaling of inference: speedup and parallel efficiency against GPU count, per parallel scheme.

The scheme comes from the `tp` and `pp` columns: TP (pp = 1), PP (tp = 1, pp > 1) or hybrid (both
above 1; its series is split by tp, since "TP inside a node, PP across nodes" and other splits are
different strategies). Each series' baseline is its smallest GPU count: speedup = T(base) / T(g),
efficiency = speedup / (g / base). Times are the median over repeats.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analysis.dataset import config_columns, summarize

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

SCALING_METRICS: tuple[str, ...] = ("ttft_ms", "tbt_ms", "e2e_ms")
# Columns that change along a strong-scaling sweep and so must not split it into series: the scale
# itself, the parallel degrees, and the topology that follows from it (on a laptop, `local` sweeps
# gpus_per_node; the demo derives virtual nodes from the world size).
SCALE_COLUMNS: tuple[str, ...] = (
    "nodes",
    "world_size",
    "gpus_per_node",
    "virtual_gpus_per_node",
    "tp",
    "pp",
    "micro_batches",
)


def scheme_of(tp: pd.Series, pp: pd.Series) -> pd.Series:
    """TP, PP or hybrid for each row, from the tensor- and pipeline-parallel degrees."""
    import numpy as np
    import pandas as pd

    tp = tp.fillna(1)
    pp = pp.fillna(1)
    out = np.where(pp <= 1, "TP", np.where(tp <= 1, "PP", "hybrid"))
    return pd.Series(out, index=tp.index)


def with_scheme(df: pd.DataFrame) -> pd.DataFrame:
    """The inference rows with a `scheme` column and a `series` label (hybrid split by tp)."""
    import pandas as pd

    df = df.copy()
    tp = df["tp"] if "tp" in df.columns else pd.Series(1, index=df.index)
    pp = df["pp"] if "pp" in df.columns else pd.Series(1, index=df.index)
    df["scheme"] = scheme_of(tp, pp)
    hybrid = df["scheme"] == "hybrid"
    df["series"] = df["scheme"]
    if hybrid.any():
        df.loc[hybrid, "series"] = "hybrid TP" + tp[hybrid].astype(int).astype(str)
    return df


def sweep_keys(df: pd.DataFrame) -> list[str]:
    """Columns that identify one strong-scaling sweep (everything but the scale and the scheme)."""
    keys = config_columns(df, exclude=SCALE_COLUMNS + ("scheme", "series", "kind", "gpu", "scheduler"))
    return [k for k in keys if df[k].nunique(dropna=False) > 1 or k in ("system",)]


def strong_scaling(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (sweep, series, GPU count): median, IQR and CI of `metric`, speedup, efficiency."""
    import pandas as pd

    if metric not in df.columns or "world_size" not in df.columns:
        return pd.DataFrame()
    data = with_scheme(df[df[metric].notna()])
    if data.empty:
        return pd.DataFrame()
    keys = sweep_keys(data)
    group = keys + ["scheme", "series", "world_size"]
    summary = summarize(data, group, [metric])
    med = f"{metric}_median"
    series_keys = keys + ["scheme", "series"]
    summary = summary.sort_values(series_keys + ["world_size"], kind="mergesort")
    grouped = summary.groupby(series_keys, dropna=False, sort=False)
    summary["base_gpus"] = grouped["world_size"].transform("first")
    summary["base_" + med] = grouped[med].transform("first")
    summary["speedup"] = summary["base_" + med] / summary[med]
    summary["efficiency"] = summary["speedup"] / (summary["world_size"] / summary["base_gpus"])
    summary["metric"] = metric
    return summary.reset_index(drop=True)

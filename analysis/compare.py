"""Interconnect comparison: the same experiment on two (or more) systems, side by side.

Rows are matched on the experiment's configuration with the system-specific columns left out
(system, interconnect, gpu, scheduler, workspace, the experiment's name, which differs when the same
sweep runs as two experiments, and the topology that follows from the machine).
They are aligned on `nodes` by default, since the interconnect sits between nodes; `world_size`
aligns on GPU count instead (Perlmutter has 4 GPUs per node, Vista 1). The ratio column is
system B's median over system A's: above 1, B is slower.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analysis.dataset import config_columns, summarize

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

SYSTEM_COLUMNS: tuple[str, ...] = ("system", "interconnect", "gpu", "scheduler", "workspace", "experiment")
ALIGN_CHOICES: tuple[str, ...] = ("nodes", "world_size")
COMPARE_METRICS: tuple[str, ...] = ("latency_us", "ttft_ms", "tbt_ms", "e2e_ms", "tokens_per_s")


def system_label(df: pd.DataFrame) -> pd.Series:
    """ "perlmutter (slingshot-11)": the tag that tells systems apart in tables and legends."""
    return df["system"].astype(str) + " (" + df["interconnect"].astype(str) + ")"


def systems(df: pd.DataFrame) -> list[str]:
    return sorted(system_label(df).unique()) if not df.empty else []


def side_by_side(df: pd.DataFrame, metric: str, align: str = "nodes") -> pd.DataFrame:
    """Median `metric` per configuration with one column per system, and the ratio to the first system.

    Only configurations measured on every system are kept.
    """
    import pandas as pd

    if metric not in df.columns or align not in ALIGN_CHOICES:
        return pd.DataFrame()
    data = df[df[metric].notna()].copy()
    if data.empty:
        return pd.DataFrame()
    data["system_label"] = system_label(data)
    other_scale = "world_size" if align == "nodes" else "nodes"
    drop = SYSTEM_COLUMNS + ("kind", other_scale, "gpus_per_node")
    if data["kind"].eq("inference").any():
        from analysis.scaling import with_scheme

        # The parallel degrees follow from the GPU count, which differs between systems at equal nodes:
        # compare schemes (TP, PP, hybrid) instead.
        data = with_scheme(data)
        drop += ("series",) if align == "world_size" else ("series", "tp", "pp", "micro_batches")
    keys = [k for k in config_columns(data, exclude=drop) if k != "system_label"]
    table = summarize(data, keys + ["system_label"], [metric])
    labels = sorted(table["system_label"].unique())
    if len(labels) < 2:
        return pd.DataFrame()
    wide = table.pivot_table(
        index=keys, columns="system_label", values=f"{metric}_median", dropna=False, observed=True
    )
    wide = wide.dropna(how="any")
    if wide.empty:
        return pd.DataFrame()
    first = labels[0]
    for label in labels[1:]:
        wide[f"ratio {label} / {first}"] = wide[label] / wide[first]
    wide.columns.name = None
    wide = wide.reset_index()
    for col in ("size_bytes", "nodes", "world_size", "tp", "pp"):
        if col in wide.columns:
            wide[col] = wide[col].astype("Int64")
    wide.insert(0, "metric", metric)
    return wide


def comparisons(df: pd.DataFrame, align: str = "nodes") -> dict[str, pd.DataFrame]:
    """Every metric the systems share, as side-by-side tables keyed by metric."""
    out = {}
    for metric in COMPARE_METRICS:
        table = side_by_side(df, metric, align)
        if not table.empty:
            out[metric] = table
    return out

"""Figures of the cost model: predicted latency against size and node count, fit residuals, engine step
times, system comparison, and the prediction overlaid on measured latency-vs-size points.

Each figure function takes a tidy table (as `study.model` builds it), writes PNG, PDF and the CSV of the
plotted points through `analysis.style.save_figure`, and returns the written paths.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from analysis.style import apply_style, color_for, marker_for, save_figure
from study.units import format_size

if TYPE_CHECKING:  # pragma: no cover - only for type checkers
    import pandas as pd

    from collectives.costmodel import CostParams

MAX_FACETS = 4


def _pick(values, limit: int = MAX_FACETS) -> list:
    """At most `limit` values spread evenly over the sorted distinct values (first and last kept)."""
    values = sorted(set(values))
    if len(values) <= limit:
        return values
    idx = np.unique(np.round(np.linspace(0, len(values) - 1, limit)).astype(int))
    return [values[i] for i in idx]


def _facets(count: int):
    import matplotlib.pyplot as plt

    cols = min(count, 2)
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False, sharey=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def _size_axis(ax, sizes) -> None:
    """Log2 size axis ticked at the sizes plotted (at most 8 labels); log latency axis."""
    from analysis.style import size_axis

    size_axis(ax, "x", ticks=sizes, most=8)
    ax.set_yscale("log")
    ax.minorticks_off()


def _nodes_axis(ax, nodes) -> None:
    """Log2 node axis ticked at the node counts plotted (at most 8 labels)."""
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ticks = _pick([int(v) for v in nodes], 8)
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()


def plot_latency_vs_size(df: pd.DataFrame, out_dir: str | os.PathLike[str], name: str) -> list[Path]:
    """Predicted latency against message size, one line per algorithm, one panel per node count."""

    def title(n, sel) -> str:
        return f"{n} node{'s' if n > 1 else ''} × {int(sel['gpus_per_node'].iloc[0])} GPUs (model)"

    return _latency_facets(df, out_dir, name, ("nodes", "size_bytes", "message size"), _size_axis, title)


def plot_latency_vs_nodes(df: pd.DataFrame, out_dir: str | os.PathLike[str], name: str) -> list[Path]:
    """Predicted latency against node count, one line per algorithm, one panel per message size."""
    title = lambda size, sel: f"{format_size(int(size))} (model)"  # noqa: E731
    return _latency_facets(df, out_dir, name, ("size_bytes", "nodes", "nodes"), _nodes_axis, title)


def _latency_facets(df: pd.DataFrame, out_dir, name: str, columns, axis, title) -> list[Path]:
    """One panel per value of the `facet` column (a few of them), one line per algorithm of latency
    against `x`; `columns` is (facet, x, the x axis's label)."""
    facet, x, xlabel = columns
    apply_style()
    values = _pick(df[facet])
    points = df[df[facet].isin(values)]
    fig, axes = _facets(len(values))
    for ax, value in zip(axes, values, strict=True):
        sel = points[points[facet] == value]
        for i, (algorithm, grp) in enumerate(sel.groupby("algorithm", sort=False)):
            grp = grp.sort_values(x)
            ax.plot(
                grp[x],
                grp["latency_us"],
                marker=marker_for(i),
                label=algorithm,
                color=color_for(algorithm, i),
            )
        axis(ax, sel[x])
        ax.set_title(title(value, sel))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("predicted latency (µs)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return list(save_figure(fig, points, out_dir, name).values())


def plot_compare(df: pd.DataFrame, out_dir: str | os.PathLike[str], name: str) -> list[Path]:
    """The same algorithms on several systems: latency against nodes at the largest size predicted."""
    apply_style()
    import matplotlib.pyplot as plt

    size = int(df["size_bytes"].max())
    points = df[df["size_bytes"] == size]
    fig, ax = plt.subplots()
    styles = ("-", "--", ":", "-.")
    for i, ((system, algorithm), grp) in enumerate(points.groupby(["system", "algorithm"], sort=False)):
        systems = list(dict.fromkeys(points["system"]))
        grp = grp.sort_values("nodes")
        ax.plot(
            grp["nodes"],
            grp["latency_us"],
            linestyle=styles[systems.index(system) % len(styles)],
            marker=marker_for(i),
            color=color_for(algorithm, i),
            label=f"{algorithm} on {system}",
        )

    _nodes_axis(ax, points["nodes"])
    ax.set_xlabel("nodes")
    ax.set_ylabel("predicted latency (µs)")
    ax.set_title(f"All-reduce of {format_size(size)} by system (model)")
    ax.legend(fontsize=8)
    return list(save_figure(fig, points, out_dir, name).values())


def plot_fit(residuals: pd.DataFrame, out_dir: str | os.PathLike[str], name: str) -> list[Path]:
    """Measured against fitted latency per algorithm and node count, and the relative residuals."""
    apply_style()
    import matplotlib.pyplot as plt

    fig, (ax, ax_res) = plt.subplots(1, 2, figsize=(10.4, 3.8))
    for i, ((algorithm, n), grp) in enumerate(residuals.groupby(["algorithm", "nodes"], sort=True)):
        grp = grp.sort_values("size_bytes")
        color = color_for(algorithm, i)
        ax.plot(
            grp["size_bytes"],
            grp["latency_us"],
            marker=marker_for(i),
            linestyle="none",
            color=color,
            label=f"{algorithm}, {n} nodes",
        )
        ax.plot(grp["size_bytes"], grp["predicted_us"], linestyle="--", color=color)
        ax_res.plot(grp["size_bytes"], 100 * grp["relative_residual"], marker=marker_for(i), color=color)
    _size_axis(ax, residuals["size_bytes"])
    ax.set_xlabel("message size")
    ax.set_ylabel("latency (µs): measured (points), fit (dashed)")
    ax.legend(fontsize=7)
    ax_res.set_xscale("log", base=2)
    ax_res.axhline(0, color="#888888", linewidth=0.8)
    ax_res.set_xlabel("message size (B)")
    ax_res.set_ylabel("residual (% of measured)")
    fig.tight_layout()
    return list(save_figure(fig, residuals, out_dir, name).values())


def plot_engine(df: pd.DataFrame, out_dir: str | os.PathLike[str], name: str) -> list[Path]:
    """Decode step time against nodes for each layout and batch, NCCL (solid) against NVRAR (dashed)."""
    apply_style()
    import matplotlib.pyplot as plt

    points = df.assign(layout=np.where(df["pp"] == 1, "TP", "TP×PP"))
    fig, ax = plt.subplots()
    for i, ((layout, batch), grp) in enumerate(points.groupby(["layout", "batch_size"], sort=True)):
        grp = grp.sort_values("nodes")
        color = color_for("", i)
        ax.plot(
            grp["nodes"],
            grp["decode_ms"],
            marker=marker_for(i),
            color=color,
            label=f"{layout}, batch {batch}, NCCL",
        )
        ax.plot(
            grp["nodes"],
            grp["decode_ms_nvrar"],
            marker=marker_for(i),
            color=color,
            linestyle="--",
            label=f"{layout}, batch {batch}, NVRAR",
        )
    _nodes_axis(ax, points["nodes"])
    ax.set_xlabel("nodes")
    ax.set_ylabel("predicted decode step (ms)")
    ax.set_title(f"{points['model'].iloc[0]} on {points['system'].iloc[0]} (model)")
    ax.legend(fontsize=6, ncol=2)
    return list(save_figure(fig, points, out_dir, name).values())


def prediction_overlay(
    measured: pd.DataFrame, params: CostParams | dict[str, CostParams], *, ll128: bool = True
) -> pd.DataFrame:
    """Predicted latency for every distinct (system, algorithm, nodes, gpus_per_node, size) measured.

    `params` is one parameter set, or one per system name. Backends map to models through
    `costmodel.MODEL_OF_BACKEND` (reference-ring → ring, …); those without a model (gloo, one-shot, …)
    are left out; nccl-ring and nccl-tree use NCCL's model narrowed to that algorithm.
    """
    import pandas as pd

    from collectives import costmodel as cm

    keys = [
        k for k in ("system", "algorithm", "nodes", "gpus_per_node", "size_bytes") if k in measured.columns
    ]
    rows = []
    for _, row in measured[keys].drop_duplicates().iterrows():
        algorithm = str(row["algorithm"])
        system = str(row.get("system", ""))
        p = params.get(system) if isinstance(params, dict) else params
        if p is None:
            continue
        nodes, g, size = int(row["nodes"]), int(row["gpus_per_node"]), float(row["size_bytes"])
        model = cm.MODEL_OF_BACKEND.get(algorithm)
        if model in cm.ALGORITHMS:
            t = float(cm.predict(model, nodes, g, size, p))
        elif model == "nccl":
            only = cm.NCCL_ALGORITHMS if algorithm == "nccl" else (algorithm.split("-")[1],)
            t = float(cm.nccl_predict(nodes, g, size, p, ll128=ll128, algorithms=only)[0])
        else:
            continue
        rows.append({**row.to_dict(), "predicted_us": t})
    return pd.DataFrame(rows, columns=[*keys, "predicted_us"])


def draw_overlay(ax, overlay: pd.DataFrame, *, label_suffix: str = " (model)") -> None:
    """Dashed lines of the prediction on an existing latency-vs-size axis, in each series' colour."""
    for i, ((algorithm, nodes), grp) in enumerate(overlay.groupby(["algorithm", "nodes"], sort=True)):
        grp = grp.sort_values("size_bytes")
        ax.plot(
            grp["size_bytes"],
            grp["predicted_us"],
            linestyle="--",
            linewidth=1.0,
            color=color_for(algorithm, i),
            label=f"{algorithm}, {nodes} nodes{label_suffix}",
        )


def plot_measured_with_overlay(
    measured: pd.DataFrame, overlay: pd.DataFrame, out_dir: str | os.PathLike[str], name: str
) -> list[Path]:
    """Measured latency against size (points, median over repeats) with the model's prediction dashed."""
    apply_style()
    import matplotlib.pyplot as plt

    keys = ["algorithm", "nodes", "size_bytes"]
    points = measured.groupby(keys, as_index=False)["latency_us"].median()
    points = points.merge(overlay[[*keys, "predicted_us"]], on=keys, how="left")
    fig, ax = plt.subplots()
    for i, ((algorithm, nodes), grp) in enumerate(points.groupby(["algorithm", "nodes"], sort=True)):
        grp = grp.sort_values("size_bytes")
        ax.plot(
            grp["size_bytes"],
            grp["latency_us"],
            marker=marker_for(i),
            linestyle="none",
            color=color_for(algorithm, i),
            label=f"{algorithm}, {nodes} nodes",
        )
    draw_overlay(ax, overlay[overlay["algorithm"].isin(points["algorithm"])])
    _size_axis(ax, points["size_bytes"])
    ax.set_xlabel("message size")
    ax.set_ylabel("latency (µs)")
    ax.legend(fontsize=7)
    return list(save_figure(fig, points, out_dir, name).values())

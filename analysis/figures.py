"""The study's inference figures (the collective ones are in analysis/figures_collective.py): one
function each, registered with what it needs (see analysis.registry).

Every figure shows medians over repeats with the interquartile range as error bars or bands, uses
log axes where the quantity spans decades (message sizes, latencies) and log2 GPU counts, and is
written with the CSV of exactly the points it plots. Other modules register figures with the same
decorator: `from analysis.figures import figure, Needs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from analysis.pages import page_title, pages, slug
from analysis.registry import FigureData, Needs, SkipFigure, figure
from analysis.style import color_for, gpu_axis, log_axis, marker_for, save_figure

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["figure", "Needs", "SkipFigure", "FigureData"]

METRIC_LABELS = {
    "ttft_ms": "TTFT (ms)",
    "tbt_ms": "TBT (ms)",
    "e2e_ms": "E2E batch latency (ms)",
    "tokens_per_s": "throughput (tokens/s)",
    "latency_us": "latency (µs)",
}


# Above this many cells a heat map shows colours only: hundreds of labels are unreadable and slow to draw.


def _median_series(
    ax: Axes, s: pd.DataFrame, metric: str, label: str, i: int, style: str, color: str
) -> None:
    """One line of medians against GPU count with the interquartile range as error bars."""
    med = s[f"{metric}_median"].to_numpy()
    err = [med - s[f"{metric}_q1"].to_numpy(), s[f"{metric}_q3"].to_numpy() - med]
    ax.errorbar(
        s["world_size"].to_numpy(),
        med,
        yerr=err,
        label=label,
        marker=marker_for(i),
        linestyle=style,
        capsize=2,
        color=color,
    )


def _gpus_panel(ax: Axes, table: pd.DataFrame, metric: str) -> None:
    """A metric against GPU count: the GPU axis, log scale, labels."""
    gpu_axis(ax, table["world_size"])
    log_axis(ax)
    ax.set_xlabel("GPUs")
    ax.set_ylabel(METRIC_LABELS[metric])


# -- strong scaling -------------------------------------------------------------------------------------

PAGE_KEYS = ["system", "model", "batch_size", "prompt_len", "decode_len", "experiment"]


@figure(
    "strong_scaling",
    Needs(kind="inference", columns=("world_size",), any_columns=("ttft_ms", "tbt_ms", "e2e_ms")),
)
def strong_scaling(data: FigureData, out_dir: Path) -> list[dict[str, Path]]:
    """Strong scaling of TP, PP and hybrid: TTFT, TBT and E2E against GPU count (median, IQR)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from analysis.scaling import SCALING_METRICS
    from analysis.scaling import strong_scaling as scaling

    rows = data.rows("inference")
    written = []
    for page, part in pages(rows, PAGE_KEYS):
        metrics = [m for m in SCALING_METRICS if m in part.columns and part[m].notna().any()]
        tables = {m: scaling(part, m) for m in metrics}
        if not any(len(t) and t["world_size"].nunique() > 1 for t in tables.values()):
            continue
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
        points = []
        for ax, metric in zip(axes[0], metrics, strict=True):
            table = tables[metric]
            label_keys = [k for k in ("series", "allreduce") if k in table.columns and table[k].notna().any()]
            for i, (labels, s) in enumerate(table.groupby(label_keys, sort=True)):
                labels = labels if isinstance(labels, tuple) else (labels,)
                label = " ".join(str(v) for v in labels)
                s = s.sort_values("world_size")
                style = "--" if "nvrar" in labels else "-"
                _median_series(ax, s, metric, label, i, style, color_for(str(labels[0]), i))
                points.append(s.assign(label=label))
            _gpus_panel(ax, table, metric)
        axes[0][-1].legend(title="scheme / all-reduce", bbox_to_anchor=(1.02, 1), loc="upper left")
        fig.suptitle(page_title("Strong scaling", page))
        fig.tight_layout()
        written.append(
            save_figure(
                fig, pd.concat(points, ignore_index=True), out_dir, slug("strong_scaling", *page.values())
            )
        )
    return written


@figure(
    "scaling_efficiency", Needs(kind="inference", columns=("world_size",), any_columns=("e2e_ms", "tbt_ms"))
)
def scaling_efficiency(data: FigureData, out_dir: Path) -> list[dict[str, Path]]:
    """Speedup and parallel efficiency of E2E latency against GPU count, per scheme (ideal dashed)."""
    import matplotlib.pyplot as plt

    from analysis.scaling import strong_scaling as scaling

    rows = data.rows("inference")
    metric = "e2e_ms" if "e2e_ms" in rows.columns and rows["e2e_ms"].notna().any() else "tbt_ms"
    written = []
    for page, part in pages(rows, PAGE_KEYS):
        table = scaling(part, metric)
        if table.empty or table["world_size"].nunique() < 2:
            continue
        fig, (ax_s, ax_e) = plt.subplots(1, 2, figsize=(8.6, 3.8))
        label_keys = [k for k in ("series", "allreduce") if k in table.columns and table[k].notna().any()]
        table = table.assign(label=table[label_keys].astype(str).agg(" ".join, axis=1))
        for i, (label, s) in enumerate(table.groupby("label", sort=True)):
            s = s.sort_values("world_size")
            style = "--" if "nvrar" in label else "-"
            kw = dict(
                marker=marker_for(i), linestyle=style, color=color_for(label.split()[0], i), label=label
            )
            ax_s.plot(s["world_size"], s["speedup"], **kw)
            ax_e.plot(s["world_size"], 100 * s["efficiency"], **kw)
        gpus = sorted(table["world_size"].unique())
        base = gpus[0]
        ax_s.plot(gpus, [g / base for g in gpus], color="0.5", linestyle=":", label="ideal")
        ax_e.axhline(100, color="0.5", linestyle=":")
        for ax in (ax_s, ax_e):
            gpu_axis(ax, gpus)
            ax.set_xlabel("GPUs")
        log_axis(ax_s, base=2)
        ax_s.set_ylabel(f"speedup ({metric.removesuffix('_ms').upper()}, vs smallest run)")
        ax_e.set_ylabel("parallel efficiency (%)")
        ax_e.set_ylim(0, 110)
        ax_s.legend()
        fig.suptitle(page_title("Speedup and parallel efficiency", page))
        fig.tight_layout()
        cols = [
            c
            for c in table.columns
            if c in ("label", "world_size", "base_gpus", "speedup", "efficiency", f"{metric}_median")
        ]
        written.append(save_figure(fig, table[cols], out_dir, slug("scaling_efficiency", *page.values())))
    return written


# -- breakdowns -----------------------------------------------------------------------------------------


def _breakdown_figure(data: FigureData, out_dir: Path, by: str, name: str) -> list[dict[str, Path]]:
    import matplotlib.pyplot as plt
    import numpy as np

    from analysis.breakdown import long_breakdown, scopes, with_config
    from analysis.scaling import with_scheme

    runs = with_scheme(data.rows("inference"))
    written = []
    timers = data.dataset.timers
    for scope in scopes(timers, by):
        parts = long_breakdown(timers, scope, by)
        if parts.empty:
            continue
        parts = with_config(parts, runs).dropna(subset=["world_size"])
        for page, part in pages(parts, PAGE_KEYS):
            keys = [k for k in ("series", "allreduce") if k in part.columns and part[k].notna().any()]
            med = (
                part.groupby(keys + ["world_size", "component"], dropna=False)
                .agg(time_ms=("time_ms", "median"), share=("share", "median"))
                .reset_index()
            )
            configs = med[keys + ["world_size"]].drop_duplicates().sort_values(keys + ["world_size"])
            labels = [
                " ".join([*(str(v) for v in row[:-1]), f"{int(row[-1])} GPUs"])
                for row in configs.itertuples(index=False)
            ]
            comps = list(med.groupby("component")["time_ms"].sum().sort_values(ascending=False).index)
            if "other" in comps:
                comps.remove("other")
                comps.append("other")
            fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(labels) + 2.5), 4.2))
            bottom = np.zeros(len(configs))
            idx = {tuple(r): i for i, r in enumerate(configs.itertuples(index=False))}
            for j, comp in enumerate(comps):
                vals = np.zeros(len(configs))
                for row in med[med["component"] == comp].itertuples(index=False):
                    key = tuple(getattr(row, k) for k in keys) + (row.world_size,)
                    if key in idx:
                        vals[idx[key]] = row.time_ms
                ax.bar(
                    range(len(configs)),
                    vals,
                    bottom=bottom,
                    label=comp,
                    color=color_for(comp, j),
                    edgecolor="white",
                    linewidth=0.4,
                )
                bottom += vals
            ax.set_xticks(range(len(configs)), labels, rotation=60, ha="right", fontsize=7.5)
            ax.set_ylabel(f"{scope.rsplit('/', 1)[-1]} time (ms)")
            ax.grid(axis="x", visible=False)
            ax.legend(title="component", loc="upper right")
            what = "compute / communication / other" if by == "type" else "timer regions"
            fig.suptitle(page_title(f"Breakdown of {scope}: {what}", page))
            fig.tight_layout()
            written.append(
                save_figure(fig, med, out_dir, slug(name, scope.replace("/", "."), *page.values()))
            )
    return written


@figure("breakdown", Needs(kind="inference", timers=True))
def breakdown(data: FigureData, out_dir: Path) -> list[dict[str, Path]]:
    """Time breakdown (compute / communication / other) per configuration, stacked bars per scope."""
    return _breakdown_figure(data, out_dir, "type", "breakdown")


@figure("breakdown_regions", Needs(kind="inference", timers=True))
def breakdown_regions(data: FigureData, out_dir: Path) -> list[dict[str, Path]]:
    """Time per timer region (all-reduce, matmul, attention, ...) per configuration, stacked bars."""
    return _breakdown_figure(data, out_dir, "name", "breakdown_regions")


@figure("e2e_nvrar_vs_nccl", Needs(kind="inference", columns=("allreduce", "world_size", "e2e_ms")))
def e2e_nvrar_vs_nccl(data: FigureData, out_dir: Path) -> list[dict[str, Path]]:
    """End-to-end batch latency with NVRAR against NCCL per GPU count, speedup written on the bars."""
    import matplotlib.pyplot as plt
    import numpy as np

    from analysis.scaling import with_scheme
    from analysis.speedup import e2e_speedup

    rows = with_scheme(data.rows("inference"))
    table = e2e_speedup(rows)
    if table.empty:
        raise SkipFigure("no configuration measured with both allreduce=nccl and allreduce=nvrar")
    table = with_scheme(table)
    written = []
    for page, part in pages(table, PAGE_KEYS):
        part = part.sort_values(["series", "world_size"])
        labels = [f"{s}\n{int(g)} GPUs" for s, g in zip(part["series"], part["world_size"], strict=True)]
        x = np.arange(len(part))
        fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(part) + 2), 4.0))
        ax.bar(x - 0.2, part["nccl_ms"], 0.4, label="NCCL", color=color_for("nccl"))
        ax.bar(x + 0.2, part["nvrar_ms"], 0.4, label="NVRAR", color=color_for("nvrar"))
        for xi, top, sp in zip(
            x, np.maximum(part["nccl_ms"], part["nvrar_ms"]), part["speedup"], strict=True
        ):
            ax.annotate(
                f"{sp:.2f}×", (xi, top), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8
            )
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylabel("E2E batch latency (ms)")
        ax.grid(axis="x", visible=False)
        ax.legend()
        fig.suptitle(page_title("End-to-end latency: NVRAR vs NCCL", page))
        fig.tight_layout()
        written.append(save_figure(fig, part, out_dir, slug("e2e_nvrar_vs_nccl", *page.values())))
    return written


# -- interconnect comparison ---------------------------------------------------------------------------


@figure(
    "interconnect_inference",
    Needs(kind="inference", columns=("world_size",), any_columns=("e2e_ms", "tbt_ms"), systems=2),
)
def interconnect_inference(data: FigureData, out_dir: Path) -> list[dict[str, Path]]:
    """E2E latency and TBT against nodes per system: colour = scheme and all-reduce, line style = system."""
    import matplotlib.pyplot as plt

    from analysis.compare import system_label
    from analysis.dataset import summarize
    from analysis.scaling import with_scheme

    rows = with_scheme(data.rows("inference"))
    rows = rows.assign(system_label=system_label(rows))
    metrics = [m for m in ("e2e_ms", "tbt_ms") if m in rows.columns and rows[m].notna().any()]
    series_keys = [k for k in ("series", "allreduce", "model") if k in rows.columns and rows[k].notna().any()]
    keys = ["system_label", *series_keys, "nodes"]
    table = summarize(rows, keys, metrics)
    table["label"] = table[series_keys].astype(str).agg(" ".join, axis=1) if series_keys else ""
    systems = sorted(table["system_label"].unique())
    series = sorted(table["label"].unique())
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.4 * len(metrics) + 2.6, 3.9), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for (sys_label, label), s in table.groupby(["system_label", "label"], sort=True):
            s = s.sort_values("nodes")
            i, j = systems.index(sys_label), series.index(label)
            ax.plot(
                s["nodes"],
                s[f"{metric}_median"],
                marker=marker_for(i),
                color=color_for("", j),
                linestyle=styles[i % len(styles)],
                label=f"{label} — {sys_label}",
            )
        gpu_axis(ax, table["nodes"])
        log_axis(ax)
        ax.set_xlabel("nodes")
        ax.set_ylabel(METRIC_LABELS[metric])
    axes[0][-1].legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left", title="series — system")
    fig.suptitle("Inference latency by interconnect")
    fig.tight_layout()
    return [save_figure(fig, table, out_dir, "interconnect_inference")]


# -- engines side by side -------------------------------------------------------------------------------

ENGINE_METRICS = ("ttft_ms", "tbt_ms", "e2e_ms", "tokens_per_s")


@figure(
    "engines",
    Needs(kind="inference", columns=("engine", "world_size"), any_columns=ENGINE_METRICS),
)
def engines(data: FigureData, out_dir: Path) -> list[dict[str, Path]]:
    """The inference engines of one sweep side by side: TTFT, TBT, E2E and throughput against GPU
    count, one line per engine and parallel scheme (median, IQR)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from analysis.dataset import summarize
    from analysis.scaling import with_scheme

    rows = with_scheme(data.rows("inference"))
    if rows["engine"].nunique(dropna=True) < 2:
        raise SkipFigure("needs runs of 2 engines, the data has 1")
    written = []
    for page, part in pages(rows, PAGE_KEYS):
        metrics = [m for m in ENGINE_METRICS if m in part.columns and part[m].notna().any()]
        table = summarize(part, ["engine", "series", "world_size"], metrics)
        if table["engine"].nunique() < 2:
            continue
        engines_ = sorted(table["engine"].astype(str).unique())
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.0 * len(metrics) + 1.6, 3.8), squeeze=False)
        for ax, metric in zip(axes[0], metrics, strict=True):
            for (engine, series), s in table.groupby(["engine", "series"], sort=True):
                i = engines_.index(str(engine))
                style = ("-", "--", ":", "-.")[i % 4]
                _median_series(
                    ax,
                    s.sort_values("world_size"),
                    metric,
                    f"{engine} {series}",
                    i,
                    style,
                    color_for(str(series), i),
                )
            _gpus_panel(ax, table, metric)
        axes[0][-1].legend(title="engine, scheme", bbox_to_anchor=(1.02, 1), loc="upper left")
        fig.suptitle(page_title("Engines side by side", page))
        fig.tight_layout()
        written.append(save_figure(fig, pd.DataFrame(table), out_dir, slug("engines", *page.values())))
    return written

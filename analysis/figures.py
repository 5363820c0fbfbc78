"""The study's figures: one function each, registered with what it needs (see analysis.registry).

Every figure shows medians over repeats with the interquartile range as error bars or bands, uses
log axes where the quantity spans decades (message sizes, latencies) and log2 GPU counts, and is
written with the CSV of exactly the points it plots. Other modules register figures with the same
decorator: `from analysis.figures import figure, Needs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from analysis.registry import FigureData, Needs, SkipFigure, figure
from analysis.style import color_for, marker_for, save_figure, size_axis
from study.results import SAMPLE_DISTINCTIONS
from study.units import human_size

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
MAX_ANNOTATED_CELLS = 160
MAX_TICKS = 12


def _thin(positions) -> list[int]:
    """At most MAX_TICKS evenly spaced tick positions (every k-th), so long size axes stay legible."""
    positions = list(positions)
    step = max(1, -(-len(positions) // MAX_TICKS))
    return positions[::step]


def _slug(*parts: object) -> str:
    text = "-".join(str(p) for p in parts if p is not None and str(p) != "" and p == p)
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-").lower()


def _gpu_axis(ax: Axes, gpus) -> None:
    import matplotlib.ticker as mticker

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(mticker.FixedLocator(sorted(set(int(g) for g in gpus))))
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{int(v)}"))
    ax.xaxis.set_minor_locator(mticker.NullLocator())


def _log(ax: Axes, axis: str = "y", base: float = 10) -> None:
    """A log axis labelled with plain numbers (1, 2, 5, 10, ...) rather than mathtext powers.

    Mathtext tick labels cost most of a figure's drawing time, and plain numbers read faster.
    """
    import matplotlib.ticker as mticker

    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log", base=base)
    subs = (1.0, 2.0, 5.0) if base == 10 else (1.0,)
    target.set_major_locator(mticker.LogLocator(base=base, subs=subs))
    target.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    # No minor ticks: with 1-2-5 majors they add nothing, and every tick is an artist to lay out and draw.
    target.set_minor_locator(mticker.NullLocator())


def _size_axis(ax: Axes, axis: str = "x") -> None:
    size_axis(ax, axis, most=MAX_TICKS)


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
    _gpu_axis(ax, table["world_size"])
    _log(ax)
    ax.set_xlabel("GPUs")
    ax.set_ylabel(METRIC_LABELS[metric])


def _pages(df: pd.DataFrame, keys: list[str]):
    """Split rows into one figure per combination of the varying `keys` (model, system, ...)."""
    varying = [k for k in keys if k in df.columns and df[k].nunique(dropna=True) > 1]
    if not varying:
        yield {}, df
        return
    for values, part in df.groupby(varying, dropna=False, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        yield dict(zip(varying, values, strict=True)), part


def _in_place(value: object) -> bool:
    """A placement cell as a bool: parquet gives booleans, CSV the words True / False."""
    return str(value).strip().lower() in ("true", "1")


def _page_words(page: dict) -> dict[str, str]:
    """A page's values as a title shows them: the placement and the statistic in words."""
    words = {}
    for key, value in page.items():
        if key == "in_place" and value == value:
            words[key] = "in-place" if _in_place(value) else "out-of-place"
        elif key == "statistic" and isinstance(value, str):
            words[key] = f"{value} over ranks"
        else:
            words[key] = f"{key}={value}"
    return words


def _title(base: str, page: dict) -> str:
    extra = ", ".join(_page_words(page).values())
    return f"{base} ({extra})" if extra else base


def _page_slug(name: str, page: dict) -> str:
    """A file name per page; the placement reads `in-place` / `out-of-place`, not true / false."""
    values = [
        ("in-place" if _in_place(v) else "out-of-place") if k == "in_place" and v == v else v
        for k, v in page.items()
    ]
    return _slug(name, *values)


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
    for page, part in _pages(rows, PAGE_KEYS):
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
        fig.suptitle(_title("Strong scaling", page))
        fig.tight_layout()
        written.append(
            save_figure(
                fig, pd.concat(points, ignore_index=True), out_dir, _slug("strong_scaling", *page.values())
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
    for page, part in _pages(rows, PAGE_KEYS):
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
            _gpu_axis(ax, gpus)
            ax.set_xlabel("GPUs")
        _log(ax_s, base=2)
        ax_s.set_ylabel(f"speedup ({metric.removesuffix('_ms').upper()}, vs smallest run)")
        ax_e.set_ylabel("parallel efficiency (%)")
        ax_e.set_ylim(0, 110)
        ax_s.legend()
        fig.suptitle(_title("Speedup and parallel efficiency", page))
        fig.tight_layout()
        cols = [
            c
            for c in table.columns
            if c in ("label", "world_size", "base_gpus", "speedup", "efficiency", f"{metric}_median")
        ]
        written.append(save_figure(fig, table[cols], out_dir, _slug("scaling_efficiency", *page.values())))
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
        for page, part in _pages(parts, PAGE_KEYS):
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
            fig.suptitle(_title(f"Breakdown of {scope}: {what}", page))
            fig.tight_layout()
            written.append(
                save_figure(fig, med, out_dir, _slug(name, scope.replace("/", "."), *page.values()))
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


# -- collectives ----------------------------------------------------------------------------------------


def _scale(part: pd.DataFrame) -> tuple[str, str]:
    """Label rows by node count where that identifies the topology, else by GPU count."""
    pairs = part[["nodes", "world_size"]].drop_duplicates()
    if pairs["nodes"].is_unique:
        return "nodes", "nodes"
    return "world_size", "GPUs"


def _latencies(data: FigureData) -> pd.DataFrame:
    from analysis.speedup import latency_table

    return data.cached("latency_table", lambda: latency_table(data.rows("collective")))


def _speedups(data: FigureData) -> pd.DataFrame:
    from analysis.speedup import speedup_table

    return data.cached(
        "speedup_table", lambda: speedup_table(data.rows("collective"), latencies=_latencies(data))
    )


# One figure per value of each of these that varies: in-place and out-of-place latencies, or latencies
# reduced over ranks by different statistics (study.results SAMPLE_DISTINCTIONS), are never drawn or
# paired as one series.
COLL_PAGE_KEYS = ["system", "dtype", "graphs", *SAMPLE_DISTINCTIONS, "experiment"]
INTERCONNECT_PAGE_KEYS = ["dtype", "graphs", *SAMPLE_DISTINCTIONS]


@figure("allreduce_latency", Needs(kind="collective", columns=("algorithm", "size_bytes", "latency_us")))
def allreduce_latency(data: FigureData, out_dir: Path) -> list[dict[str, Path]]:
    """All-reduce latency against message size, per algorithm, one panel per node count (log-log)."""
    import matplotlib.pyplot as plt

    table = _latencies(data)
    written = []
    for page, part in _pages(table, COLL_PAGE_KEYS):
        # One panel per topology: the node count alone is not enough when GPUs per node vary.
        topologies = sorted(set(zip(part["nodes"], part["world_size"], strict=True)))
        cols = min(len(topologies), 4)
        nrows = -(-len(topologies) // cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 3.3 * nrows), squeeze=False, sharey=True)
        for ax, (n, gpus) in zip(axes.flat, topologies, strict=False):
            sub = part[(part["nodes"] == n) & (part["world_size"] == gpus)]
            for i, (alg, s) in enumerate(sub.groupby("algorithm", sort=True)):
                s = s.sort_values("size_bytes")
                ax.plot(
                    s["size_bytes"],
                    s["latency_us_median"],
                    marker=marker_for(i),
                    label=alg,
                    color=color_for(alg, i),
                )
                ax.fill_between(
                    s["size_bytes"],
                    s["latency_us_q1"],
                    s["latency_us_q3"],
                    alpha=0.2,
                    color=color_for(alg, i),
                    linewidth=0,
                )
            _size_axis(ax)
            _log(ax)
            ax.set_title(f"{int(n)} node{'s' if n != 1 else ''} ({int(gpus)} GPUs)")
            ax.set_xlabel("message size")
            ax.tick_params(axis="x", labelrotation=45)
        for ax in axes[:, 0]:
            ax.set_ylabel("latency (µs)")
        for ax in list(axes.flat)[len(topologies) :]:
            ax.set_visible(False)
        # One legend for every panel's series: a series may appear on some panels only.
        labelled: dict[str, object] = {}
        for ax in axes.flat:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                labelled.setdefault(label, handle)
        axes.flat[min(cols, len(topologies)) - 1].legend(
            list(labelled.values()),
            list(labelled),
            title="algorithm",
            bbox_to_anchor=(1.02, 1),
            loc="upper left",
        )
        fig.suptitle(_title("All-reduce latency", page))
        fig.tight_layout()
        written.append(save_figure(fig, part, out_dir, _page_slug("allreduce_latency", page)))
    return written


@figure("speedup_heatmap", Needs(kind="collective", columns=("algorithm", "size_bytes", "latency_us")))
def speedup_heatmap(data: FigureData, out_dir: Path) -> list[dict[str, Path]]:
    """NVRAR over NCCL speedup as a heat map of message size × node count (above 1: NVRAR faster)."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm

    table = _speedups(data)
    if table.empty:
        raise SkipFigure("no message size measured with both nccl and nvrar")
    written = []
    for page, part in _pages(table, COLL_PAGE_KEYS):
        scale, scale_label = _scale(part)
        grid = part.pivot_table(index=scale, columns="size_bytes", values="speedup", aggfunc="median")
        values = np.log2(grid.to_numpy(float))
        limit = max(1.0, float(np.nanmax(np.abs(values))))
        fig, ax = plt.subplots(
            figsize=(min(14.0, 0.75 * grid.shape[1] + 2.5), min(9.0, 0.55 * grid.shape[0] + 1.8))
        )
        im = ax.imshow(
            values, cmap="RdBu", norm=TwoSlopeNorm(0.0, -limit, limit), aspect="auto", origin="lower"
        )
        annotate = grid.size <= MAX_ANNOTATED_CELLS
        for (r, c), v in np.ndenumerate(grid.to_numpy(float)):
            if annotate and np.isfinite(v):
                ax.text(
                    c,
                    r,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color="white" if abs(np.log2(v)) > 0.6 * limit else "black",
                )
        cols = _thin(range(grid.shape[1]))
        ax.set_xticks(cols, [human_size(grid.columns[c]) for c in cols], rotation=45, ha="right")
        ax.set_yticks(range(grid.shape[0]), [str(int(n)) for n in grid.index])
        ax.set_xlabel("message size")
        ax.set_ylabel(scale_label)
        ax.grid(False)
        bar = fig.colorbar(im, ax=ax)
        ticks = np.arange(-np.floor(limit), np.floor(limit) + 1)
        bar.set_ticks(ticks, labels=[f"{2.0**t:g}×" for t in ticks])
        bar.set_label("speedup NVRAR / NCCL (log scale)")
        fig.suptitle(_title("NVRAR speedup over NCCL", page))
        fig.tight_layout()
        written.append(save_figure(fig, part, out_dir, _page_slug("speedup_heatmap", page)))
    return written


@figure("speedup_vs_size", Needs(kind="collective", columns=("algorithm", "size_bytes", "latency_us")))
def speedup_vs_size(data: FigureData, out_dir: Path) -> list[dict[str, Path]]:
    """NVRAR over NCCL speedup against message size per node count, with the crossover sizes marked."""
    import matplotlib.pyplot as plt

    from analysis.speedup import crossovers

    table = _speedups(data)
    if table.empty:
        raise SkipFigure("no message size measured with both nccl and nvrar")
    cross = crossovers(table)
    written = []
    for page, part in _pages(table, COLL_PAGE_KEYS):
        fig, ax = plt.subplots()
        scale, scale_label = _scale(part)
        for i, (n, s) in enumerate(part.groupby(scale, sort=True)):
            s = s.sort_values("size_bytes")
            ax.plot(s["size_bytes"], s["speedup"], marker=marker_for(i), label=f"{int(n)}")
            if not cross.empty:
                mask = cross[scale] == n
                for k, v in page.items():
                    mask &= cross[k] == v
                for x in cross.loc[mask, "crossover_bytes"]:
                    ax.plot([x], [1.0], marker="|", markersize=14, color=ax.lines[-1].get_color())
        ax.axhline(1.0, color="0.4", linewidth=1, linestyle=":")
        _size_axis(ax)
        _log(ax, base=2)
        ax.set_xlabel("message size")
        ax.set_ylabel("speedup NVRAR / NCCL")
        ax.legend(title=f"{scale_label}; | = crossover")
        fig.suptitle(_title("NVRAR speedup over NCCL", page))
        fig.tight_layout()
        written.append(save_figure(fig, part, out_dir, _page_slug("speedup_vs_size", page)))
    return written


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
    for page, part in _pages(table, PAGE_KEYS):
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
        fig.suptitle(_title("End-to-end latency: NVRAR vs NCCL", page))
        fig.tight_layout()
        written.append(save_figure(fig, part, out_dir, _slug("e2e_nvrar_vs_nccl", *page.values())))
    return written


@figure("nccl_algorithm_map", Needs(nccl_log=True))
def nccl_algorithm_map(data: FigureData, out_dir: Path) -> list[dict[str, Path]]:
    """NCCL's all-reduce algorithm/protocol choice over message size × GPU count, from its INFO logs."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from analysis.nccl_log import algorithm_map
    from analysis.style import PALETTE

    amap = algorithm_map(data.nccl)
    if amap.empty:
        raise SkipFigure("no all-reduce tuning decisions with a size and a rank count")
    sizes = sorted(amap["size_bytes"].unique())
    ranks = sorted(amap["nranks"].unique())
    choices = sorted(amap["choice"].unique())
    grid = np.full((len(ranks), len(sizes)), np.nan)
    for row in amap.itertuples(index=False):
        grid[ranks.index(row.nranks), sizes.index(row.size_bytes)] = choices.index(row.choice)
    cmap = ListedColormap([PALETTE[i % len(PALETTE)] for i in range(len(choices))])
    fig, ax = plt.subplots(
        figsize=(min(14.0, max(5.0, 0.5 * len(sizes) + 2.5)), min(9.0, max(2.6, 0.45 * len(ranks) + 1.8)))
    )
    ax.imshow(
        np.ma.masked_invalid(grid),
        cmap=cmap,
        vmin=-0.5,
        vmax=len(choices) - 0.5,
        aspect="auto",
        origin="lower",
    )
    annotate = grid.size <= MAX_ANNOTATED_CELLS
    for (r, c), v in np.ndenumerate(grid):
        if annotate and np.isfinite(v):
            ax.text(
                c,
                r,
                choices[int(v)].replace("/", "\n"),
                ha="center",
                va="center",
                fontsize=6.5,
                color="white",
            )
    ticks = _thin(range(len(sizes)))
    ax.set_xticks(ticks, [human_size(sizes[i]) for i in ticks], rotation=45, ha="right")
    ax.set_yticks(range(len(ranks)), [str(int(r)) for r in ranks])
    ax.set_xlabel("message size")
    ax.set_ylabel("GPUs (communicator ranks)")
    ax.grid(False)
    ax.legend(
        handles=[Patch(color=cmap(i), label=c) for i, c in enumerate(choices)],
        title="algorithm/protocol",
        bbox_to_anchor=(1.02, 1),
        loc="upper left",
    )
    fig.suptitle("NCCL all-reduce algorithm selection")
    fig.tight_layout()
    return [save_figure(fig, amap, out_dir, "nccl_algorithm_map")]


# -- interconnect comparison ---------------------------------------------------------------------------


@figure(
    "interconnect_allreduce",
    Needs(kind="collective", columns=("algorithm", "size_bytes", "latency_us"), systems=2),
)
def interconnect_allreduce(data: FigureData, out_dir: Path) -> list[dict[str, Path]]:
    """All-reduce latency against size on each system side by side, one panel per system, same axes."""
    import matplotlib.pyplot as plt

    from analysis.compare import system_label

    table = _latencies(data)
    table = table.assign(system_label=system_label(table))
    written = []
    # Systems side by side on one page; what must not share a line (graphs, placement, statistic) pages.
    for page, part in _pages(table, INTERCONNECT_PAGE_KEYS):
        labels = sorted(part["system_label"].unique())
        algorithms = sorted(part["algorithm"].unique())
        fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels), 3.8), sharey=True, squeeze=False)
        for ax, label in zip(axes[0], labels, strict=True):
            sub = part[part["system_label"] == label]
            for _i, ((alg, n), s) in enumerate(sub.groupby(["algorithm", "nodes"], sort=True)):
                s = s.sort_values("size_bytes")
                j = algorithms.index(alg)
                ax.plot(
                    s["size_bytes"],
                    s["latency_us_median"],
                    color=color_for(alg, j),
                    marker=marker_for(sorted(sub["nodes"].unique()).index(n)),
                    label=f"{alg}, {int(n)} nodes",
                    alpha=0.9,
                )
            _size_axis(ax)
            _log(ax)
            ax.set_title(label)
            ax.set_xlabel("message size")
            ax.tick_params(axis="x", labelrotation=45)
        handles = {}
        for ax in axes[0]:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(label, handle)
        axes[0][-1].legend(
            handles.values(), handles.keys(), fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left"
        )
        axes[0][0].set_ylabel("latency (µs)")
        fig.suptitle(_title("All-reduce latency by interconnect", page))
        fig.tight_layout()
        written.append(save_figure(fig, part, out_dir, _page_slug("interconnect_allreduce", page)))
    return written


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
        _gpu_axis(ax, table["nodes"])
        _log(ax)
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
    for page, part in _pages(rows, PAGE_KEYS):
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
        fig.suptitle(_title("Engines side by side", page))
        fig.tight_layout()
        written.append(save_figure(fig, pd.DataFrame(table), out_dir, _slug("engines", *page.values())))
    return written

"""The collective figures: all-reduce latency against size, NVRAR's speed-up over NCCL (heat map and
against size), NCCL's algorithm choices from its logs, and one interconnect against another. The
helpers they share with the inference figures come from analysis.figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from analysis.pages import page_slug, page_title, pages
from analysis.registry import FigureData, Needs, SkipFigure, figure
from analysis.style import color_for, log_axis, marker_for, save_figure, size_axis, thin_ticks
from study.results import SAMPLE_DISTINCTIONS
from study.units import human_size

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

# A heat map writes its numbers into its cells up to this many cells.
MAX_ANNOTATED_CELLS = 160


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
    for page, part in pages(table, COLL_PAGE_KEYS):
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
            size_axis(ax)
            log_axis(ax)
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
        fig.suptitle(page_title("All-reduce latency", page))
        fig.tight_layout()
        written.append(save_figure(fig, part, out_dir, page_slug("allreduce_latency", page)))
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
    for page, part in pages(table, COLL_PAGE_KEYS):
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
        cols = thin_ticks(range(grid.shape[1]))
        ax.set_xticks(cols, [human_size(grid.columns[c]) for c in cols], rotation=45, ha="right")
        ax.set_yticks(range(grid.shape[0]), [str(int(n)) for n in grid.index])
        ax.set_xlabel("message size")
        ax.set_ylabel(scale_label)
        ax.grid(False)
        bar = fig.colorbar(im, ax=ax)
        ticks = np.arange(-np.floor(limit), np.floor(limit) + 1)
        bar.set_ticks(ticks, labels=[f"{2.0**t:g}×" for t in ticks])
        bar.set_label("speedup NVRAR / NCCL (log scale)")
        fig.suptitle(page_title("NVRAR speedup over NCCL", page))
        fig.tight_layout()
        written.append(save_figure(fig, part, out_dir, page_slug("speedup_heatmap", page)))
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
    for page, part in pages(table, COLL_PAGE_KEYS):
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
        size_axis(ax)
        log_axis(ax, base=2)
        ax.set_xlabel("message size")
        ax.set_ylabel("speedup NVRAR / NCCL")
        ax.legend(title=f"{scale_label}; | = crossover")
        fig.suptitle(page_title("NVRAR speedup over NCCL", page))
        fig.tight_layout()
        written.append(save_figure(fig, part, out_dir, page_slug("speedup_vs_size", page)))
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
    ticks = thin_ticks(range(len(sizes)))
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
    for page, part in pages(table, INTERCONNECT_PAGE_KEYS):
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
            size_axis(ax)
            log_axis(ax)
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
        fig.suptitle(page_title("All-reduce latency by interconnect", page))
        fig.tight_layout()
        written.append(save_figure(fig, part, out_dir, page_slug("interconnect_allreduce", page)))
    return written

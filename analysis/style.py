"""One look for every figure of the study, and one way to write a figure to disk.

Every figure module calls `apply_style()` before drawing and `save_figure()` to write: the PNG (for
the report), the PDF (for papers) and the CSV of the plotted points (so every number on a figure can
be checked without the figure). The three files are written atomically, so a reader never sees a
half-written figure.
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.results import atomic_write
from study.units import format_size, human_size

if TYPE_CHECKING:  # pragma: no cover - only for type checkers
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Colour-blind-safe palette (Okabe-Ito), in a fixed order so a series keeps its colour across figures.
PALETTE: tuple[str, ...] = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#F0E442",
    "#000000",
)
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*")

# Fixed colours for the things that recur across figures, so "nccl" is the same blue everywhere.
SERIES_COLORS: dict[str, str] = {
    "nccl": "#0072B2",
    "nvrar": "#D55E00",
    "one-shot": "#009E73",
    "two-shot": "#CC79A7",
    "gloo": "#E69F00",
    "reference": "#56B4E9",
    "nccl-ring": "#56B4E9",
    "nccl-tree": "#000000",
    "reference-ring": "#F0E442",
    "reference-rd": "#882255",
    "reference-rabenseifner": "#44AA99",
    "reference-tree": "#999933",
    "compute": "#0072B2",
    "comm": "#D55E00",
    "communication": "#D55E00",
    "other": "#BBBBBB",
}

DPI = 150

_RC: dict[str, Any] = {
    "figure.figsize": (6.4, 4.2),
    "figure.dpi": 100,
    "savefig.dpi": DPI,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "lines.markersize": 5,
    # Type 3 fonts (matplotlib's default): embedding TrueType (42) subsets fonts through fontTools, which
    # took most of the time of writing a PDF.
    "pdf.fonttype": 3,
    "pdf.compression": 6,
}


def apply_style() -> None:
    """Select the non-interactive Agg backend and set the study's rc parameters."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(_RC)
    plt.rcParams["axes.prop_cycle"] = matplotlib.cycler(color=list(PALETTE))


def color_for(name: str, index: int = 0) -> str:
    """The colour of a named series (algorithm, component), else the palette colour at `index`."""
    return SERIES_COLORS.get(str(name).lower(), PALETTE[index % len(PALETTE)])


def marker_for(index: int) -> str:
    return MARKERS[index % len(MARKERS)]


# A label every figure written while it is set carries in its title and corner ("predicted by the
# cost model"): `study model figures` sets it around the figures it draws from predictions.
FIGURE_LABEL: contextvars.ContextVar[str] = contextvars.ContextVar("figure_label", default="")


def size_axis(ax: Any, axis: str = "x", ticks: Any = None, most: int = 12) -> None:
    """A log2 message-size axis. With `ticks` (the sizes plotted), ticks at up to `most` of them,
    spelt exactly (64KiB); else powers of two, rounded (128 KiB). The one size axis of every figure."""
    import matplotlib.ticker as mticker
    import numpy as np

    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log", base=2)
    if ticks is not None:
        values = sorted({int(v) for v in ticks})
        if len(values) > most:
            values = [
                values[i] for i in np.unique(np.round(np.linspace(0, len(values) - 1, most)).astype(int))
            ]
        (ax.set_xticks if axis == "x" else ax.set_yticks)(values, [format_size(v) for v in values])
    else:
        target.set_major_locator(mticker.LogLocator(base=2, numticks=most))
        target.set_major_formatter(mticker.FuncFormatter(lambda v, _: human_size(v).replace(" ", "\u2009")))
    target.set_minor_locator(mticker.NullLocator())


def _label(fig: Figure) -> None:
    label = FIGURE_LABEL.get()
    if not label:
        return
    title = fig._suptitle.get_text() if fig._suptitle is not None else ""
    fig.suptitle(f"{title} — {label}" if title else label)
    fig.text(0.995, 0.005, label.upper(), ha="right", va="bottom", fontsize=7, color="0.45")


def save_figure(
    fig: Figure,
    points_df: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    name: str,
) -> dict[str, Path]:
    """Write `name`.png, `name`.pdf and `name`.csv (the plotted points) into `out_dir`, atomically.

    Closes the figure afterwards (figures are made in loops; open ones leak memory). Returns the
    three paths keyed by "png", "pdf" and "csv".
    """
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / f"{name}.{ext}" for ext in ("png", "pdf", "csv")}
    _label(fig)
    try:
        atomic_write(paths["png"], lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
        atomic_write(paths["pdf"], lambda tmp: fig.savefig(tmp, format="pdf"))
        atomic_write(paths["csv"], lambda tmp: points_df.to_csv(tmp, index=False))
    finally:
        plt.close(fig)
    return paths


# At most this many ticks on an axis of sizes or GPU counts.
MAX_TICKS = 12


def thin_ticks(positions) -> list[int]:
    """At most MAX_TICKS evenly spaced tick positions (every k-th), so long size axes stay legible."""
    positions = list(positions)
    step = max(1, -(-len(positions) // MAX_TICKS))
    return positions[::step]


def gpu_axis(ax: Axes, gpus) -> None:
    import matplotlib.ticker as mticker

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(mticker.FixedLocator(sorted(set(int(g) for g in gpus))))
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{int(v)}"))
    ax.xaxis.set_minor_locator(mticker.NullLocator())


def log_axis(ax: Axes, axis: str = "y", base: float = 10) -> None:
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

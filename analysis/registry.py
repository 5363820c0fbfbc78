"""The figure registry: which figures exist, what data each needs, and writing every one the data supports.

A figure is a function `fn(data: FigureData, out_dir: Path) -> list[dict[str, Path]]` (the paths of
each figure it wrote, from `analysis.style.save_figure`) registered with `@figure(name, needs=...)`.
`Needs` states what the figure reads (a kind of rows, columns, the timers table, NCCL logs, several
systems); `plot_all` checks it first and records why a figure is skipped. A figure function may also
raise `SkipFigure(reason)` when the data is there but cannot make the figure (a single GPU count).

Other modules register figures the same way; the modules listed in `FIGURE_MODULES` are imported
when the registry is first used (a listed module that does not exist yet is left out).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from analysis.dataset import Dataset

FIGURE_MODULES: tuple[str, ...] = (
    "analysis.figures",
    "analysis.figures_collective",
    "analysis.costmodel_plots",
)


class SkipFigure(Exception):
    """The data cannot make this figure; the message says why."""


@dataclass(frozen=True)
class Needs:
    """What a figure reads. Every field that is set must be satisfied by the data."""

    kind: str | None = None  # rows of this kind (collective | inference), status ok
    columns: tuple[str, ...] = ()  # all of these columns, with at least one value
    any_columns: tuple[str, ...] = ()  # at least one of these
    timers: bool = False  # the timers table
    nccl_log: bool = False  # NCCL tuning decisions from the workspace's logs
    systems: int = 1  # at least this many distinct (system, interconnect)

    def describe(self) -> str:
        parts = []
        if self.kind:
            parts.append(f"{self.kind} rows")
        if self.columns:
            parts.append("columns " + ", ".join(self.columns))
        if self.any_columns:
            parts.append("one of " + ", ".join(self.any_columns))
        if self.timers:
            parts.append("the timers table")
        if self.nccl_log:
            parts.append("NCCL_DEBUG=INFO logs with tuning lines")
        if self.systems > 1:
            parts.append(f"{self.systems}+ systems")
        return "; ".join(parts) or "nothing"


@dataclass
class FigureData:
    """Everything a figure may read; the NCCL decisions are parsed on first use."""

    dataset: Dataset
    workspaces: list[Path] = field(default_factory=list)
    _nccl: pd.DataFrame | None = None
    _memo: dict[str, Any] = field(default_factory=dict)

    def rows(self, kind: str | None) -> pd.DataFrame:
        return self.dataset.ok if kind is None else self.dataset.kind(kind)

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """A table several figures share (latencies, speedups), computed once per `study plot`."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def nccl(self) -> pd.DataFrame:
        """NCCL's tuning decisions found in the workspaces' run logs (parsed on first use)."""
        return self.load_nccl()

    def load_nccl(self) -> pd.DataFrame:
        if self._nccl is None:
            import pandas as pd

            from analysis.nccl_log import COLUMNS, workspace_decisions

            parsed = [workspace_decisions(w) for w in self.workspaces]
            frames = [f for f in parsed if not f.empty]
            self._nccl = (
                pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
            )
            self._nccl.attrs["unparsed"] = sum(f.attrs.get("unparsed", 0) for f in parsed)
        return self._nccl


@dataclass(frozen=True)
class FigureSpec:
    name: str
    func: Callable[[FigureData, Path], list[dict[str, Path]]]
    needs: Needs
    description: str


@dataclass
class FigureResult:
    name: str
    description: str
    files: list[dict[str, Path]] = field(default_factory=list)
    skipped: str | None = None


REGISTRY: dict[str, FigureSpec] = {}
_loaded = False


def figure(name: str, needs: Needs | None = None, description: str = "") -> Callable:
    """Register a figure function under `name` (unique) with what it needs."""

    def wrap(func: Callable[[FigureData, Path], list[dict[str, Path]]]):
        if name in REGISTRY and REGISTRY[name].func is not func:
            raise ValueError(f"figure {name!r} is registered twice")
        doc = description or ((func.__doc__ or "").strip().splitlines() or [name])[0]
        REGISTRY[name] = FigureSpec(name, func, needs or Needs(), doc)
        return func

    return wrap


def load_registry(modules: Iterable[str] = FIGURE_MODULES) -> dict[str, FigureSpec]:
    """Import the modules that register figures (once) and return the registry."""
    global _loaded
    if not _loaded:
        for module in modules:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise
        _loaded = True
    return REGISTRY


def unmet(needs: Needs, data: FigureData) -> str | None:
    """Why the data cannot make a figure with these needs, or None when it can."""
    rows = data.rows(needs.kind)
    if needs.kind and rows.empty:
        return f"no successful {needs.kind} runs"
    for col in needs.columns:
        if col not in rows.columns or rows[col].notna().sum() == 0:
            return f"no values in column {col!r}"
    if needs.any_columns and not any(c in rows.columns and rows[c].notna().any() for c in needs.any_columns):
        return "none of the columns " + ", ".join(needs.any_columns)
    if needs.timers and data.dataset.timers.empty:
        return "no timers table (runs without timer trees)"
    if needs.systems > 1:
        found = rows[["system", "interconnect"]].drop_duplicates() if not rows.empty else rows
        if len(found) < needs.systems:
            return f"needs {needs.systems} systems, the data has {len(found)}"
    if needs.nccl_log and data.nccl.empty:
        return "no NCCL tuning lines in the runs' logs (set NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=COLL,TUNING)"
    return None


def _render(name: str, data: FigureData, out: Path) -> FigureResult:
    """Make one registered figure (or say why not); runs in this process or in a worker."""
    from analysis.style import apply_style

    apply_style()
    spec = load_registry()[name]
    result = FigureResult(name=name, description=spec.description)
    reason = unmet(spec.needs, data)
    if reason is not None:
        result.skipped = reason
        return result
    try:
        result.files = spec.func(data, out) or []
        if not result.files:
            result.skipped = "the data has nothing to plot for this figure"
    except SkipFigure as exc:
        result.skipped = str(exc)
    return result


def plot_all(
    data: FigureData, out_dir: str | Path, only: Iterable[str] | None = None, jobs: int = 1
) -> list[FigureResult]:
    """Write every registered figure the data supports into `out_dir`; report the others with a reason.

    With `jobs` > 1 the figures are drawn in that many worker processes (drawing is CPU-bound and
    matplotlib is single-threaded). Workers start from a fork server, not by forking this process,
    because pyarrow's threads make a plain fork unsafe; they see only the figures registered by the
    modules in FIGURE_MODULES.
    """
    registry = load_registry()
    wanted = list(only) if only else list(registry)
    unknown = [n for n in wanted if n not in registry]
    if unknown:
        raise InputError(
            f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(sorted(registry))}", key="--only"
        )
    out = Path(out_dir)
    if jobs <= 1 or len(wanted) <= 1:
        return [_render(name, data, out) for name in wanted]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    data.load_nccl()  # parse the logs once, before the data is sent to the workers
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=min(jobs, len(wanted)), mp_context=context) as pool:
        futures = [pool.submit(_render, name, data, out) for name in wanted]
        return [f.result() for f in futures]

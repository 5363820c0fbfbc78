"""Hatchet and Thicket views of the timer trees: one GraphFrame per run, one Thicket over many runs.

A run's `timers` (docs/results.md) is a Hatchet literal tree, so `GraphFrame.from_literal` reads it
as is; the run's parameters, topology, system and provenance become the GraphFrame's metadata. For
many runs, each GraphFrame is turned into a Thicket with `Thicket.thicketize_graphframe` and the
Thickets are concatenated: building it through `Thicket.from_literal` would leave the metadata table
empty, and grouping by nodes, system or all-reduce needs that table. hatchet and thicket take a second
or more to import, so they are imported here, inside the functions, and only when a tree is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.errors import InputError
from study.results import ResultError, attempt_folders, read_result

if TYPE_CHECKING:  # pragma: no cover
    import hatchet
    import thicket

METRIC_INC = "time (inc)"
STAT_COLUMNS: tuple[str, ...] = ("time (inc)", "time")


def find_results(target: str | os.PathLike[str]) -> list[Path]:
    """The results.json files under a path: the file itself, a run's attempts (latest first), a workspace."""
    path = Path(target)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError("no such results file, run folder or workspace", file=str(path))
    direct = path / "results.json"
    if direct.is_file():
        return [direct]
    attempts = _attempt_results(path)
    if attempts:
        return [attempts[-1]]
    found = []
    for run in sorted((path / "runs").glob("*")) if (path / "runs").is_dir() else []:
        tries = _attempt_results(run)
        if tries:
            found.append(tries[-1])
    if not found:
        raise InputError(
            "no results.json here (expected a results.json, a run folder with attempt-*/ "
            "or a workspace with runs/)",
            file=str(path),
        )
    return found


def _attempt_results(run_dir: Path) -> list[Path]:
    """The results.json of a run's attempts, oldest first (the attempt layout is study.collect's)."""

    return [
        Path(folder, "results.json")
        for _, folder in attempt_folders(run_dir)
        if Path(folder, "results.json").is_file()
    ]


def _read(path: Path) -> dict[str, Any]:

    try:
        return read_result(path)
    except ResultError as exc:
        raise InputError(str(exc)) from exc


def result_metadata(result: dict[str, Any]) -> dict[str, Any]:
    """Flat metadata of a run: identity, parameters, topology and provenance scalars."""
    prov = result.get("provenance") or {}
    meta: dict[str, Any] = {"run_id": result["run_id"], "kind": result["kind"], "status": result["status"]}
    for key, value in (result.get("params") or {}).items():
        meta[key] = value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
    topo = result.get("topology") or {}
    for key in ("nodes", "gpus_per_node", "world_size"):
        if key in topo:
            meta[key] = topo[key]
    for key in ("git_sha", "scheduler_job_id", "start", "end"):
        if prov.get(key) is not None:
            meta[key] = prov[key]
    for key, value in (prov.get("versions") or {}).items():
        meta[f"version_{key}"] = value if isinstance(value, (str, int, float, bool)) else str(value)
    if prov.get("hosts"):
        meta["hosts"] = ",".join(map(str, prov["hosts"]))
    return meta


def graphframe(result: dict[str, Any], extra: dict[str, Any] | None = None) -> hatchet.GraphFrame:
    """The run's timer tree as a Hatchet GraphFrame, with the run's metadata attached."""
    import hatchet as ht

    if not result.get("timers"):
        raise InputError(
            f"run {result.get('run_id')} has no timer tree (its results.json has an empty 'timers')",
            key="timers",
        )
    gf = ht.GraphFrame.from_literal(result["timers"])
    gf.metadata = {**result_metadata(result), **(extra or {})}
    return gf


def graphframe_from_path(target: str | os.PathLike[str]) -> hatchet.GraphFrame:
    """GraphFrame of one run, from its results.json or its run folder (latest attempt)."""
    files = find_results(target)
    if len(files) != 1:
        raise InputError(f"{len(files)} runs here; name one run folder or results.json", file=str(target))
    return graphframe(_read(files[0]))


def tree_text(gf: hatchet.GraphFrame, metric: str = METRIC_INC, depth: int = 10_000) -> str:
    """Hatchet's tree printout of a GraphFrame (without its banner)."""
    return gf.tree(metric_column=metric, depth=depth, render_header=False, precision=3)


def _thicket():
    """Import thicket without the note it prints on stdout about optional plotting packages."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        import thicket
        import thicket.stats  # noqa: F401
    return thicket


def build_thicket(
    results: Iterable[dict[str, Any]],
    system_of: dict[str, dict[str, Any]] | None = None,
) -> thicket.Thicket:
    """One Thicket over many runs (the metadata table holds each run's parameters and topology).

    `system_of` adds columns per run id (system, interconnect) that results.json does not carry.
    """
    th = _thicket()
    parts = []
    for i, result in enumerate(results):
        if not result.get("timers") or result.get("status") != "ok":
            continue
        extra = (system_of or {}).get(result["run_id"], {})
        gf = graphframe(result, extra)
        parts.append(th.Thicket.thicketize_graphframe(gf, f"{result['run_id']}-{i}"))
    if not parts:
        raise InputError("no successful run with a timer tree", key="timers")
    if len(parts) == 1:
        return parts[0]
    return th.Thicket.concat_thickets(parts)


def thicket_from_paths(paths: Sequence[str | os.PathLike[str]]) -> thicket.Thicket:
    """A Thicket of every run under the given results files, run folders or workspaces."""
    results = [_read(f) for p in paths for f in find_results(p)]
    return build_thicket(results, _system_tags(paths))


def _system_tags(paths: Sequence[str | os.PathLike[str]]) -> dict[str, dict[str, Any]]:
    """System and interconnect per run id, from the workspaces' datasets where they exist."""
    import pandas as pd

    tags: dict[str, dict[str, Any]] = {}
    for p in paths:
        folder = Path(p)
        for name in ("dataset.parquet", "dataset.csv"):
            table = folder / name
            if table.is_file():
                df = pd.read_parquet(table) if name.endswith("parquet") else pd.read_csv(table)
                cols = [c for c in ("system", "interconnect") if c in df.columns]
                if cols and "run_id" in df.columns:
                    for row in df.drop_duplicates("run_id")[["run_id", *cols]].itertuples(index=False):
                        tags[str(row[0])] = dict(zip(cols, row[1:], strict=True))
                break
    return tags


def grouped_stats(tk: thicket.Thicket, by: Sequence[str], columns: Sequence[str] = STAT_COLUMNS):
    """Per group of runs (by metadata columns): mean, median, std, min, max of each node's metrics.

    Returns a pandas DataFrame indexed by the group values and the node name.
    """
    import pandas as pd

    missing = [b for b in by if b not in tk.metadata.columns]
    if missing:
        raise InputError(
            f"not in the runs' metadata (have: {', '.join(map(str, tk.metadata.columns))})",
            key=", ".join(missing),
        )
    df = tk.dataframe.reset_index()
    meta = tk.metadata[list(by)].reset_index()
    df = df.merge(meta, on="profile", how="left")
    df["node_name"] = df["node"].map(lambda n: n.frame.get("name"))
    df["node_path"] = df["node"].map(lambda n: "/".join(str(p.frame.get("name")) for p in n.path()))
    cols = [c for c in columns if c in df.columns]
    stats = df.groupby([*by, "node_path"], dropna=False)[cols].agg(
        ["mean", "median", "std", "min", "max", "count"]
    )
    stats.columns = [f"{c} {s}" for c, s in stats.columns]
    return pd.DataFrame(stats)


def thicket_statsframe(tk: thicket.Thicket, columns: Sequence[str] = STAT_COLUMNS):
    """Thicket's own per-node statistics over all runs (mean, median, std), filled into tk.statsframe."""
    import warnings

    th = _thicket()
    cols = [c for c in columns if c in tk.dataframe.columns]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        th.stats.mean(tk, columns=cols)
        th.stats.median(tk, columns=cols)
        th.stats.std(tk, columns=cols)
    return tk.statsframe.dataframe

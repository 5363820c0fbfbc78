"""Where the time goes: compute / communication / other per run, per scope, per timer region.

The timers table has one row per timer node per run (docs/results.md). A node's `type` says what its
exclusive time is: `comm` (collectives, point-to-point), `compute` (kernels) or `region` (a grouping
node, whose exclusive time is "other"). A *scope* is a region of the tree (the whole run, `decode`,
`prefill`, ...): its components are the exclusive times of the nodes under it, and they add up to
the scope's inclusive time, which is the denominator of every share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

COMPONENT_OF_TYPE: dict[str, str] = {"comm": "communication", "compute": "compute", "region": "other"}
RUN_KEYS: tuple[str, ...] = ("workspace", "run_id")


def scopes(timers: pd.DataFrame, by: str = "type") -> list[str]:
    """Region paths worth a breakdown, outermost first.

    By type: regions with compute or comm below them. By name: also regions whose children are
    regions only (generate → prefill / decode), since the split between the children is news too.
    """
    if timers.empty:
        return []
    paths = timers["path"].astype(str)
    regions = paths[timers["type"] == "region"].unique()
    below = paths[timers["type"] != "region"].unique() if by == "type" else paths.unique()
    found = []
    for path in sorted(regions, key=lambda p: (p.count("/"), p)):
        prefix = path + "/"
        if any(other.startswith(prefix) for other in below):
            found.append(path)
    return found


def _under(timers: pd.DataFrame, scope: str) -> pd.DataFrame:
    path = timers["path"].astype(str)
    return timers[(path == scope) | path.str.startswith(scope + "/")]


def scope_breakdown(timers: pd.DataFrame, scope: str, by: str = "type") -> pd.DataFrame:
    """Per run: the scope's inclusive time and each component's exclusive time inside it (ms).

    `by="type"` gives compute / communication / other; `by="name"` gives one component per timer name
    (all nodes of that name under the scope summed, sub-regions by their own exclusive time; the
    scope's own exclusive time is "other").
    Returns one row per run with columns `scope_ms` and `<component>_ms`, and `<component>_share`.
    """
    import pandas as pd

    sub = _under(timers, scope)
    if sub.empty:
        return pd.DataFrame()
    keys = [k for k in RUN_KEYS if k in sub.columns]
    root = sub[sub["path"].astype(str) == scope]
    total = root.groupby(keys, dropna=False)["time_inc_ms"].sum().rename("scope_ms")
    if by == "type":
        component = sub["type"].map(COMPONENT_OF_TYPE)
    else:
        # Every timer name is a component, sub-regions included (their own time); the scope's own
        # exclusive time is "other".
        component = sub["name"].astype(str).where(sub["path"].astype(str) != scope, "other")
    parts = sub.assign(component=component).groupby(keys + ["component"], dropna=False)["time_ms"].sum()
    wide = parts.unstack("component", fill_value=0.0)
    wide.columns = [f"{c}_ms" for c in wide.columns]
    out = wide.join(total, how="inner")
    # "other" is what the components leave unexplained (region exclusive time, untimed gaps).
    comp_cols = [c for c in out.columns if c.endswith("_ms") and c not in ("scope_ms", "other_ms")]
    out["other_ms"] = (out["scope_ms"] - out[comp_cols].sum(axis=1)).clip(lower=0.0)
    for col in [c for c in out.columns if c.endswith("_ms") and c != "scope_ms"]:
        out[col[:-3] + "_share"] = out[col] / out["scope_ms"].where(out["scope_ms"] > 0)
    out["scope"] = scope
    return out.reset_index()


def long_breakdown(timers: pd.DataFrame, scope: str, by: str = "type") -> pd.DataFrame:
    """`scope_breakdown` in long form: one row per (run, component) with `time_ms` and `share`."""
    import pandas as pd

    wide = scope_breakdown(timers, scope, by)
    if wide.empty:
        return pd.DataFrame()
    keys = [k for k in RUN_KEYS if k in wide.columns]
    comps = [c[:-3] for c in wide.columns if c.endswith("_ms") and c != "scope_ms"]
    rows = []
    for comp in comps:
        part = wide[keys + ["scope", "scope_ms"]].copy()
        part["component"] = comp
        part["time_ms"] = wide[f"{comp}_ms"]
        part["share"] = wide[f"{comp}_share"]
        rows.append(part)
    return pd.concat(rows, ignore_index=True)


def with_config(parts: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Attach each run's configuration (parameters, topology, system) from the dataset to its rows."""
    keys = [k for k in RUN_KEYS if k in parts.columns and k in runs.columns]
    info = runs.drop_duplicates(keys)
    extra = [c for c in info.columns if c not in parts.columns or c in keys]
    return parts.merge(info[extra], on=keys, how="left")

"""Bottleneck findings: for each sweep and scope, which component dominates and which grows fastest.

For every strong-scaling sweep (same model, batch, scheme, all-reduce, system, ... at several GPU
counts) and every scope of the timer tree (the whole run, `decode`, `prefill`), each component's
median time over repeats is fitted against GPU count on log-log axes: time ∝ GPUs^slope. A slope of
1 means the component doubles when the GPUs double; −1 is perfect strong scaling. Its share of the
scope is fitted linearly in log2(GPUs) (percentage points per doubling). The finding is stated as a
sentence with the numbers, e.g. "allreduce is 61% of decode time at 32 GPUs, up from 12% at 4".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from analysis.breakdown import long_breakdown, scopes, with_config
from analysis.scaling import sweep_keys, with_scheme

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

# A component below this share everywhere is noise for the "fastest growing" question.
MIN_SHARE = 0.02


@dataclass
class Trend:
    """A component's fitted trend over GPU counts."""

    component: str
    slope: float  # log-log: time ∝ GPUs^slope
    share_slope_pp: float  # percentage points of the scope per doubling of GPUs
    share_lo: float
    share_hi: float
    time_lo_ms: float
    time_hi_ms: float


@dataclass
class Finding:
    """One sentence about one sweep and scope, with the numbers behind it."""

    sweep: dict[str, Any]
    scope: str
    by: str
    gpus_lo: int
    gpus_hi: int
    dominant: str
    fastest: str
    trends: list[Trend] = field(default_factory=list)
    text: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "sweep": self.sweep,
            "scope": self.scope,
            "by": self.by,
            "gpus_lo": self.gpus_lo,
            "gpus_hi": self.gpus_hi,
            "dominant": self.dominant,
            "fastest": self.fastest,
            "text": self.text,
            "trends": [t.__dict__ for t in self.trends],
        }


def _fit(x, y) -> float:
    import numpy as np

    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 2 or np.ptp(x[keep]) == 0:
        return float("nan")
    return float(np.polyfit(x[keep], y[keep], 1)[0])


def _pct(share: float) -> str:
    return f"{100 * share:.0f}%"


def _describe_sweep(sweep: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in sweep.items() if k not in ("workspace",) and v is not None and v == v]
    return ", ".join(parts)


def _sentence(f: Finding, scope_label: str) -> str:
    dom = next(t for t in f.trends if t.component == f.dominant)
    fast = next(t for t in f.trends if t.component == f.fastest)
    direction = "up" if dom.share_hi >= dom.share_lo else "down"
    text = (
        f"{f.dominant} is {_pct(dom.share_hi)} of {scope_label} time at {f.gpus_hi} GPUs, "
        f"{direction} from {_pct(dom.share_lo)} at {f.gpus_lo}"
    )
    if f.fastest != f.dominant:
        text += (
            f"; {f.fastest} grows fastest with scale ({_pct(fast.share_lo)} → {_pct(fast.share_hi)}, "
            f"time ∝ GPUs^{fast.slope:.2f}, {fast.share_slope_pp:+.1f} points per doubling)"
        )
    else:
        text += (
            f", and it grows fastest with scale (time ∝ GPUs^{dom.slope:.2f}, "
            f"{dom.share_slope_pp:+.1f} points per doubling)"
        )
    others = [t for t in f.trends if t.component not in (f.dominant, f.fastest) and t.share_hi >= MIN_SHARE]
    if others:
        text += "; " + ", ".join(f"{t.component} ∝ GPUs^{t.slope:.2f}" for t in others)
    where = _describe_sweep(f.sweep)
    return (f"[{where}] " if where else "") + text + "."


def findings(runs: pd.DataFrame, timers: pd.DataFrame, by: str = "type") -> list[Finding]:
    """Findings for every sweep with at least two GPU counts and every scope of its timer trees."""
    import numpy as np

    if timers.empty or runs.empty:
        return []
    ok_runs = with_scheme(runs[(runs["status"] == "ok") & (runs["kind"] == "inference")])
    if ok_runs.empty:
        return []
    keys = sweep_keys(ok_runs) + ["series"]
    out: list[Finding] = []
    for scope in scopes(timers, by):
        parts = long_breakdown(timers, scope, by)
        if parts.empty:
            continue
        parts = with_config(parts, ok_runs).dropna(subset=["world_size"])
        if parts.empty:
            continue
        med = (
            parts.groupby(keys + ["world_size", "component"], dropna=False)
            .agg(time_ms=("time_ms", "median"), scope_ms=("scope_ms", "median"))
            .reset_index()
        )
        med["share"] = med["time_ms"] / med["scope_ms"].where(med["scope_ms"] > 0)
        scope_label = scope.rsplit("/", 1)[-1]
        for sweep_values, sweep in med.groupby(keys, dropna=False, sort=True):
            gpus = np.sort(sweep["world_size"].unique())
            if len(gpus) < 2:
                continue
            lo, hi = gpus[0], gpus[-1]
            trends = []
            for comp, rows in sweep.groupby("component", sort=True):
                rows = rows.sort_values("world_size")
                if rows["share"].max() < MIN_SHARE and comp != "other":
                    continue
                at = rows.set_index("world_size")
                positive = rows["time_ms"] > 0
                slope = _fit(
                    np.log2(rows.loc[positive, "world_size"]), np.log2(rows.loc[positive, "time_ms"])
                )
                trends.append(
                    Trend(
                        component=str(comp),
                        slope=slope,
                        share_slope_pp=100 * _fit(np.log2(rows["world_size"]), rows["share"]),
                        share_lo=float(at["share"].get(lo, np.nan)),
                        share_hi=float(at["share"].get(hi, np.nan)),
                        time_lo_ms=float(at["time_ms"].get(lo, np.nan)),
                        time_hi_ms=float(at["time_ms"].get(hi, np.nan)),
                    )
                )
            ranked = [t for t in trends if np.isfinite(t.share_hi)]
            if not ranked:
                continue
            dominant = max(ranked, key=lambda t: t.share_hi)
            growing = [t for t in ranked if np.isfinite(t.slope)] or ranked
            fastest = max(growing, key=lambda t: t.slope if np.isfinite(t.slope) else -np.inf)
            values = sweep_values if isinstance(sweep_values, tuple) else (sweep_values,)
            desc = {k: v for k, v in zip(keys, values, strict=True)}
            f = Finding(
                sweep=desc,
                scope=scope,
                by=by,
                gpus_lo=int(lo),
                gpus_hi=int(hi),
                dominant=dominant.component,
                fastest=fastest.component,
                trends=trends,
            )
            f.text = _sentence(f, scope_label)
            out.append(f)
    return out


def findings_table(found: list[Finding]) -> pd.DataFrame:
    """One row per (finding, component): the numbers behind the sentences, for CSV and the report."""
    import pandas as pd

    rows = []
    for f in found:
        for t in f.trends:
            rows.append(
                {
                    **{k: v for k, v in f.sweep.items()},
                    "scope": f.scope,
                    "gpus_lo": f.gpus_lo,
                    "gpus_hi": f.gpus_hi,
                    "component": t.component,
                    "share_lo": t.share_lo,
                    "share_hi": t.share_hi,
                    "time_lo_ms": t.time_lo_ms,
                    "time_hi_ms": t.time_hi_ms,
                    "loglog_slope": t.slope,
                    "share_points_per_doubling": t.share_slope_pp,
                    "dominant": t.component == f.dominant,
                    "fastest": t.component == f.fastest,
                }
            )
    return pd.DataFrame(rows)

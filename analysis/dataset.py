"""Load collected workspaces (docs/results.md) into pandas, check columns and units, summarise repeats.

A workspace holds `dataset.parquet` (or `dataset.csv`) and `timers.parquet` (or `timers.csv`), both
written by `study collect`. Several workspaces load into one table, each row tagged with its
`workspace`, `system` and `interconnect`, so the same experiment on two machines can be compared.
Every problem raises `study.errors.InputError` naming the file and the column.

Repeats are summarised by the median (robust to the odd slow repeat on a shared machine), the
interquartile range, and a distribution-free confidence interval **of the median** from order
statistics (binomial), at 95% where the number of repeats allows it; `ci_level` says the level reached.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.errors import InputError
from study.results import LEGACY_STATISTIC, SAMPLE_TYPES, STATISTICS, TIMER_TABLE_COLUMNS
from study.results import TIMER_TYPES as RESULT_TIMER_TYPES

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

IDENTITY_COLUMNS: tuple[str, ...] = ("experiment", "run_id", "repeat", "kind", "status")
TOPOLOGY_COLUMNS: tuple[str, ...] = ("nodes", "gpus_per_node", "world_size")
WHERE_COLUMNS: tuple[str, ...] = ("system", "interconnect")
REQUIRED_COLUMNS: tuple[str, ...] = IDENTITY_COLUMNS + TOPOLOGY_COLUMNS + ("system",)
# The timers table's columns and node types come from the results contract (study/results.py);
# `attempt` is optional here, so tables collected before it existed still read.
TIMER_COLUMNS: tuple[str, ...] = tuple(c for c in TIMER_TABLE_COLUMNS if c != "attempt")
TIMER_TYPES: frozenset[str] = frozenset(RESULT_TIMER_TYPES)

# Inference metrics and collective sample keys of docs/results.md, with the unit their name carries.
METRIC_COLUMNS: tuple[str, ...] = (
    "ttft_ms",
    "tbt_ms",
    "tbt_p50_ms",
    "tbt_p99_ms",
    "e2e_ms",
    "tokens_per_s",
    "prefill_ms",
    "decode_ms",
    "weights_gb",
)
# The numeric sample keys: the results contract's (study/results.py SAMPLE_TYPES), not a second copy.
SAMPLE_NUMERIC: tuple[str, ...] = tuple(k for k, t in SAMPLE_TYPES.items() if t in (int, float))
# A numeric column must say its unit in its name; these unit suffixes are the ones the contract uses.
UNIT_SUFFIXES: tuple[str, ...] = ("_ms", "_us", "_s", "_bytes", "_GBps", "_gb", "_per_s")
# A unit anywhere in a name marks a measurement (tbt_p99_ms, weights_gb_max), never a configuration.
_UNIT_TOKEN = re.compile(r"_(ms|us|s|bytes|GBps|gb|per_s)(_|$)")
# Names that are times or sizes but carry no unit: a sign that a writer broke the contract.
_UNITLESS_TIMES: frozenset[str] = frozenset(
    {"latency", "ttft", "tbt", "e2e", "time", "duration", "size", "prefill", "decode", "bandwidth", "busbw"}
)
# The order-statistic CI of the median aims at this level.
CI_TARGET = 0.95


@dataclass
class Dataset:
    """The rows of one or more workspaces: samples / runs, timer nodes, and where they came from."""

    runs: pd.DataFrame
    timers: pd.DataFrame
    workspaces: list[Path] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)  # the dataset files read, one per workspace

    @property
    def ok(self) -> pd.DataFrame:
        """Rows of successful runs only: failed runs carry no usable numbers."""
        return self.runs[self.runs["status"] == "ok"]

    @property
    def failed(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] != "ok"]

    def kind(self, kind: str) -> pd.DataFrame:
        ok = self.ok
        return ok[ok["kind"] == kind]


def _read_table(folder: Path, stem: str, *, required: bool) -> tuple[pd.DataFrame | None, Path]:
    import pandas as pd

    parquet, csv = folder / f"{stem}.parquet", folder / f"{stem}.csv"
    if parquet.is_file():
        try:
            return pd.read_parquet(parquet), parquet
        except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
            raise InputError(f"cannot read parquet: {exc}", file=str(parquet)) from exc
    if csv.is_file():
        try:
            return pd.read_csv(csv, low_memory=False), csv
        except Exception as exc:
            raise InputError(f"cannot read CSV: {exc}", file=str(csv)) from exc
    if required:
        raise InputError(
            f"no {stem}.parquet or {stem}.csv",
            file=str(folder),
            hint="run `study collect` on the workspace first",
        )
    return None, parquet


def validate_runs(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check the dataset's columns and units; return it with numeric columns as numbers.

    Raises InputError naming `source` and the offending column.
    """
    _check_columns(df, source)
    df = df.copy()
    bad_status = set(df["status"].dropna().unique()) - {"ok", "failed"}
    if bad_status:
        raise InputError(
            f"expected ok or failed, found {sorted(map(str, bad_status))}", file=source, key="status"
        )
    ok = df["status"] == "ok"
    _to_numbers(df, ok, source)
    _to_booleans(df, source)
    _check_topology(df, ok, source)
    _check_values(df, ok, source)
    return df


def _check_columns(df: pd.DataFrame, source: str) -> None:
    for col in REQUIRED_COLUMNS:
        if col not in df.columns:
            raise InputError(
                "required column missing (docs/results.md lists the dataset columns)", file=source, key=col
            )
    for col in df.columns:
        if str(col).lower() in _UNITLESS_TIMES:
            raise InputError(
                "a time, size or bandwidth column must name its unit (e.g. latency_us, size_bytes)",
                file=source,
                key=str(col),
            )


def _to_numbers(df: pd.DataFrame, ok: pd.Series, source: str) -> None:
    """Every numeric column (known ones and any whose name carries a unit) as numbers, in place; no
    text among them, no negative value in a successful run."""
    import pandas as pd

    numeric = [
        c
        for c in df.columns
        if c in TOPOLOGY_COLUMNS
        or c in METRIC_COLUMNS
        or c in SAMPLE_NUMERIC
        or c in ("repeat", "attempt", "tp", "pp")
        or str(c).endswith(UNIT_SUFFIXES)
        or _UNIT_TOKEN.search(str(c))
    ]
    for col in numeric:
        values = pd.to_numeric(df[col], errors="coerce")
        broken = values.isna() & df[col].notna()
        if broken.any():
            first = df.loc[broken, col].iloc[0]
            raise InputError(
                f"expected numbers, found {first!r} (row {int(broken.idxmax())})", file=source, key=str(col)
            )
        negative = ok & (values < 0)
        if negative.any():
            raise InputError(
                f"negative value {values[negative].iloc[0]!r} (row {int(negative.idxmax())})",
                file=source,
                key=str(col),
            )
        df[col] = values


# The sample keys that are switches (study/results.py SAMPLE_TYPES): parquet keeps them as booleans, CSV
# as the words True / False; readers get booleans (None where a row has no such key).
BOOLEAN_COLUMNS: tuple[str, ...] = tuple(k for k, t in SAMPLE_TYPES.items() if t is bool)
_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def is_true(value: object) -> bool:
    """A switch cell as read here (True / False / None, or NaN after a merge) as a plain bool."""
    return value is not None and value == value and bool(value)


def _to_booleans(df: pd.DataFrame, source: str) -> None:
    """Every switch column as True / False / None, in place; any other word is an error."""
    import pandas as pd

    for col in BOOLEAN_COLUMNS:
        if col not in df.columns:
            continue
        values = []
        for value in df[col]:
            if value is None or value != value:
                values.append(None)
            elif isinstance(value, bool) or type(value).__name__ == "bool_":
                values.append(bool(value))
            elif str(value).strip().lower() in _WORDS:
                values.append(_WORDS[str(value).strip().lower()])
            else:
                raise InputError(f"expected true or false, found {value!r}", file=source, key=col)
        df[col] = pd.Series(values, index=df.index, dtype=object)


def _check_topology(df: pd.DataFrame, ok: pd.Series, source: str) -> None:
    for col in ("nodes", "gpus_per_node", "world_size"):
        zero = ok & (df[col] <= 0)
        if zero.any():
            raise InputError(f"must be positive, found {df.loc[zero, col].iloc[0]!r}", file=source, key=col)
    both = ok & df["nodes"].notna() & df["gpus_per_node"].notna() & df["world_size"].notna()
    wrong = both & (df["nodes"] * df["gpus_per_node"] != df["world_size"])
    if wrong.any():
        row = df[wrong].iloc[0]
        raise InputError(
            f"world_size {row['world_size']:g} is not nodes × gpus_per_node "
            f"({row['nodes']:g} × {row['gpus_per_node']:g})",
            file=source,
            key="world_size",
        )
    for col in ("tp", "pp"):
        if col in df.columns:
            both = ok & df[col].notna()
            if (df.loc[both, col] < 1).any():
                raise InputError("must be at least 1", file=source, key=col)


def _check_values(df: pd.DataFrame, ok: pd.Series, source: str) -> None:
    """Whole bytes, no zero latency, and statistics the results contract names."""
    if "size_bytes" in df.columns:
        sizes = df.loc[ok & df["size_bytes"].notna(), "size_bytes"]
        if ((sizes % 1) != 0).any():
            raise InputError("must be whole bytes", file=source, key="size_bytes")
    if "latency_us" in df.columns:
        zero = ok & (df["latency_us"] == 0)
        if zero.any():
            raise InputError("a latency of 0 µs is not a measurement", file=source, key="latency_us")
    if "statistic" in df.columns:
        bad = set(df["statistic"].dropna().astype(str).unique()) - set(STATISTICS)
        if bad:
            raise InputError(
                f"expected one of {', '.join(STATISTICS)}, found {sorted(bad)}", file=source, key="statistic"
            )


def validate_timers(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check the timers table (one row per timer node per run, times in ms)."""
    import pandas as pd

    for col in TIMER_COLUMNS:
        if col not in df.columns:
            raise InputError(
                "required column missing (docs/results.md lists the timers columns)", file=source, key=col
            )
    df = df.copy()
    types = set(df["type"].dropna().astype(str).unique()) - TIMER_TYPES
    if types:
        raise InputError(f"expected region, compute or comm, found {sorted(types)}", file=source, key="type")
    for col in ("time_inc_ms", "time_ms", "calls", "depth"):
        values = pd.to_numeric(df[col], errors="coerce")
        if (values.isna() & df[col].notna()).any() or (values < 0).any():
            raise InputError("expected non-negative numbers", file=source, key=col)
        df[col] = values
    return df


def _legacy_statistic(runs: pd.DataFrame) -> pd.DataFrame:
    """A dataset collected before samples said their statistic: its latencies are the maximum over
    ranks (study.results LEGACY_STATISTIC), so its collective rows get that `statistic`."""
    if "latency_us" in runs.columns and "statistic" not in runs.columns:
        measured = runs["latency_us"].notna() & (runs["kind"] == "collective")
        runs["statistic"] = None
        runs.loc[measured, "statistic"] = LEGACY_STATISTIC
    return runs


def _system_tags(folder: Path, runs: pd.DataFrame) -> pd.DataFrame:
    if "interconnect" not in runs.columns:
        runs["interconnect"] = "unknown"
    runs["interconnect"] = runs["interconnect"].fillna("unknown")
    runs["workspace"] = folder.name
    return runs


def load_workspace(path: str | os.PathLike[str]) -> Dataset:
    """Read one workspace folder (or a dataset file directly) and validate it."""
    import pandas as pd

    target = Path(path)
    if target.is_file():
        folder = target.parent
        reader = pd.read_parquet if target.suffix == ".parquet" else pd.read_csv
        try:
            runs, runs_src = reader(target), target
        except Exception as exc:
            raise InputError(f"cannot read: {exc}", file=str(target)) from exc
    elif target.is_dir():
        folder = target
        runs, runs_src = _read_table(folder, "dataset", required=True)
    else:
        raise InputError("no such workspace or dataset file", file=str(target))
    runs = _system_tags(folder, _legacy_statistic(validate_runs(runs, str(runs_src))))
    timers, timers_src = _read_table(folder, "timers", required=False)
    if timers is None:
        timers = pd.DataFrame(columns=list(TIMER_COLUMNS))
    else:
        timers = validate_timers(timers, str(timers_src))
    timers = timers.copy()
    timers["workspace"] = folder.name
    if "system" not in timers.columns or "interconnect" not in timers.columns:
        where = runs.drop_duplicates("run_id").set_index("run_id")
        for col in WHERE_COLUMNS:
            if col not in timers.columns:
                timers[col] = timers["run_id"].map(where[col])
    return Dataset(runs=runs, timers=timers, workspaces=[folder], sources=[Path(runs_src)])


def load_workspaces(paths: Iterable[str | os.PathLike[str]]) -> Dataset:
    """Several workspaces as one dataset; rows keep their `workspace`, `system` and `interconnect`."""
    import pandas as pd

    parts = [load_workspace(p) for p in paths]
    if not parts:
        raise InputError("no workspace given", key="WORKSPACE")
    if len(parts) == 1:
        return parts[0]
    runs = pd.concat([p.runs for p in parts], ignore_index=True, sort=False)
    timers = pd.concat([p.timers for p in parts], ignore_index=True, sort=False)
    return Dataset(
        runs=runs,
        timers=timers,
        workspaces=[w for p in parts for w in p.workspaces],
        sources=[s for p in parts for s in p.sources],
    )


def from_frames(
    runs: pd.DataFrame,
    timers: pd.DataFrame | None = None,
    *,
    source: str = "<dataset>",
    workspace: str = "memory",
) -> Dataset:
    """A Dataset from DataFrames already in memory (validated the same way as files)."""
    import pandas as pd

    runs = validate_runs(runs, source)
    if "interconnect" not in runs.columns:
        runs["interconnect"] = "unknown"
    runs["interconnect"] = runs["interconnect"].fillna("unknown")
    runs["workspace"] = workspace
    if timers is None:
        timers = pd.DataFrame(columns=list(TIMER_COLUMNS))
    timers = validate_timers(timers, source + " (timers)")
    timers["workspace"] = workspace
    where = runs.drop_duplicates("run_id").set_index("run_id")
    for col in WHERE_COLUMNS:
        if col not in timers.columns:
            timers[col] = timers["run_id"].map(where[col]) if len(timers) else pd.Series(dtype=object)
    return Dataset(runs=runs, timers=timers)


# -- repeats -------------------------------------------------------------------------------------------


def median_ci_ranks(n: int, level: float = CI_TARGET) -> tuple[int, int, float]:
    """1-based order-statistic ranks (lo, hi) bounding the median, and the coverage they reach.

    The interval [x_(k), x_(n-k+1)] covers the median with probability 1 - 2·P(Binom(n, ½) < k). We take
    the largest k that still reaches `level`; with too few repeats for that (n < 6 at 95%) we return
    the full range and its (lower) coverage.
    """
    if n <= 0:
        return 0, 0, float("nan")
    cdf, best = 0.0, None
    for k in range(1, (n + 1) // 2 + 1):
        cdf += math.comb(n, k - 1) * 0.5**n  # P(Binom(n, 1/2) < k)
        coverage = 1.0 - 2.0 * cdf
        if coverage < level:
            break
        best = (k, n - k + 1, coverage)
    if best is None:
        return 1, n, 1.0 - 2.0 * 0.5**n if n > 1 else 0.0
    return best


def summarize(df: pd.DataFrame, keys: Sequence[str], values: Sequence[str]) -> pd.DataFrame:
    """Summarise `values` over the rows sharing `keys` (the repeats): n, median, q1, q3, iqr, mean,
    ci_lo / ci_hi of the median and ci_level.

    Vectorised over groups (one sort, then index arithmetic): a 100k-row dataset takes well under a
    second. Quantiles interpolate linearly, as pandas and numpy do by default.
    """
    import numpy as np
    import pandas as pd

    keys = list(keys)
    out: pd.DataFrame | None = None
    for value in values:
        sub = df[keys + [value]].dropna(subset=[value])
        if sub.empty:
            continue
        gid = sub.groupby(keys, dropna=False, sort=True).ngroup().to_numpy()
        vals = sub[value].to_numpy(dtype=float)
        order = np.lexsort((vals, gid))
        groups, ordered = gid[order], vals[order]
        counts = np.bincount(groups)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))

        def quantile(q: float, counts=counts, starts=starts, ordered=ordered) -> np.ndarray:
            pos = q * (counts - 1)
            below = np.floor(pos).astype(np.int64)
            frac = pos - below
            lo = ordered[starts + below]
            hi = ordered[starts + np.minimum(below + 1, counts - 1)]
            return lo + (hi - lo) * frac

        table = {int(m): median_ci_ranks(int(m)) for m in np.unique(counts)}
        lo_rank = np.array([table[int(m)][0] for m in counts])
        hi_rank = np.array([table[int(m)][1] for m in counts])
        stats = sub[keys].iloc[order[starts]].reset_index(drop=True)
        stats[f"{value}_n"] = counts
        stats[f"{value}_median"] = quantile(0.5)
        stats[f"{value}_q1"] = quantile(0.25)
        stats[f"{value}_q3"] = quantile(0.75)
        stats[f"{value}_mean"] = np.bincount(groups, weights=ordered) / counts
        stats[f"{value}_iqr"] = stats[f"{value}_q3"] - stats[f"{value}_q1"]
        stats[f"{value}_ci_lo"] = ordered[starts + lo_rank - 1]
        stats[f"{value}_ci_hi"] = ordered[starts + hi_rank - 1]
        stats[f"{value}_ci_level"] = [table[int(m)][2] for m in counts]
        out = stats if out is None else out.merge(stats, on=keys, how="outer")
    if out is None:
        return pd.DataFrame(columns=keys)
    return out


def config_columns(df: pd.DataFrame, exclude: Iterable[str] = ()) -> list[str]:
    """The columns that name a configuration: parameters and topology, not identity, metrics or samples.

    Repeats of one configuration share these and differ only in `repeat` / `run_id` / measurements.
    """
    skip = (
        set(exclude)
        | {
            "run_id",
            "repeat",
            "attempt",
            "status",
            "error",
            "git_sha",
            "start",
            "end",
            "scheduler_job_id",
            "workspace",
            "hosts",
        }
        | set(METRIC_COLUMNS)
        | set(SAMPLE_NUMERIC) - {"size_bytes"}
    )
    cols = []
    for col in df.columns:
        if col in skip or _UNIT_TOKEN.search(str(col)) and col != "size_bytes":
            continue
        if str(col).startswith("wrong"):
            continue  # a correctness count (wrong, wrong_total), measured like a metric
        if not df[col].notna().any():
            continue  # a parameter of other rows (an inference column among collective rows)
        cols.append(col)
    return cols


def value_or_none(value: Any) -> Any:
    """A plain Python value for templates and JSON (NaN becomes None)."""
    item = getattr(value, "item", None)
    value = item() if callable(item) else value
    if isinstance(value, float) and math.isnan(value):
        return None
    return value

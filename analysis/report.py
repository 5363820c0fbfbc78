"""The study's HTML report: one static page with figures, tables, findings in plain words, provenance.

The page opens from disk without a server: figures are referenced by paths relative to the page
(`figures/<name>.png`), or embedded as data URIs with `embed=True` for a single file to mail around.
The template is analysis/templates/report.html.j2 (Jinja2, autoescaped).
"""

from __future__ import annotations

import base64
import datetime as _dt
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.dataset import Dataset, is_true, value_or_none
from study.results import ResultError, atomic_write_text, git_state, read_result
from study.units import human_size

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from analysis.bottlenecks import Finding
    from analysis.registry import FigureResult

TEMPLATE = "report.html.j2"
MAX_TABLE_ROWS = 200


@dataclass
class Table:
    title: str
    html: str
    note: str = ""


@dataclass
class ReportContext:
    title: str
    generated: str
    workspaces: list[str]
    systems: list[str]
    counts: dict[str, Any]
    findings: list[str] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    provenance: list[tuple[str, str]] = field(default_factory=list)
    failures: Table | None = None


def _measured_as(values: Any) -> str:
    """Which measurement a latency is, in words ("in-place, max over ranks"): the sample keys of
    study.results SAMPLE_DISTINCTIONS that `values` (a row or a mapping) carries; "" without them."""
    words = []
    placement = value_or_none(values.get("in_place"))
    if placement is not None:
        words.append("in-place" if is_true(placement) else "out-of-place")
    statistic = value_or_none(values.get("statistic"))
    if isinstance(statistic, str):
        words.append(f"{statistic} over ranks")
    return ", ".join(words)


def _fmt(value: Any) -> str:
    value = value_or_none(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def html_table(df: pd.DataFrame, title: str, note: str = "") -> Table:
    """A DataFrame as an escaped HTML table (first MAX_TABLE_ROWS rows; the CSVs hold everything)."""
    shown = df.head(MAX_TABLE_ROWS)
    shown = shown.loc[:, [c for c in shown.columns if shown[c].notna().any()]]
    if len(df) > MAX_TABLE_ROWS:
        note = (note + " " if note else "") + f"First {MAX_TABLE_ROWS} of {len(df)} rows."
    html = shown.to_html(
        index=False,
        escape=True,
        na_rep="",
        border=0,
        classes="data",
        formatters={c: _fmt for c in shown.columns},
    )
    return Table(title=title, html=html, note=note)


@dataclass
class Analyses:
    """The tables the findings and the report's tables share, computed once."""

    found: list[Finding]
    speedups: pd.DataFrame
    crossovers: pd.DataFrame
    e2e: pd.DataFrame
    fastest: pd.DataFrame


def analyse(ds: Dataset) -> Analyses:
    import pandas as pd

    from analysis.bottlenecks import findings
    from analysis.speedup import crossovers, e2e_speedup, fastest_by_size, latency_table, speedup_table

    coll, inf = ds.kind("collective"), ds.kind("inference")
    latencies = latency_table(coll) if not coll.empty else pd.DataFrame()
    speedups = speedup_table(coll, latencies=latencies) if not coll.empty else pd.DataFrame()
    return Analyses(
        found=findings(ds.runs, ds.timers, by="name"),
        speedups=speedups,
        crossovers=crossovers(speedups),
        e2e=e2e_speedup(inf) if not inf.empty else pd.DataFrame(),
        fastest=fastest_by_size(latencies),
    )


def plain_findings(ds: Dataset, an: Analyses, nccl_map: pd.DataFrame | None = None) -> list[str]:
    """The findings as sentences: bottlenecks, NVRAR/NCCL speedups and crossovers, NCCL's choices."""

    out: list[str] = []
    # Innermost scopes first: "decode" says more about a bottleneck than the whole run does.
    for f in sorted(an.found, key=lambda f: -f.scope.count("/")):
        out.append(f.text)
    table = an.speedups
    if not table.empty:
        best = table.loc[table["speedup"].idxmax()]
        worst = table.loc[table["speedup"].idxmin()]

        def point(row: Any) -> str:
            measured = _measured_as(row)
            return f"{human_size(row['size_bytes'])}, {int(row['nodes'])} nodes" + (
                f", {measured}" if measured else ""
            )

        out.append(
            f"NVRAR against NCCL: speedups from {worst['speedup']:.2f}× ({point(worst)}) to "
            f"{best['speedup']:.2f}× ({point(best)}) over {len(table)} size × configuration points."
        )
        for row in an.crossovers.itertuples(index=False):
            side = "larger" if row.direction == "above" else "smaller"
            graphs = getattr(row, "graphs", None)
            extra = {True: " with CUDA graphs", False: " without CUDA graphs"}.get(graphs, "")
            measured = _measured_as(row._asdict())
            extra += f" ({measured})" if measured else ""
            out.append(
                f"On {row.system} at {int(row.nodes)} nodes{extra}, NVRAR overtakes NCCL for messages {side} "
                f"than about {human_size(row.crossover_bytes)} (crossing between "
                f"{human_size(row.size_lo)} and {human_size(row.size_hi)})."
            )
    out += _fastest_sentences(an.fastest)
    e2e = an.e2e
    if not e2e.empty:
        best = e2e.loc[e2e["speedup"].idxmax()]
        out.append(
            f"End to end, NVRAR changes batch latency by {e2e['speedup'].min():.2f}× to "
            f"{e2e['speedup'].max():.2f}× against NCCL; the largest gain is {best['speedup']:.2f}× at "
            f"{int(best['world_size'])} GPUs (tp={_fmt(best.get('tp'))}, pp={_fmt(best.get('pp'))})."
        )
    if nccl_map is not None and not nccl_map.empty:
        for ranks, part in nccl_map.groupby("nranks"):
            part = part.sort_values("size_bytes")
            changes = part["choice"].ne(part["choice"].shift())
            steps = [
                f"{c} from {human_size(s)}"
                for c, s in zip(part.loc[changes, "choice"], part.loc[changes, "size_bytes"], strict=True)
            ]
            out.append(f"NCCL at {int(ranks)} GPUs picks " + ", then ".join(steps) + ".")
    if not ds.failed.empty:
        out.append(
            f"{ds.failed['run_id'].nunique()} run(s) failed and are left out of every number above; "
            "the table of failures gives their reasons."
        )
    return out


def _fastest_sentences(fastest: pd.DataFrame) -> list[str]:
    """Which algorithm is fastest over which sizes, per configuration: whatever algorithms a sweep
    measured (NVRAR's schedule against ring, tree or gloo as much as NVRAR against NCCL)."""

    if fastest.empty:
        return []
    keys = [
        c
        for c in fastest.columns
        if c not in ("size_bytes", "fastest", "fastest_us", "runner_up", "margin", "algorithms")
    ]
    out = []
    for values, part in fastest.groupby(keys, dropna=False, sort=True):
        part = part.sort_values("size_bytes")
        runs = part["fastest"].ne(part["fastest"].shift()).cumsum()
        spans = []
        for _, span in part.groupby(runs, sort=False):
            lo, hi = human_size(span["size_bytes"].iloc[0]), human_size(span["size_bytes"].iloc[-1])
            where = lo if lo == hi else f"{lo}–{hi}"
            lo_m, hi_m = f"{span['margin'].min():.2f}", f"{span['margin'].max():.2f}"
            margin = f"{lo_m}×" if lo_m == hi_m else f"{lo_m}–{hi_m}×"
            spans.append(f"{span['fastest'].iloc[0]} at {where} ({margin} ahead of the next)")
        config = dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True))
        label = ", ".join(
            f"{k}={_fmt(config[k])}" for k in ("system", "nodes", "world_size", "graphs") if k in config
        )
        measured = _measured_as(config)
        label += f", {measured}" if measured and label else measured
        out.append(
            f"Fastest of {int(part['algorithms'].max())} all-reduces ({label}): " + "; ".join(spans) + "."
        )
    return out


def _provenance(ds: Dataset) -> list[tuple[str, str]]:
    """Where the data and the report come from: commits, versions, hosts, systems, dates."""
    from importlib import metadata

    runs = ds.runs
    rows: list[tuple[str, str]] = []
    if "git_sha" in runs.columns:
        shas = sorted({str(s) for s in runs["git_sha"].dropna().unique()})
        rows.append(("commits of the runs", ", ".join(s[:12] for s in shas) or "unknown"))
    for col, label in (
        ("system", "systems"),
        ("interconnect", "interconnects"),
        ("gpu", "GPUs"),
        ("scheduler", "schedulers"),
        ("experiment", "experiments"),
    ):
        if col in runs.columns:
            rows.append((label, ", ".join(sorted(map(str, runs[col].dropna().unique())))))
    if "start" in runs.columns and runs["start"].notna().any():
        rows.append(("runs between", f"{runs['start'].dropna().min()} and {runs['start'].dropna().max()}"))
    versions: dict[str, set[str]] = {}
    hosts: set[str] = set()
    for folder in ds.workspaces:
        for path in sorted((folder / "runs").glob("*/attempt-*/results.json"))[:200]:
            try:
                prov = read_result(path)["provenance"]
            except ResultError:
                continue
            for key, value in (prov.get("versions") or {}).items():
                versions.setdefault(key, set()).add(str(value))
            hosts.update(map(str, prov.get("hosts") or []))
    for key in sorted(versions):
        rows.append((f"{key} (runs)", ", ".join(sorted(versions[key]))))
    if hosts:
        shown = sorted(hosts)
        rows.append(
            ("hosts", ", ".join(shown[:32]) + (f" … ({len(shown)} in all)" if len(shown) > 32 else ""))
        )
    state = git_state()
    rows.append(
        ("report made from commit", f"{state['git_sha'] or 'unknown'}{' (dirty)' if state['dirty'] else ''}")
    )
    for pkg in ("study", "pandas", "matplotlib", "llnl-hatchet", "jinja2"):
        try:
            rows.append((f"{pkg} (report)", metadata.version(pkg)))
        except metadata.PackageNotFoundError:
            continue
    rows.append(("python (report)", platform.python_version()))
    return rows


def _figure_entry(files: dict[str, Path], out_dir: Path, embed: bool, description: str) -> dict[str, Any]:
    png = Path(files["png"])
    if embed:
        src = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")
    else:
        src = os.path.relpath(png, out_dir)
    rel = {k: os.path.relpath(Path(v), out_dir) for k, v in files.items()}
    return {
        "name": png.stem,
        "src": src,
        "pdf": rel.get("pdf"),
        "csv": rel.get("csv"),
        "caption": description,
    }


def build_context(
    ds: Dataset,
    figures: list[FigureResult],
    out_dir: Path,
    *,
    embed: bool = False,
    nccl_map: pd.DataFrame | None = None,
    align: str = "nodes",
    title: str | None = None,
) -> ReportContext:
    """Everything the template shows, computed from the dataset and the figures already written."""
    from analysis.bottlenecks import findings_table
    from analysis.compare import comparisons, systems
    from analysis.scaling import SCALING_METRICS, strong_scaling

    runs = ds.runs
    counts = {
        "rows": len(runs),
        "runs": runs["run_id"].nunique(),
        "ok": runs.loc[runs["status"] == "ok", "run_id"].nunique(),
        "failed": runs.loc[runs["status"] != "ok", "run_id"].nunique(),
        "kinds": ", ".join(sorted(map(str, runs["kind"].dropna().unique()))),
    }
    default_title = (
        "Study report: " + ", ".join(w.name for w in ds.workspaces) if ds.workspaces else "Study report"
    )
    an = analyse(ds)
    ctx = ReportContext(
        title=title or default_title,
        generated=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        workspaces=[str(w) for w in ds.workspaces],
        systems=systems(ds.ok),
        counts=counts,
        findings=plain_findings(ds, an, nccl_map),
        provenance=_provenance(ds),
    )
    for result in figures:
        if result.skipped:
            ctx.skipped.append({"name": result.name, "reason": result.skipped})
        for files in result.files:
            ctx.figures.append(_figure_entry(files, out_dir, embed, result.description))
    inf = ds.kind("inference")
    for metric in SCALING_METRICS:
        table = strong_scaling(inf, metric) if not inf.empty else None
        if table is not None and not table.empty:
            keep = [c for c in table.columns if not c.endswith(("_mean", "_q1", "_q3")) and c != "metric"]
            ctx.tables.append(
                html_table(
                    table[keep],
                    f"Strong scaling: {metric}",
                    "Median over repeats, IQR, and the order-statistic confidence interval "
                    "of the median at the level shown (95% needs 6 or more repeats).",
                )
            )
    trends = findings_table(an.found)
    if not trends.empty:
        ctx.tables.append(
            html_table(
                trends,
                "Bottleneck trends",
                "Per sweep, scope and component: share of the scope at the smallest and largest GPU count, "
                "log-log slope of its time against GPUs, and share points per doubling of GPUs.",
            )
        )
    if not an.speedups.empty:
        ctx.tables.append(
            html_table(
                an.speedups,
                "NVRAR over NCCL: all-reduce latency and speedup",
                "Median latency over repeats; speedup above 1 means NVRAR is faster.",
            )
        )
    if not an.crossovers.empty:
        ctx.tables.append(
            html_table(an.crossovers, "Crossover sizes", "Interpolated in log(speedup) against log2(size).")
        )
    if not an.e2e.empty:
        ctx.tables.append(html_table(an.e2e, "End-to-end batch latency: NVRAR against NCCL"))
    if nccl_map is not None and not nccl_map.empty:
        ctx.tables.append(
            html_table(
                nccl_map,
                "NCCL all-reduce algorithm selection",
                "Most frequent choice per size and GPU count; agreement below 1 means "
                "NCCL did not always choose the same.",
            )
        )
    for metric, table in comparisons(ds.ok, align).items():
        ctx.tables.append(
            html_table(
                table, f"Interconnect comparison: {metric}", f"Aligned on {align}; median over repeats."
            )
        )
    if not ds.failed.empty:
        cols = [
            c
            for c in ("experiment", "run_id", "repeat", "attempt", "system", "nodes", "error")
            if c in ds.failed.columns
        ]
        ctx.failures = html_table(ds.failed[cols].drop_duplicates("run_id"), "Failed runs")
    return ctx


def render(ctx: ReportContext) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template(TEMPLATE).render(ctx=ctx)


def write_report(
    ds: Dataset,
    out_path: str | os.PathLike[str],
    figures_dir: str | os.PathLike[str] | None = None,
    *,
    embed: bool = False,
    align: str = "nodes",
    title: str | None = None,
    jobs: int = 1,
    nccl: pd.DataFrame | None = None,
) -> Path:
    """Write every supported figure (into `figures_dir`, default beside the page) and the page itself.

    `nccl` gives NCCL's decisions directly (predicted ones) instead of parsing the workspaces' logs."""
    from analysis.nccl_log import algorithm_map
    from analysis.registry import FigureData, plot_all

    out_path = Path(out_path)
    out_dir = out_path.parent
    fig_dir = Path(figures_dir) if figures_dir else out_dir / "figures"
    data = FigureData(ds, list(ds.workspaces), _nccl=nccl)
    results = plot_all(data, fig_dir, jobs=jobs)
    amap = algorithm_map(data.nccl)
    ctx = build_context(ds, results, out_dir, embed=embed, nccl_map=amap, align=align, title=title)
    return atomic_write_text(out_path, render(ctx))


def build_report(workspace: str | os.PathLike[str], jobs: int = 1) -> Path:
    """Load one collected workspace and write WORKSPACE/report.html (what `study run --report` calls)."""
    from analysis.dataset import load_workspace

    folder = Path(workspace)
    return write_report(load_workspace(folder), folder / "report.html", jobs=jobs)


def workspace_findings(workspace: str | os.PathLike[str]) -> list[str]:
    """The report's findings for one collected workspace, as sentences (what `study run` prints last)."""
    from analysis.dataset import load_workspace
    from analysis.nccl_log import algorithm_map
    from analysis.registry import FigureData

    ds = load_workspace(Path(workspace))
    return plain_findings(ds, analyse(ds), algorithm_map(FigureData(ds, list(ds.workspaces)).nccl))

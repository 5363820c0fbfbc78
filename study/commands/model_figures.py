"""`study model figures`: every figure that experiments/paper/ defines, as predictions of the model.

For each system (default perlmutter and vista) every experiment is expanded as `study plan` would and
priced by the calibrated model (study/predicted.py); the figures of `study plot` are drawn from those
rows, labelled "predicted by the cost model", with the 5–95 % interval as their band, the system's
published points (jobs/measurements) overlaid where a figure covers them and, where a collected
workspace of the same experiment exists under --workspaces, its measured points beside them. One
HTML page per system in the style of the report, and an index page linking them.
"""

from __future__ import annotations

import argparse
import html
from pathlib import Path

LABEL = "predicted by the cost model"


def add_arguments(sub) -> None:
    p = sub.add_parser("figures", help="every figure of experiments/paper/ as predictions, with an HTML page")
    p.add_argument(
        "--systems", default="perlmutter,vista", help="systems to predict (default perlmutter,vista)"
    )
    p.add_argument("--experiments", metavar="DIR", help="experiment folder (default experiments/paper)")
    p.add_argument("--out", default="figures/predicted", metavar="DIR", help="default figures/predicted")
    p.add_argument(
        "--workspaces",
        default="workspaces",
        metavar="DIR",
        help="collected workspaces named after the experiments join as measured points (default workspaces)",
    )
    p.add_argument("--jobs", type=int, default=1, help="figure worker processes (default 1)")


def _figures(args: argparse.Namespace) -> int:
    import pandas as pd

    from analysis.dataset import from_frames
    from analysis.report import write_report
    from analysis.style import FIGURE_LABEL
    from study.errors import InputError
    from study.measurements import load_corpus
    from study.model import system_model
    from study.predicted import (
        PAPER_DIR,
        experiments,
        measured_rows,
        nccl_decisions,
        predicted_dataset,
        published_rows,
    )
    from study.results import atomic_write_text

    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not names:
        raise InputError("give at least one system", key="--systems")
    files = experiments(Path(args.experiments) if args.experiments else PAPER_DIR)
    out = Path(args.out)
    pages, measured_from, published = [], [], 0
    corpus = load_corpus()
    from rich.console import Console
    from rich.progress import Progress

    token = FIGURE_LABEL.set(LABEL)
    progress = Progress(console=Console(stderr=True), transient=True)
    task = progress.add_task("predicting", total=len(names) * (len(files) + 1))
    try:
        progress.start()
        for name in names:
            sm = system_model(name)
            frames, nccl = [], []
            for path in files:
                progress.update(task, advance=1, description=f"{name}: pricing {path.stem}")
                df = predicted_dataset(path, sm)
                if df.empty:
                    continue
                frames.append(df)
                nccl.append(nccl_decisions(df, sm))
                if "graphs" in df.columns:
                    points = published_rows(df, corpus, sm.name)
                    published += len(points)
                    frames.append(points)
                workspace = Path(args.workspaces) / path.stem
                if (workspace / "dataset.parquet").is_file() or (workspace / "dataset.csv").is_file():
                    measured = measured_rows(workspace)
                    measured = measured[measured["system"] == sm.name]
                    if not measured.empty:
                        frames.append(measured)
                        measured_from.append(str(workspace))
            progress.update(task, advance=1, description=f"{name}: drawing the figures")
            runs = _whole_numbers(pd.concat(frames, ignore_index=True, sort=False))
            ds = from_frames(runs, source=f"predictions for {sm.name}", workspace=f"predicted-{sm.name}")
            page = write_report(
                ds,
                out / sm.name / "report.html",
                title=f"The study's figures on {sm.name}, {LABEL} ({sm.source})",
                jobs=args.jobs,
                nccl=pd.concat(nccl, ignore_index=True),
            )
            pages.append((sm.name, page, len(runs)))
    finally:
        progress.stop()
        FIGURE_LABEL.reset(token)
    items = "\n".join(
        f'<li><a href="{html.escape(str(p.relative_to(out)))}">{html.escape(n)}</a>: '
        f"{rows} predicted rows</li>"
        for n, p, rows in pages
    )
    index = atomic_write_text(
        out / "index.html",
        "<!doctype html><html><head><meta charset='utf-8'><title>Predicted figures</title></head><body>"
        f"<h1>The study's figures, {LABEL}</h1><p>Every experiment of {html.escape(str(PAPER_DIR.name))}/ "
        "expanded per system and priced by the calibrated model (docs/costmodel.md); bands are 5–95 % "
        f"intervals.</p><ul>{items}</ul></body></html>\n",
    )
    figures = sum(len(list((out / n / "figures").glob("*.png"))) for n, _, _ in pages)
    print(
        f"wrote {figures} predicted figures for {len(files)} experiments on {', '.join(names)} and {index}; "
        f"{published} published points overlaid"
        + (
            f"; measured points from {', '.join(sorted(set(measured_from)))}"
            if measured_from
            else "; no measured data"
        )
    )
    return 0


def _whole_numbers(df):
    """Parameters that are whole numbers stay integers (nullable) where other experiments' rows left
    gaps, so titles read `batch_size=4`, not `4.0`."""
    for column in df.columns:
        values = df[column]
        if values.dtype.kind == "f" and column not in ("latency_us",) and not column.endswith(("_ms", "_s")):
            present = values.dropna()
            if len(present) and (present == present.round()).all():
                df[column] = values.astype("Int64")
    return df


HANDLERS = {"figures": _figures}

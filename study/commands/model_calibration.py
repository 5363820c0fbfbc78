"""`study model calibrate | validate | claims`: the grounded model against published measurements.

calibrate  fit every parameter to jobs/measurements/*.csv, bootstrap it, report held-out error;
           `--write` stores jobs/measurements/calibration.json and each system's fitted values
validate   leave each source out in turn, fit the rest, print every held-out point with its error
claims     the study's claims (jobs/measurements/claims.yaml) against the calibrated model
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="fit the grounded model to the published measurements and bootstrap it"
    )
    p.add_argument(
        "--measurements", metavar="DIR", help="folder of measurement CSVs (default jobs/measurements)"
    )
    p.add_argument("--draws", type=int, default=100, help="bootstrap draws for the intervals (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument(
        "--write",
        action="store_true",
        help="write jobs/measurements/calibration.json and the fitted values into the system files",
    )
    p.add_argument("--out", metavar="DIR", help="also write the parameter and held-out tables as CSV")

    p = sub.add_parser(
        "validate", help="held-out error: each published source predicted by a fit of the others"
    )
    p.add_argument(
        "--measurements", metavar="DIR", help="folder of measurement CSVs (default jobs/measurements)"
    )
    p.add_argument("--source", action="append", help="show only these sources' points (repeatable)")
    p.add_argument("--out", metavar="DIR", help="also write every held-out point and the summaries as CSV")

    p = sub.add_parser("claims", help="the study's claims checked against the calibrated model")
    p.add_argument("--claims", metavar="FILE", help="claims file (default jobs/measurements/claims.yaml)")
    p.add_argument("--out", metavar="DIR", help="also write the verdicts as CSV")


def _corpus(args):
    from study.measurements import MEASUREMENTS_DIR, load_corpus, load_platforms, load_priors

    folder = Path(args.measurements) if args.measurements else MEASUREMENTS_DIR
    platforms = load_platforms()
    return load_corpus(folder, platforms), platforms, load_priors(), folder


def _progress(console, total: int):
    from rich.progress import Progress

    progress = Progress(console=console, transient=True)
    task = progress.add_task("calibrating", total=total)

    def step(text: str) -> None:
        progress.update(task, advance=1, description=text)

    return progress, step


def _pct(x: float) -> str:
    return f"{x:+.0%}"


def summary_tables(validation, console) -> None:
    from rich.table import Table

    for by, title in (("system", "platform"), ("algorithm", "algorithm"), ("source_id", "source")):
        s = validation.summary(by)
        table = Table(title=f"Held-out error by {title} (each source predicted by a fit of all the others)")
        for column in (title, "points", "sources", "median |error|", "max |error|", "within ±35 %"):
            table.add_column(column, justify="left" if column == title else "right")
        for _, r in s.iterrows():
            table.add_row(
                str(r[by]),
                str(r["points"]),
                str(r["sources"]),
                f"{r['median_abs_error']:.0%}",
                f"{r['max_abs_error']:.0%}",
                f"{r['within_35']:.0%}",
            )
        console.print(table)


def _calibrate(args: argparse.Namespace) -> int:
    from rich.table import Table

    from study.calibration import calibrate, rewrite_system_file, write_calibration
    from study.commands.model import _console, _write
    from study.errors import InputError
    from study.measurements import CALIBRATION_FILE, platform_of_system
    from study.results import atomic_write_text
    from study.systems import list_systems

    if args.draws < 2:
        raise InputError("at least 2 draws", key="--draws")
    df, platforms, priors, folder = _corpus(args)
    console = _console()
    progress, step = _progress(console, 1 + df["source_id"].nunique() + args.draws)
    with progress:
        calibration, validation = calibrate(
            df, platforms, priors, draws=args.draws, seed=args.seed, progress=step
        )
    table = Table(
        title=f"Grounded model fitted to {len(df)} published points from {df['source_id'].nunique()} sources"
    )
    for column in ("parameter", "prior", "fitted", "5–95 % (bootstrap)", "sources"):
        table.add_column(column, justify="left" if column in ("parameter", "sources") else "right")
    import numpy as np

    rows = []
    for name in sorted(priors):
        lo, hi = np.quantile(calibration.draws[name], (0.05, 0.95))
        sources = calibration.fitted_to.get(name, [])
        table.add_row(
            name,
            f"{priors[name].value:.3g}",
            f"{calibration.parameters[name]:.3g}",
            f"{lo:.3g}–{hi:.3g}",
            f"{len(sources)}" if sources else "none: the prior",
        )
        rows.append(
            {
                "parameter": name,
                "prior": priors[name].value,
                "fitted": calibration.parameters[name],
                "low": lo,
                "high": hi,
                "sources": " ".join(sources),
            }
        )
    console.print(table)
    summary_tables(validation, console)
    written = []
    if args.write:
        files = {src: int(n) for src, n in df.groupby("source_id").size().items()}
        write_calibration(calibration, CALIBRATION_FILE, files)
        written.append(CALIBRATION_FILE)
        for system in list_systems():
            platform = platform_of_system(system)
            if platform is None:
                continue
            names = [k for k in platform.parameter_names() if k in calibration.parameters]
            written.append(
                atomic_write_text(Path(system.path), rewrite_system_file(system.path, names, calibration))
            )
    if args.out:
        import pandas as pd

        written += _write(
            args.out, {"calibration_parameters": pd.DataFrame(rows), "holdout": validation.table}, []
        )
    h = calibration.holdout
    print(
        f"calibrated {len(priors)} parameters on {len(df)} points from {h['sources']} sources ({folder}); "
        f"held out by source: median |error| {h['median_abs_error']:.0%}, "
        f"{h['within_35_percent']:.0%} within ±35 %; "
        f"intervals from {args.draws} bootstrap draws"
        + (f"; wrote {', '.join(str(w) for w in written)}" if written else "; nothing written (use --write)")
    )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from rich.table import Table

    from study.calibration import leave_one_source_out
    from study.commands.model import _console, _write
    from study.errors import InputError
    from study.units import format_size

    df, platforms, priors, folder = _corpus(args)
    console = _console()
    progress, step = _progress(console, df["source_id"].nunique())
    with progress:
        validation = leave_one_source_out(df, platforms, priors, progress=step)
    t = validation.table
    if args.source:
        unknown = sorted(set(args.source) - set(t["source_id"]))
        if unknown:
            raise InputError(
                f"unknown source(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(t['source_id'].unique()))}",
                key="--source",
            )
        t = t[t["source_id"].isin(args.source)]
    table = Table(
        title="Every held-out point: published against predicted by a fit that never saw its source"
    )
    for column in (
        "source",
        "platform",
        "algorithm",
        "nodes×GPUs",
        "launch",
        "size",
        "published µs",
        "predicted µs",
        "error",
    ):
        table.add_column(
            column, justify="left" if column in ("source", "platform", "algorithm", "launch") else "right"
        )
    for _, r in t.iterrows():
        miss = abs(r["error"]) > 0.35
        table.add_row(
            r["source_id"],
            r["system"],
            r["algorithm"],
            f"{r['nodes']}×{r['gpus_per_node']}",
            r["launch"],
            format_size(int(r["size_bytes"])),
            f"{r['latency_us']:.1f}",
            f"{r['predicted_us']:.1f}",
            f"[red]{_pct(r['error'])}[/red]" if miss else _pct(r["error"]),
        )
    console.print(table)
    summary_tables(validation, console)
    written = []
    if args.out:
        written = _write(
            args.out,
            {
                "holdout_points": validation.table,
                "holdout_by_system": validation.summary("system"),
                "holdout_by_algorithm": validation.summary("algorithm"),
            },
            [],
        )
    full = validation.table
    print(
        f"validated on {len(full)} held-out points from {full['source_id'].nunique()} sources ({folder}): "
        f"median |error| {full['error'].abs().median():.0%}, "
        f"{(full['error'].abs() <= 0.35).mean():.0%} within ±35 %"
        + (f"; wrote {len(written)} files to {args.out}" if written else "")
    )
    return 0


def _claims(args: argparse.Namespace) -> int:
    from rich.table import Table

    from study.claims import CLAIMS_FILE, check_claims, load_claims
    from study.commands.model import _console, _write
    from study.model import system_model

    claims = load_claims(Path(args.claims) if args.claims else CLAIMS_FILE)
    cache: dict[str, object] = {}

    def model_of(name: str):
        if name not in cache:
            cache[name] = system_model(name)
        return cache[name]

    verdicts = check_claims(claims, model_of)
    table = Table(title="The study's claims against the grounded model (claims are never training data)")
    for column in ("claim", "system", "claimed", "predicted", "interval", "verdict", "detail"):
        table.add_column(column, overflow="fold")
    colour = {"supported": "green", "partly supported": "yellow", "not supported": "red"}
    for v in verdicts:
        detail = v.detail + (f"; extrapolated: {v.extrapolated}" if v.extrapolated else "")
        table.add_row(
            v.text,
            v.system,
            v.claimed,
            v.predicted,
            v.interval,
            f"[{colour[v.verdict]}]{v.verdict}[/]",
            detail,
        )
    _console().print(table)
    written = []
    if args.out:
        import pandas as pd

        written = _write(args.out, {"claims": pd.DataFrame([v.__dict__ for v in verdicts])}, [])
    counts = {k: sum(v.verdict == k for v in verdicts) for k in colour}
    print(
        f"checked {len(verdicts)} claims: "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
        + (f"; wrote {len(written)} files to {args.out}" if written else "")
    )
    return 0


HANDLERS = {"calibrate": _calibrate, "validate": _validate, "claims": _claims}

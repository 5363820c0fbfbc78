"""`study model`: predict all-reduce latency and inference step times with the α-β cost model; fit it.

Sub-commands: `predict` (latency of each algorithm over node counts and sizes), `fit` (α, β per level
from a collected benchmark sweep), `engine` (decode / prefill / E2E of TP × PP, NCCL against NVRAR),
`compare` (the same predictions on several systems and which parameter dominates where).
Ranges: `2..1024` doubles (2, 4, …, 1024); `2..16:+2` steps by 2; `2..64:*4` multiplies by 4; `2,3,4`
lists. Sizes take units: `64KiB..2MiB`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from study.results import STATISTICS

HELP = "predict all-reduce and inference step times with the α-β cost model; fit it to measurements"
DESCRIPTION = __doc__

DEFAULT_ALGORITHMS = "nccl,nvrar,ring,recursive-doubling,rabenseifner,tree"


def _common(p: argparse.ArgumentParser, *, systems: bool = False) -> None:
    if systems:
        p.add_argument("--systems", required=True, help="comma-separated system names or YAML paths")
    else:
        p.add_argument("--system", default="local", help="system name or YAML path (default: local)")
    p.add_argument("--nodes", default="1..64", help="node counts: 2..1024, 2..16:+2 or 2,3,4 (default 1..64)")
    p.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="override a parameter, e.g. alpha_inter_us=2.5 (repeatable)",
    )
    p.add_argument("--defaults", action="store_true", help="ignore jobs/systems/fitted/<system>.yaml")
    p.add_argument("--gpus-per-node", type=int, help="what-if: another node shape than the system's")
    p.add_argument("--out", metavar="DIR", help="write CSV tables and figures here")
    p.add_argument(
        "--launch",
        choices=("graph", "plain"),
        default="graph",
        help="calls replayed from a CUDA graph (default) or launched one by one (grounded systems)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="model_command", metavar="SUBCOMMAND")

    p = sub.add_parser("predict", help="predicted latency of each all-reduce over node counts and sizes")
    _common(p)
    p.add_argument("--sizes", default="64KiB..2MiB", help="message sizes (default 64KiB..2MiB)")
    p.add_argument("--algorithms", default=DEFAULT_ALGORITHMS, help=f"default {DEFAULT_ALGORITHMS}")

    p = sub.add_parser("fit", help="fit α and β per level from a collected collective-benchmark workspace")
    p.add_argument("workspace", metavar="WORKSPACE", help="workspace folder or dataset file")
    p.add_argument("--system", help="which system's samples to fit (required when the data holds several)")
    p.add_argument(
        "--fix", default="", help="parameters to hold at their defaults, e.g. alpha_intra_us,beta_intra_GBps"
    )
    p.add_argument(
        "--graphs",
        choices=("any", "yes", "no"),
        default="any",
        help="use samples timed inside CUDA graphs (yes), outside (no) or both (any)",
    )
    p.add_argument(
        "--placement",
        choices=("in-place", "out-of-place"),
        help="which placement's samples to fit (default: in-place where the data has it)",
    )
    p.add_argument(
        "--statistic",
        choices=STATISTICS,
        help="which statistic over ranks to fit (default: the only one the data holds)",
    )
    p.add_argument(
        "--write-system",
        action="store_true",
        help="also write jobs/systems/fitted/<system>.yaml, which predictions then prefer",
    )

    from study.commands import model_calibration, model_engine, model_figures

    model_engine.add_arguments(sub)
    model_calibration.add_arguments(sub)
    model_figures.add_arguments(sub)


def run(args: argparse.Namespace) -> int:
    from study.commands import model_calibration, model_engine, model_figures
    from study.errors import InputError

    command = getattr(args, "model_command", None)
    handlers = {
        "predict": _predict,
        "fit": _fit,
        **model_engine.HANDLERS,
        **model_calibration.HANDLERS,
        **model_figures.HANDLERS,
    }
    if command is None:
        raise InputError(f"choose a sub-command: {', '.join(handlers)}", key="SUBCOMMAND")
    return handlers[command](args)


def escape(text: str) -> str:
    """Text for a rich title: square brackets would otherwise be read as markup."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _console():
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


def _algorithms(text: str) -> list[str]:
    """All-reduce algorithms either model prices (the peer-memory ones only on grounded systems)."""
    from collectives.costmodel import MODELS
    from collectives.costmodel.grounded import IN_NODE
    from study.errors import InputError

    known = (*MODELS, *IN_NODE)
    names = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in names if a not in known]
    if unknown or not names:
        raise InputError(
            f"unknown algorithm(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(known)}",
            key="--algorithms",
        )
    return names


def _models(names: list[str], args: argparse.Namespace):
    from study.errors import InputError
    from study.model import parse_assignments, system_model

    overrides = parse_assignments(args.set)
    if args.gpus_per_node is not None and args.gpus_per_node < 1:
        raise InputError("must be at least 1", key="--gpus-per-node")
    return [
        system_model(n, overrides, use_fitted=not args.defaults, gpus_per_node=args.gpus_per_node)
        for n in names
    ]


def _write(out: str | None, tables: dict, figures) -> list[Path]:
    from study.results import atomic_write_text

    if not out:
        return []
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = [
        atomic_write_text(folder / f"{name}.csv", df.to_csv(index=False)) for name, df in tables.items()
    ]
    for make in figures:
        written.extend(make(folder))
    return written


def _num(value: float) -> str:
    return f"{value:,.1f}" if value < 1e3 else f"{value:,.0f}"


def _fmt_us(value: float, low: float = float("nan"), high: float = float("nan"), mark: str = "") -> str:
    """A latency for a table, with its 5–95 % interval when the model has one; `mark` flags extrapolation."""
    text = _num(value) + mark
    return text if low != low else f"{text} [{_num(low)}–{_num(high)}]"


def _predict(args: argparse.Namespace) -> int:
    from rich.table import Table

    from analysis import costmodel_plots as plots
    from study.model import parse_int_range, parse_size_range
    from study.model_tables import predict_table

    nodes = parse_int_range(args.nodes, "--nodes")
    sizes = parse_size_range(args.sizes, "--sizes")
    algorithms = _algorithms(args.algorithms)
    (sm,) = _models([args.system], args)
    df = predict_table([sm], nodes, sizes, algorithms, args.launch)
    if df.empty:
        from study.errors import InputError

        raise InputError("; ".join(df.attrs["skipped"]) or "nothing to predict", key="--algorithms")
    mode = f", {args.launch} launches" if sm.grounded else ""
    table = Table(
        title=escape(
            f"Predicted all-reduce latency (µs) on {sm.name}, {sm.gpus_per_node} GPUs per node{mode}"
            + (" [5–95 % interval]; * = beyond the published data" if sm.grounded else "")
        )
    )
    for column in (
        "nodes",
        "size",
        *algorithms,
        "fastest",
        *(["NCCL picks"] if "nccl" in algorithms else []),
    ):
        table.add_column(column, justify="right" if column not in ("fastest", "NCCL picks") else "left")
    algorithms = [a for a in algorithms if a in set(df["algorithm"])]
    for (n, _size), sel in df.groupby(["nodes", "size_bytes"], sort=True):
        by = sel.set_index("algorithm")
        cells = [
            str(n),
            sel["size"].iloc[0],
            *(
                _fmt_us(
                    by.at[a, "latency_us"],
                    by.at[a, "latency_us_low"],
                    by.at[a, "latency_us_high"],
                    "*" if by.at[a, "extrapolation"] else "",
                )
                if a in by.index
                else "–"
                for a in algorithms
            ),
            sel["fastest"].iloc[0],
        ]
        if "nccl" in algorithms:
            cells.append(sel.loc[sel["algorithm"] == "nccl", "nccl_choice"].iloc[0])
        table.add_row(*cells)
    _console().print(table)
    written = _write(
        args.out,
        {f"model_predict_{sm.name}": df},
        [
            lambda d: plots.plot_latency_vs_size(df, d, f"model_latency_vs_size_{sm.name}"),
            lambda d: plots.plot_latency_vs_nodes(df, d, f"model_latency_vs_nodes_{sm.name}"),
        ],
    )
    for note in df.attrs["skipped"]:
        print(f"not predicted: {note}")
    beyond = sorted({e for e in df["extrapolation"] if e})
    if beyond:
        print("* beyond the published data: " + "; ".join(beyond))
    print(
        f"predicted {len(df)} configurations ({len(algorithms)} algorithms × {len(nodes)} node counts × "
        f"{len(sizes)} sizes) on {sm.name}; parameters: {sm.source}"
        + (f"; wrote {len(written)} files to {args.out}" if written else "")
    )
    return 0


def _fit(args: argparse.Namespace) -> int:
    from rich.table import Table

    from analysis import costmodel_plots as plots
    from collectives.costmodel import FIT_PARAMS
    from study.errors import InputError
    from study.model import fitted_path
    from study.model_fit import fit_document, fit_workspace, write_yaml

    fixed = tuple(f.strip() for f in args.fix.split(",") if f.strip())
    unknown = [f for f in fixed if f not in FIT_PARAMS]
    if unknown:
        raise InputError(
            f"cannot hold {', '.join(unknown)} fixed; choose from {', '.join(FIT_PARAMS)}", key="--fix"
        )
    graphs = {"any": None, "yes": True, "no": False}[args.graphs]
    fit = fit_workspace(args.workspace, args.system, fixed, graphs, args.placement, args.statistic)
    r = fit.result
    prior = fit.prior.params.flat()
    got = r.params.flat()
    measured = ", ".join(w for w in (fit.placement, f"{fit.statistic} over ranks") if w)
    table = Table(
        title=escape(
            f"Fitted cost model of {fit.system} from {r.samples} samples ({measured}; {fit.dataset})"
        )
    )
    for column in ("parameter", "fitted", "± std. error", "default"):
        table.add_column(column, justify="left" if column == "parameter" else "right")
    for name in FIT_PARAMS:
        se = r.stderr.get(name)
        table.add_row(
            name, f"{got[name]:.4g}", f"{se:.2g}" if se is not None else "held", f"{prior[name]:.4g}"
        )
    _console().print(table)
    workspace = Path(args.workspace)
    folder = workspace if workspace.is_dir() else workspace.parent
    document = fit_document(fit)
    targets = [write_yaml(folder / "cost_model.fit.yaml", document)]
    residuals = fit.data[
        [
            "algorithm",
            "model",
            "nodes",
            "gpus_per_node",
            "size_bytes",
            "latency_us",
            "predicted_us",
            "relative_residual",
        ]
    ]
    targets += _write(
        str(folder / "figures"),
        {"cost_model_fit_residuals": residuals},
        [lambda d: plots.plot_fit(residuals, d, f"cost_model_fit_{fit.system}")],
    )
    if args.write_system:
        targets.append(write_yaml(fitted_path(fit.system), document))
    if not r.converged:
        print(
            f"note: the slowest-step choice kept switching for {r.iterations} iterations; kept the estimate "
            "whose model fits best (more sizes or node counts usually settle it)"
        )
    if fit.dropped:
        print(
            "not fitted (no schedule model): "
            + ", ".join(f"{k} ({v} samples)" for k, v in fit.dropped.items())
        )
    print(
        f"fitted {', '.join(r.fitted)} of {fit.system} from {r.samples} samples: rms relative residual "
        f"{r.rms_relative:.1%}; wrote {', '.join(str(t) for t in targets if t.suffix == '.yaml')}"
    )
    return 0

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

    p = sub.add_parser("engine", help="decode / prefill / E2E step times of TP × PP inference, NCCL vs NVRAR")
    _common(p)
    p.add_argument("--model", default="llama3.1-405b", help="llama3.1-8b, llama3.1-70b or llama3.1-405b")
    p.add_argument("--tp", help="TP sizes (default: all GPUs, and GPUs per node with PP across nodes)")
    p.add_argument("--pp", help="PP sizes (default: whatever fills the nodes with --tp)")
    p.add_argument("--batch-size", default="1,4,16,64", help="batch sizes (default 1,4,16,64)")
    p.add_argument("--prompt-len", type=int, default=1024)
    p.add_argument("--decode-len", type=int, default=256)
    p.add_argument("--micro-batches", type=int, default=1)
    p.add_argument(
        "--flop-efficiency", type=float, default=0.6, help="fraction of datasheet bf16 FLOP/s (0.6)"
    )
    p.add_argument(
        "--bandwidth-efficiency", type=float, default=0.8, help="fraction of datasheet HBM B/s (0.8)"
    )

    p = sub.add_parser("compare", help="the same predictions on several systems, with a sensitivity table")
    _common(p, systems=True)
    p.add_argument("--sizes", default="64KiB..2MiB", help="message sizes (default 64KiB..2MiB)")
    p.add_argument("--algorithms", default="nccl,nvrar", help="default nccl,nvrar")
    p.add_argument("--model", help="also compare engine step times of this model (e.g. llama3.1-405b)")
    p.add_argument("--batch-size", default="4,64", help="batch sizes for --model (default 4,64)")
    p.add_argument("--prompt-len", type=int, default=1024)
    p.add_argument("--decode-len", type=int, default=256)

    from study.commands import model_calibration, model_figures

    model_calibration.add_arguments(sub)
    model_figures.add_arguments(sub)


def run(args: argparse.Namespace) -> int:
    from study.commands import model_calibration, model_figures
    from study.errors import InputError

    command = getattr(args, "model_command", None)
    handlers = {
        "predict": _predict,
        "fit": _fit,
        "engine": _engine,
        "compare": _compare,
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


def _engine(args: argparse.Namespace) -> int:
    from rich.table import Table

    from analysis import costmodel_plots as plots
    from study.errors import InputError
    from study.model import parse_int_range
    from study.model_tables import engine_table

    nodes = parse_int_range(args.nodes, "--nodes")
    tps = parse_int_range(args.tp, "--tp") if args.tp else None
    pps = parse_int_range(args.pp, "--pp") if args.pp else None
    batches = parse_int_range(args.batch_size, "--batch-size")
    for name in ("prompt_len", "decode_len", "micro_batches"):
        if getattr(args, name) < 1:
            raise InputError("must be at least 1", key="--" + name.replace("_", "-"))
    for name in ("flop_efficiency", "bandwidth_efficiency"):
        if not 0 < getattr(args, name) <= 1:
            raise InputError("must be in (0, 1]", key="--" + name.replace("_", "-"))
    (sm,) = _models([args.system], args)
    df = engine_table(
        [sm],
        args.model,
        nodes,
        tps,
        pps,
        batches,
        args.prompt_len,
        args.decode_len,
        args.micro_batches,
        args.flop_efficiency,
        args.bandwidth_efficiency,
    )
    table = Table(
        title=escape(
            f"{args.model} on {sm.name}: predicted step times (ms), prompt {args.prompt_len}, "
            f"decode {args.decode_len}; parameters: {sm.source}"
        )
    )
    columns = (
        "nodes",
        "tp",
        "pp",
        "batch",
        "prefill",
        "decode NCCL",
        "decode NVRAR",
        "comm share",
        "E2E NCCL",
        "E2E NVRAR",
        "NVRAR E2E gain [5–95 %]",
        "GB/GPU",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for _, row in df.iterrows():
        table.add_row(
            str(row["nodes"]),
            str(row["tp"]),
            str(row["pp"]),
            str(row["batch_size"]),
            f"{row['prefill_ms']:.1f}",
            f"{row['decode_ms']:.2f}",
            f"{row['decode_ms_nvrar']:.2f}",
            f"{row['decode_comm_share']:.0%}",
            f"{row['e2e_ms']:.0f}",
            f"{row['e2e_ms_nvrar']:.0f}",
            f"{row['e2e_speedup_nvrar']:.2f}x"
            + (
                f" [{row['e2e_speedup_nvrar_low']:.2f}–{row['e2e_speedup_nvrar_high']:.2f}]"
                if row["e2e_speedup_nvrar_low"] == row["e2e_speedup_nvrar_low"]
                else ""
            ),
            f"{row['weights_gb_per_gpu']:.0f}" + ("" if row.get("fits_memory", True) else " (!)"),
        )
    _console().print(table)
    written = _write(
        args.out,
        {f"model_engine_{args.model}_{sm.name}": df},
        [lambda d: plots.plot_engine(df, d, f"model_engine_{args.model}_{sm.name}")],
    )
    best = df.loc[df["e2e_speedup_nvrar"].idxmax()]
    print(
        f"predicted {len(df)} configurations of {args.model} on {sm.name}; largest NVRAR E2E gain "
        f"{best['e2e_speedup_nvrar']:.2f}x at {best['nodes']} nodes, TP {best['tp']} × PP {best['pp']}, "
        f"batch "
        f"{best['batch_size']}"
        + (f"; wrote {len(written)} files to {args.out}" if written else "")
        + (
            "; (!) = weights do not fit in GPU memory"
            if "fits_memory" in df and not df["fits_memory"].all()
            else ""
        )
    )
    return 0


def _compare(args: argparse.Namespace) -> int:
    from rich.table import Table

    from analysis import costmodel_plots as plots
    from study.errors import InputError
    from study.model import parse_int_range, parse_size_range
    from study.model_tables import predict_table, sensitivity_table
    from study.units import format_size

    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    if len(names) < 2:
        raise InputError("give at least two systems", key="--systems")
    nodes = parse_int_range(args.nodes, "--nodes")
    sizes = parse_size_range(args.sizes, "--sizes")
    algorithms = _algorithms(args.algorithms)
    models = _models(names, args)
    pred = predict_table(models, nodes, sizes, algorithms)
    sens = sensitivity_table(models, nodes, sizes, algorithms)
    console = _console()
    table = Table(
        title="Predicted all-reduce latency (µs) per system [5–95 % interval]; * = beyond the published data"
    )
    table.add_column("algorithm")
    table.add_column("nodes", justify="right")
    table.add_column("size", justify="right")
    for sm in models:
        table.add_column(sm.name, justify="right")
    by = pred.set_index(["algorithm", "nodes", "size_bytes", "system"])
    for algorithm, n, size in (
        pred[["algorithm", "nodes", "size_bytes"]].drop_duplicates().itertuples(index=False)
    ):
        cells = []
        for sm in models:
            key = (algorithm, n, size, sm.name)
            if key not in by.index:
                cells.append("–")
                continue
            r = by.loc[key]
            mark = "*" if r["extrapolation"] else ""
            cells.append(_fmt_us(r["latency_us"], r["latency_us_low"], r["latency_us_high"], mark))
        table.add_row(algorithm, str(n), format_size(int(size)), *cells)
    console.print(table)
    st = Table(
        title="Sensitivity: elasticity ∂T/∂θ · θ/T (+1: latency moves one-for-one with θ, −1: inversely); "
        "the two parameters that matter most per configuration"
    )
    for column in ("system", "algorithm", "nodes", "size", "dominant", "e", "next", "e "):
        st.add_column(
            column, justify="left" if column in ("system", "algorithm", "dominant", "next") else "right"
        )
    for _, r in sens.iterrows():
        first, second = r["dominant"], r["next"]
        st.add_row(
            r["system"],
            r["algorithm"],
            str(r["nodes"]),
            r["size"],
            first,
            f"{r[f'e_{first}']:+.2f}" if first else "",
            second,
            f"{r[f'e_{second}']:+.2f}" if second else "",
        )
    console.print(st)
    tag = "_vs_".join(sm.name for sm in models)
    tables = {f"model_compare_{tag}": pred, f"model_sensitivity_{tag}": sens}
    if args.model:
        tables[f"model_engine_{args.model}_{tag}"] = _compare_engine(args, models, nodes, console)
    written = _write(args.out, tables, [lambda d: plots.plot_compare(pred, d, f"model_compare_{tag}")])
    share = sens["dominant"].value_counts(normalize=True)
    print(
        f"compared {len(models)} systems over {len(pred)} predictions; dominant parameters: "
        + ", ".join(f"{k} {v:.0%}" for k, v in share.items())
        + (f"; wrote {len(written)} files to {args.out}" if written else "")
    )
    return 0


def _compare_engine(args: argparse.Namespace, models, nodes: list[int], console):
    """Engine step times of one model on every system, TP over all GPUs, NCCL against NVRAR."""
    from rich.table import Table

    from study.model import parse_int_range
    from study.model_tables import engine_table

    batches = parse_int_range(args.batch_size, "--batch-size")
    df = engine_table(
        models, args.model, nodes, None, [1], batches, args.prompt_len, args.decode_len, 1, 0.6, 0.8
    )
    table = Table(
        title=escape(f"{args.model}, TP over all GPUs: decode step (ms) and E2E gain of NVRAR per system")
    )
    for column in (
        "nodes",
        "batch",
        *(f"{sm.name} NCCL" for sm in models),
        *(f"{sm.name} NVRAR" for sm in models),
        *(f"{sm.name} gain" for sm in models),
    ):
        table.add_column(column, justify="right")
    wide = df.pivot_table(
        index=["nodes", "batch_size"],
        columns="system",
        values=["decode_ms", "decode_ms_nvrar", "e2e_speedup_nvrar"],
    )
    for (n, batch), row in wide.iterrows():
        table.add_row(
            str(n),
            str(batch),
            *(f"{row[('decode_ms', sm.name)]:.2f}" for sm in models),
            *(f"{row[('decode_ms_nvrar', sm.name)]:.2f}" for sm in models),
            *(f"{row[('e2e_speedup_nvrar', sm.name)]:.2f}x" for sm in models),
        )
    console.print(table)
    return df

"""`study model engine` (decode / prefill / E2E step times of TP × PP inference, NCCL against NVRAR)
and `study model compare` (the same predictions on several systems, and which parameter dominates)."""

from __future__ import annotations

import argparse

from study.commands.model import (
    _algorithms,
    _common,
    _console,
    _fmt_us,
    _models,
    _write,
    escape,
)


def add_arguments(sub) -> None:
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


HANDLERS = {"engine": _engine, "compare": _compare}

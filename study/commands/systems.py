"""`study systems`: the machines the project knows (jobs/systems/*.yaml), as a table or in detail."""

from __future__ import annotations

import argparse

HELP = "list the systems in jobs/systems/ (or show one in detail)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "system", nargs="?", help="show this system (a name or a path to a YAML file) in detail"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from rich.console import Console
    from rich.table import Table

    from study.systems import list_systems, load_system

    console = Console(width=None if sys.stdout.isatty() else 200)
    if args.system:
        system = load_system(args.system)
        data = system.model_dump(mode="json")
        if args.json:
            print(json.dumps(data, indent=1))
            return 0
        table = Table(title=f"{system.name}: {system.description}", show_header=False)
        for key, value in data.items():
            if key not in ("name", "description", "version"):
                table.add_row(key, _show(value))
        table.add_row("file", system.path)
        console.print(table)
        return 0
    systems = list_systems()
    if args.json:
        print(json.dumps([s.model_dump(mode="json") for s in systems], indent=1))
        return 0
    table = Table(title="Systems (jobs/systems/)")
    for column in (
        "name",
        "scheduler",
        "launcher",
        "GPUs/node",
        "GPU",
        "interconnect",
        "NICs x Gb/s",
        "topology",
        "intra-node",
        "max nodes",
        "account",
    ):
        table.add_column(column)
    for s in systems:
        net = s.interconnect
        table.add_row(
            s.name,
            s.scheduler,
            s.launcher,
            str(s.gpus_per_node) + ("" if s.has_gpus else " (CPU ranks)"),
            s.gpu.model if s.gpu else "-",
            net.name if net else "-",
            f"{net.nics_per_node} x {net.link_Gbps:g}" if net else "-",
            net.topology if net else "-",
            f"{s.intra_node.name} {s.intra_node.bandwidth_GBps:g} GB/s" if s.intra_node else "-",
            str(s.max_nodes or "-"),
            "required" if s.requires_account else "-",
        )
    console.print(table)
    print(f"{len(systems)} systems; add one with a YAML file in jobs/systems/ or pass --system PATH")
    return 0


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "\n".join(f"{k}: {_show(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return "\n".join(map(str, value)) or "-"
    return "-" if value is None else str(value)

"""Published measurements, the platforms they ran on and the priors: what the grounded model is fitted to.

Everything here is data in `jobs/measurements/` (README.md there documents the columns):
`*.csv` one file per source (every row names its source), `platforms.yaml` the hardware of platforms
that are not shipped systems, `priors.yaml` where each parameter starts. Shipped systems
(`jobs/systems/*.yaml`) are platforms too, through their `cost_model:` block. A malformed file is an
InputError naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collectives.costmodel.grounded import ALGORITHMS, GROUPS, HARNESSES, Platform
from study.errors import InputError
from study.systems import SYSTEMS_DIR, System, list_systems

MEASUREMENTS_DIR = SYSTEMS_DIR.parent / "measurements"
PLATFORMS_FILE = MEASUREMENTS_DIR / "platforms.yaml"
PRIORS_FILE = MEASUREMENTS_DIR / "priors.yaml"
CALIBRATION_FILE = MEASUREMENTS_DIR / "calibration.json"

COLUMNS = (
    "source_id",
    "system",
    "gpu",
    "network",
    "nodes",
    "gpus_per_node",
    "algorithm",
    "nccl_algo",
    "nccl_proto",
    "dtype",
    "size_bytes",
    "latency_us",
    "launch",
    "harness",
    "kernels",
    "statistic",
    "software",
    "source",
    "locator",
    "read_as",
    "notes",
)
REQUIRED = (
    "source_id",
    "system",
    "nodes",
    "gpus_per_node",
    "algorithm",
    "size_bytes",
    "latency_us",
    "source",
)
CHOICES = {
    "launch": ("plain", "graph", "unknown"),
    "harness": ("nccl-tests", "torch", "osu"),
    "statistic": ("mean", "median", "max", "min", "unknown"),
    "read_as": ("table", "text", "digitised"),
    "dtype": ("bf16", "fp16", "fp32", "bytes", ""),
}
NETWORKS = ("slingshot-11", "infiniband")
FABRICS = ("nvlink3", "nvlink4")
TRANSPORTS = ("proxy", "ibgda")
CPUS = ("amd", "intel", "arm")
NIC_PATHS = ("pxb", "phb")


@dataclass(frozen=True)
class Prior:
    value: float
    sigma: float  # standard deviation of ln(value)
    source: str
    upper: float = math.inf


def read_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such file", file=str(path)) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(
            f"cannot read YAML: {getattr(exc, 'problem', exc)}",
            file=str(path),
            line=mark.line + 1 if mark else None,
            col=mark.column + 1 if mark else None,
        ) from None


def _classes_block(block: dict[str, Any], where: str, key: str) -> dict[str, Any]:
    """The class keys of a platform's cost_model block, checked."""
    out: dict[str, Any] = {}
    for name, allowed in (
        ("network", NETWORKS),
        ("fabric", FABRICS),
        ("nvshmem", TRANSPORTS),
        ("cpu", CPUS),
        ("nic_path", NIC_PATHS),
    ):
        value = block.get(name)
        if value is not None and value not in allowed:
            raise InputError(f"{value!r} is not one of {', '.join(allowed)}", file=where, key=f"{key}.{name}")
        out[name] = value
    for name, default in (("fabric_GBps", 0.0), ("sm", 80)):
        value = block.get(name)
        value = default if value is None else value
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise InputError(f"expected a number ≥ 0, got {value!r}", file=where, key=f"{key}.{name}")
        out[name] = value
    switched = block.get("switched")
    if switched is not None and not isinstance(switched, bool):
        raise InputError("expected true or false", file=where, key=f"{key}.switched")
    out["switched"] = bool(switched)
    if out["fabric"] and out["fabric_GBps"] <= 0:
        raise InputError("a fabric needs its bandwidth per GPU", file=where, key=f"{key}.fabric_GBps")
    return out


def platform_of_system(system: System) -> Platform | None:
    """The platform of a shipped system whose cost_model block names classes, else None."""
    block = system.cost_model
    if block is None or block.network is None and block.fabric is None:
        return None
    classes = _classes_block(block.model_dump(), system.path, "cost_model")
    if system.gpu is None:
        raise InputError("a platform of the grounded model needs a `gpu:` block", file=system.path, key="gpu")
    net = system.interconnect
    return Platform(
        name=system.name,
        gpus_per_node=system.gpus_per_node,
        hbm_TBps=system.gpu.hbm_TBps,
        sm=int(classes["sm"]),
        cpu=classes["cpu"] or "intel",
        fabric=classes["fabric"],
        fabric_GBps=float(classes["fabric_GBps"]),
        fabric_switched=classes["switched"],
        network=classes["network"],
        nics_per_node=net.nics_per_node if net else 0,
        nic_Gbps=net.link_Gbps if net else 0.0,
        nvshmem=classes["nvshmem"],
        nccl_graph_mixing=str(system.env.get("NCCL_GRAPH_MIXING_SUPPORT", "1")).strip()
        not in ("0", "False", "false"),
        nic_path=classes["nic_path"] or "pxb",
    )


def load_platforms(path: Path = PLATFORMS_FILE) -> dict[str, Platform]:
    """Every platform: those of platforms.yaml and the shipped systems with a grounded cost_model."""
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("platforms"), dict):
        raise InputError("expected a mapping with a `platforms:` mapping", file=str(path), key="platforms")
    out: dict[str, Platform] = {}
    for name, entry in data["platforms"].items():
        key = f"platforms.{name}"
        if not isinstance(entry, dict) or not isinstance(entry.get("cost_model"), dict):
            raise InputError("expected a mapping with a cost_model block", file=str(path), key=key)
        classes = _classes_block(entry["cost_model"], str(path), f"{key}.cost_model")
        try:
            g, hbm = int(entry["gpus_per_node"]), float(entry["hbm_TBps"])
            nics, rate = int(entry.get("nics_per_node", 0)), float(entry.get("nic_Gbps", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"needs gpus_per_node and hbm_TBps as numbers ({exc})", file=str(path), key=key
            ) from None
        if classes["network"] and (nics < 1 or rate <= 0):
            raise InputError(
                "a platform with a network needs nics_per_node and nic_Gbps", file=str(path), key=key
            )
        out[str(name)] = Platform(
            str(name),
            g,
            hbm,
            int(classes["sm"]),
            classes["cpu"] or "intel",
            classes["fabric"],
            float(classes["fabric_GBps"]),
            classes["switched"],
            classes["network"],
            nics,
            rate,
            classes["nvshmem"],
            nic_path=classes["nic_path"] or "pxb",
        )
    for system in list_systems():
        platform = platform_of_system(system)
        if platform is not None:
            if platform.name in out:
                raise InputError(
                    f"platform {platform.name!r} is also a shipped system; keep one",
                    file=str(path),
                    key=platform.name,
                )
            out[platform.name] = platform
    return out


def parameter_names(platforms: dict[str, Platform] | None = None) -> list[str]:
    """Every parameter of the grounded model the priors must cover: globals and each class's."""
    from collectives.costmodel.grounded import GLOBAL_PARAMETERS

    names = list(GLOBAL_PARAMETERS)
    for group, params in GROUPS.items():
        classes = {"host": HARNESSES, "fabric": FABRICS, "network": NETWORKS, "nvshmem": TRANSPORTS}[group]
        names += [f"{group}.{c}.{p}" for c in classes for p in params]
    return names


def load_priors(path: Path = PRIORS_FILE) -> dict[str, Prior]:
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("parameters"), dict):
        raise InputError("expected a mapping with a `parameters:` mapping", file=str(path), key="parameters")
    known = parameter_names()
    out = {}
    for name, entry in data["parameters"].items():
        key = f"parameters.{name}"
        if name not in known:
            raise InputError(f"unknown parameter; known: {', '.join(known)}", file=str(path), key=key)
        try:
            value, sigma, source = float(entry["value"]), float(entry["sigma"]), str(entry["source"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"needs value, sigma and source ({exc})", file=str(path), key=key) from None
        if not (value > 0 and sigma > 0 and math.isfinite(value) and math.isfinite(sigma)):
            raise InputError("value and sigma must be positive", file=str(path), key=key)
        upper = 1.0 if name.endswith(".efficiency") else math.inf
        if value > upper:
            raise InputError("an efficiency is at most 1", file=str(path), key=key)
        out[name] = Prior(value, sigma, source, upper)
    missing = [n for n in known if n not in out]
    if missing:
        raise InputError(f"no prior for {', '.join(missing)}", file=str(path), key="parameters")
    return out


def _cell(path: Path, line: int, column: str, message: str) -> InputError:
    col = COLUMNS.index(column) + 1 if column in COLUMNS else None
    return InputError(message, file=str(path), line=line, col=col, key=column)


def _number(path: Path, line: int, row: dict[str, str], column: str, kind=float, minimum: float = 0.0):
    text = (row.get(column) or "").strip()
    try:
        value = kind(text) if kind is float else int(text)
    except ValueError:
        raise _cell(
            path, line, column, f"{text!r} is not {'a number' if kind is float else 'a whole number'}"
        ) from None
    if not math.isfinite(value) or value <= minimum:
        raise _cell(path, line, column, f"{text} must be greater than {minimum:g}")
    return value


def read_measurements(path: Path, platforms: dict[str, Platform]) -> list[dict[str, Any]]:
    """The rows of one measurements CSV, checked cell by cell (errors name file:line:column)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(path)) from None
    if "\x00" in text:
        raise InputError("contains NUL bytes: not a CSV file", file=str(path))
    reader = csv.reader(text.splitlines())
    _check_header(path, next(reader, None))
    rows = []
    for line, cells in enumerate(reader, start=2):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(COLUMNS):
            raise InputError(f"{len(cells)} fields, expected {len(COLUMNS)}", file=str(path), line=line)
        rows.append(
            _parse_row(path, line, dict(zip(COLUMNS, (c.strip() for c in cells), strict=True)), platforms)
        )
    if not rows:
        raise InputError("no data rows", file=str(path), line=2)
    return rows


def _check_header(path: Path, header: list[str] | None) -> None:
    if header is None:
        raise InputError("empty file: expected a header line", file=str(path), line=1)
    header = [h.strip() for h in header]
    if tuple(header) == COLUMNS:
        return
    missing = [c for c in COLUMNS if c not in header]
    extra = [c for c in header if c not in COLUMNS]
    detail = (f"missing {', '.join(missing)}" if missing else "") + (
        ("; " if missing else "") + f"unknown {', '.join(extra)}" if extra else ""
    )
    raise InputError(
        f"the header must be the documented columns in order ({detail or 'wrong order'})",
        file=str(path),
        line=1,
        hint="jobs/measurements/README.md lists them",
    )


def _check_words(path: Path, line: int, row: dict[str, str], platforms: dict[str, Platform]) -> None:
    """Required cells present, and every cell of a closed vocabulary one of its words."""
    for column in REQUIRED:
        if not row[column]:
            raise _cell(path, line, column, "empty; this column is required")
    for column, allowed in CHOICES.items():
        if row[column] not in allowed:
            raise _cell(
                path,
                line,
                column,
                f"{row[column]!r} is not one of {', '.join(a or '(empty)' for a in allowed)}",
            )
    if row["algorithm"] not in ALGORITHMS:
        raise _cell(path, line, "algorithm", f"{row['algorithm']!r} is not one of {', '.join(ALGORITHMS)}")
    if row["system"] not in platforms:
        raise _cell(
            path,
            line,
            "system",
            f"unknown platform {row['system']!r}: add it to jobs/measurements/platforms.yaml "
            f"(known: {', '.join(sorted(platforms))})",
        )


def _parse_row(path: Path, line: int, row: dict[str, str], platforms: dict[str, Platform]) -> dict[str, Any]:
    """One data row: its words checked, its numbers parsed, and what its platform can hold."""
    _check_words(path, line, row, platforms)
    platform = platforms[row["system"]]
    parsed: dict[str, Any] = dict(row)
    parsed["nodes"] = _number(path, line, row, "nodes", int)
    parsed["gpus_per_node"] = _number(path, line, row, "gpus_per_node", int)
    parsed["size_bytes"] = _number(path, line, row, "size_bytes", int)
    parsed["latency_us"] = _number(path, line, row, "latency_us")
    parsed["kernels"] = _number(path, line, row, "kernels", int) if row["kernels"] else 0
    if parsed["gpus_per_node"] > platform.gpus_per_node:
        raise _cell(
            path,
            line,
            "gpus_per_node",
            f"{parsed['gpus_per_node']} exceeds {platform.name}'s {platform.gpus_per_node}",
        )
    if parsed["nodes"] > 1 and not platform.network:
        raise _cell(path, line, "nodes", f"{platform.name} has no network: one node only")
    parsed["file"], parsed["line"] = str(path), line
    return parsed


def load_corpus(directory: Path = MEASUREMENTS_DIR, platforms: dict[str, Platform] | None = None):
    """Every measurements CSV of `directory` as one DataFrame (a `file` and a `line` column added)."""
    import pandas as pd

    platforms = platforms if platforms is not None else load_platforms()
    files = sorted(Path(directory).glob("*.csv"))
    if not files:
        raise InputError("no measurements (*.csv)", file=str(directory))
    rows = [r for f in files for r in read_measurements(f, platforms)]
    df = pd.DataFrame(rows)
    clash = df.groupby("source_id")["file"].nunique()
    if (clash > 1).any():
        name = clash[clash > 1].index[0]
        raise InputError(
            f"source_id {name!r} appears in several files; one file per source", file=str(directory)
        )
    return df

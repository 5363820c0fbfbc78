"""Sweep expansion: an experiment and a system become the list of runs, each with a stable id.

Axes (each swept key, each `zip` group, and `resources.nodes` / `resources.gpus_per_node` when they are
lists) combine as a cross product in the order they are written; fixed values are added; derived
values are computed in dependency order; exclusions drop runs; every run is repeated `repeats` times.
A run id is a hash of the experiment name, the run's resolved parameters and the repeat index, so it
does not depend on the order keys were written in, and a second render finds the same runs again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from study.config import Experiment
from study.expr import ExprError
from study.parameters import BUNDLED_ONLY, checker_for
from study.systems import System
from study.yamlpos import Positions


@dataclass(frozen=True)
class Run:
    """One run of the sweep; `params` holds every resolved value, nodes, gpus_per_node and world_size too."""

    run_id: str
    repeat: int
    params: dict[str, Any] = field(hash=False)
    nodes: int
    gpus_per_node: int
    world_size: int
    walltime_s: int
    params_json: str = field(default="", repr=False, compare=False)


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, ASCII: one spelling per value, the input of run ids."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def run_id_for(experiment_name: str, params: dict[str, Any], repeat: int) -> str:
    """12 hex digits of SHA-256 over the canonical JSON of {experiment, params, repeat}.

    Keys are sorted, so the order in which an experiment file lists its keys never changes an id.
    """
    return _run_id(canonical_json(experiment_name), canonical_json(params), repeat)


def _run_id(name_json: str, params_json: str, repeat: int) -> str:
    # Byte for byte canonical_json({"experiment": ..., "params": ..., "repeat": ...}), built from parts
    # so that the repeats of one point serialize their parameters once.
    text = f'{{"experiment":{name_json},"params":{params_json},"repeat":{repeat}}}'
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def expand(experiment: Experiment, system: System) -> list[Run]:
    """Every run of `experiment` on `system`, in sweep order, repeats of a point next to each other.

    Raises InputError (naming the file, line and key) for a derived value that fails, resources the
    system cannot give, cross-field contradictions, duplicate runs and an empty sweep.
    """
    compiled = experiment.compiled
    pos = experiment.positions
    kind = experiment.kind
    runs: list[Run] = []
    seen: dict[str, dict[str, Any]] = {}
    walltime_s = experiment.resources.walltime
    repeats = experiment.repeats
    name_json = canonical_json(experiment.name)
    checkers = {name: checker_for(kind, name) for name, _ in compiled.derived}
    excluded = 0

    for combo in itertools.product(*[axis.values for axis in compiled.axes]):
        values: dict[str, Any] = dict(compiled.fixed)
        for axis, point in zip(compiled.axes, combo, strict=True):
            values.update(zip(axis.names, point, strict=True))
        values.setdefault("nodes", 1)
        values.setdefault("gpus_per_node", system.gpus_per_node)
        capacity = values["nodes"] * values["gpus_per_node"]
        values["world_size"] = capacity
        for name, expression in compiled.derived:
            try:
                result = expression.evaluate(values)
            except ExprError as exc:
                raise pos.error(("derived", name), f"{exc} (with {_describe(values)})") from None
            if result is None:  # `null`: this point leaves the value unset (the payload's default)
                values.pop(name, None)
                continue
            checker = checkers[name]
            if checker is not None:
                try:
                    result = checker(result)
                except ValueError as exc:
                    raise pos.error(
                        ("derived", name),
                        f"`{expression.source}` gave {result!r}: {exc} (with {_describe(values)})",
                    ) from None
            values[name] = result
        if values["world_size"] != capacity:
            raise pos.error(
                compiled.sources.get("world_size", ("derived",)),
                f"world_size {values['world_size']} differs from nodes x gpus_per_node = {capacity}",
            )
        _apply_kind_defaults(kind, values, compiled.sources, pos)
        if compiled.exclusions and _excluded(values, compiled.exclusions, pos):
            excluded += 1
            continue
        _check_resources(values, system, compiled.sources, pos)
        params = {key: values[key] for key in sorted(values)}
        params_json = canonical_json(params)
        for repeat in range(repeats):
            run_id = _run_id(name_json, params_json, repeat)
            if run_id in seen:
                raise pos.error(
                    _duplicated_axis(compiled),
                    f"duplicate runs: two points of the sweep resolve to the same parameters "
                    f"({_describe(params)}); remove the repeated value",
                )
            seen[run_id] = params
            runs.append(
                Run(
                    run_id,
                    repeat,
                    params,
                    params["nodes"],
                    params["gpus_per_node"],
                    params["world_size"],
                    walltime_s,
                    params_json,
                )
            )
    if not runs:
        reason = f"all {excluded} points are excluded" if excluded else "no points"
        raise pos.error(("exclude",) if excluded else ("sweep",), f"the sweep is empty: {reason}")
    return runs


def _duplicated_axis(compiled: Any) -> tuple[str | int, ...]:
    """Where a duplicate run comes from: the first axis that lists one point twice (at the repeated
    value), else the sweep itself (two different points that derived values made equal)."""
    for axis in compiled.axes:
        seen: set[str] = set()
        for i, point in enumerate(axis.values):
            key = canonical_json(list(point))
            if key in seen:
                return (*axis.path, i) if len(axis.names) == 1 else axis.path
            seen.add(key)
    return ("sweep",)


def _check_engine(values: dict[str, Any], sources: dict, pos: Positions) -> None:
    """An external engine gets only what it can honour: our all-reduce backends, decode kernels,
    micro-batches, compilation switches and timers are the bundled engine's."""
    engine = values.get("engine", "bundled")
    if engine == "bundled":
        return
    for key in BUNDLED_ONLY:
        if key in values:
            raise pos.error(
                sources.get(key, ("kind",)),
                f"`{key}` is a parameter of the bundled engine; engine {engine} cannot honour it",
                hint="zip it with `engine`, or exclude the combination",
            )
    if values.get("allreduce", "native") != "native":
        raise pos.error(
            sources.get("allreduce", ("kind",)),
            f"engine {engine} uses its own all-reduce, not `{values['allreduce']}`: write `native` for it",
            hint="e.g. zip: {engine: [bundled, vllm], allreduce: [nccl, native]}",
        )


def _apply_kind_defaults(kind: str, values: dict[str, Any], sources: dict, pos: Positions) -> None:
    if kind == "collective" and "placement" in values and "out_of_place" in values:
        raise pos.error(
            sources.get("out_of_place", ("kind",)),
            "`out_of_place` is the older spelling of `placement`: give one of them",
            hint="placement: both, out-of-place or in-place",
        )
    if kind == "inference":
        _check_engine(values, sources, pos)
        pp = values.setdefault("pp", 1)
        if "tp" not in values:
            if values["world_size"] % pp:
                raise pos.error(
                    sources.get("pp", ("kind",)),
                    f"world_size {values['world_size']} is not a multiple of pp {pp}",
                )
            values["tp"] = values["world_size"] // pp
        if values["tp"] * pp != values["world_size"]:
            raise pos.error(
                sources.get("tp", ("kind",)),
                f"tp x pp = {values['tp']} x {pp} = {values['tp'] * pp} must equal world_size "
                f"{values['world_size']} (nodes {values['nodes']} x gpus_per_node {values['gpus_per_node']})",
            )
        micro = values.get("micro_batches")
        if micro is not None and values["batch_size"] % micro:
            raise pos.error(
                sources.get("micro_batches", ("kind",)),
                f"micro_batches {micro} does not divide batch_size {values['batch_size']}",
            )
    virtual = values.get("virtual_gpus_per_node")
    if virtual is not None and values["world_size"] % virtual:
        raise pos.error(
            sources.get("virtual_gpus_per_node", ("kind",)),
            f"world_size {values['world_size']} is not a multiple of virtual_gpus_per_node {virtual}",
        )


def _excluded(values: dict[str, Any], exclusions: tuple, pos: Any) -> bool:
    for exclusion in exclusions:
        if exclusion.match is not None:
            if all(values.get(name) == value for name, value in exclusion.match.items()):
                return True
        else:
            try:
                if exclusion.expression.evaluate(values):
                    return True
            except ExprError as exc:
                raise pos.error(exclusion.path, f"{exc} (with {_describe(values)})") from None
    return False


def _check_resources(values: dict[str, Any], system: System, sources: dict, pos: Positions) -> None:
    if system.has_gpus and values["gpus_per_node"] > system.gpus_per_node:
        raise pos.error(
            sources.get("gpus_per_node", ("resources",)),
            f"{values['gpus_per_node']} GPUs per node asked, but {system.name} has "
            f"{system.gpus_per_node} per node",
        )
    ranks_cap = max(64, 16 * system.cpu_cores)
    if not system.has_gpus and values["gpus_per_node"] > ranks_cap:
        raise pos.error(
            sources.get("gpus_per_node", ("resources",)),
            f"{values['gpus_per_node']} ranks per node would start that many processes on {system.name}'s "
            f"{system.cpu_cores} cores; at most {ranks_cap} (16 per core)",
        )
    if system.max_nodes is not None and values["nodes"] > system.max_nodes:
        raise pos.error(
            sources.get("nodes", ("resources",)),
            f"{values['nodes']} nodes asked, but {system.name} offers at most {system.max_nodes}",
        )


def _describe(values: dict[str, Any]) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in sorted(values.items()) if not isinstance(v, dict | list))
    return shown if len(shown) < 200 else shown[:197] + "..."

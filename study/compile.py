"""Compiling an experiment's sweep: every load-time check of names, values and expressions.

`compile_sweep(experiment)` turns the `resources`, `sweep`, `fixed`, `derived` and `exclude` sections
into a CompiledSweep (axes, fixed values, ordered derived expressions, exclusions) that study.sweep
expands into runs; every problem is an InputError at its file, line and key.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from study.expr import ExprError, Expression, compile_expr
from study.parameters import (
    ENV_NAME_RE,
    LIST_VALUED,
    MAX_AXIS_VALUES,
    MAX_SWEEP_RUNS,
    PARAMETERS,
    REQUIRED,
    _int_at_least,
    checker_for,
    size_range,
)
from study.units import parse_size
from study.yamlpos import Positions, dotted, suggest

if TYPE_CHECKING:  # pragma: no cover
    from study.config import Experiment

# The resources a sweep may take as axes (world_size follows from them).
RESOURCE_AXES = ("nodes", "gpus_per_node")


@dataclass(frozen=True)
class Axis:
    """One or more names that move together (a `zip` group, or a single swept key)."""

    names: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]
    path: tuple[str | int, ...]


@dataclass(frozen=True)
class Exclusion:
    match: dict[str, Any] | None
    expression: Expression | None
    path: tuple[str | int, ...]


@dataclass(frozen=True)
class CompiledSweep:
    axes: tuple[Axis, ...]
    fixed: dict[str, Any]
    derived: tuple[tuple[str, Expression], ...]
    exclusions: tuple[Exclusion, ...]
    sources: dict[str, tuple[str | int, ...]]  # where each name is defined, for errors


def compile_sweep(experiment: Experiment) -> CompiledSweep:
    """Normalize axes, fixed values, derived expressions and exclusions; raise positioned InputErrors.

    The steps, in order (each a method of SweepCompiler): the resource axes and the sweep's axes
    (`zip:` groups move together), the fixed values, the derived expressions (ordered so that each
    reads only what is defined before it), the exclusions, then the checks of the whole: environment
    names, the number of runs, the parameters the kind requires."""
    steps = SweepCompiler(experiment)
    axes = steps.resource_axes() + steps.sweep_axes()
    fixed = steps.fixed_values()
    derived = steps.derived_values()
    exclusions = steps.exclusions()
    steps.check_env()
    steps.check_size(axes)
    steps.check_required()
    return CompiledSweep(tuple(axes), fixed, derived, tuple(exclusions), steps.sources)


class SweepCompiler:
    """The steps of compile_sweep over one experiment; `sources` records where each name is defined."""

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment
        self.pos = experiment.positions
        self.kind = experiment.kind
        self.known = set(PARAMETERS[self.kind]) | set(RESOURCE_AXES)
        self.sources: dict[str, tuple[str | int, ...]] = {}

    # -- names and values ------------------------------------------------------------------------------

    def claim(self, name: str, path: tuple[str | int, ...]) -> None:
        """`name` is defined at `path`; a second definition is an error naming the first."""
        if name in self.sources:
            raise self.pos.error(
                path, f"`{name}` is already defined at {dotted(self.sources[name])}", at_value=False
            )
        self.sources[name] = path

    def check_name(self, name: Any, path: tuple[str | int, ...]) -> None:
        """A parameter this kind knows, or a free-form `x_` name."""
        if not isinstance(name, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise self.pos.error(
                path, "expected a parameter name of lower-case letters, digits and '_'", at_value=False
            )
        if name not in self.known and not name.startswith("x_"):
            hint = suggest(name, self.known) or (
                f"known parameters for kind {self.kind}: {', '.join(sorted(self.known))}; "
                "names starting with x_ are free-form"
            )
            raise self.pos.error(
                path, f"unknown parameter `{name}` for kind {self.kind}", at_value=False, hint=hint
            )

    def axis_values(self, name: str, raw: Any, path: tuple[str | int, ...]) -> list[Any]:
        """An axis's values: a range, a list or one value, each checked."""
        if isinstance(raw, dict) and set(raw) & {"from", "to"}:
            items = _expand_range(raw, self.pos, path)
        elif isinstance(raw, list):
            items = raw
        else:
            items = [raw]
        if not items:
            raise self.pos.error(path, "an empty list sweeps over nothing", at_value=True)
        return [
            _check_value(self.kind, name, item, self.pos, (*path, i) if isinstance(raw, list) else path)
            for i, item in enumerate(items)
        ]

    # -- axes ------------------------------------------------------------------------------------------

    def resource_axes(self) -> list[Axis]:
        """nodes, gpus_per_node and world_size where `resources` sets them."""
        axes = []
        for name in RESOURCE_AXES:
            raw = getattr(self.experiment.resources, name)
            if raw is None:
                continue
            path = ("resources", name)
            self.claim(name, path)
            axes.append(Axis((name,), tuple((v,) for v in self.axis_values(name, raw, path)), path))
        return axes

    def sweep_axes(self) -> list[Axis]:
        """One axis per `sweep` entry; each `zip:` group is one axis of several names."""
        axes = []
        for name, raw in self.experiment.sweep.items():
            path = ("sweep", name)
            if name == "zip":
                groups = raw if isinstance(raw, list) else [raw]
                axes.extend(
                    self.zip_axis(group, (*path, g) if isinstance(raw, list) else path)
                    for g, group in enumerate(groups)
                )
                continue
            self.check_name(name, path)
            self.claim(name, path)
            axes.append(Axis((name,), tuple((v,) for v in self.axis_values(name, raw, path)), path))
        return axes

    def zip_axis(self, group: Any, path: tuple[str | int, ...]) -> Axis:
        """Names whose lists move together: one axis whose values are tuples, lists of equal length."""
        if not isinstance(group, dict) or len(group) < 1:
            raise self.pos.error(
                path,
                "expected a mapping of names to lists that move together (or a list of such mappings)",
            )
        names: list[str] = []
        columns: list[list[Any]] = []
        for member, values in group.items():
            mpath = (*path, member)
            self.check_name(member, mpath)
            self.claim(member, mpath)
            column = self.axis_values(member, values, mpath)
            if columns and len(column) != len(columns[0]):
                raise self.pos.error(
                    mpath,
                    f"zip members must have equal lengths: `{names[0]}` has {len(columns[0])} "
                    f"values, `{member}` has {len(column)}",
                )
            names.append(member)
            columns.append(column)
        return Axis(tuple(names), tuple(zip(*columns, strict=True)), path)

    # -- fixed and derived values ------------------------------------------------------------------------

    def fixed_values(self) -> dict[str, Any]:
        """`fixed`: one checked value per name (a list only where the parameter takes a list)."""
        fixed: dict[str, Any] = {}
        for name, raw in self.experiment.fixed.items():
            path = ("fixed", name)
            self.check_name(name, path)
            self.claim(name, path)
            if isinstance(raw, list) and name not in LIST_VALUED:
                raise self.pos.error(
                    path,
                    f"a list in `fixed` is one value, but `{name}` takes a single value",
                    hint=f"move `{name}` to `sweep` to run each value",
                )
            if name in RESOURCE_AXES:
                raise self.pos.error(
                    path, f"`{name}` is a resource", at_value=False, hint=f"write it as resources.{name}"
                )
            fixed[name] = _check_value(self.kind, name, raw, self.pos, path)
        return fixed

    def derived_values(self) -> tuple[tuple[str, Expression], ...]:
        """`derived`: compiled expressions, ordered so that each reads only names defined before it."""
        compiled: dict[str, Expression] = {}
        for name, source in self.experiment.derived.items():
            path = ("derived", name)
            if not isinstance(name, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise self.pos.error(
                    path, "expected a name of lower-case letters, digits and '_'", at_value=False
                )
            if name in ("nodes", "gpus_per_node"):
                raise self.pos.error(path, f"`{name}` is a resource and cannot be derived", at_value=False)
            if name != "world_size":
                self.claim(name, path)
            else:
                self.sources.setdefault(name, path)
            try:
                compiled[name] = compile_expr(str(source))
            except ExprError as exc:
                raise self.pos.error(path, str(exc)) from None
        return _order_derived(compiled, self.available, self.pos)

    @property
    def available(self) -> set[str]:
        """Every name a run has once the values so far are set (the resources always)."""
        return set(self.sources) | {"nodes", "gpus_per_node", "world_size"}

    # -- exclusions and whole-sweep checks -------------------------------------------------------------

    def exclusions(self) -> list[Exclusion]:
        """`exclude`: a mapping of values a run must all match, or an expression over its values."""
        return [self.exclusion(item, ("exclude", i)) for i, item in enumerate(self.experiment.exclude)]

    def exclusion(self, item: Any, path: tuple[str | int, ...]) -> Exclusion:
        available = self.available
        if isinstance(item, str):
            try:
                expression = compile_expr(item)
            except ExprError as exc:
                raise self.pos.error(path, str(exc)) from None
            unknown = expression.names - available
            if unknown:
                name = sorted(unknown)[0]
                raise self.pos.error(path, f"unknown name `{name}`", hint=suggest(name, available))
            return Exclusion(None, expression, path)
        if not isinstance(item, dict) or not item:
            raise self.pos.error(
                path, "expected a mapping such as {algorithm: nvrar, nodes: 1} or an expression string"
            )
        match = {}
        for name, value in item.items():
            if name not in available:
                raise self.pos.error(
                    (*path, name),
                    f"`{name}` is not a value of this sweep",
                    at_value=False,
                    hint=suggest(str(name), available),
                )
            match[name] = _check_value(self.kind, name, value, self.pos, (*path, name))
        return Exclusion(match, None, path)

    def check_env(self) -> None:
        for name in self.experiment.env:
            if not ENV_NAME_RE.match(name):
                raise self.pos.error(
                    ("env", name),
                    "expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
                    at_value=False,
                )

    def check_size(self, axes: list[Axis]) -> None:
        """At most MAX_SWEEP_RUNS runs, the error at the largest axis."""
        repeats = self.experiment.repeats
        runs = math.prod(len(axis.values) for axis in axes) * repeats
        if runs <= MAX_SWEEP_RUNS:
            return
        sizes = " x ".join(f"{dotted(axis.path)} {len(axis.values):,}" for axis in axes)
        raise self.pos.error(
            max(axes, key=lambda axis: len(axis.values)).path,
            f"the sweep has {runs:,} runs ({sizes}"
            + (f" x {repeats} repeats" if repeats > 1 else "")
            + f"); at most {MAX_SWEEP_RUNS:,} runs per experiment",
            at_value=False,
            hint="split it into several experiments, or sweep fewer values",
        )

    def check_required(self) -> None:
        """The parameters the kind cannot run without (tp and pp default to 1)."""
        defined = set(self.sources) | {"tp", "pp"}
        for name in REQUIRED[self.kind]:
            if name not in defined:
                raise self.pos.error(
                    ("kind",), f"kind {self.kind} needs `{name}` in sweep, fixed or derived", at_value=False
                )


def _check_value(kind: str, name: str, value: Any, pos: Positions, path: tuple[str | int, ...]) -> Any:
    checker = checker_for(kind, name)
    if checker is None:
        if isinstance(value, dict | list):
            if isinstance(value, dict):
                raise pos.error(path, "free-form values must be scalars or lists")
        return value
    try:
        return checker(value)
    except ValueError as exc:
        raise pos.error(path, str(exc)) from None


def _expand_range(raw: dict[str, Any], pos: Positions, path: tuple[str | int, ...]) -> list[int]:
    """`{from, to, factor}` (geometric) or `{from, to, step}` (arithmetic), ends included."""
    keys = set(raw)
    try:
        if keys == {"from", "to", "factor"}:
            rng = size_range(raw)
            out, value = [], rng["from"]
            while value <= rng["to"]:
                out.append(value)
                value *= rng["factor"]
            return out
        if keys == {"from", "to", "step"}:
            low, high, step = parse_size(raw["from"]), parse_size(raw["to"]), _int_at_least(1)(raw["step"])
            if high < low:
                raise ValueError(f"range needs from <= to, got from={low} to={high}")
            count = (high - low) // step + 1
            if count > MAX_AXIS_VALUES:
                raise ValueError(
                    f"this range has {count:,} values; an axis may have at most {MAX_AXIS_VALUES:,} "
                    "(use a larger step, or a factor)"
                )
            return list(range(low, high + 1, step))
    except ValueError as exc:
        raise pos.error(path, str(exc)) from None
    raise pos.error(
        path,
        "a range has the keys {from, to, factor} or {from, to, step}, "
        f"got {', '.join(sorted(map(str, keys)))}",
    )


def _order_derived(
    exprs: dict[str, Expression], available: set[str], pos: Positions
) -> tuple[tuple[str, Expression], ...]:
    """Derived values in an order where each one's inputs come first; unknown names and cycles are errors."""
    for name, expr in exprs.items():
        unknown = expr.names - available - set(exprs)
        if unknown:
            missing = sorted(unknown)[0]
            raise pos.error(
                ("derived", name),
                f"`{expr.source}` uses unknown name `{missing}`",
                hint=suggest(missing, available | set(exprs)),
            )
    ordered: list[tuple[str, Expression]] = []
    done: set[str] = set()
    pending = dict(exprs)
    while pending:
        ready = [
            n for n, e in pending.items() if not ((e.names & set(exprs)) - done - {n}) and n not in e.names
        ]
        if not ready:
            cycle = ", ".join(sorted(pending))
            raise pos.error(
                ("derived", sorted(pending)[0]),
                f"derived values depend on each other in a cycle: {cycle}",
                at_value=False,
            )
        for name in ready:
            ordered.append((name, pending.pop(name)))
            done.add(name)
    return tuple(ordered)

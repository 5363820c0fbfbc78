"""Experiment files: the versioned schema (pydantic v2), loading with positions, and load-time checks.

`load_experiment(path)` returns a validated `Experiment` or raises `InputError` naming
`file:line:col`, the key path, what was expected and, for a misspelt key, the closest known one.
Everything that can be checked before a sweep is expanded is checked here (keys, types of every swept
and fixed value of the experiment's kind, expressions, exclusions), so `study validate` catches it.
The schema is documented in docs/experiments.md; change both together.
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from collectives.dtypes import BENCH_DTYPES, FLOAT_DTYPES
from engine.flags import Flag, study_parameters
from study.errors import InputError
from study.expr import ExprError, Expression, compile_expr
from study.results import STATISTICS
from study.units import parse_duration, parse_size
from study.yamlpos import Positions, dotted, load_yaml, suggest

SCHEMA_VERSION = 1
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESOURCE_AXES = ("nodes", "gpus_per_node")
KINDS = ("collective", "inference")


class StrictModel(BaseModel):
    """Unknown keys are errors (with a suggestion), never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=False)


# ---------------------------------------------------------------------------------------------------
# Parameters known per kind: a checker turns a YAML value into its normal form or raises ValueError.

Checker = Callable[[Any], Any]


def _int_at_least(minimum: int) -> Checker:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ValueError(f"expected an integer >= {minimum}, got {value!r}")
        if value < minimum:
            raise ValueError(f"expected an integer >= {minimum}, got {value}")
        return value

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _one_of(*choices: str) -> Checker:
    def check(value: Any) -> str:
        if value not in choices:
            hint = suggest(str(value), choices)
            raise ValueError(
                f"expected one of {', '.join(choices)}, got {value!r}" + (f"; {hint}" if hint else "")
            )
        return value

    return check


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _name_list(value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError(f"expected a name or a list of names, got {value!r}")
    out = []
    for item in items:
        if not isinstance(item, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", item.strip()):
            raise ValueError(f"expected names such as nccl or nvrar, got {item!r}")
        out.append(item.strip())
    return out


def _algorithm_list(value: Any) -> list[str]:
    """The benchmark's algorithms: names it knows, so a typo fails validation, not the job."""
    names = _name_list(value)
    unknown = [n for n in names if n not in COLLECTIVE_ALGORITHMS]
    if unknown:
        raise ValueError(
            f"unknown algorithm(s) {', '.join(unknown)}; known: {', '.join(COLLECTIVE_ALGORITHMS)}"
        )
    return names


def _size_or_range(value: Any) -> int | dict[str, int]:
    if isinstance(value, dict):
        return size_range(value)
    return parse_size(value)


def size_range(value: Mapping[str, Any]) -> dict[str, int]:
    """`{from: 64KiB, to: 2MiB, factor: 2}` in bytes; checks the keys and that the range is not empty."""
    keys = set(value)
    if keys != {"from", "to", "factor"}:
        raise ValueError(
            f"a size range has exactly the keys from, to, factor (got {', '.join(sorted(map(str, keys)))})"
        )
    low, high = parse_size(value["from"]), parse_size(value["to"])
    factor = _int_at_least(2)(value["factor"])
    if low < 1 or high < low:
        raise ValueError(f"size range needs 1 <= from <= to, got from={low} to={high}")
    return {"from": low, "to": high, "factor": factor}


# Inference engines an experiment can sweep: the bundled one (engine.run) and the external ones with a
# runner in engine/external/ (docs/engines.md).
ENGINES = ("bundled", "vllm")
# Bundled-engine parameters an external engine cannot honour: naming one for it is a validation error.
BUNDLED_ONLY = ("decode_kernels", "micro_batches", "compile", "breakdown", "virtual_gpus_per_node")
# The backends of collectives.api (BACKENDS there); study never imports the payload, so they are listed here.
ALLREDUCE_CHOICES = (
    "nccl",
    "nvrar",
    "one-shot",
    "two-shot",
    "gloo",
    "reference",
    "reference-ring",
    "reference-rd",
    "reference-rabenseifner",
    "reference-tree",
)
# What `python -m collectives.bench --algo` accepts (a test checks the two stay equal: study cannot
# import the benchmark, which needs torch).
COLLECTIVE_ALGORITHMS = (*ALLREDUCE_CHOICES, "mpi")
DTYPES = FLOAT_DTYPES  # collectives/dtypes.py: one list for the harness and the payload
# Which placements a collective benchmark runs: both (out of place, then in place, the benchmark's
# default, as nccl-tests) or one of them.
PLACEMENTS = ("both", "out-of-place", "in-place")


def _flag_checker(flag: Flag) -> Checker:
    """The checker of an engine flag's parameter: its words, its integer bound, a switch or text."""
    if flag.kind != "value":
        return _boolean
    if flag.choices is not None:
        return _one_of(*flag.choices)
    if flag.type is int:
        return _int_at_least(flag.minimum if flag.minimum is not None else 0)
    return _text


# name -> checker, per kind; `required` are the payload's mandatory flags that have no default.
PARAMETERS: dict[str, dict[str, Checker]] = {
    # The bundled engine's own parameters come from its flag table (engine/flags.py); the harness adds
    # the engine's name, `native` all-reduce, virtual nodes and where tokens are saved.
    "inference": {
        "engine": _one_of(*ENGINES),
        **{name: _flag_checker(flag) for name, flag in study_parameters().items()},
        # `native`: the engine's own choice (the bundled engine: its process group's backend)
        "allreduce": _one_of(*ALLREDUCE_CHOICES, "native"),
        "virtual_gpus_per_node": _int_at_least(1),
        "save_tokens": _boolean,
    },
    "collective": {
        "algorithms": _algorithm_list,
        "sizes": _size_or_range,
        "dtype": _one_of(*BENCH_DTYPES),
        "iterations": _int_at_least(1),
        "warmup": _int_at_least(0),
        "graphs": _boolean,
        "graph_calls": _int_at_least(1),
        "check": _boolean,
        # the statistic over ranks the benchmark reports as `latency_us` (-a, study/results.py STATISTICS)
        "statistic": _one_of(*STATISTICS),
        "placement": _one_of(*PLACEMENTS),
        # the older spelling of one placement: true is placement out-of-place, false in-place
        "out_of_place": _boolean,
        "virtual_gpus_per_node": _int_at_least(1),
    },
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "inference": ("model", "batch_size", "prompt_len", "decode_len", "allreduce"),
    "collective": ("algorithms", "sizes"),
}
# Values a parameter list must not be swept over element by element in `fixed`.
LIST_VALUED = {"algorithms"}
# Work limits: an axis (a list or a range) and a whole sweep (the cross product, with repeats). A
# study that needs more is several experiments; these stop a typo (`to: 1e12, step: 1`) from
# planning for hours.
MAX_AXIS_VALUES = 10_000
MAX_SWEEP_RUNS = 200_000
RESOURCE_CHECKERS: dict[str, Checker] = {
    "nodes": _int_at_least(1),
    "gpus_per_node": _int_at_least(1),
    "world_size": _int_at_least(1),
}


def checker_for(kind: str, name: str) -> Checker | None:
    """The checker of a known parameter or resource, or None for user-defined (`x_*`, derived) values."""
    return RESOURCE_CHECKERS.get(name) or PARAMETERS[kind].get(name)


# ---------------------------------------------------------------------------------------------------
# The schema.


# What no scheduler directive value may hold: control characters and spaces, quotes, backslashes,
# and the shell's `$`, backtick, `;`, `<`, `>` (inert in `#SBATCH` / `#PBS` lines, but no site names a
# partition or a QOS that way); nor may it start with `-`, which reads as another option.
_DIRECTIVE_BAD = re.compile(r"[\x00-\x20\x7f\"'\\$`;<>]")


def directive_problem(value: Any) -> str | None:
    """Why `value` cannot be a scheduler directive's value (None when it can)."""
    text = str(value)
    if not text:
        return "an empty value"
    if text.startswith("-"):
        return f"{text!r} starts with '-', which a scheduler reads as another option"
    bad = _DIRECTIVE_BAD.search(text)
    if bad:
        return (
            f"{text!r} holds {bad.group()!r}: spaces, quotes, backslashes and $ ` ; < > have no place in a "
            "scheduler directive's value"
        )
    return None


def directive_field(value: Any) -> Any:
    """A pydantic field check: the value, or a ValueError saying why no directive can hold it."""
    if value is not None:
        problem = directive_problem(value)
        if problem:
            raise ValueError(problem)
    return value


DIRECTIVE_FIELDS = ("partition", "qos", "constraint", "queue", "reservation")


class SchedulerOverrides(StrictModel):
    """Per-experiment overrides of the system's scheduler options (never the account: that is personal)."""

    partition: str | None = None
    qos: str | None = None
    constraint: str | None = None
    queue: str | None = None
    reservation: str | None = None

    @field_validator(*DIRECTIVE_FIELDS)
    @classmethod
    def _directives(cls, value: Any) -> Any:
        return directive_field(value)


class Resources(StrictModel):
    nodes: Any = None
    gpus_per_node: Any = None
    walltime: int = Field(default=1800, description="seconds per run")
    runs_per_job: int = Field(default=1, ge=1)
    scheduler: SchedulerOverrides = Field(default_factory=SchedulerOverrides)

    @field_validator("walltime", mode="before")
    @classmethod
    def _walltime(cls, value: Any) -> int:
        return parse_duration(value)


class Experiment(StrictModel):
    """One study: what to run (kind and parameters), where (system) and how the sweep expands."""

    version: Literal[1] = SCHEMA_VERSION
    name: str
    description: str = ""
    kind: Literal["collective", "inference"]
    system: str = "local"
    resources: Resources = Field(default_factory=Resources)
    sweep: dict[str, Any] = Field(default_factory=dict)
    fixed: dict[str, Any] = Field(default_factory=dict)
    derived: dict[str, str | int | float | bool] = Field(default_factory=dict)
    exclude: list[Any] = Field(default_factory=list)
    repeats: int = Field(default=1, ge=1, le=1000)
    env: dict[str, str | int | float | bool] = Field(default_factory=dict)

    _path: str = PrivateAttr(default="<memory>")
    _positions: Positions | None = PrivateAttr(default=None)
    _sweep: CompiledSweep | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(
                "expected lower-case letters, digits and '-', starting with a letter or digit, "
                f"at most 48 characters (it names the workspace and the jobs), got {value!r}"
            )
        return value

    @property
    def path(self) -> str:
        return self._path

    @property
    def positions(self) -> Positions:
        return self._positions or Positions(self._path)

    @property
    def compiled(self) -> CompiledSweep:
        """The sweep in normal form (axes, fixed values, ordered derived expressions, exclusions)."""
        if self._sweep is None:
            self._sweep = compile_sweep(self)
        return self._sweep


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


# ---------------------------------------------------------------------------------------------------
# Loading.


def load_experiment(path: str | Path) -> Experiment:
    """Load, validate and compile an experiment file; raise InputError (exit 2) on any problem."""
    data, positions = load_yaml(path)
    return experiment_from_data(data, positions)


def experiment_from_data(data: Any, positions: Positions) -> Experiment:
    """Validate already-parsed YAML (with its positions) into an Experiment."""
    if not isinstance(data, dict):
        raise positions.error((), "expected a mapping with at least `name` and `kind`", at_value=True)
    experiment = validate_model(Experiment, data, positions)
    experiment._path = positions.file
    experiment._positions = positions
    experiment._sweep = compile_sweep(experiment)
    return experiment


def validate_model(cls: type[StrictModel], data: Any, positions: Positions, prefix: tuple = ()) -> Any:
    """`cls.model_validate(data)`, with pydantic's errors turned into positioned InputErrors."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise _input_error(cls, exc, positions, prefix) from None


def _input_error(
    cls: type[BaseModel], exc: ValidationError, positions: Positions, prefix: tuple
) -> InputError:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if _is_key(p))
        if err["type"] in ("extra_forbidden", "missing") and err["loc"]:
            # The last element is the user's own key, whatever it looks like (`sw[ep` is no type tag).
            loc = (*(p for p in err["loc"][:-1] if _is_key(p)), err["loc"][-1])
        path = (*prefix, *loc)
        hint = None
        if err["type"] == "extra_forbidden":
            message = f"unknown key `{loc[-1]}`"
            hint = suggest(str(loc[-1]), _fields_at(cls, loc[:-1]))
            allowed = sorted(_fields_at(cls, loc[:-1]))
            if not hint and allowed:
                hint = f"known keys: {', '.join(allowed)}"
            problems.append(positions.error(path, message, at_value=False, hint=hint))
        elif err["type"] == "missing":
            problems.append(positions.error(path[:-1], f"missing required key `{loc[-1]}`", at_value=False))
        else:
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] not in ("value_error",) and "input" in err:
                message += f", got {err['input']!r}"
            problems.append(positions.error(path, message, at_value=True))
    first = problems[0]
    if len(problems) > 1:
        first.args = (str(first) + "".join(f"\n  also: {p}" for p in problems[1:]),)
    return first


def _is_key(part: Any) -> bool:
    # pydantic inserts type tags such as 'int' or 'function-after[...]' for unions; keep real keys only.
    return isinstance(part, int) or not (
        "[" in part or part in {"int", "str", "float", "bool", "list", "dict"}
    )


def _fields_at(cls: type[BaseModel], loc: tuple) -> set[str]:
    model: Any = cls
    for part in loc:
        if isinstance(part, int) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return set()
        model = _model_in(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return set(model.model_fields)
    return set()


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, dict):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


# ---------------------------------------------------------------------------------------------------
# Compiling the sweep: every load-time check of names, values and expressions.


def compile_sweep(experiment: Experiment) -> CompiledSweep:
    """Normalize axes, fixed values, derived expressions and exclusions; raise positioned InputErrors."""
    pos = experiment.positions
    kind = experiment.kind
    known = set(PARAMETERS[kind]) | set(RESOURCE_AXES)
    sources: dict[str, tuple[str | int, ...]] = {}
    axes: list[Axis] = []

    def claim(name: str, path: tuple[str | int, ...]) -> None:
        if name in sources:
            raise pos.error(path, f"`{name}` is already defined at {dotted(sources[name])}", at_value=False)
        sources[name] = path

    def check_name(name: Any, path: tuple[str | int, ...]) -> None:
        if not isinstance(name, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise pos.error(
                path, "expected a parameter name of lower-case letters, digits and '_'", at_value=False
            )
        if name not in known and not name.startswith("x_"):
            hint = suggest(name, known) or (
                f"known parameters for kind {kind}: {', '.join(sorted(known))}; "
                "names starting with x_ are free-form"
            )
            raise pos.error(path, f"unknown parameter `{name}` for kind {kind}", at_value=False, hint=hint)

    def axis_values(name: str, raw: Any, path: tuple[str | int, ...]) -> list[Any]:
        if isinstance(raw, dict) and set(raw) & {"from", "to"}:
            items = _expand_range(raw, pos, path)
        elif isinstance(raw, list):
            items = raw
        else:
            items = [raw]
        if not items:
            raise pos.error(path, "an empty list sweeps over nothing", at_value=True)
        return [
            _check_value(kind, name, item, pos, (*path, i) if isinstance(raw, list) else path)
            for i, item in enumerate(items)
        ]

    resources = experiment.resources
    for name in RESOURCE_AXES:
        raw = getattr(resources, name)
        if raw is None:
            continue
        path = ("resources", name)
        claim(name, path)
        values = axis_values(name, raw, path)
        axes.append(Axis((name,), tuple((v,) for v in values), path))

    for name, raw in experiment.sweep.items():
        path = ("sweep", name)
        if name == "zip":
            groups = raw if isinstance(raw, list) else [raw]
            for g, group in enumerate(groups):
                gpath = (*path, g) if isinstance(raw, list) else path
                if not isinstance(group, dict) or len(group) < 1:
                    raise pos.error(
                        gpath,
                        "expected a mapping of names to lists that move together "
                        "(or a list of such mappings)",
                    )
                names, columns, length = [], [], None
                for member, values in group.items():
                    mpath = (*gpath, member)
                    check_name(member, mpath)
                    claim(member, mpath)
                    column = axis_values(member, values, mpath)
                    if length is not None and len(column) != length:
                        raise pos.error(
                            mpath,
                            f"zip members must have equal lengths: `{names[0]}` has {length} "
                            f"values, `{member}` has {len(column)}",
                        )
                    length = len(column)
                    names.append(member)
                    columns.append(column)
                axes.append(Axis(tuple(names), tuple(zip(*columns, strict=True)), gpath))
            continue
        check_name(name, path)
        claim(name, path)
        axes.append(Axis((name,), tuple((v,) for v in axis_values(name, raw, path)), path))

    fixed: dict[str, Any] = {}
    for name, raw in experiment.fixed.items():
        path = ("fixed", name)
        check_name(name, path)
        claim(name, path)
        if isinstance(raw, list) and name not in LIST_VALUED:
            raise pos.error(
                path,
                f"a list in `fixed` is one value, but `{name}` takes a single value",
                hint=f"move `{name}` to `sweep` to run each value",
            )
        if name in RESOURCE_AXES:
            raise pos.error(
                path, f"`{name}` is a resource", at_value=False, hint=f"write it as resources.{name}"
            )
        fixed[name] = _check_value(kind, name, raw, pos, path)

    derived_raw: dict[str, Expression] = {}
    for name, source in experiment.derived.items():
        path = ("derived", name)
        if not isinstance(name, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise pos.error(path, "expected a name of lower-case letters, digits and '_'", at_value=False)
        if name in ("nodes", "gpus_per_node"):
            raise pos.error(path, f"`{name}` is a resource and cannot be derived", at_value=False)
        if name != "world_size":
            claim(name, path)
        else:
            sources.setdefault(name, path)
        try:
            derived_raw[name] = compile_expr(str(source))
        except ExprError as exc:
            raise pos.error(path, str(exc)) from None

    available = set(sources) | {"nodes", "gpus_per_node", "world_size"}
    derived = _order_derived(derived_raw, available, pos)

    exclusions = []
    for i, item in enumerate(experiment.exclude):
        path = ("exclude", i)
        if isinstance(item, str):
            try:
                expression = compile_expr(item)
            except ExprError as exc:
                raise pos.error(path, str(exc)) from None
            unknown = expression.names - available
            if unknown:
                name = sorted(unknown)[0]
                raise pos.error(path, f"unknown name `{name}`", hint=suggest(name, available))
            exclusions.append(Exclusion(None, expression, path))
        elif isinstance(item, dict) and item:
            match = {}
            for name, value in item.items():
                if name not in available:
                    raise pos.error(
                        (*path, name),
                        f"`{name}` is not a value of this sweep",
                        at_value=False,
                        hint=suggest(str(name), available),
                    )
                match[name] = _check_value(kind, name, value, pos, (*path, name))
            exclusions.append(Exclusion(match, None, path))
        else:
            raise pos.error(
                path, "expected a mapping such as {algorithm: nvrar, nodes: 1} or an expression string"
            )

    for name in experiment.env:
        if not ENV_NAME_RE.match(name):
            raise pos.error(
                ("env", name),
                "expected an environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
                at_value=False,
            )

    runs = math.prod(len(axis.values) for axis in axes) * experiment.repeats
    if runs > MAX_SWEEP_RUNS:
        sizes = " x ".join(f"{dotted(axis.path)} {len(axis.values):,}" for axis in axes)
        raise pos.error(
            max(axes, key=lambda axis: len(axis.values)).path,
            f"the sweep has {runs:,} runs ({sizes}"
            + (f" x {experiment.repeats} repeats" if experiment.repeats > 1 else "")
            + f"); at most {MAX_SWEEP_RUNS:,} runs per experiment",
            at_value=False,
            hint="split it into several experiments, or sweep fewer values",
        )

    defined = set(sources) | {"tp", "pp"}
    for name in REQUIRED[kind]:
        if name not in defined:
            raise pos.error(
                ("kind",), f"kind {kind} needs `{name}` in sweep, fixed or derived", at_value=False
            )
    return CompiledSweep(tuple(axes), fixed, derived, tuple(exclusions), sources)


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

"""Experiment files: the versioned schema (pydantic v2), loading with positions, and load-time checks.

`load_experiment(path)` returns a validated `Experiment` or raises `InputError` naming
`file:line:col`, the key path, what was expected and, for a misspelt key, the closest known one.
Everything that can be checked before a sweep is expanded is checked here (keys, types of every swept
and fixed value of the experiment's kind, expressions, exclusions), so `study validate` catches it.
The schema is documented in docs/experiments.md; change both together.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from study.compile import CompiledSweep, compile_sweep
from study.errors import InputError
from study.units import parse_duration
from study.yamlpos import Positions, load_yaml, suggest

SCHEMA_VERSION = 1
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
KINDS = ("collective", "inference")


class StrictModel(BaseModel):
    """Unknown keys are errors (with a suggestion), never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=False)


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

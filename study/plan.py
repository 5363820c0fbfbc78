"""plan.json (schema `study.plan/1`, docs/internals.md): its dataclass mirror, its reader and writer,
plan.csv, and the check that a workspace is where it was rendered. The one home of the plan codec:
render writes plans through it, every other command reads them through it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.errors import InputError

PLAN_SCHEMA = "study.plan/1"


@dataclass
class PlanRun:
    run_id: str
    repeat: int
    params: dict[str, Any]
    nodes: int
    gpus_per_node: int
    world_size: int
    walltime_s: int
    command: str
    job: str


@dataclass
class Job:
    name: str
    script: str  # relative to the workspace
    runs: list[str]
    nodes: int
    walltime_s: int


@dataclass
class Plan:
    experiment: str
    system: str
    scheduler: str
    workspace: str
    runs: list[PlanRun] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    previous_runs: list[PlanRun] = field(default_factory=list)
    schema: str = PLAN_SCHEMA

    @property
    def node_hours(self) -> float:
        """Node-hours the jobs ask for (nodes x walltime, summed), what an allocation is charged."""
        return sum(job.nodes * job.walltime_s for job in self.jobs) / 3600.0

    def run(self, run_id: str) -> PlanRun:
        for run in self.runs:
            if run.run_id == run_id:
                return run
        raise KeyError(run_id)

    def to_json(self) -> dict[str, Any]:
        data = {
            "schema": self.schema,
            "experiment": self.experiment,
            "system": self.system,
            "scheduler": self.scheduler,
            "workspace": self.workspace,
            "runs": [_fields(r) for r in self.runs],
            "jobs": [_fields(j) for j in self.jobs],
        }
        if self.previous_runs:
            data["previous_runs"] = [_fields(r) for r in self.previous_runs]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        if data.get("schema") != PLAN_SCHEMA:
            raise InputError(f"expected schema {PLAN_SCHEMA}, got {data.get('schema')!r}", key="schema")
        return cls(
            experiment=data["experiment"],
            system=data["system"],
            scheduler=data["scheduler"],
            workspace=data["workspace"],
            runs=[_known(PlanRun, r) for r in data["runs"]],
            jobs=[_known(Job, j) for j in data["jobs"]],
            previous_runs=[_known(PlanRun, r) for r in data.get("previous_runs", [])],
        )


def _known(cls: type, data: dict[str, Any]) -> Any:
    # Keys a newer writer added are ignored, so a plan stays readable across versions of the same schema.
    fields = cls.__dataclass_fields__
    if len(data) == len(fields) and all(k in fields for k in data):
        return cls(**data)
    return cls(**{k: v for k, v in data.items() if k in fields})


def _fields(obj: Any) -> dict[str, Any]:
    # dataclasses.asdict deep-copies every parameter; a shallow view is all serialization needs.
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def plan_csv(plan: Plan) -> str:
    """One row per run: identity and topology first, then every parameter (lists joined by ',')."""
    fixed = ["run_id", "repeat", "job", "nodes", "gpus_per_node", "world_size", "walltime_s"]
    names = sorted({k for r in plan.runs for k in r.params} - set(fixed))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(fixed + names)
    cells: dict[int, tuple[dict[str, Any], list[str]]] = {}  # by params object: repeats share theirs
    for r in plan.runs:
        cached = cells.get(id(r.params))
        if cached is None:
            cached = cells[id(r.params)] = (r.params, [_cell(r.params.get(n)) for n in names])
        writer.writerow(
            [r.run_id, r.repeat, r.job, r.nodes, r.gpus_per_node, r.world_size, r.walltime_s] + cached[1]
        )
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


class JsonLines:
    """`json.dumps(fields of a run or job)`, byte for byte, with the parts runs share encoded once.

    The repeats of a point share their parameters and command, and the runs of a job its name, so a
    10,000-run plan encodes about half as much as one json.dumps per run; plan.json and every
    spec.json use the same line.
    """

    def __init__(self) -> None:
        self._objects: dict[int, tuple[Any, str]] = {}  # id -> (object kept alive, its JSON)
        self._strings: dict[str, str] = {}
        self._points: dict[tuple, str] = {}

    def run_line(self, run: PlanRun) -> str:
        """`line(run)` with the fields from params to command (the same for every repeat) encoded once."""
        key = (id(run.params), run.nodes, run.gpus_per_node, run.world_size, run.walltime_s, run.command)
        middle = self._points.get(key)
        if middle is None:
            middle = self._points[key] = self.line(run, _POINT_FIELDS)[1:-1]
        run_id, repeat, job = self.text(run.run_id), self.text(run.repeat), self.text(run.job)
        return f'{{"run_id": {run_id}, "repeat": {repeat}, {middle}, "job": {job}}}'

    def line(self, obj: Any, names: tuple[str, ...] | None = None) -> str:
        """json.dumps of the dataclass `obj`'s fields (or of `names` only, in that order)."""
        fields = names or obj.__dataclass_fields__
        return "{" + ", ".join(f'"{name}": {self.text(getattr(obj, name))}' for name in fields) + "}"

    def text(self, value: Any) -> str:
        """json.dumps(value); strings and other objects are encoded once."""
        cls = type(value)
        if cls is int:
            return int.__repr__(value)
        if cls is str:
            text = self._strings.get(value)
            if text is None:
                text = self._strings[value] = _encode_string(value)
            return text
        cached = self._objects.get(id(value))
        if cached is None:
            cached = self._objects[id(value)] = (value, json.dumps(value))
        return cached[1]


_encode_string = json.encoder.encode_basestring_ascii
_RUN_FIELDS = tuple(PlanRun.__dataclass_fields__)
_POINT_FIELDS = _RUN_FIELDS[2:-1]  # params ... command; run_line writes run_id, repeat and job itself
if _RUN_FIELDS[:2] + _RUN_FIELDS[-1:] != ("run_id", "repeat", "job"):
    raise RuntimeError("JsonLines.run_line expects PlanRun to start with run_id, repeat and end with job")


def plan_json_text(plan: Plan, lines: JsonLines | None = None, run_lines: list[str] | None = None) -> str:
    """plan.json with one run or job per line: readable, diff-friendly, fast (C encoder) at 10,000 runs.

    `run_lines` are the runs' lines when the caller has them already (render_workspace shares them
    with spec.json).
    """
    lines = lines or JsonLines()
    items: list[tuple[str, Any]] = [
        ("schema", plan.schema),
        ("experiment", plan.experiment),
        ("system", plan.system),
        ("scheduler", plan.scheduler),
        ("workspace", plan.workspace),
        ("runs", run_lines if run_lines is not None else [lines.run_line(r) for r in plan.runs]),
        ("jobs", [lines.line(j) for j in plan.jobs]),
    ]
    if plan.previous_runs:
        items.append(("previous_runs", [lines.run_line(r) for r in plan.previous_runs]))
    out = ["{"]
    for i, (key, value) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if isinstance(value, list):
            if value:
                out.append(f' "{key}": [')
                out.append(",\n".join(f"  {line}" for line in value))
                out.append(f" ]{comma}")
            else:
                out.append(f' "{key}": []{comma}')
        else:
            out.append(f' "{key}": {json.dumps(value)}{comma}')
    out.append("}")
    return "\n".join(out) + "\n"


def check_location(workspace: Path, plan: dict[str, Any]) -> None:
    """Refuse a workspace that is not where it was rendered (copied or moved): its job scripts hold
    the absolute paths of that folder, and its state store and job names belong to it, so submitting
    from here would run finished runs again and write their results into the original."""
    recorded = plan.get("workspace")
    if not recorded or _same_folder(Path(recorded), workspace):
        return
    original = Path(recorded)
    if (original / "plan.json").is_file():
        what = "a copy of"
        hint = (
            f"work on the original at {original}; to run the experiment again, render it into a new "
            "folder (study render EXPERIMENT --workspace NEW). collect --no-refresh, report and plot "
            "read a copy as it is"
        )
    else:
        what = "moved from"
        hint = (
            f"move it back to {original} to carry on; collect --no-refresh, report and plot read it "
            "where it is"
        )
    raise InputError(
        f"this workspace is {what} {original} (plan.json was rendered there), now at {workspace}: its "
        "job scripts and state belong to that folder",
        file=str(workspace / "plan.json"),
        key="workspace",
        hint=hint,
    )


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def load_plan(workspace: str | Path) -> Plan:
    """The Plan of a rendered workspace; InputError if there is none or it does not parse."""
    plan = read_plan(Path(workspace).absolute())
    if plan is None:
        raise InputError(f"no plan.json in {workspace}", hint="run `study render` first")
    return plan


def read_plan(ws: Path) -> Plan | None:
    """The Plan in `ws`, or None when it has no plan.json; InputError when it does not parse."""
    path = ws / "plan.json"
    if not path.exists():
        return None
    try:
        return Plan.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read plan: {exc}", file=str(path)) from None


def load_plan_json(workspace: Path) -> dict[str, Any]:
    """plan.json (docs/internals.md) as plain data: the contract, whatever class render builds around it."""
    path = workspace / "plan.json"
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(
            "not a workspace: plan.json is missing (render or submit it first)", file=str(workspace)
        ) from exc
    except ValueError as exc:
        raise InputError(f"not JSON: {exc}", file=str(path)) from exc
    if not isinstance(plan, dict) or plan.get("schema") != PLAN_SCHEMA:
        raise InputError(f"expected {PLAN_SCHEMA!r}", file=str(path), key="schema")
    return plan

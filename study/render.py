"""Rendering a workspace: plan.json, plan.csv, the resolved experiment, one spec.json per run and the
batch scripts, from Jinja2 templates in jobs/templates/.

Shell safety rests on one rule: every value that reaches a script goes through `shell_quote`
(shlex.quote). The Jinja2 environment applies it to every `{{ ... }}` by itself (its `finalize`), so a
template cannot forget it; text already made safe (a rendered command line) is marked `Shell`.
Values put into scheduler directives (`#SBATCH`, `#PBS`) are checked by `directive` instead, which
refuses anything that could end the directive line or split its value (newlines, spaces, quotes).

`plan.json` (schema `study.plan/1`) is the contract with study.submit and study.collect, documented in
docs/internals.md. Writing is atomic per file (temporary file + rename), plan.json last, and nothing
is written before every run and script has rendered, so a bad input leaves the workspace untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import yaml

from study.config import Experiment, directive_problem, load_experiment
from study.errors import InputError, StudyError
from study.plan import (
    Job,
    JsonLines,
    Plan,
    PlanRun,
    check_location,
    load_plan,
    plan_csv,
    plan_json_text,
    read_plan,
)
from study.results import DEFAULT_STATISTIC, STATISTICS
from study.sweep import Run, canonical_json, expand
from study.systems import ExternalEngine, System, load_system, resolve_account, system_for
from study.units import format_walltime

SPEC_SCHEMA = "study.spec/1"
TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "jobs" / "templates"
REPO_ROOT = Path(__file__).resolve().parent.parent


class Shell(str):
    """Text that is already safe shell (quoted values joined by the templates); never quoted again."""


_QUOTED: dict[str, Shell] = {}


def shell_quote(value: Any) -> Shell:
    """The one quoting filter: numbers as they are, everything else through shlex.quote.

    Quoted strings are remembered: a sweep quotes the same few values (names, paths, parameter
    JSON shared by repeats) thousands of times.
    """
    cls = type(value)
    if cls is Shell:
        return value
    if cls is str:
        quoted = _QUOTED.get(value)
        if quoted is None:
            if len(_QUOTED) > 100_000:
                _QUOTED.clear()
            quoted = _QUOTED[value] = Shell(shlex.quote(value))
        return quoted
    if cls is int:
        return Shell(str(value))
    if isinstance(value, Shell):
        return value
    if isinstance(value, bool):
        return Shell("true" if value else "false")
    if isinstance(value, int | float):
        return Shell(repr(value))
    if value is None:
        raise StudyError("a template rendered an empty (null) value; check the system and experiment files")
    return Shell(shlex.quote(str(value)))


def directive(value: Any, option: str = "directive") -> Shell:
    """A value for a `#SBATCH` / `#PBS` line; refused if a newline, space or quote could break the line."""
    text = str(value)
    problem = directive_problem(text)
    if problem:
        raise InputError(
            f"refusing to write {text!r} into the scheduler directive {option}: {problem}", key=option
        )
    return Shell(text)


def env_name(value: Any) -> Shell:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(value)):
        raise InputError(f"{value!r} is not an environment variable name", key="env")
    return Shell(str(value))


_DICT_ATTRIBUTES = frozenset(dir(dict))


class _Environment(jinja2.Environment):
    """Jinja2's environment with a shortcut for `mapping.key` on plain dicts.

    Jinja2 tries the attribute first and falls back to the item through a caught AttributeError; the
    templates read dict keys (`p.iterations`, `options.qos`, `job.name`) hundreds of thousands of times
    in a large sweep. A key that is not a dict method name is looked up directly, which gives the
    same value Jinja2 would; anything else goes the usual way.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


_ENV: jinja2.Environment | None = None


def template_environment() -> jinja2.Environment:
    """The Jinja2 environment for jobs/templates: StrictUndefined, auto-quoting, deterministic output."""
    global _ENV
    if _ENV is None:
        env = _Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
            auto_reload=False,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            autoescape=False,
            finalize=shell_quote,
        )
        # `average`: a statistic over ranks → the benchmark's -a value (nccl-tests' -a/--average)
        env.filters.update(q=shell_quote, directive=directive, envname=env_name, average=STATISTICS.index)
        env.globals.update(default_statistic=DEFAULT_STATISTIC)
        _ENV = env
    return _ENV


# ---------------------------------------------------------------------------------------------------
# Rendering.


@dataclass
class _Context:
    """What every script and command of one rendering shares; computed once, not per run."""

    experiment: Experiment
    system: System
    workspace: Path
    account: str | None
    commands: dict[str, Shell] = field(default_factory=dict)
    launchers: dict[tuple[int, int, int], tuple[str, str] | None] = field(default_factory=dict)

    @cached_property
    def options(self) -> dict[str, Any]:
        merged = self.system.scheduler_options.model_dump()
        merged.update(
            {k: v for k, v in self.experiment.resources.scheduler.model_dump().items() if v is not None}
        )
        return merged

    @cached_property
    def python(self) -> str:
        return self.system.python or sys.executable

    @cached_property
    def templates(self) -> dict[str, jinja2.Template]:
        env = template_environment()
        return {
            "command": env.get_template(f"commands/{self.experiment.kind}.j2"),
            "launcher": env.get_template(f"launchers/{self.system.launcher}.j2"),
            "engine": env.get_template("launchers/engine.j2"),
            "script": env.get_template(f"{self.system.scheduler}.sh.j2"),
        }

    @cached_property
    def prelude(self) -> Shell:
        """Modules, environment and the run-bookkeeping functions: the same in every job script."""
        env_items = sorted(
            {
                **{k: _env_text(v) for k, v in self.system.env.items()},
                **{k: _env_text(v) for k, v in self.experiment.env.items()},
            }.items()
        )
        values = {"modules": self.system.modules, "env": env_items, "pythonpath": str(REPO_ROOT)}
        return Shell(template_environment().get_template("prelude.sh.j2").render(values))


def default_workspace(experiment: Experiment) -> Path:
    return Path("workspaces") / experiment.name


_PAYLOAD_MARK = "\x00study-payload\x00"


def render_command(run: Run | PlanRun, ctx: _Context, params_json: str | None = None) -> Shell:
    """The launcher line of one run: launcher snippet around the kind's payload command.

    It depends on the parameters only, so the repeats of a point share one rendering. The launcher
    snippet depends on the topology only: it is rendered once per topology around a marker, and each
    payload is put in the marker's place (`_launcher_parts`).
    """
    key = params_json or canonical_json(run.params)
    cached = ctx.commands.get(key)
    if cached is not None:
        return cached
    common = {"p": dict(run.params), "device": "cuda" if ctx.system.has_gpus else "cpu"}
    payload = Shell(ctx.templates["command"].render(common).strip())
    engine = run.params.get("engine", "bundled") if ctx.experiment.kind == "inference" else "bundled"
    parts = _launcher_parts(run, ctx) if payload and engine == "bundled" else None
    if engine != "bundled":
        command = Shell(ctx.templates["engine"].render(_engine_values(run, ctx, payload, engine)).strip())
    elif parts is not None:
        command = Shell(parts[0] + payload + parts[1])
    else:
        command = Shell(ctx.templates["launcher"].render(_launcher_values(run, ctx, payload)).strip())
    ctx.commands[key] = command
    return command


def _launcher_values(run: Run | PlanRun, ctx: _Context, payload: Shell) -> dict[str, Any]:
    return {
        "run": {"nodes": run.nodes, "world_size": run.world_size, "ranks_per_node": run.gpus_per_node},
        "options": ctx.options,
        "launcher_options": ctx.system.launcher_options,
        "python": ctx.python,
        "payload": payload,
        "scheduler": ctx.system.scheduler,
    }


def _engine_values(run: Run | PlanRun, ctx: _Context, payload: Shell, engine: str) -> dict[str, Any]:
    """An external engine's launcher values: its Python ($STUDY_<ENGINE>_PYTHON at render time, else
    the system file's, a relative path taken from the project root), modules, environment."""
    spec = ctx.system.engines.get(engine) or ExternalEngine()
    python = os.environ.get(f"STUDY_{engine.upper()}_PYTHON") or spec.python
    if "/" in python and not os.path.isabs(python):
        python = str(REPO_ROOT / python)
    return {
        **_launcher_values(run, ctx, payload),
        "engine": {
            "python": python,
            "modules": spec.modules,
            "env": sorted((k, _env_text(v)) for k, v in spec.env.items()),
            "launcher_options": spec.launcher_options,
        },
    }


def _launcher_parts(run: Run | PlanRun, ctx: _Context) -> tuple[str, str] | None:
    """The launcher line of a topology split at its payload: (before, after), stripped as a whole line is.

    For a payload with no surrounding white space (it is stripped), before + payload + after is the
    stripped rendering of the launcher around that payload. None when the template does not insert
    the payload exactly once as it is; the caller then renders the whole template.
    """
    key = (run.nodes, run.world_size, run.gpus_per_node)
    if key not in ctx.launchers:
        text = ctx.templates["launcher"].render(_launcher_values(run, ctx, Shell(_PAYLOAD_MARK)))
        if text.count(_PAYLOAD_MARK) == 1:
            before, after = text.split(_PAYLOAD_MARK)
            ctx.launchers[key] = (before.lstrip(), after.rstrip())
        else:
            ctx.launchers[key] = None
    return ctx.launchers[key]


def _job_name(experiment: str, run_ids: list[str], tag: str | None = None) -> str:
    digest = hashlib.sha256(",".join(run_ids).encode()).hexdigest()[:6]
    return f"{experiment}-{tag}-{digest}" if tag else f"{experiment}-{digest}"


def _group_jobs(runs: list[Run], runs_per_job: int) -> list[list[Run]]:
    """Runs with equal nodes and ranks per node, in sweep order, packed `runs_per_job` to a job."""
    groups: dict[tuple[int, int], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.nodes, run.gpus_per_node), []).append(run)
    return [
        members[i : i + runs_per_job]
        for members in groups.values()
        for i in range(0, len(members), runs_per_job)
    ]


def _render_script(ctx: _Context, name: str, runs: list[PlanRun], params_json: dict[str, str]) -> str:
    workspace = str(ctx.workspace)
    job = {
        "name": name,
        "nodes": runs[0].nodes,
        "ranks_per_node": runs[0].gpus_per_node,
        "walltime": format_walltime(sum(r.walltime_s for r in runs)),
        "comment": "study:" + ",".join(r.run_id for r in runs),
        "output": f"{workspace}/jobs/{name}" + (".%j.out" if ctx.system.scheduler == "slurm" else ".out"),
        "runs": [
            {
                "run_id": r.run_id,
                "repeat": r.repeat,
                "command": Shell(r.command),
                "params_json": params_json.get(r.run_id) or canonical_json(r.params),
            }
            for r in runs
        ],
    }
    values = {
        "job": job,
        "system": ctx.system,
        "options": ctx.options,
        "account": ctx.account,
        "experiment": ctx.experiment.name,
        "workspace": workspace,
        "prelude": ctx.prelude,
    }
    return ctx.templates["script"].render(values)


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _check_account(system: System, account: str | None) -> str | None:
    account = resolve_account(system, account)
    if system.requires_account and not account:
        raise InputError(
            f"system {system.name} needs an account: pass --account, set STUDY_ACCOUNT, or add "
            f"`accounts: {{{system.name}: YOUR_ACCOUNT}}` to ~/.config/study/config.yaml",
            key="account",
        )
    return account


def build_plan(
    experiment: Experiment,
    system: System,
    workspace: Path,
    account: str | None,
    scripts: bool = True,
    commands: bool = True,
) -> tuple[Plan, dict[str, str]]:
    """The plan and every script's text, in memory; nothing is written.

    `scripts=False` skips the job scripts and `commands=False` the launcher lines (left empty), for
    callers such as `study plan` that only show the runs, the jobs and the node-hours.
    """
    ctx = _Context(experiment, system, workspace, account)
    runs = expand(experiment, system)
    plan = Plan(
        experiment=experiment.name, system=system.name, scheduler=system.scheduler, workspace=str(workspace)
    )
    by_id: dict[str, PlanRun] = {}
    params_json = {run.run_id: run.params_json for run in runs}
    for run in runs:
        planned = PlanRun(
            run.run_id,
            run.repeat,
            run.params,
            run.nodes,
            run.gpus_per_node,
            run.world_size,
            run.walltime_s,
            str(render_command(run, ctx, run.params_json)) if commands or scripts else "",
            job="",
        )
        by_id[run.run_id] = planned
        plan.runs.append(planned)
    texts: dict[str, str] = {}
    for members in _group_jobs(runs, experiment.resources.runs_per_job):
        ids = [r.run_id for r in members]
        name = _job_name(experiment.name, ids)
        for run_id in ids:
            by_id[run_id].job = name
        job = Job(name, f"jobs/{name}.sh", ids, members[0].nodes, sum(r.walltime_s for r in members))
        plan.jobs.append(job)
        if scripts:
            texts[job.script] = _render_script(ctx, name, [by_id[i] for i in ids], params_json)
    return plan, texts


def render_workspace(
    experiment_path: str | Path,
    system: str | Path | None = None,
    workspace: str | Path | None = None,
    account: str | None = None,
    dry_run: bool = False,
) -> Plan:
    """Render `experiment_path` for `system` (default: the experiment's) into `workspace`.

    Writes experiment.yaml (resolved copy), system.yaml, plan.csv, plan.json, jobs/*.sh and
    runs/<run_id>/spec.json; with `dry_run` writes nothing and returns the same Plan. Existing runs/
    folders are never touched; runs of an earlier plan that the experiment no longer has are kept in
    plan.json under `previous_runs`.
    """
    experiment = load_experiment(experiment_path)
    system_obj = system_for(experiment, system)
    ws = Path(workspace) if workspace else default_workspace(experiment)
    ws = ws.absolute()
    account_value = _check_account(system_obj, account)
    plan, scripts = build_plan(experiment, system_obj, ws, account_value)
    old = read_plan(ws)
    if old is not None:
        check_location(ws, {"workspace": old.workspace})
        if old.experiment != plan.experiment:
            raise InputError(
                f"workspace {ws} holds experiment {old.experiment!r}, not {plan.experiment!r}",
                hint="choose another --workspace",
            )
        current = {r.run_id for r in plan.runs}
        kept = {r.run_id: r for r in old.previous_runs}
        kept.update({r.run_id: r for r in old.runs})
        plan.previous_runs = [r for rid, r in sorted(kept.items()) if rid not in current]
    if dry_run:
        return plan
    resolved = experiment.model_dump(mode="json")
    resolved["system"] = system_obj.name
    files: dict[str, str] = dict(scripts)
    lines = JsonLines()
    run_lines = [lines.run_line(run) for run in plan.runs]
    # spec.json is json.dumps({schema, experiment, system, **run}): the run's plan.json line with a head.
    head = json.dumps({"schema": SPEC_SCHEMA, "experiment": plan.experiment, "system": plan.system})[:-1]
    for run, line in zip(plan.runs, run_lines, strict=True):
        files[f"runs/{run.run_id}/spec.json"] = f"{head}, {line[1:]}\n"
    files["experiment.yaml"] = yaml.safe_dump(resolved, sort_keys=False)
    files["system.yaml"] = yaml.safe_dump(system_obj.model_dump(mode="json"), sort_keys=False)
    files["plan.csv"] = plan_csv(plan)
    _write_files(ws, files)
    _atomic_write(ws / "plan.json", plan_json_text(plan, lines, run_lines), sync=True)
    return plan


def render_jobs(workspace: str | Path, run_ids: list[str], tag: str, account: str | None = None) -> list[Job]:
    """New job scripts for `run_ids` of an existing workspace (e.g. `rerun --failed`), added to plan.json.

    Names are `<experiment>-<tag>-<hash>` and never reuse an existing script's name. The workspace's
    experiment.yaml and system.yaml are used, so a re-render of the experiment is not needed.
    """
    ws = Path(workspace).absolute()
    plan = load_plan(ws)
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,23}", tag):
        raise InputError(f"tag {tag!r} must be lower-case letters, digits and '-'", key="tag")
    experiment = load_experiment(ws / "experiment.yaml")
    system = load_system(ws / "system.yaml")
    ctx = _Context(experiment, system, ws, _check_account(system, account))
    unknown = [r for r in run_ids if r not in {p.run_id for p in plan.runs}]
    if unknown:
        raise InputError(f"run ids not in {ws / 'plan.json'}: {', '.join(unknown)}", key="run_ids")
    by_id = {r.run_id: r for r in plan.runs}
    ordered = [by_id[r] for r in dict.fromkeys(run_ids)]
    groups: dict[tuple[int, int], list[PlanRun]] = {}
    for run in ordered:
        groups.setdefault((run.nodes, run.gpus_per_node), []).append(run)
    per_job = experiment.resources.runs_per_job
    taken = {j.name for j in plan.jobs} | {p.stem for p in (ws / "jobs").glob("*.sh")}
    jobs: list[Job] = []
    files: dict[str, str] = {}
    for members in groups.values():
        for i in range(0, len(members), per_job):
            chunk = members[i : i + per_job]
            ids = [r.run_id for r in chunk]
            name, n = _job_name(experiment.name, ids, tag), 2
            while name in taken:
                name, n = f"{_job_name(experiment.name, ids, tag)}-{n}", n + 1
            taken.add(name)
            job = Job(name, f"jobs/{name}.sh", ids, chunk[0].nodes, sum(r.walltime_s for r in chunk))
            files[job.script] = _render_script(ctx, name, chunk, {})
            jobs.append(job)
    _write_files(ws, files)
    plan.jobs.extend(jobs)
    _write_plan(ws, plan)
    return jobs


def _write_plan(ws: Path, plan: Plan) -> None:
    _atomic_write(ws / "plan.json", plan_json_text(plan), sync=True)


def _write_files(ws: Path, files: dict[str, str]) -> None:
    new_dirs: set[str] = set()  # folders this call created: their files cannot exist yet
    old_dirs: set[str] = set()
    root = str(ws)
    for rel, text in files.items():
        path = f"{root}/{rel}"
        parent = path.rsplit("/", 1)[0]
        if parent not in new_dirs and parent not in old_dirs:
            try:
                os.mkdir(parent)
                new_dirs.add(parent)
            except FileExistsError:
                old_dirs.add(parent)
            except FileNotFoundError:
                os.makedirs(parent)
                new_dirs.add(parent)
        mode = 0o755 if rel.endswith(".sh") else 0o644
        _atomic_write(path, text, mode=mode, parent_exists=True, new=parent in new_dirs)


def _atomic_write(
    path: str | Path,
    text: str,
    mode: int = 0o644,
    sync: bool = False,
    parent_exists: bool = False,
    new: bool = False,
) -> None:
    """Temp file in the same folder + rename; an unchanged file is left alone (same bytes, same mtime).

    Plain os calls, not file objects: a render writes or compares tens of thousands of small files.
    `new` says the folder was just created, so there is nothing to compare with.
    """
    data = text.encode()
    path = str(path)
    if not new:
        try:
            if _read_up_to(path, len(data) + 1) == data:
                return
        except FileNotFoundError:
            if not parent_exists:
                os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_up_to(path: str, size: int) -> bytes:
    """At most `size` bytes of `path` (all of it if shorter): enough to tell whether it equals a text."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks, left = [], size
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)

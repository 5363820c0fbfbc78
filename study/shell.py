"""Shell safety and the Jinja2 environment of jobs/templates/.

One rule: every value that reaches a script goes through `shell_quote` (shlex.quote). The Jinja2
environment applies it to every `{{ ... }}` by itself (its `finalize`), so a template cannot forget it;
text already made safe (a rendered command line) is marked `Shell`. Values put into scheduler
directives (`#SBATCH`, `#PBS`) are checked by `directive` instead, which refuses anything that could end
the directive line or split its value (newlines, spaces, quotes).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import jinja2

from study.config import directive_problem
from study.errors import InputError, StudyError
from study.parameters import ENV_NAME_RE
from study.results import DEFAULT_STATISTIC, STATISTICS

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "jobs" / "templates"


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
    if not ENV_NAME_RE.match(str(value)):
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

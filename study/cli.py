"""The `study` command line: one sub-command per module in study/commands/, imported only when used.

Each command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`.
Exit codes: 0 success, 1 failure, 2 bad input (study.errors.InputError and argparse errors).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from study import __version__
from study.errors import StudyError

# name -> module under study.commands; the order is the order of `study --help`.
COMMANDS: dict[str, str] = {
    "systems": "systems",
    "validate": "validate",
    "plan": "plan",
    "render": "render",
    "run": "run",
    "submit": "submit",
    "status": "status",
    "collect": "collect",
    "rerun": "rerun",
    "cancel": "cancel",
    "plot": "plot",
    "report": "report",
    "tree": "tree",
    "compare": "compare",
    "model": "model",
}


def _load(module: str):
    return importlib.import_module(f"study.commands.{module}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="study",
        description="Performance studies of multi-node LLM inference: YAML sweeps to batch jobs to figures.",
    )
    parser.add_argument("--version", action="version", version=f"study {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        try:
            mod = _load(module)
        except ModuleNotFoundError as exc:
            if exc.name != f"study.commands.{module}":
                raise
            continue
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    try:
        return int(args._module.run(args) or 0)
    except StudyError as exc:
        print(f"study {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"study {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`study tree … | head`): stop without a traceback, exit 1 as rich does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:
        # The machine's doing, not a bug to debug: a full or read-only disk, a vanished folder, a
        # permission. Say which file and why; STUDY_DEBUG=1 shows the traceback.
        if os.environ.get("STUDY_DEBUG"):
            raise
        print(f"study {args.command}: error: {_os_error_text(exc)}", file=sys.stderr)
        return 1


def _os_error_text(exc: OSError) -> str:
    what = exc.strerror or str(exc)
    if exc.filename:
        return f"{exc.filename}: {what}" + (f" (and {exc.filename2})" if exc.filename2 else "")
    return what


if __name__ == "__main__":
    sys.exit(main())

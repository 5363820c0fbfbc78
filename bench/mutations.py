"""Mutation fuzzing of experiment files: the shipped experiments, each changed in one small way.

A case takes one file of experiments/ and applies one mutation: a value replaced (by a wrong type,
a huge number, a huge range, an alias bomb, a shell string, ...), a line deleted, duplicated or
swapped with the next, a stray character or undecodable bytes, a line re-indented, a bad derived
expression, the file cut short. Each case is checked as a user would: `study validate FILE`, in a
worker process with a time limit. The outcome is one of

- `ok`        the file is still valid;
- `located`   an error naming FILE:LINE (exit 2);
- `unlocated` an error without a file and line;
- `traceback` an exception escaped to the user;
- `hang`      no answer within the time limit.

The target is no `unlocated`, `traceback` or `hang`. tests/test_fuzz.py draws cases with
hypothesis on a small budget; bench/bench_fuzz.py runs 10,000 and prints the counts.
"""

from __future__ import annotations

import contextlib
import io
import random
import re
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDS = sorted((ROOT / "experiments").rglob("*.yaml"))
MUTATIONS = (
    "value",
    "delete",
    "duplicate",
    "swap",
    "stray",
    "bytes",
    "reindent",
    "expression",
    "truncate",
)
VALUES = (
    "-1",
    "0",
    "1e12",
    "1e400",
    "abc",
    "[]",
    "{}",
    "null",
    "true",
    "'$(touch /tmp/pwned)'",
    "'`id`'",
    "'--qos=x'",
    "18446744073709551616",
    "9" * 5000,
    "{from: 1, to: 1e12, step: 1}",
    "{from: 1, to: 2, factor: 1}",
    "{from: 1B, to: 1e30, factor: 2}",
    "&a [*a]",
    "*nowhere",
    "[1, 1]",
    "[nvrar, nvrar]",
    "nvrar2",
    "[nvrar2]",
    "1.5",
    "64KiB",
    "-64KiB",
    "''",
    "'\\u0000'",
    "[[[[[[[[[[]]]]]]]]]]",
    "!!python/object:os.system",
    "99999:99:99",
    "100000",
)
EXPRESSIONS = (
    "(2**256)**256",
    "2**4097",
    "'x' * 4096 * 4096",
    "'x' * 10**9",
    "nodes *",
    "__import__('os')",
    "open('/etc/passwd')",
    "undefined_name + 1",
    "1 / 0",
    "[nodes] * 100000",
    "9" * 5000,
    "lambda: 1",
    "nodes if",
    "world_size // 0",
    "log2(-1)",
    "sqrt(-1)",
    "max()",
)
STRAY = (
    ":",
    "{",
    "}",
    "[",
    "]",
    "&",
    "*",
    "!",
    "|",
    ">",
    "'",
    '"',
    "%",
    "@",
    "`",
    "#",
    "\t",
    "\x00",
    "-",
    "? ",
)
LOCATED = re.compile(r"[^\s:]+\.ya?ml:\d+(:\d+)?: ")


@dataclass(frozen=True)
class Case:
    seed: int  # index into SEEDS
    mutation: str
    where: int  # picks the line or offset
    what: int  # picks the replacement


def case_from_random(rng: random.Random) -> Case:
    return Case(
        rng.randrange(len(SEEDS)), rng.choice(MUTATIONS), rng.randrange(1 << 30), rng.randrange(1 << 30)
    )


def mutate(text: str, case: Case) -> bytes:
    """The seed's text with the case's one mutation (bytes: some mutations are not UTF-8)."""
    lines = text.splitlines(keepends=True)
    i = case.where % max(1, len(lines))
    m = case.mutation
    if m == "value":
        valued = [n for n, line in enumerate(lines) if re.match(r"^\s*(- )?[\w.-]+:\s*\S", line)]
        if valued:
            n = valued[case.where % len(valued)]
            key = lines[n].split(":", 1)[0]
            lines[n] = f"{key}: {VALUES[case.what % len(VALUES)]}\n"
    elif m == "delete" and lines:
        del lines[i]
    elif m == "duplicate" and lines:
        lines.insert(i, lines[i])
    elif m == "swap" and len(lines) > 1:
        j = min(i + 1, len(lines) - 1)
        lines[i], lines[j] = lines[j], lines[i]
    elif m == "reindent" and lines:
        shift = (case.what % 9) - 4
        body = lines[i].lstrip(" ")
        lines[i] = " " * max(0, len(lines[i]) - len(body) + shift) + body
    elif m == "expression":
        expr = EXPRESSIONS[case.what % len(EXPRESSIONS)].replace("'", "''")
        block = [n for n, line in enumerate(lines) if re.match(r"^(derived|exclude):\s*$", line)]
        if block and case.where % 2 and lines[block[0]].startswith("exclude"):
            lines.insert(block[0] + 1, f"  - '{expr}'\n")
        elif block and lines[block[0]].startswith("derived"):
            lines.insert(block[0] + 1, f"  x_fuzz: '{expr}'\n")
        else:
            lines.append(f"derived:\n  x_fuzz: '{expr}'\n")
    text = "".join(lines)
    if m == "stray":
        at = case.where % max(1, len(text))
        text = text[:at] + STRAY[case.what % len(STRAY)] + text[at:]
    elif m == "truncate":
        text = text[: case.where % max(1, len(text))]
    data = text.encode("utf-8")
    if m == "bytes":
        at = case.where % max(1, len(data))
        data = data[:at] + b"\xff\xfe\xc3" + data[at:]
    return data


class _Hang(Exception):
    pass


def _on_alarm(_signum, _frame) -> None:
    raise _Hang


def check_bytes(data: bytes, name: str, timeout_s: float = 20.0) -> tuple[str, str]:
    """Run `study validate` on `data` (written as `name` in a temporary folder) in this process;
    (outcome, the last line it printed). The alarm catches hangs that return to Python."""
    from study.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        err = io.StringIO()
        old = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(["validate", str(path)])
        except _Hang:
            return "hang", f"no answer within {timeout_s:.0f} s"
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException as exc:  # noqa: BLE001 - a traceback is the finding
            return "traceback", f"{type(exc).__name__}: {str(exc)[:200]}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    text = err.getvalue().strip()
    last = text.splitlines()[0] if text else ""
    if code == 0:
        return "ok", ""
    if "Traceback" in text:
        return "traceback", last[:300]
    return ("located" if LOCATED.search(text) else "unlocated"), last[:300]


def run_case(case: Case) -> tuple[Case, str, str]:
    seed = SEEDS[case.seed]
    outcome, message = check_bytes(mutate(seed.read_text(encoding="utf-8"), case), seed.name)
    return case, outcome, message

"""What each kind of experiment may set, and how a value is checked.

`PARAMETERS[kind][name]` is a checker: it turns a YAML value into its normal form or raises ValueError
with what was expected. The bundled engine's parameters come from its flag table (engine/flags.py);
the collective benchmark's are listed here (tests/test_flags.py renders each to the benchmark's flag).
Also here: the names the harness shares with the payload (engines, all-reduce backends, dtypes) and
the work limits of a sweep. docs/experiments.md documents every parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from collectives.dtypes import BENCH_DTYPES, FLOAT_DTYPES
from engine.flags import Flag, study_parameters
from study.results import STATISTICS
from study.units import parse_size
from study.yamlpos import suggest

# A checker turns a YAML value into its normal form or raises ValueError saying what was expected.
Checker = Callable[[Any], Any]
# An environment variable's name, in an experiment's or a system's `env:` and in job scripts.
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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

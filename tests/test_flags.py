"""Every study parameter renders to a flag its payload accepts, with the value the experiment gave.

The command templates (jobs/templates/commands/*.j2) are rendered for one parameter at a time, set to
a value other than the payload's default, and the line is parsed by the payload's own parser:
`python -m engine.run` (engine/flags.py), the vLLM runner and `python -m collectives.bench`.
"""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from collectives import bench
from engine import run as engine_run
from engine.external import vllm as vllm_runner
from engine.flags import FLAGS, study_parameters
from study.parameters import BUNDLED_ONLY, PARAMETERS
from study.shell import template_environment

BASE_INFERENCE = {
    "engine": "bundled",
    "model": "tiny",
    "tp": 1,
    "pp": 1,
    "batch_size": 1,
    "prompt_len": 16,
    "decode_len": 8,
    "allreduce": "native",
    "gpus_per_node": 1,
}
BASE_COLLECTIVE = {"algorithms": ["gloo"], "sizes": {"from": 8, "to": 64, "factor": 2}, "gpus_per_node": 1}


def _render(kind: str, params: dict[str, Any]) -> list[str]:
    text = template_environment().get_template(f"commands/{kind}.j2").render({"p": params, "device": "cpu"})
    argv = shlex.split(text.replace('"$STUDY_RESULTS"', "results.json").replace("$STUDY_ATTEMPT_DIR", "/tmp"))
    assert argv[0] == "-m", argv
    return argv[2:]


def _other_value(flag) -> Any:
    """A value other than the flag's default that its parameter checker accepts."""
    if flag.kind != "value":
        return not flag.default
    if flag.choices:
        return next(c for c in reversed(flag.choices) if c != flag.default)
    if flag.type is int:
        return (flag.default or flag.minimum or 0) + 3
    return "some-model" if flag.name == "model" else "/data/checkpoint"


def test_every_engine_flag_with_a_study_name_is_a_study_parameter() -> None:
    table = PARAMETERS["inference"]
    for name in study_parameters():
        assert name in table, name
    # and the checker accepts the flag's own choices and refuses a word it does not know
    for flag in FLAGS:
        if flag.study and flag.choices:
            for choice in flag.choices:
                assert table[flag.study](choice) == choice
            with pytest.raises(ValueError):
                table[flag.study]("no-such-choice")


@pytest.mark.parametrize("name", sorted(study_parameters()))
def test_each_engine_parameter_renders_to_its_flag(name: str) -> None:
    flag = study_parameters()[name]
    value = "nvrar" if name == "allreduce" else _other_value(flag)
    value = PARAMETERS["inference"][name](value)  # what the experiment's checker makes of it
    ns = engine_run.build_parser().parse_args(_render("inference", BASE_INFERENCE | {name: value}))
    assert getattr(ns, flag.name) == value
    assert getattr(ns, flag.name) != flag.default


def test_the_harness_own_inference_parameters_reach_the_engine() -> None:
    parse = engine_run.build_parser().parse_args
    assert parse(_render("inference", BASE_INFERENCE)).allreduce is None  # native: the engine's own
    ns = parse(_render("inference", BASE_INFERENCE | {"virtual_gpus_per_node": 2, "save_tokens": True}))
    assert ns.gpus_per_node == 2
    assert ns.tokens_out == "/tmp/tokens.txt"
    assert parse(_render("inference", BASE_INFERENCE | {"gpus_per_node": 4})).gpus_per_node == 4
    assert set(PARAMETERS["inference"]) - set(study_parameters()) == {
        "engine",
        "virtual_gpus_per_node",
        "save_tokens",
    }


@pytest.mark.parametrize(
    "name", sorted(n for n in PARAMETERS["inference"] if n not in BUNDLED_ONLY and n not in ("engine",))
)
def test_each_parameter_vllm_takes_renders_to_a_flag_of_its_runner(name: str) -> None:
    flags = study_parameters()
    if name in ("allreduce",):  # vLLM takes only `native`: no flag
        value = "native"
    elif name == "save_tokens":
        value = True
    else:
        value = PARAMETERS["inference"][name](_other_value(flags[name]))
    ns = vllm_runner.build_parser().parse_args(
        _render("inference", BASE_INFERENCE | {"engine": "vllm", name: value})
    )
    if name == "save_tokens":
        assert ns.tokens_out == "/tmp/tokens.txt"
    elif name != "allreduce":
        assert getattr(ns, flags[name].name) == value


COLLECTIVE_VALUES: dict[str, tuple[Any, str, Any]] = {
    # parameter: (value, the benchmark's attribute, what the benchmark holds)
    "algorithms": (["gloo", "reference"], "algo", "gloo,reference"),
    "sizes": ({"from": 1024, "to": 4096, "factor": 4}, "maxbytes", "4096"),
    "dtype": ("fp32", "dtype", "fp32"),
    "iterations": (7, "iters", 7),
    "warmup": (3, "warmup_iters", 3),
    "graphs": (True, "graphs", True),
    "graph_calls": (9, "graph_calls", 9),
    "check": (False, "no_check", True),
    "out_of_place": (True, "out_of_place", True),
    "statistic": ("min", "average", 2),  # nccl-tests' -a: 0 rank 0, 1 mean, 2 min, 3 max
    "placement": ("in-place", "in_place", True),
    "virtual_gpus_per_node": (2, "gpus_per_node", 2),
}


def test_every_collective_parameter_has_a_case_here() -> None:
    assert set(PARAMETERS["collective"]) <= set(COLLECTIVE_VALUES), set(PARAMETERS["collective"]) - set(
        COLLECTIVE_VALUES
    )


@pytest.mark.parametrize("name", sorted(COLLECTIVE_VALUES))
def test_each_collective_parameter_renders_to_a_flag_of_the_benchmark(name: str) -> None:
    value, attribute, held = COLLECTIVE_VALUES[name]
    value = PARAMETERS["collective"][name](value)
    ns = bench.build_parser().parse_args(_render("collective", BASE_COLLECTIVE | {name: value}))
    assert getattr(ns, attribute) == held

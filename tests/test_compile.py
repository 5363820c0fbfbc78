"""Each step of compiling a sweep (study/compile.py SweepCompiler), one at a time, on real YAML files:
the axes, zip groups, fixed values, derived values, exclusions and the whole-sweep checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from study.compile import SweepCompiler
from study.config import Experiment, validate_model
from study.errors import InputError
from study.yamlpos import load_yaml

HEAD = "name: t\nkind: collective\nsystem: local\n"


def _steps(tmp_path: Path, body: str) -> SweepCompiler:
    """The compiler of an experiment file that pydantic accepts, before any step has run."""
    path = tmp_path / "e.yaml"
    path.write_text(HEAD + body)
    data, positions = load_yaml(path)
    experiment = validate_model(Experiment, data, positions)
    experiment._path, experiment._positions = positions.file, positions
    return SweepCompiler(experiment)


def _line_of(error: InputError) -> int:
    return int(str(error).split(":")[1])


def test_resource_axes_take_lists_and_ranges(tmp_path) -> None:
    steps = _steps(tmp_path, "resources:\n  nodes: {from: 1, to: 8, factor: 2}\n  gpus_per_node: [1, 2]\n")
    axes = steps.resource_axes()
    assert [a.names for a in axes] == [("nodes",), ("gpus_per_node",)]
    assert [v for (v,) in axes[0].values] == [1, 2, 4, 8]
    assert steps.sources == {"nodes": ("resources", "nodes"), "gpus_per_node": ("resources", "gpus_per_node")}


def test_sweep_axes_check_each_value_and_zip_groups_move_together(tmp_path) -> None:
    steps = _steps(
        tmp_path,
        "sweep:\n  dtype: [bf16, fp32]\n  zip:\n    iterations: [10, 20]\n    warmup: [1, 2]\n",
    )
    axes = steps.sweep_axes()
    assert [a.names for a in axes] == [("dtype",), ("iterations", "warmup")]
    assert axes[1].values == ((10, 1), (20, 2))
    bad = _steps(tmp_path, "sweep:\n  zip:\n    iterations: [10, 20]\n    warmup: [1]\n")
    with pytest.raises(InputError, match="equal lengths") as info:
        bad.sweep_axes()
    assert _line_of(info.value) == 7  # the shorter member's line
    with pytest.raises(InputError, match="expected one of"):
        _steps(tmp_path, "sweep:\n  dtype: [bf16, fp64]\n").sweep_axes()


def test_a_name_defined_twice_names_its_first_place(tmp_path) -> None:
    steps = _steps(tmp_path, "sweep:\n  dtype: [bf16]\nfixed:\n  dtype: fp32\n")
    steps.sweep_axes()
    with pytest.raises(InputError, match=r"already defined at sweep\.dtype"):
        steps.fixed_values()


def test_fixed_values_are_checked_and_lists_kept_only_where_a_parameter_takes_one(tmp_path) -> None:
    steps = _steps(
        tmp_path, "fixed:\n  algorithms: [nccl, nvrar]\n  sizes: {from: 1KiB, to: 4KiB, factor: 2}\n"
    )
    assert steps.fixed_values() == {
        "algorithms": ["nccl", "nvrar"],
        "sizes": {"from": 1024, "to": 4096, "factor": 2},
    }
    with pytest.raises(InputError, match="move `dtype` to `sweep`"):
        _steps(tmp_path, "fixed:\n  dtype: [bf16, fp32]\n").fixed_values()


def test_derived_values_come_in_dependency_order_and_cycles_are_refused(tmp_path) -> None:
    steps = _steps(tmp_path, "derived:\n  x_b: x_a * 2\n  x_a: nodes + 1\n")
    assert [name for name, _ in steps.derived_values()] == ["x_a", "x_b"]
    with pytest.raises(InputError, match="cycle|depends|itself"):
        _steps(tmp_path, "derived:\n  x_a: x_b\n  x_b: x_a\n").derived_values()


def test_exclusions_are_mappings_of_known_values_or_expressions(tmp_path) -> None:
    steps = _steps(tmp_path, "sweep:\n  dtype: [bf16, fp32]\nexclude:\n  - {dtype: fp32}\n  - nodes > 2\n")
    steps.sweep_axes()
    first, second = steps.exclusions()
    assert first.match == {"dtype": "fp32"} and first.expression is None
    assert second.match is None and second.expression.names == {"nodes"}
    unknown = _steps(tmp_path, "exclude:\n  - {colour: red}\n")
    with pytest.raises(InputError, match="not a value of this sweep"):
        unknown.exclusions()


def test_whole_sweep_checks_size_environment_and_required_parameters(tmp_path) -> None:
    steps = _steps(
        tmp_path,
        "resources:\n  nodes: {from: 1, to: 1000, step: 1}\nsweep:\n  x_a: {from: 1, to: 1000, step: 1}\n",
    )
    axes = steps.resource_axes() + steps.sweep_axes()
    with pytest.raises(InputError, match="1,000,000 runs"):
        steps.check_size(axes)
    with pytest.raises(InputError, match="environment variable name"):
        _steps(tmp_path, "env:\n  1BAD: x\n").check_env()
    missing = _steps(tmp_path, "fixed:\n  algorithms: [nccl]\n")
    missing.fixed_values()
    with pytest.raises(InputError, match="needs `sizes`"):
        missing.check_required()

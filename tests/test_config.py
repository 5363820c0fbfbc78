"""Experiment files: schema errors name file:line:col, the key path, what was expected, a suggestion."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from study.config import load_experiment
from study.errors import InputError

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "experiments" / "examples").glob("*.yaml"))

GOOD = """\
version: 1
name: demo
kind: collective
resources:
  nodes: 1
  walltime: 10m
sweep:
  algorithms: [gloo, reference]
fixed:
  sizes: {from: 1KiB, to: 4KiB, factor: 2}
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(text))
    return load_experiment(path)


def error_of(tmp_path: Path, text: str) -> InputError:
    with pytest.raises(InputError) as info:
        load(tmp_path, text)
    assert info.value.exit_code == 2
    return info.value


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_validate(path):
    experiment = load_experiment(path)
    assert experiment.version == 1 and experiment.name == path.stem


def test_good_file_normalizes_values(tmp_path):
    experiment = load(tmp_path, GOOD)
    assert experiment.resources.walltime == 600
    assert experiment.compiled.fixed["sizes"] == {"from": 1024, "to": 4096, "factor": 2}
    axis = experiment.compiled.axes[1]
    assert axis.names == ("algorithms",) and axis.values == ((["gloo"],), (["reference"],))


def test_unknown_top_level_key_suggests_the_closest(tmp_path):
    err = error_of(tmp_path, GOOD + "repeat: 3\n")
    assert (err.file, err.line, err.col, err.key) == (str(tmp_path / "exp.yaml"), 11, 1, "repeat")
    assert "unknown key `repeat`" in str(err) and "did you mean `repeats`?" in str(err)


def test_unknown_nested_key_names_line_column_and_path(tmp_path):
    err = error_of(tmp_path, GOOD.replace("  nodes: 1", "  nodse: 1"))
    assert (err.line, err.col, err.key) == (5, 3, "resources.nodse")
    assert "did you mean `nodes`?" in str(err)
    assert str(err).startswith(f"{tmp_path / 'exp.yaml'}:5:3: resources.nodse: unknown key")


def test_unknown_parameter_for_the_kind_suggests(tmp_path):
    err = error_of(tmp_path, GOOD.replace("  algorithms:", "  algoritms:"))
    assert (err.line, err.col, err.key) == (8, 3, "sweep.algoritms")
    assert "unknown parameter `algoritms` for kind collective" in str(err)
    assert "did you mean `algorithms`?" in str(err)


def test_bad_value_in_a_sweep_list_points_at_the_element(tmp_path):
    text = GOOD.replace("kind: collective", "kind: inference").replace(
        "sweep:\n  algorithms: [gloo, reference]\nfixed:\n  sizes: {from: 1KiB, to: 4KiB, factor: 2}\n",
        "sweep:\n  tp: [1, two]\nfixed:\n  model: m\n  batch_size: 1\n  prompt_len: 8\n  decode_len: 8\n"
        "  allreduce: nccl\n",
    )
    err = error_of(tmp_path, text)
    assert (err.line, err.col, err.key) == (8, 11, "sweep.tp[1]")
    assert "expected an integer >= 1, got 'two'" in str(err)


def test_enum_value_suggests(tmp_path):
    text = GOOD.replace("fixed:\n", "fixed:\n  dtype: bf61\n")
    err = error_of(tmp_path, text)
    assert (err.line, err.col, err.key) == (10, 10, "fixed.dtype")
    assert "did you mean `bf16`?" in str(err)


def test_missing_required_key_points_at_the_parent(tmp_path):
    err = error_of(tmp_path, GOOD.replace("kind: collective\n", ""))
    assert "missing required key `kind`" in str(err) and err.line == 1


def test_kind_needs_its_payload_parameters(tmp_path):
    err = error_of(tmp_path, GOOD.replace("fixed:\n  sizes: {from: 1KiB, to: 4KiB, factor: 2}\n", ""))
    assert "needs `sizes`" in str(err) and (err.line, err.key) == (3, "kind")


def test_bad_walltime_and_name(tmp_path):
    err = error_of(tmp_path, GOOD.replace("walltime: 10m", "walltime: soon"))
    assert (err.line, err.col, err.key) == (6, 13, "resources.walltime") and "00:20:00" in str(err)
    err = error_of(tmp_path, GOOD.replace("name: demo", "name: Demo Run"))
    assert (err.line, err.key) == (2, "name") and "lower-case" in str(err)


def test_duplicate_keys_are_refused(tmp_path):
    err = error_of(tmp_path, GOOD + "sweep:\n  graphs: [true]\n")
    assert err.line == 11 and "duplicate key `sweep` (first written on line 7)" in str(err)


def test_yaml_syntax_error_has_a_position(tmp_path):
    err = error_of(tmp_path, GOOD + "fixed: [unclosed\n")
    assert err.line is not None and "invalid YAML" in str(err)


def test_same_name_in_two_places(tmp_path):
    err = error_of(tmp_path, GOOD + "derived:\n  sizes: 1024\n")
    assert (err.line, err.key) == (12, "derived.sizes") and "already defined at fixed.sizes" in str(err)


def test_list_in_fixed_for_a_scalar_parameter(tmp_path):
    err = error_of(tmp_path, GOOD.replace("fixed:\n", "fixed:\n  iterations: [10, 20]\n"))
    assert err.line == 10 and "move `iterations` to `sweep`" in str(err)


def test_zip_members_need_equal_lengths(tmp_path):
    text = GOOD.replace(
        "sweep:\n  algorithms: [gloo, reference]\n",
        "sweep:\n  algorithms: [gloo]\n  zip:\n    iterations: [10, 20]\n    warmup: [1, 2, 3]\n",
    )
    err = error_of(tmp_path, text)
    assert (err.line, err.key) == (11, "sweep.zip.warmup") and "equal lengths" in str(err)


def test_derived_expression_checked_at_load(tmp_path):
    err = error_of(tmp_path, GOOD + "derived:\n  x_half: nodez // 2\n")
    assert (err.line, err.col, err.key) == (12, 11, "derived.x_half")
    assert "unknown name `nodez`" in str(err) and "did you mean `nodes`?" in str(err)
    err = error_of(tmp_path, GOOD + "derived:\n  x_a: open('f')\n")
    assert err.line == 12 and "unknown function `open`" in str(err)
    err = error_of(tmp_path, GOOD + "derived:\n  x_a: x_b + 1\n  x_b: x_a + 1\n")
    assert "cycle" in str(err)


def test_exclusion_names_checked(tmp_path):
    err = error_of(tmp_path, GOOD + "exclude:\n  - {algoritms: gloo}\n")
    assert (err.line, err.key) == (12, "exclude[0].algoritms") and "did you mean `algorithms`?" in str(err)
    err = error_of(tmp_path, GOOD + 'exclude:\n  - "nods > 1"\n')
    assert (err.line, err.key) == (12, "exclude[0]") and "did you mean `nodes`?" in str(err)


def test_version_must_be_known(tmp_path):
    err = error_of(tmp_path, GOOD.replace("version: 1", "version: 7"))
    assert (err.line, err.key) == (1, "version")


def test_env_names_checked(tmp_path):
    err = error_of(tmp_path, GOOD + "env:\n  'BAD NAME': 1\n")
    assert (err.line, err.key) == (12, "env.BAD NAME")


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_experiment(tmp_path / "nope.yaml")


def test_several_errors_are_all_listed(tmp_path):
    err = error_of(tmp_path, GOOD + "repeat: 3\ndescriptoin: x\n")
    assert "repeat" in str(err) and "also:" in str(err) and ":12:1: descriptoin" in str(err)


def test_collective_algorithms_are_the_benchmarks_and_a_typo_fails_validation(tmp_path, capsys):
    from collectives.bench_cli import ALGORITHMS
    from study.cli import main
    from study.parameters import COLLECTIVE_ALGORITHMS

    assert set(COLLECTIVE_ALGORITHMS) == set(ALGORITHMS)
    path = tmp_path / "typo.yaml"
    path.write_text(
        "version: 1\nname: typo\nkind: collective\nsweep:\n  algorithms: [nccl, nvrar2]\n"
        "fixed:\n  sizes: 1MiB\n"
    )
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:5:" in err and "nvrar2" in err and "unknown algorithm" in err


def test_alias_bombs_and_recursive_anchors_are_refused_at_their_line(tmp_path, capsys):
    import re
    import time

    from study.cli import main

    levels = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("version: 1\nname: bomb\nkind: collective\n" + "\n".join(levels) + "\n")
    recursive = tmp_path / "self.yaml"
    recursive.write_text("version: 1\nname: self\nkind: collective\nsweep: &a [*a]\n")
    for path, message in ((bomb, "expands to more than 100,000 values"), (recursive, "an alias refers to")):
        started = time.monotonic()
        assert main(["validate", str(path)]) == 2
        err = capsys.readouterr().err
        assert time.monotonic() - started < 10  # bounded work, not a billion values
        assert re.search(rf"{re.escape(str(path))}:\d+:\d+: {message}", err), err
        assert "Traceback" not in err and "RecursionError" not in err


def test_a_key_that_looks_like_a_type_tag_is_still_named(tmp_path, capsys):
    from study.cli import main

    path = tmp_path / "typo.yaml"
    path.write_text("version: 1\nname: t\nkind: collective\nsw[ep:\n  algorithms: [nccl]\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:4:1: sw[ep: unknown key `sw[ep` (did you mean `sweep`?)" in err and "Traceback" not in err


def test_an_unknown_system_and_a_nul_byte_are_named_at_their_line(tmp_path, capsys):
    from study.cli import main

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(
        "version: 1\nname: t\nkind: collective\nsystem: nowhere\n"
        "fixed:\n  algorithms: [gloo]\n  sizes: 1KiB\n"
    )
    assert main(["plan", str(unknown)]) == 2
    assert f"{unknown}:4:9: system: unknown system `nowhere`" in capsys.readouterr().err
    assert main(["plan", str(unknown), "--system", "nowhere2"]) == 2
    assert "--system: unknown system `nowhere2`" in capsys.readouterr().err
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"version: 1\nname: t\x00\nkind: collective\n")
    assert main(["validate", str(nul)]) == 2
    err = capsys.readouterr().err
    assert f"{nul}:2:8: invalid YAML: unacceptable character #x0000" in err and "unicode string" not in err


BASE = """\
version: 1
name: limits
kind: collective
system: local
resources:
  nodes: 1
  gpus_per_node: 2
  walltime: 10m
sweep:
  algorithms: [gloo, reference]
fixed:
  sizes: {from: 1KiB, to: 4KiB, factor: 2}
"""
HUGE = "9" * 5000


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (
            ("  gpus_per_node: 2\n", "  gpus_per_node: {from: 1, to: 1000000000000, step: 1}\n"),
            "7:18",
            "resources.gpus_per_node: this range has 1,000,000,000,000 values",
        ),
        (
            (
                "  algorithms: [gloo, reference]\n",
                "  algorithms: [gloo, reference]\n  x_a: {from: 1, to: 10000, step: 1}\n"
                "  x_b: {from: 1, to: 10000, step: 1}\n",
            ),
            "11:3",
            "sweep.x_a: the sweep has 200,000,000 runs",
        ),
        (("", "derived:\n  x_p: '(2**256)**256'\n"), "14:8", "derived.x_p: 1157920892"),
        (("", f"derived:\n  x_p: '{HUGE} + 1'\n"), "14:8", "derived.x_p: cannot parse `99999"),
        (("", "derived:\n  x_s: \"'x' * 4096 * 4096 * 4096\"\n"), "14:8", "derived.x_s: repeating a string"),
        (
            ("", 'derived:\n  x_l: "[1] * 4000 + [2] * 4000 + [1] * 4000 * 16"\n'),
            "14:8",
            "derived.x_l: joining makes more than 65536",
        ),
        (
            ("  walltime: 10m\n", f"  walltime: 10m\n  runs_per_job: {HUGE}\n"),
            "9:17",
            "a number written with 5,000",
        ),
        (("to: 4KiB", "to: 1.0e+30"), "12:10", "fixed.sizes: size 1e+30 bytes is larger than 1 EiB"),
        (
            ("  algorithms: [gloo, reference]\n", "  algorithms: [gloo, reference, gloo]\n"),
            "10:33",
            "sweep.algorithms[2]: duplicate runs",
        ),
        (
            ("", "exclude:\n  - 'nodes == 1'\n"),
            "14:3",
            "exclude: the sweep is empty: all 2 points are excluded",
        ),
    ],
    ids=[
        "range",
        "cross-product",
        "power",
        "digits",
        "string-repeat",
        "list-growth",
        "yaml-number",
        "size",
        "duplicate",
        "exclude-all",
    ],
)
def test_work_limits_and_sweep_errors_name_file_line_and_key(tmp_path, capsys, change, where, message):
    """Small input, unbounded work: each limit is a clear error at its line, found in well under a
    second, before anything is planned; and the sweep-level errors name their line too."""
    import time

    from study.cli import main

    old, new = change
    text = BASE.replace(old, new, 1) if old else BASE + new
    path = tmp_path / "limits.yaml"
    path.write_text(text)
    started = time.monotonic()
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert time.monotonic() - started < 5
    assert f"{path}:{where}: {message}" in err, err
    assert "Traceback" not in err and len(err) < 2000

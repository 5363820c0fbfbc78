"""Sweep expansion: cross products, zip groups, exclusions, derived values, repeats and stable run ids."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from study.config import load_experiment
from study.errors import InputError
from study.sweep import expand, run_id_for
from study.systems import load_system

HEAD = """\
version: 1
name: sweep-test
kind: collective
system: perlmutter
"""


def runs_of(tmp_path: Path, body: str, system: str = "perlmutter", name: str = "exp.yaml"):
    path = tmp_path / name
    path.write_text(HEAD + textwrap.dedent(body))
    return expand(load_experiment(path), load_system(system))


def test_cross_product_in_written_order(tmp_path):
    runs = runs_of(
        tmp_path,
        """\
        resources: {nodes: [1, 2]}
        sweep:
          algorithms: [nccl, nvrar]
          graphs: [false, true]
        fixed: {sizes: 1MiB}
        """,
    )
    points = [(r.nodes, r.params["algorithms"][0], r.params["graphs"]) for r in runs]
    assert points == [(n, a, g) for n in (1, 2) for a in ("nccl", "nvrar") for g in (False, True)]
    assert all(r.gpus_per_node == 4 and r.world_size == 4 * r.nodes for r in runs)
    assert all(r.params["nodes"] == r.nodes and r.params["world_size"] == r.world_size for r in runs)
    assert len({r.run_id for r in runs}) == 8


def test_zip_groups_move_together(tmp_path):
    runs = runs_of(
        tmp_path,
        """\
        sweep:
          zip:
            nodes: [1, 2, 4]
            iterations: [100, 200, 400]
          algorithms: [nccl, nvrar]
        fixed: {sizes: 1MiB}
        """,
    )
    assert [(r.nodes, r.params["iterations"]) for r in runs][::2] == [(1, 100), (2, 200), (4, 400)]
    assert len(runs) == 6


def test_exclude_by_mapping_and_by_expression(tmp_path):
    runs = runs_of(
        tmp_path,
        """\
        resources: {nodes: [1, 2, 4]}
        sweep:
          algorithms: [nccl, nvrar]
        fixed: {sizes: 1MiB}
        exclude:
          - {algorithms: nvrar, nodes: 1}
          - "nodes * gpus_per_node > 8 and algorithms == ['nccl']"
        """,
    )
    assert sorted((r.nodes, r.params["algorithms"][0]) for r in runs) == [
        (1, "nccl"),
        (2, "nccl"),
        (2, "nvrar"),
        (4, "nvrar"),
    ]


def test_derived_values_in_dependency_order_and_typed(tmp_path):
    path = tmp_path / "inf.yaml"
    path.write_text(
        textwrap.dedent("""\
        name: inf
        kind: inference
        system: perlmutter
        resources: {nodes: [1, 2]}
        sweep:
          batch_size: {from: 4, to: 16, factor: 2}
        fixed: {model: m, prompt_len: 128, decode_len: 16, allreduce: nccl, pp: 1}
        derived:
          x_bytes: x_per_seq * batch_size
          x_per_seq: 8192 * 2
          micro_batches: max(1, batch_size // 8)
        """)
    )
    runs = expand(load_experiment(path), load_system("perlmutter"))
    assert [r.params["batch_size"] for r in runs] == [4, 8, 16] * 2
    assert [r.params["x_bytes"] for r in runs][:3] == [4 * 16384, 8 * 16384, 16 * 16384]
    assert [r.params["micro_batches"] for r in runs][:3] == [1, 1, 2]
    assert [r.params["tp"] for r in runs] == [4] * 3 + [8] * 3  # tp defaults to world_size // pp


def test_repeats_and_stable_ids(tmp_path):
    first = runs_of(
        tmp_path,
        """\
        sweep: {algorithms: [nccl, nvrar]}
        fixed: {sizes: 1MiB, dtype: bf16, iterations: 10}
        repeats: 3
        """,
    )
    assert [r.repeat for r in first] == [0, 1, 2, 0, 1, 2]
    # The same experiment with keys written in another order has the same ids.
    second = runs_of(
        tmp_path,
        """\
        repeats: 3
        fixed: {iterations: 10, dtype: bf16, sizes: 1048576}
        sweep: {algorithms: [nccl, nvrar]}
        """,
        name="other.yaml",
    )
    assert [r.run_id for r in first] == [r.run_id for r in second]
    # The id is the documented hash of name, parameters and repeat.
    assert first[0].run_id == run_id_for("sweep-test", first[0].params, 0)
    # Any parameter change changes the id.
    third = runs_of(
        tmp_path,
        """\
        sweep: {algorithms: [nccl, nvrar]}
        fixed: {sizes: 1MiB, dtype: bf16, iterations: 11}
        repeats: 3
        """,
        name="third.yaml",
    )
    assert not {r.run_id for r in first} & {r.run_id for r in third}


def test_run_id_ignores_key_order():
    assert run_id_for("e", {"a": 1, "b": [1, 2]}, 0) == run_id_for("e", {"b": [1, 2], "a": 1}, 0)
    assert run_id_for("e", {"a": 1}, 0) != run_id_for("e", {"a": 1}, 1)
    assert run_id_for("e", {"a": 1}, 0) != run_id_for("f", {"a": 1}, 0)


def test_size_range_in_sweep_is_an_axis(tmp_path):
    runs = runs_of(
        tmp_path,
        """\
        sweep:
          sizes: {from: 64KiB, to: 2MiB, factor: 2}
        fixed: {algorithms: nccl}
        """,
    )
    assert [r.params["sizes"] for r in runs] == [65536 << i for i in range(6)]


def test_empty_sweep_is_an_error(tmp_path):
    with pytest.raises(InputError, match="the sweep is empty: all 2 points are excluded"):
        runs_of(
            tmp_path,
            """\
            sweep: {algorithms: [nccl, nvrar]}
            fixed: {sizes: 1MiB}
            exclude: ["nodes >= 1"]
            """,
        )


def test_duplicate_runs_are_an_error(tmp_path):
    with pytest.raises(InputError, match="duplicate runs"):
        runs_of(
            tmp_path,
            """\
            sweep: {algorithms: [nccl, nccl]}
            fixed: {sizes: 1MiB}
            """,
        )


def test_failing_derived_value_names_its_line(tmp_path):
    with pytest.raises(InputError) as info:
        runs_of(
            tmp_path,
            """\
            sweep: {warmup: [1, 0]}
            fixed: {sizes: 1MiB, algorithms: nccl}
            derived:
              iterations: 10 // warmup
            """,
        )
    assert info.value.line == 8 and info.value.key == "derived.iterations"
    assert "division" in str(info.value) and "warmup=0" in str(info.value)


def test_derived_value_of_the_wrong_type(tmp_path):
    with pytest.raises(InputError, match="expected an integer >= 1") as info:
        runs_of(
            tmp_path,
            """\
            fixed: {sizes: 1MiB, algorithms: nccl}
            derived:
              iterations: nodes - 1
            """,
        )
    assert info.value.line == 7


def test_resources_the_system_cannot_give(tmp_path):
    with pytest.raises(InputError, match="8 GPUs per node asked, but perlmutter has 4 per node") as info:
        runs_of(
            tmp_path,
            """\
            resources: {gpus_per_node: [4, 8]}
            fixed: {sizes: 1MiB, algorithms: nccl}
            """,
        )
    assert info.value.key == "resources.gpus_per_node" and info.value.line == 5
    with pytest.raises(InputError, match="at most 1792"):
        runs_of(
            tmp_path,
            """\
            resources: {nodes: 4096}
            fixed: {sizes: 1MiB, algorithms: nccl}
            """,
        )


def test_world_size_must_match_tp_times_pp(tmp_path):
    path = tmp_path / "inf.yaml"
    path.write_text(
        textwrap.dedent("""\
        name: inf
        kind: inference
        system: perlmutter
        resources: {nodes: 2}
        fixed: {model: m, tp: 4, pp: 1, batch_size: 1, prompt_len: 8, decode_len: 8, allreduce: nccl}
        """)
    )
    with pytest.raises(InputError, match=r"tp x pp = 4 x 1 = 4 must equal world_size 8"):
        expand(load_experiment(path), load_system("perlmutter"))


def test_world_size_override_must_agree(tmp_path):
    with pytest.raises(InputError, match="world_size 2 differs"):
        runs_of(
            tmp_path,
            """\
            fixed: {sizes: 1MiB, algorithms: nccl}
            derived: {world_size: 2}
            """,
        )


def test_local_system_counts_ranks_not_gpus(tmp_path):
    runs = runs_of(
        tmp_path,
        """\
        resources: {gpus_per_node: 8}
        fixed: {sizes: 1MiB, algorithms: gloo}
        """,
        system="local",
    )
    assert runs[0].gpus_per_node == 8 and runs[0].world_size == 8 and runs[0].walltime_s == 1800


def test_micro_batches_must_divide_the_batch(tmp_path):
    path = tmp_path / "inf.yaml"
    path.write_text(
        textwrap.dedent("""\
        name: inf
        kind: inference
        system: perlmutter
        sweep: {micro_batches: [2, 3]}
        fixed: {model: m, batch_size: 8, prompt_len: 8, decode_len: 8, allreduce: nccl}
        """)
    )
    with pytest.raises(InputError, match="micro_batches 3 does not divide batch_size 8") as info:
        expand(load_experiment(path), load_system("perlmutter"))
    assert info.value.key == "sweep.micro_batches" and info.value.line == 4


@pytest.mark.parametrize(
    "resources,message",
    [
        ("{gpus_per_node: 100000}", "ranks per node would start that many processes"),
        ("{walltime: '99999999999:00:00'}", "a walltime is at most 366 days"),
    ],
)
def test_work_no_machine_could_do_is_refused_at_its_line(tmp_path, capsys, resources, message):
    from study.cli import main

    path = tmp_path / "big.yaml"
    path.write_text(
        "version: 1\nname: big\nkind: collective\n"
        f"resources: {resources}\n"
        "fixed:\n  algorithms: [gloo]\n  sizes: 1KiB\n"
    )
    assert main(["plan", str(path), "--system", "local"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:4:" in err and message in err and "Traceback" not in err

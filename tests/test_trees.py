"""Hatchet GraphFrames of real results.json files and a Thicket over many runs with its metadata."""

from __future__ import annotations

import pytest

from analysis import trees
from bench import synthetic as syn
from study.cli import main
from study.errors import InputError
from study.results import new_result, write_result

RUNS = [(4, "nccl"), (8, "nccl"), (4, "nvrar"), (8, "nvrar")]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    for i, (gpus, allreduce) in enumerate(RUNS):
        result = new_result(
            kind="inference",
            params={"tp": gpus, "pp": 1, "allreduce": allreduce},
            topology={"nodes": gpus // 4, "gpus_per_node": 4, "world_size": gpus},
            run_id=f"run{i}",
        )
        result["timers"] = syn.timer_tree(gpus, allreduce, "TP", 1.0)
        # An earlier failed attempt: the latest attempt is the one shown.
        failed = dict(result, status="failed", error="killed", timers=[])
        write_result(failed, root / "runs" / f"run{i}" / "attempt-1" / "results.json")
        write_result(result, root / "runs" / f"run{i}" / "attempt-2" / "results.json")
    return root


def test_graphframe_of_one_run(workspace):
    gf = trees.graphframe_from_path(workspace / "runs" / "run1")
    assert gf.metadata["world_size"] == 8 and gf.metadata["allreduce"] == "nccl"
    df = gf.dataframe.set_index("name")
    assert df.loc["decode", "time (inc)"] == pytest.approx(
        sum(syn.decode_components(8, "nccl").values()) + syn.DECODE_OTHER_MS
    )
    text = trees.tree_text(gf)
    assert text.splitlines()[0].endswith("generate")
    assert "allreduce" in text and "hatchet" not in text.lower()


def test_study_tree_prints_the_tree(workspace, capsys):
    assert main(["tree", str(workspace / "runs" / "run0" / "attempt-2" / "results.json")]) == 0
    out = capsys.readouterr().out
    assert "├─" in out and "decode" in out and "world_size=4" in out


def test_thicket_groups_by_metadata(workspace):
    tk = trees.thicket_from_paths([workspace])
    assert len(tk.metadata) == 4
    assert set(tk.metadata["allreduce"]) == {"nccl", "nvrar"}
    stats = trees.grouped_stats(tk, ["allreduce"], ["time"])
    got = stats.loc[("nvrar", "generate/decode/allreduce"), "time median"]
    want = (
        syn.decode_components(4, "nvrar")["allreduce"] + syn.decode_components(8, "nvrar")["allreduce"]
    ) / 2
    assert got == pytest.approx(want)
    assert stats.loc[("nccl", "generate/decode/allreduce"), "time count"] == 2
    frame = trees.thicket_statsframe(tk, ["time"])
    assert "time_median" in frame.columns


def test_study_tree_by_column(workspace, capsys):
    assert main(["tree", str(workspace), "--by", "world_size", "--metric", "time"]) == 0
    out = capsys.readouterr().out
    assert "generate/decode/matmul" in out and "4 runs grouped by world_size" in out
    assert main(["tree", str(workspace), "--by", "no_such_column"]) == 2


def test_run_without_timers_is_an_input_error(tmp_path):
    result = new_result(
        kind="collective", params={}, topology={"nodes": 1, "gpus_per_node": 1, "world_size": 1}
    )
    write_result(result, tmp_path / "results.json")
    with pytest.raises(InputError, match="no timer tree"):
        trees.graphframe_from_path(tmp_path / "results.json")
    with pytest.raises(InputError, match="no such results file"):
        trees.find_results(tmp_path / "missing")

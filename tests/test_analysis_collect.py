"""From results.json files through `study collect` to the analyses: the contract end to end."""

from __future__ import annotations

import json

import pytest

from analysis.bottlenecks import findings
from analysis.dataset import load_workspace
from analysis.speedup import crossovers, speedup_table
from bench import synthetic as syn
from study.collect import collect_workspace
from study.results import new_result, write_result

SIZES = [2**k for k in range(16, 21)]


def _plan_run(run_id, repeat, params, nodes, gpus_per_node=4):
    return {
        "run_id": run_id,
        "repeat": repeat,
        "params": params,
        "nodes": nodes,
        "gpus_per_node": gpus_per_node,
        "world_size": nodes * gpus_per_node,
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("collected")
    runs = []
    for nodes in (2, 4):
        world = nodes * 4
        for algorithm in ("nccl", "nvrar"):
            rid = f"coll-{algorithm}-{nodes}"
            params = {"algorithm": algorithm, "nodes": nodes}
            runs.append(_plan_run(rid, 0, params, nodes))
            result = new_result(
                kind="collective",
                params=params,
                run_id=rid,
                topology={"nodes": nodes, "gpus_per_node": 4, "world_size": world},
            )
            for size in SIZES:
                lat = syn.nccl_latency_us(size, world)
                if algorithm == "nvrar":
                    lat /= (size / syn.crossover_bytes(nodes)) ** syn.SPEEDUP_EXPONENT
                result["samples"].append(
                    {
                        "algorithm": algorithm,
                        "size_bytes": size,
                        "count": size // 2,
                        "dtype": "bf16",
                        "graphs": False,
                        "latency_us": lat,
                    }
                )
            write_result(result, ws / "runs" / rid / "attempt-1" / "results.json")
        gpus = nodes * 4
        rid = f"inf-{gpus}"
        params = {"tp": gpus, "pp": 1, "allreduce": "nccl", "model": "m"}
        runs.append(_plan_run(rid, 0, params, nodes))
        result = new_result(
            kind="inference",
            params=params,
            run_id=rid,
            topology={"nodes": nodes, "gpus_per_node": 4, "world_size": gpus},
        )
        result["timers"] = syn.timer_tree(gpus, "nccl", "TP", 1.0)
        result["metrics"] = {"e2e_ms": result["timers"][0]["metrics"]["time (inc)"]}
        write_result(result, ws / "runs" / rid / "attempt-1" / "results.json")
    plan = {
        "schema": "study.plan/1",
        "experiment": "through-collect",
        "system": "local",
        "scheduler": "local",
        "workspace": str(ws),
        "runs": runs,
        "jobs": [],
    }
    (ws / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    collect_workspace(ws)
    return ws


def test_collected_dataset_gives_the_planted_crossover(workspace):
    ds = load_workspace(workspace)
    assert (ds.runs["status"] == "ok").all()
    table = speedup_table(ds.kind("collective"))
    assert len(table) == 2 * len(SIZES)
    cross = crossovers(table).set_index("nodes")
    for nodes in (2, 4):
        assert cross.loc[nodes, "crossover_bytes"] == pytest.approx(syn.crossover_bytes(nodes), rel=1e-9)


def test_collected_timers_give_the_planted_bottleneck(workspace):
    ds = load_workspace(workspace)
    assert not ds.timers.empty
    decode = [f for f in findings(ds.runs, ds.timers, by="name") if f.scope == "generate/decode"]
    assert len(decode) == 1
    trends = {t.component: t for t in decode[0].trends}
    assert decode[0].fastest == "allreduce"
    assert trends["allreduce"].slope == pytest.approx(1.0)
    assert trends["matmul"].slope == pytest.approx(-1.0)


def test_results_without_a_statistic_collect_as_the_maximum_and_old_datasets_read_so(workspace, tmp_path):
    coll = load_workspace(workspace).kind("collective")
    assert set(coll["statistic"]) == {"max"}
    # A dataset collected before the column existed: its collective rows read as the maximum too.
    import pandas as pd

    old = pd.read_parquet(workspace / "dataset.parquet").drop(columns=["statistic"])
    (tmp_path / "old").mkdir()
    old.to_csv(tmp_path / "old" / "dataset.csv", index=False)
    runs = load_workspace(tmp_path / "old").runs
    assert set(runs.loc[runs["kind"] == "collective", "statistic"]) == {"max"}
    assert runs.loc[runs["kind"] == "inference", "statistic"].isna().all()


def test_both_placements_collect_as_two_measurements_and_are_paired_apart(tmp_path):
    """Results of the benchmark's default shape (two placements per size, the mean over ranks) go
    through collect; the speedup pairs in-place with in-place only."""
    ws = tmp_path / "ws"
    runs = []
    for algorithm, slower in (("nccl", 2.0), ("nvrar", 4.0)):
        rid = f"both-{algorithm}"
        runs.append(_plan_run(rid, 0, {"algorithms": [algorithm], "statistic": "mean"}, 2))
        result = new_result(kind="collective", params={}, run_id=rid, topology={"nodes": 2, "world_size": 8})
        for size in SIZES:
            lat = syn.nccl_latency_us(size, 8)
            if algorithm == "nvrar":
                lat /= (size / syn.crossover_bytes(2)) ** syn.SPEEDUP_EXPONENT
            for in_place, t in ((False, lat * slower), (True, lat)):
                spread = {"latency_us_min": t * 0.9, "latency_us_max": t * 1.2, "latency_us_rank0": t}
                result["samples"].append(
                    {"algorithm": algorithm, "size_bytes": size, "in_place": in_place, "statistic": "mean"}
                    | {"latency_us": t, "latency_us_mean": t, **spread}
                )
        write_result(result, ws / "runs" / rid / "attempt-1" / "results.json")
    plan = {"schema": "study.plan/1", "experiment": "both", "system": "local", "scheduler": "local"}
    (ws / "plan.json").write_text(json.dumps(plan | {"workspace": str(ws), "runs": runs, "jobs": []}))
    collected = collect_workspace(ws)
    assert {"statistic", "in_place", "latency_us_mean", "latency_us_max"} <= set(collected.dataset.columns)
    ds = load_workspace(ws)
    assert len(ds.runs) == 2 * 2 * len(SIZES) and set(ds.runs["statistic"]) == {"mean"}
    table = speedup_table(ds.kind("collective"))
    assert len(table) == 2 * len(SIZES)
    for row in table.itertuples(index=False):
        planted = (row.size_bytes / syn.crossover_bytes(2)) ** syn.SPEEDUP_EXPONENT
        assert row.speedup == pytest.approx(planted * (1.0 if row.in_place else 0.5))

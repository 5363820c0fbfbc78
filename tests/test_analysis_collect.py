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

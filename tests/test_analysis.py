"""Analyses on synthetic datasets whose answers are planted: validation, repeats, scaling, bottlenecks,
NVRAR/NCCL speedups and crossover, interconnect comparison."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.bottlenecks import findings, findings_table
from analysis.compare import side_by_side
from analysis.dataset import from_frames, load_workspace, load_workspaces, median_ci_ranks, summarize
from analysis.scaling import strong_scaling
from analysis.speedup import crossovers, e2e_speedup, speedup_table
from bench import synthetic as syn
from study.cli import main
from study.errors import InputError


@pytest.fixture(scope="module")
def inference():
    runs, timers = syn.inference_frames()
    return from_frames(runs, timers)


@pytest.fixture(scope="module")
def collective():
    return from_frames(syn.collective_frame(failed=2))


# -- loading and validation ---------------------------------------------------------------------------


def test_missing_column_names_file_and_column(tmp_path):
    df = syn.collective_frame(nodes=(2,), repeats=1).drop(columns=["world_size"])
    df.to_csv(tmp_path / "dataset.csv", index=False)
    with pytest.raises(InputError) as err:
        load_workspace(tmp_path)
    assert str(tmp_path / "dataset.csv") in str(err.value)
    assert "world_size" in str(err.value)


def test_non_numeric_unit_column_is_refused(tmp_path):
    df = syn.collective_frame(nodes=(2,), repeats=1)
    df["latency_us"] = df["latency_us"].astype(object)
    df.loc[3, "latency_us"] = "12 us"
    df.to_csv(tmp_path / "dataset.csv", index=False)
    with pytest.raises(InputError, match=r"dataset\.csv: latency_us: expected numbers, found '12 us'"):
        load_workspace(tmp_path)


def test_switch_columns_read_as_booleans_from_csv_and_parquet(tmp_path):
    df = syn.collective_frame(nodes=(2,), repeats=1)
    df["in_place"] = [i % 2 == 0 for i in range(len(df))]
    (tmp_path / "csv").mkdir()
    (tmp_path / "pq").mkdir()
    df.to_csv(tmp_path / "csv" / "dataset.csv", index=False)
    df.to_parquet(tmp_path / "pq" / "dataset.parquet")
    for folder in ("csv", "pq"):
        runs = load_workspace(tmp_path / folder).runs
        assert runs["in_place"].tolist() == df["in_place"].tolist()
        assert all(type(v) is bool for v in runs["in_place"])
    df["in_place"] = df["in_place"].astype(object)
    df.loc[0, "in_place"] = "maybe"
    df.to_csv(tmp_path / "csv" / "dataset.csv", index=False)
    with pytest.raises(InputError, match=r"dataset\.csv: in_place: expected true or false, found 'maybe'"):
        load_workspace(tmp_path / "csv")


def test_unitless_time_column_is_refused():
    df = syn.collective_frame(nodes=(2,), repeats=1).rename(columns={"latency_us": "latency"})
    with pytest.raises(InputError, match="latency: a time, size or bandwidth column must name its unit"):
        from_frames(df, source="x.csv")


def test_world_size_must_match_topology():
    df = syn.collective_frame(nodes=(2,), repeats=1)
    df.loc[0, "world_size"] = 7
    with pytest.raises(InputError, match="world_size: world_size 7 is not nodes × gpus_per_node"):
        from_frames(df, source="x.csv")


def test_bad_timer_type_is_refused():
    runs, timers = syn.inference_frames(gpus=(4,), schemes=("TP",), allreduces=("nccl",), repeats=1)
    timers.loc[0, "type"] = "kernel"
    with pytest.raises(InputError, match=r"type: expected region, compute or comm, found \['kernel'\]"):
        from_frames(runs, timers)


def test_cli_plot_without_dataset_exits_2(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "no dataset.parquet or dataset.csv" in capsys.readouterr().err


def test_several_workspaces_are_tagged(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    syn.write_workspace(a, syn.collective_frame(nodes=(2,), repeats=1))
    syn.write_workspace(b, syn.collective_frame(nodes=(2,), repeats=1, system="vista", interconnect="ib"))
    ds = load_workspaces([a, b])
    tags = ds.runs.groupby("workspace")[["system", "interconnect"]].first()
    assert tags.loc["a"].tolist() == ["perlmutter", "slingshot-11"]
    assert tags.loc["b"].tolist() == ["vista", "ib"]


# -- repeats ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "ranks", "coverage"),
    # Textbook order-statistic intervals for the median at >= 95% (e.g. Conover, Practical Nonparametric
    # Statistics, table A3): n=10 -> 2nd and 9th, 97.85%; n=20 -> 6th and 15th, 95.86%.
    [(10, (2, 9), 0.9785), (20, (6, 15), 0.9586), (6, (1, 6), 0.96875), (3, (1, 3), 0.75)],
)
def test_median_ci_ranks(n, ranks, coverage):
    lo, hi, cov = median_ci_ranks(n)
    assert (lo, hi) == ranks
    assert cov == pytest.approx(coverage, abs=5e-5)


def test_summarize_groups():
    df = pd.DataFrame({"k": ["a"] * 5 + ["b"] * 10, "v": [5, 1, 100, 3, 2] + list(range(10, 0, -1))})
    out = summarize(df, ["k"], ["v"]).set_index("k")
    assert out.loc["a", "v_median"] == 3
    assert (out.loc["a", "v_q1"], out.loc["a", "v_q3"]) == (2, 5)
    assert out.loc["a", "v_ci_lo"] == 1 and out.loc["a", "v_ci_hi"] == 100  # n=5: the full range
    assert (out.loc["b", "v_ci_lo"], out.loc["b", "v_ci_hi"]) == (2, 9)  # n=10: 2nd and 9th
    assert out.loc["b", "v_n"] == 10


# -- strong scaling -----------------------------------------------------------------------------------


def _planted_tbt(gpus: int, allreduce: str) -> float:
    decode = sum(syn.decode_components(gpus, allreduce).values()) + syn.DECODE_OTHER_MS
    return decode / 64


def test_strong_scaling_known_speedup(inference):
    table = strong_scaling(inference.kind("inference"), "tbt_ms")
    tp = table[(table["series"] == "TP") & (table["allreduce"] == "nccl")].set_index("world_size")
    assert sorted(tp.index) == [4, 8, 16, 32]
    for g in (4, 8, 16, 32):
        assert tp.loc[g, "tbt_ms_median"] == pytest.approx(_planted_tbt(g, "nccl"))
        expected = _planted_tbt(4, "nccl") / _planted_tbt(g, "nccl")
        assert tp.loc[g, "speedup"] == pytest.approx(expected)
        assert tp.loc[g, "efficiency"] == pytest.approx(expected / (g / 4))
    hybrid = table[table["scheme"] == "hybrid"]
    assert set(hybrid["series"]) == {"hybrid TP4"}
    assert hybrid["base_gpus"].unique().tolist() == [8]  # hybrid starts at 2 nodes
    assert set(table["scheme"]) == {"TP", "PP", "hybrid"}


# -- bottlenecks --------------------------------------------------------------------------------------


def test_planted_bottleneck_is_found(inference):
    found = [
        f
        for f in findings(inference.runs, inference.timers, by="name")
        if f.scope == "generate/decode"
        and f.sweep.get("series") == "TP"
        and f.sweep.get("allreduce") == "nccl"
    ]
    assert len(found) == 1
    f = found[0]
    assert (f.gpus_lo, f.gpus_hi) == (4, 32)
    assert f.dominant == "allreduce"
    assert f.fastest == "allreduce"
    trends = {t.component: t for t in f.trends}
    assert trends["allreduce"].slope == pytest.approx(1.0, abs=1e-9)
    assert trends["matmul"].slope == pytest.approx(-1.0, abs=1e-9)
    parts32 = syn.decode_components(32, "nccl")
    parts4 = syn.decode_components(4, "nccl")
    share32 = parts32["allreduce"] / (sum(parts32.values()) + syn.DECODE_OTHER_MS)
    share4 = parts4["allreduce"] / (sum(parts4.values()) + syn.DECODE_OTHER_MS)
    assert trends["allreduce"].share_hi == pytest.approx(share32)
    assert trends["allreduce"].share_lo == pytest.approx(share4)
    assert (
        f"allreduce is {100 * share32:.0f}% of decode time at 32 GPUs, up from {100 * share4:.0f}% at 4"
        in f.text
    )


def test_compute_dominates_where_planted(inference):
    """PP has no all-reduce and its GEMMs do not shrink: compute must dominate, send/recv grow fastest."""
    found = [
        f
        for f in findings(inference.runs, inference.timers, by="type")
        if f.scope == "generate/decode" and f.sweep.get("series") == "PP"
    ]
    assert [f.dominant for f in found] == ["compute"]
    assert found[0].fastest == "communication"
    table = findings_table(found)
    assert set(table["component"]) == {"compute", "communication", "other"}


# -- NVRAR against NCCL ---------------------------------------------------------------------------------


def test_known_speedup_and_crossover(collective):
    table = speedup_table(collective.kind("collective"))
    assert len(table) == 3 * 6
    for row in table.itertuples(index=False):
        expected = (row.size_bytes / syn.crossover_bytes(row.nodes)) ** syn.SPEEDUP_EXPONENT
        assert row.speedup == pytest.approx(expected)
    cross = crossovers(table).set_index("nodes")
    for n in (2, 4, 8):
        assert cross.loc[n, "crossover_bytes"] == pytest.approx(syn.crossover_bytes(n), rel=1e-9)
        assert cross.loc[n, "direction"] == "above"
        assert cross.loc[n, "size_lo"] < syn.crossover_bytes(n) < cross.loc[n, "size_hi"]


def test_speedup_pairs_runs_whose_algorithms_parameter_differs(collective):
    # A swept `algorithms` gives each run its own list (["nccl"], ["nvrar"]): a column as collect writes it.
    rows = collective.kind("collective")
    rows = rows.assign(algorithms=rows["algorithm"].map(lambda a: f'["{a}"]'))
    table = speedup_table(rows)
    assert len(table) == 3 * 6 and "algorithms" not in table.columns
    for row in table.itertuples(index=False):
        assert row.speedup == pytest.approx((row.size_bytes / syn.crossover_bytes(row.nodes)) ** 0.5)


def test_crossover_below_and_at_a_measured_point():
    # NVRAR faster for small messages: 2x at 64 KiB, 1x exactly at 256 KiB, 0.5x at 1 MiB.
    sizes = [65536, 262144, 1048576]
    rows = []
    for alg, lats in (("nccl", [10.0, 20.0, 40.0]), ("nvrar", [5.0, 20.0, 80.0])):
        for s, lat in zip(sizes, lats, strict=True):
            rows.append(
                {
                    "experiment": "e",
                    "run_id": alg,
                    "repeat": 0,
                    "kind": "collective",
                    "status": "ok",
                    "system": "s",
                    "nodes": 2,
                    "gpus_per_node": 4,
                    "world_size": 8,
                    "algorithm": alg,
                    "size_bytes": s,
                    "latency_us": lat,
                }
            )
    ds = from_frames(pd.DataFrame(rows))
    cross = crossovers(speedup_table(ds.ok))
    assert cross["crossover_bytes"].tolist() == [pytest.approx(262144.0)]
    assert cross["direction"].tolist() == ["below"]


def test_failed_rows_are_left_out(collective):
    assert collective.failed["run_id"].nunique() == 2
    assert (collective.ok["status"] == "ok").all()
    assert speedup_table(collective.ok)["speedup"].notna().all()


def test_e2e_speedup_known(inference):
    table = e2e_speedup(inference.kind("inference"))
    tp = table[(table["tp"] == table["world_size"])].set_index("world_size")
    for g in (4, 8, 16, 32):
        saved = syn.decode_components(g, "nccl")["allreduce"] - syn.decode_components(g, "nvrar")["allreduce"]
        nccl = tp.loc[g, "nccl_ms"]
        assert tp.loc[g, "nvrar_ms"] == pytest.approx(nccl - saved)
        assert tp.loc[g, "speedup"] == pytest.approx(nccl / (nccl - saved))


# -- interconnect comparison --------------------------------------------------------------------------


def test_the_same_sweep_run_as_two_experiments_is_compared():
    """nvrar-vs-nccl on Perlmutter and interconnect-comparison on Vista: one sweep, two names."""
    a = syn.collective_frame(nodes=(2, 4), repeats=3).assign(experiment="nvrar-vs-nccl")
    b = syn.collective_frame(
        nodes=(2, 4, 8), repeats=3, system="vista", interconnect="ndr-infiniband", gpus_per_node=1
    ).assign(experiment="interconnect-comparison")
    table = side_by_side(from_frames(pd.concat([a, b], ignore_index=True)).ok, "latency_us")
    assert sorted(table["nodes"].unique()) == [2, 4]  # only what both measured
    assert "experiment" not in table.columns and len(table) == 2 * 2 * 6


def test_side_by_side_ratio():
    a = syn.collective_frame(nodes=(2, 4), repeats=3)
    b = syn.collective_frame(
        nodes=(2, 4), repeats=3, system="vista", interconnect="ndr-infiniband", gpus_per_node=1
    )
    b["latency_us"] = b["latency_us"] * 0.5
    ds = from_frames(pd.concat([a, b], ignore_index=True))
    table = side_by_side(ds.ok, "latency_us", align="nodes")
    ratio = [c for c in table.columns if c.startswith("ratio ")]
    assert ratio == ["ratio vista (ndr-infiniband) / perlmutter (slingshot-11)"]
    assert len(table) == 2 * 2 * 6
    # Vista has 1 GPU per node, so its NCCL latency differs by the log2(world) term; check against the model.
    cols = list(table.columns)
    perl, vista = cols.index("perlmutter (slingshot-11)"), cols.index("vista (ndr-infiniband)")
    for values in table.itertuples(index=False):
        n, alg, size = values.nodes, values.algorithm, values.size_bytes
        want_a = syn.nccl_latency_us(size, n * 4)
        want_b = syn.nccl_latency_us(size, n) * 0.5
        if alg == "nvrar":
            sp = (size / syn.crossover_bytes(n)) ** syn.SPEEDUP_EXPONENT
            want_a, want_b = want_a / sp, want_b / sp
        assert values[perl] == pytest.approx(want_a)
        assert values[vista] == pytest.approx(want_b)
        assert values[cols.index(ratio[0])] == pytest.approx(want_b / want_a)
    assert math.isfinite(table[ratio[0]].sum())


def test_summarize_matches_pandas_on_random_groups():
    import numpy as np

    rng = np.random.default_rng(7)
    df = pd.DataFrame(
        {"a": rng.integers(0, 5, 2000), "b": rng.choice(["x", None], 2000), "v": rng.random(2000)}
    )
    out = summarize(df, ["a", "b"], ["v"]).set_index(["a", "b"])
    g = df.groupby(["a", "b"], dropna=False)["v"]
    ref = pd.DataFrame(
        {"median": g.median(), "q1": g.quantile(0.25), "q3": g.quantile(0.75), "mean": g.mean()}
    )
    for col in ("median", "q1", "q3", "mean"):
        assert out[f"v_{col}"].sort_index().to_numpy() == pytest.approx(ref[col].sort_index().to_numpy())
    assert int(out["v_n"].sum()) == 2000
    assert (out["v_ci_lo"] <= out["v_median"]).all() and (out["v_median"] <= out["v_ci_hi"]).all()


def test_region_only_trees_and_unit_named_measurements():
    """Timers without --breakdown (regions only) still say which phase dominates; a measurement such as
    weights_gb_max, different in every run, must not split the sweep into one run per series."""
    runs, timers = syn.inference_frames(schemes=("TP",), allreduces=("nccl",), repeats=1)
    runs["weights_gb_max"] = 1.0 / runs["world_size"]
    regions = timers[timers["type"] == "region"].copy()
    regions.loc[regions["name"] != "generate", "time_ms"] = regions["time_inc_ms"]
    ds = from_frames(runs, regions)
    (f,) = findings(ds.runs, ds.timers, by="name")
    assert (f.scope, f.gpus_lo, f.gpus_hi, f.dominant) == ("generate", 4, 32, "decode")
    trees = {int(g): t for g, t in regions.groupby("world_size")}
    share = {
        g: t.set_index("name").loc["decode", "time_inc_ms"]
        / t.set_index("name").loc["generate", "time_inc_ms"]
        for g, t in trees.items()
    }
    decode = next(t for t in f.trends if t.component == "decode")
    assert (decode.share_lo, decode.share_hi) == (pytest.approx(share[4]), pytest.approx(share[32]))

"""Figures: made for data that supports them (PNG + PDF + CSV of the plotted points), skipped with a
reason otherwise; other modules can register figures; `study plot` writes into WORKSPACE/figures."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.dataset import from_frames
from analysis.registry import REGISTRY, FigureData, Needs, figure, load_registry, plot_all
from analysis.style import save_figure
from bench import synthetic as syn
from study.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_files(files):
    assert files["png"].read_bytes()[:8] == PNG_MAGIC
    assert files["pdf"].read_bytes()[:5] == b"%PDF-"
    assert not pd.read_csv(files["csv"]).empty


@pytest.fixture(scope="module")
def collective_data():
    return FigureData(from_frames(syn.collective_frame(nodes=(2, 4), repeats=3)))


def test_collective_figures_and_their_points(collective_data, tmp_path):
    results = {
        r.name: r for r in plot_all(collective_data, tmp_path, only=["speedup_heatmap", "allreduce_latency"])
    }
    assert all(r.skipped is None for r in results.values())
    (heat,) = results["speedup_heatmap"].files
    _check_files(heat)
    points = pd.read_csv(heat["csv"])
    assert len(points) == 2 * 6
    for row in points.itertuples(index=False):
        assert row.speedup == pytest.approx((row.size_bytes / syn.crossover_bytes(row.nodes)) ** 0.5)
    (lat,) = results["allreduce_latency"].files
    lat_points = pd.read_csv(lat["csv"])
    assert set(lat_points["algorithm"]) == {"nccl", "nvrar"}
    one = lat_points[(lat_points["algorithm"] == "nccl") & (lat_points["nodes"] == 4)]
    assert one["latency_us_median"].tolist() == pytest.approx(
        [syn.nccl_latency_us(s, 16) for s in one["size_bytes"]]
    )


def test_unsupported_figures_are_skipped_with_reasons(collective_data, tmp_path):
    results = {
        r.name: r
        for r in plot_all(
            collective_data, tmp_path, only=["strong_scaling", "nccl_algorithm_map", "interconnect_allreduce"]
        )
    }
    assert results["strong_scaling"].skipped == "no successful inference runs"
    assert "NCCL_DEBUG=INFO" in results["nccl_algorithm_map"].skipped
    assert results["interconnect_allreduce"].skipped == "needs 2 systems, the data has 1"
    assert not list(tmp_path.iterdir())


def test_figure_skips_itself_when_data_cannot_make_it(tmp_path):
    only_nccl = FigureData(from_frames(syn.collective_frame(nodes=(2,), algorithms=("nccl",), repeats=1)))
    (result,) = plot_all(only_nccl, tmp_path, only=["speedup_heatmap"])
    assert result.skipped == "no message size measured with both nccl and nvrar"


def test_inference_figures(tmp_path):
    runs, timers = syn.inference_frames(gpus=(4, 8), schemes=("TP",), repeats=1)
    data = FigureData(from_frames(runs, timers))
    results = {
        r.name: r for r in plot_all(data, tmp_path, only=["strong_scaling", "breakdown", "e2e_nvrar_vs_nccl"])
    }
    assert all(r.skipped is None for r in results.values()), [r.skipped for r in results.values()]
    (scaling,) = results["strong_scaling"].files
    _check_files(scaling)
    scopes = sorted(f["png"].name for f in results["breakdown"].files)
    assert scopes == [
        "breakdown-generate.decode.png",
        "breakdown-generate.png",
        "breakdown-generate.prefill.png",
    ]
    decode = pd.read_csv(tmp_path / "breakdown-generate.decode.csv")
    comm = decode[(decode["component"] == "communication") & (decode["allreduce"] == "nccl")]
    assert comm.set_index("world_size")["time_ms"].to_dict() == pytest.approx(
        {g: syn.decode_components(g, "nccl")["allreduce"] for g in (4, 8)}
    )


def test_another_module_can_register_a_figure(collective_data, tmp_path):
    load_registry()

    @figure("test_extra_figure", Needs(kind="collective", columns=("latency_us",)))
    def extra(data, out_dir):
        """A figure registered from outside analysis.figures."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        rows = data.rows("collective")
        ax.plot(rows["size_bytes"], rows["latency_us"], ".")
        return [save_figure(fig, rows[["size_bytes", "latency_us"]], out_dir, "extra")]

    try:
        (result,) = plot_all(collective_data, tmp_path, only=["test_extra_figure"])
        assert result.description == "A figure registered from outside analysis.figures."
        _check_files(result.files[0])
        with pytest.raises(ValueError, match="registered twice"):
            figure("test_extra_figure")(lambda data, out: [])
    finally:
        REGISTRY.pop("test_extra_figure", None)


def test_study_plot_command(tmp_path, capsys):
    syn.write_workspace(tmp_path, syn.collective_frame(nodes=(2, 4), repeats=1))
    assert main(["plot", str(tmp_path), "--only", "speedup_vs_size", "--only", "breakdown"]) == 0
    out = capsys.readouterr()
    assert (tmp_path / "figures" / "speedup_vs_size.png").is_file()
    assert "skipped breakdown: no successful inference runs" in out.err
    assert main(["plot", str(tmp_path), "--only", "no_such_figure"]) == 2
    assert "unknown figure(s) no_such_figure" in capsys.readouterr().err


def test_figures_in_worker_processes(collective_data, tmp_path):
    results = plot_all(collective_data, tmp_path, only=["speedup_vs_size", "strong_scaling"], jobs=2)
    assert [r.name for r in results] == ["speedup_vs_size", "strong_scaling"]
    _check_files(results[0].files[0])
    assert results[1].skipped == "no successful inference runs"


def test_one_panel_per_topology_when_gpus_per_node_vary(tmp_path, monkeypatch):
    """One node with 2, 4 or 8 GPUs (CPU ranks on a laptop) are three topologies, not one."""
    import analysis.figures_collective as figures

    frames = [syn.collective_frame(nodes=(1,), gpus_per_node=g, repeats=3) for g in (2, 4, 8)]
    df = pd.concat(frames, ignore_index=True)
    df["wrong_total"] = range(len(df))  # a per-run count must not split repeats into configurations
    data = FigureData(from_frames(df))
    seen = {}

    def capture(fig, points, out_dir, name):
        seen[name] = (
            [ax.get_title() for ax in fig.axes if ax.get_visible()],
            [ax.get_ylabel() for ax in fig.axes],
        )
        return save_figure(fig, points, out_dir, name)

    monkeypatch.setattr(figures, "save_figure", capture)
    plot_all(data, tmp_path, only=["allreduce_latency", "speedup_heatmap"])
    assert seen["allreduce_latency"][0] == ["1 node (2 GPUs)", "1 node (4 GPUs)", "1 node (8 GPUs)"]
    assert "GPUs" in seen["speedup_heatmap"][1]
    heat = pd.read_csv(tmp_path / "speedup_heatmap.csv")
    assert sorted(heat["world_size"].unique()) == [2, 4, 8] and len(heat) == 3 * 6


def test_recurring_series_have_distinct_colours():
    # Components of a breakdown and the all-reduce backends are drawn side by side: no two may share a colour.
    from analysis.breakdown import COMPONENT_OF_TYPE
    from analysis.style import color_for
    from collectives.api import BACKENDS

    for names in (sorted(set(COMPONENT_OF_TYPE.values())), sorted(BACKENDS)):
        colours = [color_for(name, i) for i, name in enumerate(names)]
        assert len(set(colours)) == len(colours), dict(zip(names, colours, strict=True))


def _two_placements(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame in place, and out of place with NCCL 2× and NVRAR 4× slower: NVRAR's speedup halves."""
    slower = frame["algorithm"].map({"nccl": 2.0, "nvrar": 4.0})
    outside = frame.assign(in_place=False, latency_us=frame["latency_us"] * slower)
    outside["run_id"] = outside["run_id"] + "-oop"
    return pd.concat([frame, outside], ignore_index=True)


def test_placements_and_statistics_are_drawn_apart_never_pooled(tmp_path):
    frame = _two_placements(syn.collective_frame(nodes=(2, 4), repeats=3))
    data = FigureData(from_frames(frame))
    results = {r.name: r for r in plot_all(data, tmp_path, only=["speedup_heatmap", "allreduce_latency"])}
    heat = {f["png"].stem: pd.read_csv(f["csv"]) for f in results["speedup_heatmap"].files}
    assert sorted(heat) == ["speedup_heatmap-in-place", "speedup_heatmap-out-of-place"]
    for name, halve in (("speedup_heatmap-in-place", 1.0), ("speedup_heatmap-out-of-place", 0.5)):
        points = heat[name]
        assert len(points) == 2 * 6 and points["in_place"].nunique() == 1
        for row in points.itertuples(index=False):
            planted = (row.size_bytes / syn.crossover_bytes(row.nodes)) ** 0.5 * halve
            assert row.speedup == pytest.approx(planted)
    latency = {f["png"].stem: pd.read_csv(f["csv"]) for f in results["allreduce_latency"].files}
    assert sorted(latency) == ["allreduce_latency-in-place", "allreduce_latency-out-of-place"]
    outside = latency["allreduce_latency-out-of-place"]
    one = outside[(outside["algorithm"] == "nccl") & (outside["nodes"] == 4)]
    assert one["latency_us_median"].tolist() == pytest.approx(
        [2 * syn.nccl_latency_us(s, 16) for s in one["size_bytes"]]
    )
    # Two statistics of one placement: a page each, titled by the statistic.
    mixed = frame[frame["in_place"]].copy()
    mixed.loc[mixed["repeat"] == 0, "statistic"] = "mean"
    results = plot_all(FigureData(from_frames(mixed)), tmp_path / "stat", only=["allreduce_latency"])
    names = sorted(f["png"].stem for f in results[0].files)
    assert names == ["allreduce_latency-max", "allreduce_latency-mean"]


def test_interconnect_figure_keeps_placements_apart(tmp_path):
    a = syn.collective_frame(nodes=(2,), repeats=1, system="perlmutter", interconnect="slingshot-11")
    b = syn.collective_frame(nodes=(2,), repeats=1, system="vista", interconnect="ndr", gpus_per_node=1)
    data = FigureData(from_frames(_two_placements(pd.concat([a, b], ignore_index=True))))
    (result,) = plot_all(data, tmp_path, only=["interconnect_allreduce"])
    files = {f["png"].stem: pd.read_csv(f["csv"]) for f in result.files}
    assert sorted(files) == ["interconnect_allreduce-in-place", "interconnect_allreduce-out-of-place"]
    for points in files.values():
        assert points["in_place"].nunique() == 1
        assert not points.duplicated(["system", "algorithm", "nodes", "size_bytes"]).any()

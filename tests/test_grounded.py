"""The grounded cost model: its formulas, its calibration on published measurements, held-out
validation, claims, intervals and the predicted figures, through the real CLI on real files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from collectives.costmodel import grounded as gm
from collectives.costmodel.nccl import nccl_times
from study import calibration as cal
from study.cli import main
from study.measurements import (
    CALIBRATION_FILE,
    COLUMNS,
    MEASUREMENTS_DIR,
    load_corpus,
    load_platforms,
    load_priors,
    parameter_names,
)

ROOT = Path(__file__).resolve().parents[1]
KIB, MIB = 1024, 1024 * 1024


@pytest.fixture(scope="module")
def platforms():
    return load_platforms()


@pytest.fixture(scope="module")
def priors():
    return load_priors()


def _theta(priors, **changes) -> dict[str, float]:
    return {k: p.value for k, p in priors.items()} | changes


# -- formulas --------------------------------------------------------------------------------------------


def test_one_shot_in_a_graph_is_launch_two_barriers_and_the_peer_reads(platforms, priors) -> None:
    h100 = platforms["hgx-h100"]
    theta = _theta(
        priors,
        **{"launch_graph_us": 1.0, "fabric.nvlink4.latency_us": 2.0, "fabric.nvlink4.peer_efficiency": 0.5},
    )
    size = 4 * MIB
    got = float(gm.predict(h100, "one-shot", 1, 4, size, "graph", theta))
    # 1 kernel + 2 barriers + (G - 1) whole messages over half of 450 GB/s.
    assert got == pytest.approx(1.0 + 2 * 2.0 + 3 * size / (1e3 * 450 * 0.5))


def test_plain_calls_cost_the_larger_of_host_and_device_work(platforms, priors) -> None:
    h100 = platforms["hgx-h100"]
    slow_host = _theta(priors, **{"host.torch.call_us": 200.0})
    fast_host = _theta(priors, **{"host.torch.call_us": 0.01})
    device = float(gm.predict(h100, "two-shot", 1, 8, 64 * KIB, "plain", fast_host))
    assert float(gm.predict(h100, "two-shot", 1, 8, 64 * KIB, "plain", slow_host)) == pytest.approx(
        200.0, rel=1e-3
    )
    graph = float(gm.predict(h100, "two-shot", 1, 8, 64 * KIB, "graph", fast_host))
    plain_minus_launches = device - priors["launch_plain_us"].value
    assert plain_minus_launches == pytest.approx(graph - priors["launch_graph_us"].value, rel=1e-6)


def test_nccl_takes_the_choice_of_its_own_tuner_and_the_time_of_the_fitted_links(platforms, priors) -> None:
    polaris = platforms["polaris"]
    sizes = np.array([8.0, 64 * KIB, 1 * MIB, 16 * MIB])
    # Polaris' NICs hang off the CPU's host bridge: NCCL 2.27 keeps LL128 off across its nodes.
    assert not polaris.ll128(2) and polaris.ll128(1)
    nominal = nccl_times(2, 4, sizes, 2 * 200 / 8, sm=80, cpu="amd", ll128=False)
    names = [f"{a}/{p}" for a, p in nominal]
    expected = [names[i] for i in np.argmin(np.stack(list(nominal.values())), axis=0)]
    assert list(gm.nccl_choice(polaris, 2, 4, sizes)) == expected
    # A slower network hop slows the prediction but never changes NCCL's choice.
    theta = _theta(priors)
    slow = theta | {"network.slingshot-11.nccl_hop_us": 10 * theta["network.slingshot-11.nccl_hop_us"]}
    assert np.all(
        gm.predict(polaris, "nccl", 2, 4, sizes, "plain", slow)
        > gm.predict(polaris, "nccl", 2, 4, sizes, "plain", theta)
    )


def test_nvrar_uses_its_network_transport_only_across_nodes(platforms, priors) -> None:
    perlmutter = platforms["perlmutter"]
    theta = _theta(priors)
    slower = theta | {"nvshmem.proxy.overhead_us": theta["nvshmem.proxy.overhead_us"] + 10}
    one_node = [float(gm.predict(perlmutter, "nvrar", 1, 4, 64 * KIB, "graph", t)) for t in (theta, slower)]
    assert one_node[0] == one_node[1]
    four = [float(gm.predict(perlmutter, "nvrar", 4, 4, 64 * KIB, "graph", t)) for t in (theta, slower)]
    assert four[1] - four[0] == pytest.approx(10 * 2)  # two recursive-doubling steps on 4 nodes
    assert gm.nvrar_kernels(4, 4) == 3 and gm.nvrar_kernels(1, 4) == 2 and gm.nvrar_kernels(4, 1) == 1


def test_in_node_algorithms_refuse_several_nodes(platforms, priors) -> None:
    with pytest.raises(gm.CostModelError, match="inside one node"):
        gm.predict(platforms["perlmutter"], "one-shot", 2, 4, 1024, "graph", _theta(priors))


def test_array_parameters_predict_every_draw_at_once(platforms, priors) -> None:
    theta = _theta(priors)
    draws = {k: np.array([[v], [2 * v if k == "launch_graph_us" else v]]) for k, v in theta.items()}
    out = gm.predict(platforms["hgx-h200"], "nccl", 1, 8, np.array([1024.0, MIB]), "graph", draws)
    assert out.shape == (2, 2)
    assert np.allclose(out[1] - out[0], theta["launch_graph_us"])


# -- the published measurements and their files ---------------------------------------------------------


def test_the_corpus_meets_the_issue_floor(platforms) -> None:
    df = load_corpus()
    assert len(df) >= 60 and df["source_id"].nunique() >= 6
    networks = set(df["network"])
    assert "slingshot-11" in networks and any("ib" in n for n in networks) and "nvlink" in networks
    assert {"nvrar", "nvshmem-put"} & set(df["algorithm"])
    assert df["source"].str.len().min() > 10 and df["read_as"].isin(["table", "text", "digitised"]).all()


def _copy_corpus(tmp_path: Path, names: list[str]) -> Path:
    folder = tmp_path / "measurements"
    folder.mkdir()
    for name in names:
        shutil.copy(MEASUREMENTS_DIR / f"{name}.csv", folder)
    return folder


@pytest.mark.parametrize(
    "edit,line,column,message",
    [
        (lambda rows: rows[1].__setitem__(11, "fast"), 2, "latency_us", "is not a number"),
        (lambda rows: rows[2].__setitem__(6, "nvrar2"), 3, "algorithm", "is not one of"),
        (lambda rows: rows[1].__setitem__(1, "nowhere"), 2, "system", "unknown platform"),
        (lambda rows: rows[3].__setitem__(4, "-2"), 4, "nodes", "greater than 0"),
        (lambda rows: rows[0].pop(), 1, None, "header must be the documented columns"),
    ],
)
def test_a_malformed_measurements_file_names_file_line_and_column(
    tmp_path, capsys, edit, line, column, message
):
    import csv

    folder = _copy_corpus(tmp_path, ["alcf-polaris", "cscs-alps"])
    path = folder / "alcf-polaris.csv"
    rows = list(csv.reader(path.read_text().splitlines()))
    edit(rows)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    code = main(["model", "validate", "--measurements", str(folder)])
    err = capsys.readouterr().err
    assert code == 2
    where = f"{path}:{line}" + (f":{COLUMNS.index(column) + 1}: {column}" if column else "")
    assert where in err and message in err
    assert "Traceback" not in err


def test_binary_or_empty_measurement_files_are_refused(tmp_path, capsys) -> None:
    folder = _copy_corpus(tmp_path, ["cscs-alps"])
    (folder / "bad.csv").write_bytes(b"\x00\xff\xfe garbage")
    assert main(["model", "validate", "--measurements", str(folder)]) == 2
    assert "bad.csv" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["model", "validate", "--measurements", str(empty)]) == 2
    assert "no measurements" in capsys.readouterr().err


# -- fit, held-out validation, bootstrap -----------------------------------------------------------------


def _synthetic(platforms, theta, rng, noise: float) -> pd.DataFrame:
    """Rows shaped like the corpus, latencies made by the model at `theta` with log-normal noise."""
    rows = []
    plan = [
        ("perlmutter", "src-a", "nccl", [2, 4, 8], 4, "plain", "nccl-tests"),
        ("perlmutter", "src-b", "nvrar", [2, 4, 8], 4, "plain", "torch"),
        ("polaris", "src-c", "nccl", [2, 8], 4, "plain", "nccl-tests"),
        ("hgx-h100", "src-d", "one-shot", [1], 8, "graph", "torch"),
        ("hgx-h100", "src-d", "two-shot", [1], 8, "graph", "torch"),
        ("hgx-h100", "src-e", "nccl", [1], 8, "graph", "torch"),
        ("olivia-gh200", "src-f", "mpi-p2p-gpu", [2], 1, "plain", "osu"),
        ("abci2-a", "src-g", "nccl", [2, 4, 16], 8, "plain", "nccl-tests"),
        ("abci2-a", "src-g", "mpi-p2p", [2], 1, "plain", "osu"),
    ]
    sizes = [8, 8 * KIB, 64 * KIB, 512 * KIB, 4 * MIB]
    for system, source, algorithm, node_list, g, launch, harness in plan:
        p = platforms[system]
        for n in node_list:
            t = gm.predict(
                p,
                algorithm,
                n,
                g,
                np.asarray(sizes, float),
                launch,
                theta,
                harness="torch" if harness == "osu" else harness,
            )
            for s, v in zip(sizes, np.ravel(t), strict=True):
                rows.append(
                    {
                        "source_id": source,
                        "system": system,
                        "network": p.network if n > 1 else "nvlink",
                        "nodes": n,
                        "gpus_per_node": g,
                        "algorithm": algorithm,
                        "size_bytes": s,
                        "latency_us": float(v * np.exp(rng.normal(0, noise))),
                        "launch": launch,
                        "harness": harness,
                        "kernels": 0,
                        "file": source,
                        "line": len(rows) + 2,
                    }
                )
    return pd.DataFrame(rows)


def test_a_fit_on_synthetic_data_recovers_known_parameters_within_its_interval(platforms, priors) -> None:
    rng = np.random.default_rng(7)
    truth = _theta(priors) | {
        "launch_plain_us": 3.0,
        "network.slingshot-11.nccl_hop_us": 4.5,
        "network.slingshot-11.efficiency": 0.4,
        "nvshmem.proxy.overhead_us": 6.0,
        "fabric.nvlink4.latency_us": 2.5,
        "network.infiniband.latency_us": 1.6,
    }
    df = _synthetic(platforms, truth, rng, noise=0.03)
    full = cal.fit(df, platforms, priors)
    draws = cal.bootstrap(df, platforms, priors, full.theta, draws=24, seed=3)
    identified = (
        "network.slingshot-11.nccl_hop_us",
        "network.slingshot-11.efficiency",
        "network.infiniband.latency_us",
        "network.infiniband.efficiency",
        "fabric.nvlink3.nccl_hop_us",
        "fabric.nvlink4.nccl_hop_us",
        "mpi_gpu_buffer_us",
    )
    for name in identified:
        lo, hi = np.quantile(draws[name], (0.02, 0.98))
        assert lo * 0.95 <= truth[name] <= hi * 1.05, (name, truth[name], lo, hi, full.theta[name])
    assert full.theta["nvshmem.proxy.overhead_us"] == pytest.approx(6.0, rel=0.2)
    # Constant terms that only ever add up (one launch and two barriers of a one-shot; NCCL's base
    # latency and a plain launch) are not separable one by one, but their sums are recovered, and
    # with them every prediction of the noiseless truth.
    one_shot = lambda t: t["launch_graph_us"] + 2 * t["fabric.nvlink4.latency_us"]  # noqa: E731
    assert one_shot(full.theta) == pytest.approx(one_shot(truth), rel=0.05)
    groups = cal.make_groups(df, platforms)
    exact = cal.predict_groups(truth, groups, len(df))
    assert np.allclose(full.predicted_us, exact, rtol=0.06)
    # A parameter no row depends on keeps its prior and is not free.
    assert "nvshmem.ibgda.overhead_us" not in full.free
    assert full.theta["nvshmem.ibgda.overhead_us"] == priors["nvshmem.ibgda.overhead_us"].value


def test_held_out_predictions_never_see_their_own_source(platforms, priors) -> None:
    df = load_corpus()
    subset = df[df["source_id"].isin(["alcf-polaris", "cscs-alps", "abci2", "eessi-olivia"])].reset_index(
        drop=True
    )
    base = cal.leave_one_source_out(subset, platforms, priors).table
    scaled = subset.copy()
    scaled.loc[scaled["source_id"] == "cscs-alps", "latency_us"] *= 10
    moved = cal.leave_one_source_out(scaled, platforms, priors).table
    a = base[base["source_id"] == "cscs-alps"]["predicted_us"].to_numpy()
    b = moved[moved["source_id"] == "cscs-alps"]["predicted_us"].to_numpy()
    assert np.allclose(a, b)  # its own latencies never reached its predictions
    other_a = base[base["source_id"] == "alcf-polaris"]["predicted_us"].to_numpy()
    other_b = moved[moved["source_id"] == "alcf-polaris"]["predicted_us"].to_numpy()
    assert not np.allclose(other_a, other_b)  # but they did reach the others'
    assert np.allclose(base["error"], base["predicted_us"] / base["latency_us"] - 1)


def test_validate_prints_every_held_out_point_and_the_summaries(tmp_path, capsys) -> None:
    folder = _copy_corpus(tmp_path, ["alcf-polaris", "cscs-alps", "eessi-olivia"])
    out = tmp_path / "out"
    assert main(["model", "validate", "--measurements", str(folder), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    points = pd.read_csv(out / "holdout_points.csv")
    assert len(points) == sum(len(pd.read_csv(f)) for f in folder.glob("*.csv"))
    assert {"published", "predicted", "error"} <= set(re.findall(r"\w+", text.lower()))
    assert "Held-out error by platform" in text and "Held-out error by algorithm" in text
    median = points["error"].abs().median()
    assert f"median |error| {median:.0%}" in text.splitlines()[-1]
    by_system = pd.read_csv(out / "holdout_by_system.csv").set_index("system")
    assert by_system.loc["polaris", "points"] == (points["system"] == "polaris").sum()


def test_calibrate_reports_and_writes_only_when_asked(tmp_path, capsys, monkeypatch) -> None:
    folder = _copy_corpus(tmp_path, ["alcf-polaris", "cscs-alps", "eessi-olivia", "yalis-nvrar"])
    before = CALIBRATION_FILE.read_bytes()
    assert main(["model", "calibrate", "--measurements", str(folder), "--draws", "3"]) == 0
    text = capsys.readouterr().out
    assert "nothing written" in text and CALIBRATION_FILE.read_bytes() == before
    assert "network.slingshot-11.nccl_hop_us" in text and "none: the prior" in text
    assert main(["model", "calibrate", "--measurements", str(folder), "--draws", "1"]) == 2


# -- the shipped calibration ------------------------------------------------------------------------------


def test_the_system_files_hold_the_calibrated_values_and_their_sources() -> None:
    doc = json.loads(CALIBRATION_FILE.read_text())
    assert set(doc["parameters"]) == set(parameter_names())
    for name in ("perlmutter", "polaris", "vista", "generic-ib"):
        block = yaml.safe_load((ROOT / "jobs" / "systems" / f"{name}.yaml").read_text())["cost_model"]
        assert block["fitted"], name
        for key, value in block["fitted"].items():
            assert value == pytest.approx(doc["parameters"][key], rel=1e-5), (name, key)
            assert block["fitted_to"][key] == doc["fitted_to"].get(key, []), (name, key)
        corpus_sources = set(doc["corpus"])
        assert all(set(s) <= corpus_sources for s in block["fitted_to"].values())
    assert all(len(v) == len(next(iter(doc["draws"].values()))) for v in doc["draws"].values())


def test_every_parameter_is_documented_with_unit_and_meaning() -> None:
    text = (ROOT / "docs" / "costmodel.md").read_text()
    for name in parameter_names():
        generic = re.sub(r"^(fabric|network|nvshmem|host)\.[^.]+\.", r"\1.<class>.", name)
        assert f"`{name}`" in text or f"`{generic}`" in text, name


def test_predict_prints_intervals_and_marks_extrapolation(capsys) -> None:
    argv = [
        "model",
        "predict",
        "--system",
        "perlmutter",
        "--nodes",
        "4,32",
        "--sizes",
        "64KiB,1MiB",
        "--algorithms",
        "nccl,nvrar",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert re.search(r"\d \[\d[\d.,]*–\d[\d.,]*\]", text)
    assert "*" in text and "beyond the published data" in text and "nvrar on slingshot-11" in text
    assert main([*argv, "--launch", "plain", "--set", "launch_plain_us=50"]) == 0
    assert "with --set launch_plain_us=50" in capsys.readouterr().out
    assert main([*argv, "--set", "alpha_inter_us=2"]) == 2
    assert "not a parameter of the grounded model" in capsys.readouterr().err


def test_engine_prints_intervals_of_the_e2e_gain(tmp_path, capsys) -> None:
    out = tmp_path / "eng"
    argv = [
        "model",
        "engine",
        "--system",
        "perlmutter",
        "--nodes",
        "8",
        "--tp",
        "32",
        "--batch-size",
        "4",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    df = pd.read_csv(out / "model_engine_llama3.1-405b_perlmutter.csv")
    row = df.iloc[0]
    assert row["e2e_speedup_nvrar_low"] <= row["e2e_speedup_nvrar"] <= row["e2e_speedup_nvrar_high"]
    assert row["e2e_speedup_nvrar_low"] < row["e2e_speedup_nvrar_high"]
    assert "[" in capsys.readouterr().out


# -- claims ---------------------------------------------------------------------------------------------


def test_claims_are_checked_with_a_verdict_each(tmp_path, capsys) -> None:
    out = tmp_path / "claims"
    assert main(["model", "claims", "--out", str(out)]) == 0
    df = pd.read_csv(out / "claims.csv")
    claims = yaml.safe_load((MEASUREMENTS_DIR / "claims.yaml").read_text())["claims"]
    assert list(df["id"]) == [c["id"] for c in claims]
    assert set(df["verdict"]) <= {"supported", "partly supported", "not supported"}
    assert "checked 7 claims" in capsys.readouterr().out


def test_a_claim_verdict_follows_the_prediction(tmp_path, capsys) -> None:
    from study.claims import check_claims
    from study.model import system_model

    sm = system_model("perlmutter")
    ratio = float(
        sm.latency("nccl", 8, [512 * KIB]).latency_us[0] / sm.latency("nvrar", 8, [512 * KIB]).latency_us[0]
    )
    base = {
        "kind": "allreduce_ratio",
        "system": "perlmutter",
        "nodes": [8],
        "sizes": "512KiB",
        "launch": "graph",
    }
    claims = [
        base | {"id": "in", "text": "inside", "range": [ratio * 0.9, ratio * 1.1]},
        base | {"id": "out", "text": "far above", "range": [ratio * 3, ratio * 4]},
    ]
    verdicts = check_claims(claims, lambda name: sm)
    assert [v.verdict for v in verdicts] == ["supported", "not supported"]
    assert f"{ratio:.2f}x" in verdicts[0].predicted


# -- predicted figures -----------------------------------------------------------------------------------


def test_model_figures_without_workspaces_writes_labelled_predictions(tmp_path, capsys) -> None:
    exps = tmp_path / "exps"
    exps.mkdir()
    for name in ("nvrar-vs-nccl", "e2e-405b-nvrar"):
        shutil.copy(ROOT / "experiments" / "paper" / f"{name}.yaml", exps)
    out = tmp_path / "pred"
    argv = [
        "model",
        "figures",
        "--experiments",
        str(exps),
        "--out",
        str(out),
        "--workspaces",
        str(tmp_path / "none"),
    ]
    assert main(argv) == 0
    assert "no measured data" in capsys.readouterr().out
    for system in ("perlmutter", "vista"):
        pngs = {p.name for p in (out / system / "figures").glob("*.png")}
        assert any(p.startswith("allreduce_latency") for p in pngs), pngs
        assert any(p.startswith("speedup_heatmap") for p in pngs)
        assert any(p.startswith("e2e_nvrar_vs_nccl") for p in pngs)
        page = (out / system / "report.html").read_text()
        assert "predicted by the cost model" in page
    assert "perlmutter/report.html" in (out / "index.html").read_text()
    points = pd.read_csv(next((out / "perlmutter" / "figures").glob("allreduce_latency-true*.csv")))
    assert set(points["algorithm"]) == {"nccl", "nvrar"}
    assert (points["latency_us_q1"] <= points["latency_us_median"]).all()
    assert (points["latency_us_q1"] < points["latency_us_q3"]).all()  # the band is the interval
    # The study's own NVRAR tuning results (4 Perlmutter nodes, plain launches) are overlaid.
    plain = pd.read_csv(next((out / "perlmutter" / "figures").glob("allreduce_latency-false*.csv")))
    published = plain[plain["algorithm"] == "nvrar (published)"]
    corpus = load_corpus()
    yalis = corpus[corpus["source_id"] == "yalis-nvrar"]
    assert sorted(published["latency_us_median"]) == sorted(yalis["latency_us"])
    assert (published["nodes"] == 4).all()


def test_make_figures_runs_the_predicted_figures_first() -> None:
    import subprocess

    dry = subprocess.run(
        ["make", "-n", "figures"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    lines = [line for line in dry.splitlines() if "study" in line]
    assert "model figures --out figures/predicted --workspaces workspaces" in lines[0]


def test_model_figures_puts_measured_points_beside_the_predictions(tmp_path, capsys) -> None:
    from study.model import system_model
    from study.predicted import predicted_dataset

    exps = tmp_path / "exps"
    exps.mkdir()
    shutil.copy(ROOT / "experiments" / "paper" / "nvrar-vs-nccl.yaml", exps)
    measured = predicted_dataset(exps / "nvrar-vs-nccl.yaml", system_model("perlmutter"))
    measured = measured[(measured["repeat"] == 2) & (measured["nodes"] == 4)].drop(columns=["origin"])
    measured["latency_us"] *= 1.3
    ws = tmp_path / "workspaces" / "nvrar-vs-nccl"
    ws.mkdir(parents=True)
    measured.to_csv(ws / "dataset.csv", index=False)
    out = tmp_path / "pred"
    argv = [
        "model",
        "figures",
        "--systems",
        "perlmutter",
        "--experiments",
        str(exps),
        "--out",
        str(out),
        "--workspaces",
        str(tmp_path / "workspaces"),
    ]
    assert main(argv) == 0
    assert "measured points from" in capsys.readouterr().out
    points = pd.read_csv(next((out / "perlmutter" / "figures").glob("allreduce_latency-true*.csv")))
    assert {"nccl (measured)", "nvrar (measured)"} <= set(points["algorithm"])


def test_compare_two_grounded_systems_names_their_dominant_parameters(tmp_path, capsys) -> None:
    out = tmp_path / "cmp"
    argv = ["model", "compare", "--systems", "perlmutter,vista", "--nodes", "4,16", "--sizes", "64KiB,2MiB"]
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Sensitivity" in text and "dominant parameters" in text.splitlines()[-1]
    sens = pd.read_csv(out / "model_sensitivity_perlmutter_vs_vista.csv")
    assert set(sens["system"]) == {"perlmutter", "vista"}
    grounded = set(parameter_names())
    assert set(sens["dominant"]) <= grounded
    # Vista has one GPU per node: no NVLink parameter can matter there.
    assert not sens.loc[sens["system"] == "vista", "dominant"].str.startswith("fabric.").any()


def test_what_ifs_are_checked_and_peer_memory_algorithms_stay_in_one_node(capsys) -> None:
    base = ["model", "predict", "--system", "perlmutter", "--nodes", "1,2", "--sizes", "1MiB"]
    assert main([*base, "--set", "nccl_base_scale=-1"]) == 2
    assert "not physical" in capsys.readouterr().err
    assert main([*base, "--set", "fabric.nvlink3.efficiency=1.5"]) == 2
    assert "at most 1" in capsys.readouterr().err
    assert main([*base, "--algorithms", "one-shot,nccl"]) == 0
    out = capsys.readouterr().out
    assert "not predicted: perlmutter one-shot on 2 node(s)" in out and "inside one node" in out
    assert main(["model", "predict", "--system", "vista", "--nodes", "2", "--gpus-per-node", "4"]) == 2
    err = capsys.readouterr().err
    assert "no NVLink fabric" in err and "Traceback" not in err and "Warning" not in err
    assert main(["model", "predict", "--system", "local", "--algorithms", "one-shot"]) == 2

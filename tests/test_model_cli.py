"""`study model`: predict, fit, engine and compare through the real CLI, on real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from collectives import costmodel as cm
from study import model as sm
from study.cli import main
from study.errors import InputError
from study.model_fit import fit_workspace

BLOCK = {
    "intra": {"alpha_us": 1.0, "beta_GBps": 100.0, "gamma_GBps": 500.0, "source": "test"},
    "inter": {"alpha_us": 2.0, "beta_GBps": 25.0, "gamma_GBps": 500.0, "source": "test"},
    "eta": 2.0,
    "source": "test",
}


def _system(folder: Path, name: str, *, block: dict | None = BLOCK, gpus: int = 4) -> Path:
    data = {
        "version": 1,
        "name": name,
        "scheduler": "slurm",
        "launcher": "srun",
        "gpus_per_node": gpus,
        "cpu_cores": 64,
        "gpu": {"model": "A100-SXM4-40GB", "memory_gb": 40, "bf16_tflops": 312, "hbm_TBps": 1.555},
        "interconnect": {
            "name": "Slingshot-11",
            "nics_per_node": 4,
            "link_Gbps": 200,
            "topology": "dragonfly",
        },
        "intra_node": {"name": "NVLink3", "bandwidth_GBps": 100},
    }
    if block is not None:
        data["cost_model"] = block
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture()
def fitted_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "fitted"
    monkeypatch.setattr(sm, "FITTED_DIR", folder)
    return folder


def test_predict_prints_writes_and_summarises(tmp_path: Path, fitted_dir: Path, capsys) -> None:
    system = _system(tmp_path, "alpha")
    out = tmp_path / "out"
    code = main(
        [
            "model",
            "predict",
            "--system",
            str(system),
            "--nodes",
            "1..8",
            "--sizes",
            "64KiB..256KiB",
            "--algorithms",
            "nccl,nvrar,ring",
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert code == 0
    assert "predicted 36 configurations (3 algorithms × 4 node counts × 3 sizes)" in text
    df = pd.read_csv(out / "model_predict_alpha.csv")
    row = df[(df["algorithm"] == "nvrar") & (df["nodes"] == 4) & (df["size_bytes"] == 65536)].iloc[0]
    assert row["latency_us"] == pytest.approx(
        float(cm.predict("nvrar", 4, 4, 65536, sm._params_from_block(BLOCK, "test")))
    )
    for name in ("model_latency_vs_size_alpha", "model_latency_vs_nodes_alpha"):
        for ext in ("png", "pdf", "csv"):
            assert (out / f"{name}.{ext}").stat().st_size > 0


@pytest.mark.parametrize(
    "argv,argument",
    [
        (["--nodes", "abc"], "--nodes"),
        (["--nodes", "8..2"], "--nodes"),
        (["--nodes", "2..8:/2"], "--nodes"),
        (["--sizes", "64K"], "--sizes"),
        (["--algorithms", "butterfly"], "--algorithms"),
        (["--set", "alpha_inter_us=fast"], "--set"),
        (["--set", "delta=1"], "--set"),
        (["--set", "beta_inter_GBps=0"], "--set"),
        (["--gpus-per-node", "0"], "--gpus-per-node"),
    ],
)
def test_predict_bad_arguments_exit_2_naming_the_argument(
    tmp_path: Path, fitted_dir: Path, capsys, argv: list[str], argument: str
) -> None:
    system = _system(tmp_path, "alpha")
    code = main(["model", "predict", "--system", str(system), *argv])
    assert code == 2
    assert argument in capsys.readouterr().err


def test_gpus_per_node_what_if(tmp_path: Path, fitted_dir: Path, capsys) -> None:
    system = _system(tmp_path, "alpha")
    out = tmp_path / "out8"
    argv = [
        "model",
        "predict",
        "--system",
        str(system),
        "--nodes",
        "4",
        "--sizes",
        "1MiB",
        "--algorithms",
        "nvrar",
    ]
    assert main([*argv, "--gpus-per-node", "8", "--out", str(out)]) == 0
    assert "8 GPUs per node" in capsys.readouterr().out
    row = pd.read_csv(out / "model_predict_alpha.csv").iloc[0]
    assert (row["gpus_per_node"], row["world_size"]) == (8, 32)
    expected = cm.predict("nvrar", 4, 8, 1 << 20, sm._params_from_block(BLOCK, "test"))
    assert row["latency_us"] == pytest.approx(float(expected))


def test_system_without_cost_model_is_refused(tmp_path: Path, fitted_dir: Path, capsys) -> None:
    system = _system(tmp_path, "bare", block=None)
    assert main(["model", "predict", "--system", str(system), "--nodes", "2"]) == 2
    err = capsys.readouterr().err
    assert "cost_model" in err and "bare.yaml" in err


def test_ranges() -> None:
    assert sm.parse_int_range("2..1024", "--nodes") == [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    assert sm.parse_int_range("2..10:+2", "--nodes") == [2, 4, 6, 8, 10]
    assert sm.parse_int_range("1..64:*4", "--nodes") == [1, 4, 16, 64]
    assert sm.parse_int_range("3,2,4,3", "--nodes") == [2, 3, 4]
    assert sm.parse_int_range("3..20", "--nodes") == [3, 6, 12]
    assert sm.parse_size_range("64KiB..2MiB", "--sizes") == [65536 << k for k in range(6)]
    assert sm.parse_size_range("64KiB..256KiB:+64KiB", "--sizes") == [65536, 131072, 196608, 262144]
    with pytest.raises(InputError, match="--nodes"):
        sm.parse_int_range("0..4", "--nodes")
    with pytest.raises(InputError, match="factor"):
        sm.parse_int_range("2..8:*1", "--nodes")


# -- fit ---------------------------------------------------------------------------------------------------

TRUTH = cm.CostParams(cm.LinkParams(0.7, 140.0, 500.0), cm.LinkParams(3.5, 18.0, 500.0), 2.0)


def _workspace(folder: Path, system: str, *, noise: float = 0.01, seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for algorithm in ("nvrar", "ring", "nccl"):
        for nodes in (1, 2, 4):
            for k in range(16, 22):
                size = 1 << k
                clean = float(cm.predict(algorithm, nodes, 4, size, TRUTH))
                rows.append(
                    {
                        "experiment": "allreduce",
                        "run_id": f"{algorithm}-{nodes}",
                        "repeat": 0,
                        "kind": "collective",
                        "status": "ok",
                        "system": system,
                        "algorithm": algorithm,
                        "nodes": nodes,
                        "gpus_per_node": 4,
                        "world_size": 4 * nodes,
                        "size_bytes": size,
                        "latency_us": clean * (1 + noise * rng.standard_normal()),
                    }
                )
    rows.append(
        {
            "experiment": "allreduce",
            "run_id": "nvrar-4-failed",
            "repeat": 0,
            "kind": "collective",
            "status": "failed",
            "system": system,
            "algorithm": "nvrar",
            "nodes": 4,
            "gpus_per_node": 4,
            "world_size": 16,
            "size_bytes": 1 << 16,
            "latency_us": None,
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "dataset.csv", index=False)
    return folder


def test_fit_writes_the_workspace_fit_and_the_system_override(
    tmp_path: Path, fitted_dir: Path, monkeypatch, capsys
) -> None:
    system = _system(tmp_path, "beta")
    real_load = sm.load_system
    monkeypatch.setattr(sm, "load_system", lambda name: real_load(system if name == "beta" else name))
    ws = _workspace(tmp_path / "ws", "beta")
    code = main(["model", "fit", str(ws), "--write-system"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "nccl (18 samples)" in text  # reported as not fitted, never silently mixed in
    doc = yaml.safe_load((ws / "cost_model.fit.yaml").read_text())
    block = doc["cost_model"]
    assert block["inter"]["beta_GBps"] == pytest.approx(18.0, rel=0.08)
    assert block["inter"]["alpha_us"] == pytest.approx(3.5, rel=0.15)
    assert block["intra"]["beta_GBps"] == pytest.approx(140.0, rel=0.15)
    assert doc["fit"]["samples"] == 36 and set(doc["fit"]["stderr"]) == set(cm.FIT_PARAMS)
    assert (fitted_dir / "beta.yaml").read_text() == (ws / "cost_model.fit.yaml").read_text()
    assert (ws / "figures" / "cost_model_fit_residuals.csv").is_file()
    assert len(doc["fit"]["theta_covariance"]["names"]) == 4
    # Predictions now prefer the fitted file, say so, and carry the fit's uncertainty, which grows
    # as they extrapolate beyond the 4 nodes measured.
    pred = tmp_path / "pred"
    argv = ["model", "predict", "--system", "beta", "--nodes", "2,64", "--sizes", "1MiB", "--out", str(pred)]
    assert main(argv) == 0
    assert "fitted" in capsys.readouterr().out
    df = pd.read_csv(pred / "model_predict_beta.csv").set_index(["algorithm", "nodes"])
    width = df["latency_us_high"] - df["latency_us_low"]
    assert 0 < width[("nvrar", 2)] < width[("nvrar", 64)]
    assert (df["latency_us_low"] < df["latency_us"]).all() and (
        df["latency_us"] < df["latency_us_high"]
    ).all()
    assert main([*argv[:-2], "--defaults", "--out", str(tmp_path / "pred0")]) == 0
    assert pd.read_csv(tmp_path / "pred0" / "model_predict_beta.csv")["latency_us_low"].isna().all()
    model = sm.system_model("beta")
    assert model.params.inter.beta_GBps == pytest.approx(block["inter"]["beta_GBps"])
    assert sm.system_model("beta", use_fitted=False).params.inter.beta_GBps == 25.0


def test_fit_refuses_too_little_data(tmp_path: Path, fitted_dir: Path, monkeypatch, capsys) -> None:
    system = _system(tmp_path, "gamma")
    real_load = sm.load_system
    monkeypatch.setattr(sm, "load_system", lambda name: real_load(system if name == "gamma" else name))
    ws = tmp_path / "small"
    ws.mkdir()
    pd.DataFrame(
        {
            "experiment": ["e"] * 3,
            "run_id": ["a", "b", "c"],
            "repeat": [0] * 3,
            "kind": ["collective"] * 3,
            "status": ["ok"] * 3,
            "system": ["gamma"] * 3,
            "algorithm": ["nvrar"] * 3,
            "nodes": [2] * 3,
            "gpus_per_node": [4] * 3,
            "world_size": [8] * 3,
            "size_bytes": [65536, 131072, 262144],
            "latency_us": [20.0, 25.0, 35.0],
        }
    ).to_csv(ws / "dataset.csv", index=False)
    assert main(["model", "fit", str(ws)]) == 2
    err = capsys.readouterr().err
    assert "cannot determine" in err and "needed" in err
    assert not (ws / "cost_model.fit.yaml").exists()


def test_fit_refuses_data_without_the_network(tmp_path: Path, fitted_dir: Path, monkeypatch, capsys) -> None:
    system = _system(tmp_path, "delta")
    real_load = sm.load_system
    monkeypatch.setattr(sm, "load_system", lambda name: real_load(system if name == "delta" else name))
    ws = _workspace(tmp_path / "ws", "delta")
    df = pd.read_csv(ws / "dataset.csv")
    df[df["nodes"] == 1].to_csv(ws / "dataset.csv", index=False)
    assert main(["model", "fit", str(ws)]) == 2
    assert "inter" in capsys.readouterr().err
    assert main(["model", "fit", str(ws), "--fix", "alpha_inter_us,beta_inter_GBps"]) == 0


def test_fit_keeps_only_the_requested_graph_mode(tmp_path: Path, fitted_dir: Path, monkeypatch) -> None:
    system = _system(tmp_path, "zeta")
    real_load = sm.load_system
    monkeypatch.setattr(sm, "load_system", lambda name: real_load(system if name == "zeta" else name))
    ws = _workspace(tmp_path / "ws", "zeta")
    df = pd.read_csv(ws / "dataset.csv")
    slow = df.assign(graphs=False, latency_us=df["latency_us"] * 3)
    pd.concat([df.assign(graphs=True), slow]).to_csv(ws / "dataset.csv", index=False)
    fit = fit_workspace(ws, graphs=True)
    assert fit.result.samples == 36
    assert fit.result.params.inter.beta_GBps == pytest.approx(18.0, rel=0.08)


def test_fit_takes_one_placement_and_one_statistic(
    tmp_path: Path, fitted_dir: Path, monkeypatch, capsys
) -> None:
    system = _system(tmp_path, "theta")
    real_load = sm.load_system
    monkeypatch.setattr(sm, "load_system", lambda name: real_load(system if name == "theta" else name))
    ws = _workspace(tmp_path / "ws", "theta")
    df = pd.read_csv(ws / "dataset.csv")
    # Out of place 3× slower: pooled with the in-place rows, it would drag β far from the truth.
    outside = df.assign(in_place=False, latency_us=df["latency_us"] * 3)
    pd.concat([df.assign(in_place=True), outside]).assign(statistic="mean").to_csv(
        ws / "dataset.csv", index=False
    )
    fit = fit_workspace(ws)
    assert (fit.placement, fit.statistic, fit.result.samples) == ("in-place", "mean", 36)
    assert fit.result.params.inter.beta_GBps == pytest.approx(18.0, rel=0.08)
    slow = fit_workspace(ws, placement="out-of-place")
    assert slow.placement == "out-of-place" and slow.result.params.inter.beta_GBps < 18.0 / 2
    assert main(["model", "fit", str(ws), "--statistic", "max"]) == 2
    assert "no samples of statistic 'max' (found: mean)" in capsys.readouterr().err
    both = pd.read_csv(ws / "dataset.csv")
    both.loc[both.index % 2 == 0, "statistic"] = "max"
    both.to_csv(ws / "dataset.csv", index=False)
    assert main(["model", "fit", str(ws)]) == 2
    assert "2 statistics over ranks (max, mean); choose one with --statistic" in capsys.readouterr().err
    assert main(["model", "fit", str(ws), "--statistic", "mean", "--placement", "in-place"]) == 0
    assert "(in-place, mean over ranks;" in " ".join(capsys.readouterr().out.split())  # the title wraps
    document = yaml.safe_load((ws / "cost_model.fit.yaml").read_text())
    assert (document["fit"]["placement"], document["fit"]["statistic"]) == ("in-place", "mean")


def test_fit_reads_the_cpu_reference_backends_as_their_schedules(
    tmp_path: Path, fitted_dir: Path, monkeypatch
) -> None:
    system = _system(tmp_path, "eta")
    real_load = sm.load_system
    monkeypatch.setattr(sm, "load_system", lambda name: real_load(system if name == "eta" else name))
    ws = _workspace(tmp_path / "ws", "eta")
    df = pd.read_csv(ws / "dataset.csv")
    df["algorithm"] = df["algorithm"].replace({"ring": "reference-ring", "nvrar": "reference"})
    df.to_csv(ws / "dataset.csv", index=False)
    fit = fit_workspace(ws)
    assert fit.result.samples == 36 and set(fit.data["model"]) == {"ring", "nvrar"}
    assert fit.result.params.inter.beta_GBps == pytest.approx(18.0, rel=0.08)


def test_fit_names_a_missing_column(tmp_path: Path, fitted_dir: Path, capsys) -> None:
    ws = tmp_path / "nocol"
    ws.mkdir()
    identity = {"experiment": ["e"], "run_id": ["r"], "repeat": [0], "kind": ["collective"], "status": ["ok"]}
    topology = {"nodes": [1], "gpus_per_node": [4], "world_size": [4]}
    pd.DataFrame(identity | topology | {"system": ["x"], "algorithm": ["ring"]}).to_csv(
        ws / "dataset.csv", index=False
    )
    assert main(["model", "fit", str(ws)]) == 2
    assert "size_bytes" in capsys.readouterr().err
    assert main(["model", "fit", str(tmp_path / "missing")]) == 2


# -- engine and compare ----------------------------------------------------------------------------------


def test_engine_predicts_both_layouts_and_nvrar_against_nccl(
    tmp_path: Path, fitted_dir: Path, capsys
) -> None:
    system = _system(tmp_path, "eps")
    out = tmp_path / "eng"
    code = main(
        [
            "model",
            "engine",
            "--system",
            str(system),
            "--model",
            "llama3.1-70b",
            "--nodes",
            "2..4",
            "--batch-size",
            "4",
            "--decode-len",
            "32",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    df = pd.read_csv(out / "model_engine_llama3.1-70b_eps.csv")
    assert set(zip(df["tp"], df["pp"], strict=True)) == {(8, 1), (4, 2), (16, 1), (4, 4)}
    np.testing.assert_allclose(df["e2e_ms"], df["prefill_ms"] + 32 * df["decode_ms"], rtol=1e-9)
    assert "largest NVRAR E2E gain" in capsys.readouterr().out
    assert main(["model", "engine", "--system", str(system), "--model", "gpt-2", "--nodes", "2"]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["model", "engine", "--system", str(system), "--nodes", "2", "--tp", "3"]) == 2
    assert "--tp" in capsys.readouterr().err


def test_compare_two_systems_prints_the_sensitivity_table(tmp_path: Path, fitted_dir: Path, capsys) -> None:
    slow = dict(BLOCK, inter=dict(BLOCK["inter"], alpha_us=5.0, beta_GBps=12.5))
    a, b = _system(tmp_path, "fast"), _system(tmp_path, "slow", block=slow)
    out = tmp_path / "cmp"
    code = main(
        [
            "model",
            "compare",
            "--systems",
            f"{a},{b}",
            "--nodes",
            "2,16",
            "--sizes",
            "64KiB,2MiB",
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert code == 0 and "Sensitivity" in text and "dominant parameters" in text
    sens = pd.read_csv(out / "model_sensitivity_fast_vs_slow.csv")
    assert set(sens["system"]) == {"fast", "slow"}
    pred = pd.read_csv(out / "model_compare_fast_vs_slow.csv").set_index(
        ["system", "algorithm", "nodes", "size_bytes"]
    )["latency_us"]
    assert pred[("slow", "nvrar", 16, 2 << 20)] > pred[("fast", "nvrar", 16, 2 << 20)]
    code = main(
        [
            "model",
            "compare",
            "--systems",
            f"{a},{b}",
            "--nodes",
            "2,4",
            "--sizes",
            "1MiB",
            "--model",
            "llama3.1-70b",
            "--batch-size",
            "4",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    engine = pd.read_csv(out / "model_engine_llama3.1-70b_fast_vs_slow.csv")
    assert set(engine["system"]) == {"fast", "slow"} and (engine["pp"] == 1).all()
    by = engine.set_index(["system", "nodes"])["decode_allreduce_ms"]
    assert by[("slow", 4)] > by[("fast", 4)]
    assert main(["model", "compare", "--systems", str(a)]) == 2


def test_model_without_subcommand_is_bad_input(capsys) -> None:
    assert main(["model"]) == 2


# -- overlay on measured points ----------------------------------------------------------------------------


def test_prediction_overlay_on_measured_points(tmp_path: Path) -> None:
    from analysis.costmodel_plots import plot_measured_with_overlay, prediction_overlay

    ws = _workspace(tmp_path / "ws", "beta", noise=0.0)
    measured = pd.read_csv(ws / "dataset.csv").dropna(subset=["latency_us"])
    extra = measured.iloc[:1].assign(algorithm="gloo")
    overlay = prediction_overlay(pd.concat([measured, extra]), {"beta": TRUTH})
    assert "gloo" not in set(overlay["algorithm"])
    merged = measured.merge(overlay, on=["system", "algorithm", "nodes", "gpus_per_node", "size_bytes"])
    np.testing.assert_allclose(merged["predicted_us"], merged["latency_us"], rtol=1e-9)
    paths = plot_measured_with_overlay(measured, overlay, tmp_path / "fig", "overlay")
    assert {p.suffix for p in paths} == {".png", ".pdf", ".csv"}

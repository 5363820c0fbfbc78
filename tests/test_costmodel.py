"""The α-β-γ models against hand-computed values, the fit against synthetic data, and physical sanity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from collectives import costmodel as cm
from collectives.costmodel import CostParams, FitError, LinkParams
from collectives.costmodel.schedule import ring_closed_form
from collectives.schedules import ALGORITHMS, Topology

KIB, MIB = 1 << 10, 1 << 20


def homogeneous(alpha: float = 1.0, beta: float = 100.0, gamma: float = 500.0) -> CostParams:
    link = LinkParams(alpha, beta, gamma)
    return CostParams(link, link, 1.0)


HIER = CostParams(LinkParams(1.0, 100.0, 500.0), LinkParams(2.0, 25.0, 500.0), 2.0)


# -- hand values: the classic formulas (p = 8, α = 1 µs, β = 100 GB/s, γ = 500 GB/s, n = 10^6 B) --------
# 1/β = 1e-5 µs/B and 1/γ = 2e-6 µs/B.
HAND_P8 = {
    "ring": 14 * 1 + 2 * 7 / 8 * 1e6 * 1e-5 + 7 / 8 * 1e6 * 2e-6,  # 14 + 17.5 + 1.75
    "recursive-doubling": 3 * (1 + 1e6 * 1e-5 + 1e6 * 2e-6),  # 3 * 13
    "rabenseifner": 2 * 3 * 1 + 2 * 7 / 8 * 1e6 * 1e-5 + 7 / 8 * 1e6 * 2e-6,  # 6 + 17.5 + 1.75
    "tree": 2 * 3 * (1 + 1e6 * 1e-5) + 3 * 1e6 * 2e-6,  # 66 + 6
}


@pytest.mark.parametrize("algorithm", sorted(HAND_P8))
@pytest.mark.parametrize("nodes,gpus", [(1, 8), (8, 1), (2, 4)])
def test_schedule_models_reduce_to_the_classic_formulas(algorithm: str, nodes: int, gpus: int) -> None:
    # With equal links the level a message takes does not matter: every topology gives the formula.
    got = float(cm.predict(algorithm, nodes, gpus, 1e6, homogeneous()))
    assert got == pytest.approx(HAND_P8[algorithm], rel=1e-12)
    assert float(cm.classic(algorithm, 8, 1e6, 1.0, 100.0, 500.0)) == pytest.approx(HAND_P8[algorithm])


def test_nvrar_hand_value_4x4() -> None:
    m = MIB
    # Intra ring reduce-scatter: 3 steps of α_i + (M/4)/β_i + (M/4)/γ_i.
    rs = 3 * (1.0 + m / 4 * 1e-5 + m / 4 * 2e-6)
    # Inter recursive doubling over 4 nodes: 2 steps of α_e + η (M/4)/β_e + (M/4)/γ_e, 1/β_e = 4e-5.
    rd = 2 * (2.0 + 2.0 * m / 4 * 4e-5 + m / 4 * 2e-6)
    # Intra ring all-gather: 3 steps of α_i + (M/4)/β_i.
    ag = 3 * (1.0 + m / 4 * 1e-5)
    assert float(cm.predict("nvrar", 4, 4, m, HIER)) == pytest.approx(rs + rd + ag, rel=1e-12)


def test_nvrar_folds_non_power_of_two_node_counts() -> None:
    m = 4 * 1000
    # 3 nodes × 1 GPU: fold in (α_e + M/β_e + M/γ_e), one exchange (+ reduce), fold out (α_e + M/β_e).
    fold_in = 2.0 + 2.0 * m * 4e-5 + m * 2e-6
    exchange = 2.0 + 2.0 * m * 4e-5 + m * 2e-6
    fold_out = 2.0 + 2.0 * m * 4e-5
    assert float(cm.predict("nvrar", 3, 1, m, HIER)) == pytest.approx(fold_in + exchange + fold_out)


def test_published_nvrar_formula_hand_value() -> None:
    g, n, m = 4, 8, 2 * MIB
    expected = 2 * 3 * 1.0 + 3 * 2.0 + m / 4 * (2 * 3 * 1e-5 + 7 * 2.0 * 4e-5 / 8)
    assert float(cm.nvrar_published(n, g, m, HIER)) == pytest.approx(expected)


def test_ring_across_nodes_is_bound_by_the_network_step() -> None:
    # 2 nodes × 2 GPUs: every step's slowest term is the boundary rank's network message plus reduction.
    m = 4000
    slice_ = m / 4
    rs_step = 2.0 + slice_ * 4e-5 + slice_ * 2e-6
    ag_step = 2.0 + slice_ * 4e-5
    assert float(cm.predict("ring", 2, 2, m, HIER)) == pytest.approx(3 * rs_step + 3 * ag_step)


def test_single_rank_costs_nothing() -> None:
    for algorithm in cm.MODELS:
        assert float(cm.predict(algorithm, 1, 1, MIB, HIER)) == 0.0


# -- the ring's closed form (used beyond RING_SCHEDULE_LIMIT ranks) equals its schedule -----------------


def _canonical(profile: cm.Profile) -> dict:
    out: dict = {}
    for mult, terms in zip(profile.multiplicity, profile.terms, strict=True):
        key = tuple(sorted((lv, round(x, 12), round(r, 12)) for lv, x, r in terms))
        out[key] = out.get(key, 0) + mult
    return out


@pytest.mark.parametrize(
    "nodes,gpus", [(1, 1), (1, 5), (2, 1), (3, 1), (2, 2), (3, 4), (5, 3), (4, 8), (16, 4)]
)
def test_ring_closed_form_matches_the_schedule(nodes: int, gpus: int) -> None:
    from_schedule = cm.profile("ring", nodes, gpus)
    closed = ring_closed_form(Topology(nodes, gpus))
    assert _canonical(closed) == _canonical(from_schedule)
    assert closed.steps == from_schedule.steps == 2 * (nodes * gpus - 1)


# -- NCCL's tuner -----------------------------------------------------------------------------------------


def test_nccl_ring_ll_candidate_hand_value() -> None:
    # α at NCCL's own reference hop latencies: the model is NCCL's formula with our bandwidths.
    params = CostParams(LinkParams(0.6, 100.0, 500.0), LinkParams(2.7, 25.0, 500.0), 1.0)
    cands = cm.nccl_candidates(2, 4, 64 * KIB, params)
    # Latency (NCCL 2.27): base 6.6 + (2·7 − 2·1) intra hops, each floored at the 1 µs network post
    # overhead of an Intel host across nodes, + 2 network hops × 2.7.
    latency = 6.6 + 12 * 1.0 + 2 * 2.7
    # Bus bandwidth min(100, 4 × 25) = 100 GB/s; LL keeps half, capped at 39 GB/s on 2 nodes of Intel
    # hosts; ring algbw = bus · p / (2(p − 1)).
    algbw = min(39.0, 100 * 0.5) * 8 / 14
    assert float(cands[("ring", "LL")]) == pytest.approx(latency + 64 * KIB / (1e3 * algbw))


def test_nccl_tree_correction_applies_from_64_bytes_to_256_mib_only() -> None:
    params = CostParams(LinkParams(0.6, 100.0, 500.0), LinkParams(2.7, 25.0, 500.0), 1.0)
    # Tree/Simple on 4 × 4: bus 100 GB/s × 0.92, halved; NCCL's correction for Simple at 64 KiB
    # (index log2(64 KiB / 64) = 10) is 0.6, 0.9 at 256 MiB (index 22, the last), none at 512 MiB.
    latency = 8.4 + 2 * (3 * 4.0 + 2 * 14.0)
    for size, factor in ((64 * KIB, 0.6), (256 * MIB, 0.9), (512 * MIB, 1.0)):
        algbw = 100 * 0.92 * 0.5 * factor
        got = float(cm.nccl_candidates(4, 4, size, params)[("tree", "Simple")])
        assert got == pytest.approx(latency + size / (1e3 * algbw)), size


def test_nccl_choice_follows_size_and_gpu_count() -> None:
    sizes = np.array([8 * KIB, 64 * KIB, 256 * KIB, 2 * MIB, 64 * MIB])
    _, choice = cm.nccl_predict(16, 4, sizes, HIER)
    assert choice[0].endswith("/LL")  # small messages: the low-latency protocol
    assert choice[-1] in ("ring/Simple", "tree/Simple", "ring/LL128", "tree/LL128")
    _, one_node = cm.nccl_predict(1, 4, sizes, HIER, ll128=False)
    assert all(c.split("/")[1] in ("LL", "Simple") for c in one_node)


# -- physics: monotone where it must be ------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", cm.MODELS)
def test_latency_grows_with_message_size(algorithm: str) -> None:
    sizes = 2.0 ** np.arange(6, 28)
    for nodes, gpus in ((1, 4), (2, 4), (16, 4), (64, 1), (5, 4)):
        t = cm.predict(algorithm, nodes, gpus, sizes, HIER)
        assert np.all(np.diff(t) > 0), (algorithm, nodes, gpus)


@pytest.mark.parametrize("algorithm", cm.MODELS)
def test_latency_grows_with_power_of_two_node_counts(algorithm: str) -> None:
    for size in (64 * KIB, 2 * MIB):
        t = [float(cm.predict(algorithm, n, 4, size, HIER)) for n in (1, 2, 4, 8, 16, 32, 64)]
        assert all(b > a for a, b in zip(t, t[1:], strict=False)), (algorithm, size, t)


def test_vectorised_over_sizes_and_parameters() -> None:
    sizes = np.array([64 * KIB, MIB])[:, None]
    alphas = np.array([1.0, 2.0, 4.0])[None, :]
    flat = {**HIER.flat(), "alpha_inter_us": alphas}
    t = cm.predict("nvrar", 8, 4, sizes, flat)
    assert t.shape == (2, 3)
    for i, s in enumerate((64 * KIB, MIB)):
        for j, a in enumerate((1.0, 2.0, 4.0)):
            assert t[i, j] == pytest.approx(
                float(cm.predict("nvrar", 8, 4, s, HIER.with_values(alpha_inter_us=a)))
            )


def test_elasticities_obey_homogeneity() -> None:
    # T(λα, β/λ, γ/λ) = λ T, so Σ e_α − Σ e_β − Σ e_γ = 1 for every schedule model.
    sizes = np.array([4 * KIB, 128 * KIB, 2 * MIB, 64 * MIB])
    for algorithm in ALGORITHMS:
        e = cm.elasticities(algorithm, 8, 4, sizes, HIER)
        total = (
            e["alpha_intra_us"]
            + e["alpha_inter_us"]
            - e["beta_intra_GBps"]
            - e["beta_inter_GBps"]
            - e["gamma_intra_GBps"]
            - e["gamma_inter_GBps"]
        )
        np.testing.assert_allclose(total, 1.0, rtol=1e-6)
    small = cm.elasticities("recursive-doubling", 8, 4, 64, HIER)
    assert small["alpha_inter_us"] > 0.5  # tiny messages: the network's latency dominates
    big = cm.elasticities("nvrar", 8, 4, 256 * MIB, HIER)
    assert big["beta_inter_GBps"] < -0.5  # huge messages: the network's bandwidth dominates
    assert float(cm.elasticities("ring", 8, 4, MIB, HIER)["eta"]) == 0.0


def test_parameters_are_checked() -> None:
    with pytest.raises(cm.CostModelError, match="beta_inter_GBps"):
        HIER.with_values(beta_inter_GBps=0.0)
    with pytest.raises(cm.CostModelError, match="unknown"):
        CostParams.from_flat({**HIER.flat(), "delta": 1.0})
    with pytest.raises(cm.CostModelError, match="unknown algorithm"):
        cm.predict("butterfly", 2, 2, 1, HIER)


# -- calibration --------------------------------------------------------------------------------------


def _synthetic(truth: CostParams, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    rows = []
    for algorithm in ("ring", "nvrar", "rabenseifner"):
        for nodes in (1, 2, 4, 8):
            for size in 2 ** np.arange(16, 22):
                rows.append((algorithm, nodes, 4, int(size)))
    algorithms, nodes, gpus, sizes = (list(c) for c in zip(*rows, strict=True))
    clean = np.array([float(cm.predict(a, n, g, s, truth)) for a, n, g, s in rows])
    return algorithms, nodes, gpus, sizes, clean * (1 + noise * rng.standard_normal(len(rows)))


def test_fit_recovers_known_parameters_from_noisy_data() -> None:
    truth = CostParams(LinkParams(0.8, 150.0, 600.0), LinkParams(3.0, 20.0, 600.0), 2.0)
    prior = CostParams(LinkParams(2.0, 60.0, 600.0), LinkParams(1.0, 50.0, 600.0), 2.0)
    algorithms, nodes, gpus, sizes, measured = _synthetic(truth, 0.02, seed=7)
    result = cm.fit(algorithms, nodes, gpus, sizes, measured, prior)
    got = result.params
    for name, true_value in (
        ("alpha_intra_us", 0.8),
        ("beta_intra_GBps", 150.0),
        ("alpha_inter_us", 3.0),
        ("beta_inter_GBps", 20.0),
    ):
        value = got.flat()[name]
        assert value == pytest.approx(true_value, rel=0.1), name
        assert abs(value - true_value) < 4 * result.stderr[name] + 1e-9, name
    assert result.rms_relative == pytest.approx(0.02, rel=0.3)
    assert len(result.relative_residuals) == len(sizes)


def test_fit_without_noise_is_exact() -> None:
    truth = CostParams(LinkParams(0.5, 200.0, 700.0), LinkParams(1.5, 40.0, 700.0), 1.0)
    algorithms, nodes, gpus, sizes, measured = _synthetic(truth, 0.0, seed=1)
    got = cm.fit(
        algorithms,
        nodes,
        gpus,
        sizes,
        measured,
        HIER.with_values(eta=1.0, gamma_intra_GBps=700.0, gamma_inter_GBps=700.0),
    ).params
    assert got.intra.alpha_us == pytest.approx(0.5, rel=1e-6)
    assert got.inter.beta_GBps == pytest.approx(40.0, rel=1e-6)


def test_prediction_stderr_propagates_the_covariance_by_hand() -> None:
    # Recursive doubling on 1 × 8: T = 3 (α_i + M/β_i + M/γ_i), so ∂T/∂α_i = 3 and ∂T/∂(1/β_i) = 3M.
    m = 1e5
    cov = np.array([[0.04, 0.0], [0.0, 1e-14]])
    names = ("alpha_intra_us", "inv_beta_intra_us_per_B")
    got = float(cm.prediction_stderr("recursive-doubling", 1, 8, m, HIER, names, cov))
    assert got == pytest.approx(math.sqrt(9 * 0.04 + (3 * m) ** 2 * 1e-14), rel=1e-5)


def test_fit_reports_the_covariance_of_its_linear_coordinates() -> None:
    truth = CostParams(LinkParams(0.8, 150.0, 600.0), LinkParams(3.0, 20.0, 600.0), 2.0)
    algorithms, nodes, gpus, sizes, measured = _synthetic(truth, 0.02, seed=11)
    result = cm.fit(algorithms, nodes, gpus, sizes, measured, truth, fixed=("alpha_intra_us",))
    assert result.theta_names == ("alpha_inter_us", "inv_beta_intra_us_per_B", "inv_beta_inter_us_per_B")
    cov = result.theta_covariance
    assert cov.shape == (3, 3) and np.allclose(cov, cov.T)
    assert math.sqrt(cov[0, 0]) == pytest.approx(result.stderr["alpha_inter_us"])
    # Extrapolation: the prediction's uncertainty grows with the node count.
    se = [
        float(cm.prediction_stderr("nvrar", n, 4, MIB, result.params, result.theta_names, cov))
        for n in (2, 64, 1024)
    ]
    assert 0 < se[0] < se[1] < se[2]


def test_fit_refuses_too_little_data() -> None:
    with pytest.raises(FitError, match="cannot determine") as err:
        cm.fit(["ring"] * 3, [2] * 3, [4] * 3, [1e5, 2e5, 4e5], [10.0, 20.0, 40.0], HIER)
    assert "samples" in err.value.missing


def test_fit_refuses_when_no_sample_touches_the_network() -> None:
    truth = HIER
    sizes = [2**k for k in range(12, 22)]
    measured = [float(cm.predict("ring", 1, 4, s, truth)) for s in sizes]
    with pytest.raises(FitError, match="inter") as err:
        cm.fit(["ring"] * len(sizes), [1] * len(sizes), [4] * len(sizes), sizes, measured, HIER)
    assert "nodes" in err.value.missing
    # Holding the network fixed makes the same data enough.
    result = cm.fit(
        ["ring"] * len(sizes),
        [1] * len(sizes),
        [4] * len(sizes),
        sizes,
        measured,
        HIER,
        fixed=("alpha_inter_us", "beta_inter_GBps"),
    )
    assert result.params.intra.beta_GBps == pytest.approx(100.0, rel=1e-6)
    assert set(result.fitted) == {"alpha_intra_us", "beta_intra_GBps"}


def test_fit_refuses_models_it_has_no_schedule_for() -> None:
    with pytest.raises(FitError, match="nccl"):
        cm.fit(["nccl"] * 10, [2] * 10, [4] * 10, [1e5] * 10, [10.0] * 10, HIER)


def test_backend_names_map_to_the_schedules_the_backends_run() -> None:
    from collectives.api import REFERENCE_SCHEDULES

    for backend, schedule_name in REFERENCE_SCHEDULES.items():
        assert cm.MODEL_OF_BACKEND[backend] == schedule_name
    assert cm.MODEL_OF_BACKEND["nvrar"] == "nvrar" and "gloo" not in cm.MODEL_OF_BACKEND


# -- engine step times --------------------------------------------------------------------------------

A100 = cm.GpuRates(bf16_tflops=312.0, hbm_TBps=1.555)


def test_model_shapes_match_the_engine_presets() -> None:
    from engine.config import PRESETS

    for name, shape in cm.MODEL_SHAPES.items():
        preset = PRESETS[name]
        assert (shape.layers, shape.hidden, shape.heads, shape.kv_heads, shape.ffn, shape.vocab) == (
            preset.n_layers,
            preset.dim,
            preset.n_heads,
            preset.n_kv_heads,
            preset.ffn_dim,
            preset.vocab_size,
        )


def test_single_gpu_decode_is_bound_by_reading_the_weights() -> None:
    shape = cm.MODEL_SHAPES["llama3.1-8b"]
    out = cm.engine_step(shape, 1, 1, 4, 1, 128, 2, HIER, A100)
    hd = 128
    layer = 2 * 4096 * 32 * hd + 2 * 4096 * 8 * hd + 3 * 4096 * 14336
    weight_bytes = 2 * (32 * layer + 128256 * 4096)  # layers + LM head (the embedding is a lookup)
    expected_ms = weight_bytes / (1.555e12 * 0.8) * 1e3
    assert out["decode_ms"] == pytest.approx(expected_ms, rel=0.02)
    assert out["decode_allreduce_ms"] == 0.0 and out["decode_p2p_ms"] == 0.0


def test_decode_communication_counts_two_allreduces_per_layer() -> None:
    shape = cm.MODEL_SHAPES["llama3.1-405b"]
    out = cm.engine_step(shape, 16, 1, 4, 4, 1024, 16, HIER, A100, decode_allreduce="nvrar")
    assert out["decode_allreduce_bytes"] == 4 * 16384 * 2  # 128 KiB: batch 4, as in the study
    per_call = float(cm.predict("nvrar", 4, 4, 4 * 16384 * 2, HIER))
    assert out["decode_allreduce_ms"] == pytest.approx(2 * 126 * per_call / 1e3)


def test_pipeline_adds_sends_and_stages() -> None:
    shape = cm.MODEL_SHAPES["llama3.1-70b"]
    tp_only = cm.engine_step(shape, 8, 1, 4, 8, 512, 16, HIER, A100)
    hybrid = cm.engine_step(shape, 4, 2, 4, 8, 512, 16, HIER, A100)
    assert tp_only["decode_p2p_ms"] == 0.0
    msg = 8 * 8192 * 2
    assert hybrid["decode_p2p_ms"] == pytest.approx((2.0 + msg / (1e3 * 25.0)) / 1e3)
    # More micro-batches than stages fill the pipeline: m + pp − 1 stage times of a smaller batch.
    micro = cm.engine_step(shape, 4, 2, 4, 8, 512, 16, HIER, A100, micro_batches=4)
    assert micro["decode_p2p_ms"] == pytest.approx(4 * (2.0 + msg / 4 / (1e3 * 25.0)) / 1e3)


def test_decode_step_grows_with_batch_and_nvrar_helps_multi_node_decode() -> None:
    shape = cm.MODEL_SHAPES["llama3.1-405b"]
    steps = [cm.engine_step(shape, 32, 1, 4, b, 1024, 64, HIER, A100)["decode_ms"] for b in (1, 4, 16, 64)]
    assert all(b > a for a, b in zip(steps, steps[1:], strict=False))
    nccl = cm.engine_step(shape, 32, 1, 4, 16, 1024, 64, HIER, A100, decode_allreduce="nccl")
    nvrar = cm.engine_step(shape, 32, 1, 4, 16, 1024, 64, HIER, A100, decode_allreduce="nvrar")
    assert nvrar["prefill_ms"] == nccl["prefill_ms"]  # prefill stays on NCCL
    assert math.isfinite(nvrar["e2e_ms"]) and nvrar["e2e_ms"] > 0


def test_engine_arguments_are_checked() -> None:
    shape = cm.MODEL_SHAPES["llama3.1-8b"]
    with pytest.raises(cm.CostModelError, match="TP 6"):
        cm.engine_step(shape, 6, 1, 4, 1, 16, 16, HIER, A100)
    with pytest.raises(cm.CostModelError, match="pp"):
        cm.engine_step(shape, 1, 64, 4, 1, 16, 16, HIER, A100)

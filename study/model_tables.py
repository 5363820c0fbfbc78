"""The tables `study model` prints: all-reduce predictions over systems, node counts and sizes, their
sensitivity to each parameter, and TP × PP engine step times with NVRAR against NCCL.

Each is a pandas DataFrame built from study.model's SystemModel (and its bootstrap draws for the
intervals); the commands format them (study/commands/model.py) and the predicted figures read them.
"""

from __future__ import annotations

import numpy as np

from collectives import costmodel as cm
from study.errors import InputError
from study.model import SystemModel
from study.units import format_size


def predict_table(
    models: list[SystemModel],
    nodes: list[int],
    sizes: list[int],
    algorithms: list[str],
    launch: str = "graph",
):
    """One row per (system, algorithm, nodes, size): predicted µs with its 5–95 % interval, NCCL's
    choice, the fastest algorithm, and why a prediction extrapolates beyond the published data.
    Algorithms that cannot run on a topology (a one-node all-reduce across nodes) are left out and
    listed in `df.attrs["skipped"]`."""
    import pandas as pd

    size_arr = np.asarray(sizes, dtype=float)
    rows, skipped = [], []
    for sm in models:
        g = sm.gpus_per_node
        for n in nodes:
            choice = sm.nccl_choice(n, size_arr)
            for algorithm in algorithms:
                try:
                    p = sm.latency(algorithm, n, size_arr, launch)
                except InputError as exc:
                    skipped.append(f"{sm.name} {algorithm} on {n} node(s): {exc}")
                    continue
                for i, size in enumerate(sizes):
                    rows.append(
                        {
                            "system": sm.name,
                            "algorithm": algorithm,
                            "launch": launch if sm.grounded else "",
                            "nodes": n,
                            "gpus_per_node": g,
                            "world_size": n * g,
                            "size_bytes": size,
                            "size": format_size(size),
                            "latency_us": float(p.latency_us[i]),
                            "latency_us_low": float(p.low_us[i]),
                            "latency_us_high": float(p.high_us[i]),
                            "nccl_choice": str(choice[i]) if algorithm == "nccl" else "",
                            "extrapolation": sm.extrapolation(algorithm, n, size),
                        }
                    )
    df = pd.DataFrame(rows)
    if not df.empty:
        best = df.loc[df.groupby(["system", "nodes", "size_bytes"])["latency_us"].idxmin()]
        key = best.set_index(["system", "nodes", "size_bytes"])["algorithm"]
        df["fastest"] = [
            key[(s, n, b)] for s, n, b in zip(df["system"], df["nodes"], df["size_bytes"], strict=True)
        ]
    df.attrs["skipped"] = skipped
    return df


def sensitivity_table(
    models: list[SystemModel],
    nodes: list[int],
    sizes: list[int],
    algorithms: list[str],
    launch: str = "graph",
):
    """Elasticities ∂T/∂θ·θ/T of every parameter, and which one dominates, per configuration."""
    import pandas as pd

    rows = []
    for sm in models:
        for algorithm in algorithms:
            for n in nodes:
                try:
                    p = sm.latency(algorithm, n, sizes, launch)
                except InputError:
                    continue
                el = sm.elasticities(algorithm, n, sizes, launch)
                for i, size in enumerate(sizes):
                    row = {
                        "system": sm.name,
                        "algorithm": algorithm,
                        "nodes": n,
                        "size_bytes": size,
                        "size": format_size(size),
                        "latency_us": float(p.latency_us[i]),
                    }
                    values = {k: float(np.broadcast_to(v, (len(sizes),))[i]) for k, v in el.items()}
                    row |= {f"e_{k}": v for k, v in values.items()}
                    ranked = sorted(values, key=lambda k: -abs(values[k]))
                    row["dominant"] = ranked[0] if ranked else ""
                    row["next"] = ranked[1] if len(ranked) > 1 else ""
                    rows.append(row)
    return pd.DataFrame(rows)


ENGINE_STRATEGIES = ("tp", "tp-pp")


def engine_pair(
    sm: SystemModel, shape, tp, pp, batch, prompt_len, decode_len, rates, micro_batches, theta=None
):
    """Engine step times with NCCL and with NVRAR for decode (prefill always NCCL, as in the study)."""
    comm = sm.communication(theta) if sm.grounded else sm.params
    return tuple(
        cm.engine_step(
            shape,
            tp,
            pp,
            sm.gpus_per_node,
            batch,
            prompt_len,
            decode_len,
            comm,
            rates,
            decode_allreduce=algorithm,
            micro_batches=micro_batches,
            ll128=sm.ll128,
        )
        for algorithm in ("nccl", "nvrar")
    )


def engine_intervals(sm: SystemModel, shape, tp, pp, batch, prompt_len, decode_len, rates, micro_batches):
    """5–95 % of decode step, E2E and NVRAR's E2E gain over the calibration's bootstrap draws (the
    fit's uncertainty of the communication; compute comes from datasheet rates, without an interval)."""
    keys = ("decode_ms", "e2e_ms", "decode_ms_nvrar", "e2e_ms_nvrar", "e2e_speedup_nvrar")
    if not sm.grounded:
        return {f"{k}_{end}": float("nan") for k in keys for end in ("low", "high")}
    draws = sm.draws()
    nccl, nvrar = engine_pair(sm, shape, tp, pp, batch, prompt_len, decode_len, rates, micro_batches, draws)
    values = {
        "decode_ms": nccl["decode_ms"],
        "e2e_ms": nccl["e2e_ms"],
        "decode_ms_nvrar": nvrar["decode_ms"],
        "e2e_ms_nvrar": nvrar["e2e_ms"],
        "e2e_speedup_nvrar": nccl["e2e_ms"] / nvrar["e2e_ms"],
    }
    out = {}
    for k, v in values.items():
        lo, hi = np.quantile(np.ravel(v), (0.05, 0.95))
        out[f"{k}_low"], out[f"{k}_high"] = float(lo), float(hi)
    return out


def engine_table(
    models: list[SystemModel],
    model: str,
    nodes: list[int],
    tps: list[int] | None,
    pps: list[int] | None,
    batches: list[int],
    prompt_len: int,
    decode_len: int,
    micro_batches: int,
    flop_efficiency: float,
    bandwidth_efficiency: float,
):
    """Decode / prefill / E2E predictions with NCCL and with NVRAR for decode, per configuration.

    Without --tp/--pp each node count gets the study's two layouts: TP over every GPU, and TP inside a
    node with PP across nodes. Layouts that do not fill the nodes exactly are skipped.
    """
    import pandas as pd

    if model not in cm.MODEL_SHAPES:
        raise InputError(f"unknown model {model!r}; known: {', '.join(cm.MODEL_SHAPES)}", key="--model")
    shape = cm.MODEL_SHAPES[model]
    rows = []
    for sm in models:
        rates = sm.gpu_rates(flop_efficiency, bandwidth_efficiency)
        g = sm.gpus_per_node
        for n in nodes:
            world = n * g
            layouts = []
            if tps is None and pps is None:
                layouts = [(world, 1), (g, n)] if n > 1 else [(world, 1)]
            else:
                for tp in tps or [None]:
                    for pp in pps or [None]:
                        tp_ = tp if tp is not None else (world // pp if pp and world % pp == 0 else None)
                        pp_ = pp if pp is not None else (world // tp if tp and world % tp == 0 else None)
                        if tp_ and pp_ and tp_ * pp_ == world:
                            layouts.append((tp_, pp_))
            for tp, pp in dict.fromkeys(layouts):
                if pp > shape.layers or (tp > g and tp % g):
                    continue
                for batch in batches:
                    base = {
                        "system": sm.name,
                        "model": model,
                        "nodes": n,
                        "gpus_per_node": g,
                        "tp": tp,
                        "pp": pp,
                        "batch_size": batch,
                        "prompt_len": prompt_len,
                        "decode_len": decode_len,
                    }
                    try:
                        nccl, nvrar = engine_pair(
                            sm, shape, tp, pp, batch, prompt_len, decode_len, rates, micro_batches
                        )
                    except cm.CostModelError as exc:
                        raise InputError(str(exc), key="--tp/--pp/--batch-size") from exc
                    row = base | {f"{k}": float(v) for k, v in nccl.items()}
                    row |= {
                        "decode_ms_nvrar": float(nvrar["decode_ms"]),
                        "e2e_ms_nvrar": float(nvrar["e2e_ms"]),
                        "decode_allreduce_ms_nvrar": float(nvrar["decode_allreduce_ms"]),
                        "e2e_speedup_nvrar": float(nccl["e2e_ms"] / nvrar["e2e_ms"]),
                        "decode_comm_share": float(
                            (nccl["decode_allreduce_ms"] + nccl["decode_p2p_ms"]) / nccl["decode_ms"]
                        ),
                    }
                    row |= engine_intervals(
                        sm, shape, tp, pp, batch, prompt_len, decode_len, rates, micro_batches
                    )
                    if sm.system.gpu is not None:
                        row["fits_memory"] = nccl["weights_gb_per_gpu"] < sm.system.gpu.memory_gb
                    rows.append(row)
    if not rows:
        raise InputError("no TP × PP layout fills the requested nodes", key="--tp/--pp")
    return pd.DataFrame(rows)

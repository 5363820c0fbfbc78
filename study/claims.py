"""The study's claims (jobs/measurements/claims.yaml) checked against the grounded model.

Claims are never training data: the calibration reads only the measurement CSVs. Each claim gets the
model's prediction over the claim's configurations, its interval (the calibration's bootstrap draws)
and a verdict:
- supported: the prediction lands in the claimed range (or within 20 % of a claimed value);
- partly supported: it overlaps the claimed range but not everywhere the claim speaks of;
- not supported: it misses the range; the row says by how much and in which direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from study.errors import InputError
from study.measurements import MEASUREMENTS_DIR
from study.units import format_size

CLAIMS_FILE = MEASUREMENTS_DIR / "claims.yaml"
KINDS = ("allreduce_ratio", "engine_speedup", "nccl_choice", "nccl_switch")
VALUE_TOLERANCE = 0.2


@dataclass
class Verdict:
    id: str
    text: str
    system: str
    predicted: str
    interval: str
    claimed: str
    verdict: str
    detail: str
    extrapolated: str = ""


def load_claims(path: Path = CLAIMS_FILE) -> list[dict[str, Any]]:
    from study.measurements import read_yaml

    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise InputError("expected a mapping with a `claims:` list", file=str(path), key="claims")
    for i, claim in enumerate(data["claims"]):
        key = f"claims[{i}]"
        if not isinstance(claim, dict) or claim.get("kind") not in KINDS:
            raise InputError(f"each claim needs a kind, one of {', '.join(KINDS)}", file=str(path), key=key)
        for field in ("id", "text", "system"):
            if not claim.get(field):
                raise InputError(f"missing {field}", file=str(path), key=f"{key}.{field}")
    return data["claims"]


def _sizes(text: str) -> list[int]:
    from study.model import parse_size_range

    return parse_size_range(str(text), "sizes")


def _extrapolated(sm, algorithms: list[str], nodes: list[int], sizes: list[int]) -> str:
    notes = sorted({sm.extrapolation(a, n, s) for a in algorithms for n in nodes for s in sizes} - {""})
    return "; ".join(notes)


def _ratio_claim(claim: dict[str, Any], sm) -> Verdict:
    lo_claim, hi_claim = (float(v) for v in claim["range"])
    sizes = _sizes(claim["sizes"])
    launch = claim.get("launch", "graph")
    draws = sm.draws()
    central, low, high = [], [], []
    for n in claim["nodes"]:
        nccl = sm.grounded_latency_us("nccl", n, sizes, launch, sm.theta)
        nvrar = sm.grounded_latency_us("nvrar", n, sizes, launch, sm.theta)
        central.append(nccl / nvrar)
        ratio = sm.grounded_latency_us("nccl", n, sizes, launch, draws) / sm.grounded_latency_us(
            "nvrar", n, sizes, launch, draws
        )
        q = np.quantile(ratio, (0.05, 0.95), axis=0)
        low.append(q[0])
        high.append(q[1])
    central, low, high = np.concatenate(central), np.concatenate(low), np.concatenate(high)
    cmin, cmax = float(central.min()), float(central.max())
    inside = (central >= lo_claim) & (central <= hi_claim)
    overlap = cmax >= lo_claim and cmin <= hi_claim
    if inside.all():
        verdict = "supported"
    elif overlap:
        verdict = "partly supported"
    else:
        verdict = "not supported"
    where = np.argmin(central) if cmin < lo_claim else np.argmax(central)
    configs = [(n, s) for n in claim["nodes"] for s in sizes]
    n_at, s_at = configs[int(where)]
    detail = (
        f"{inside.mean():.0%} of {len(central)} configurations inside the claimed range; "
        f"{'lowest' if cmin < lo_claim else 'highest'} {central[where]:.2f}x at {n_at} nodes, "
        f"{format_size(s_at)} "
        f"({launch})"
    )
    return Verdict(
        claim["id"],
        claim["text"],
        sm.name,
        f"{cmin:.2f}-{cmax:.2f}x",
        f"{float(low.min()):.2f}-{float(high.max()):.2f}x",
        f"{lo_claim:g}-{hi_claim:g}x",
        verdict,
        detail,
        _extrapolated(sm, ["nccl", "nvrar"], claim["nodes"], sizes),
    )


def _engine_claim(claim: dict[str, Any], sm) -> Verdict:
    from study.model_tables import engine_table

    df = engine_table(
        [sm],
        claim["model"],
        [int(n) for n in claim["nodes"]],
        None,
        [1],
        [int(b) for b in claim["batch_sizes"]],
        int(claim["prompt_len"]),
        int(claim["decode_len"]),
        1,
        0.6,
        0.8,
    )
    best = df.loc[df["e2e_speedup_nvrar"].idxmax()]
    value = float(claim["value"])
    got, lo, hi = (
        float(best[k]) for k in ("e2e_speedup_nvrar", "e2e_speedup_nvrar_low", "e2e_speedup_nvrar_high")
    )
    if abs(got / value - 1) <= VALUE_TOLERANCE or lo <= value <= hi:
        verdict = "supported"
    else:
        verdict = "not supported"
    detail = (
        f"largest gain at {int(best['nodes'])} nodes (TP {int(best['tp'])}), "
        f"batch {int(best['batch_size'])}; "
        f"model {'below' if got < value else 'above'} the claim by {abs(got / value - 1):.0%}"
    )
    return Verdict(
        claim["id"],
        claim["text"],
        sm.name,
        f"up to {got:.2f}x",
        f"{lo:.2f}-{hi:.2f}x",
        f"up to {value:g}x",
        verdict,
        detail,
        _extrapolated(
            sm, ["nccl", "nvrar"], [int(n) for n in claim["nodes"]], [int(best["decode_allreduce_bytes"])]
        ),
    )


def _choice_claim(claim: dict[str, Any], sm) -> Verdict:
    sizes = _sizes(claim["sizes"])
    picks = {(n, s): str(sm.nccl_choice(n, [s])[0]) for n in claim["nodes"] for s in sizes}
    expect = claim["expect"]
    share = np.mean([p == expect for p in picks.values()])
    verdict = "supported" if share == 1 else ("partly supported" if share > 0 else "not supported")
    others = sorted(set(picks.values()) - {expect})
    return Verdict(
        claim["id"],
        claim["text"],
        sm.name,
        ", ".join(sorted(set(picks.values()))),
        "",
        expect,
        verdict,
        f"{share:.0%} of {len(picks)} (nodes, size) pick {expect}"
        + (f"; also {', '.join(others)}" if others else ""),
    )


def _switch_claim(claim: dict[str, Any], sm) -> Verdict:
    size = _sizes(claim["size"])[0]
    above = int(claim["above_gpus"])
    rows = [(n * sm.gpus_per_node, str(sm.nccl_choice(n, [size])[0])) for n in claim["nodes"]]
    ok = all(c.startswith("ring") for g, c in rows if g <= above) and all(
        c.startswith("tree") for g, c in rows if g > above
    )
    some = any(c.startswith("tree") for g, c in rows if g > above)
    verdict = "supported" if ok else ("partly supported" if some else "not supported")
    return Verdict(
        claim["id"],
        claim["text"],
        sm.name,
        ", ".join(f"{g} GPUs: {c}" for g, c in rows),
        "",
        f"ring up to {above} GPUs, tree above, at {format_size(size)}",
        verdict,
        "NCCL's choice comes from its own tuner's constants (nccl_tuning.json) and the system's "
        "datasheet bandwidths",
    )


CHECKS = {
    "allreduce_ratio": _ratio_claim,
    "engine_speedup": _engine_claim,
    "nccl_choice": _choice_claim,
    "nccl_switch": _switch_claim,
}


def check_claims(claims: list[dict[str, Any]], model_of) -> list[Verdict]:
    """Every claim's verdict; `model_of(system)` gives the SystemModel to ask."""
    return [CHECKS[c["kind"]](c, model_of(c["system"])) for c in claims]

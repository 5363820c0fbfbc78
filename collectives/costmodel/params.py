"""Parameters of the α-β-γ schedule model and the errors of the whole cost-model package.

Units: α in µs, β and γ in GB/s (10^9 B/s), sizes in bytes, times in µs. β_inter is the bandwidth one
GPU gets from the network when every GPU of its node sends at once (node injection / GPUs per node).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PARAM_NAMES: tuple[str, ...] = (
    "alpha_intra_us",
    "beta_intra_GBps",
    "gamma_intra_GBps",
    "alpha_inter_us",
    "beta_inter_GBps",
    "gamma_inter_GBps",
    "eta",
)
# Benchmark backend names (collectives.api, docs/results.md) → the model that predicts them. The CPU
# reference backends execute the schedules themselves; nccl-ring / nccl-tree are NCCL forced to one.


class CostModelError(ValueError):
    """Bad arguments to the model (unknown algorithm, non-physical parameters)."""


class FitError(ValueError):
    """The data cannot determine the parameters; `missing` says what data would."""

    def __init__(self, message: str, missing: str = ""):
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True)
class LinkParams:
    alpha_us: float
    beta_GBps: float
    gamma_GBps: float


@dataclass(frozen=True)
class CostParams:
    """Per-level α, β, γ and NVRAR's inter-node traffic factor η."""

    intra: LinkParams
    inter: LinkParams
    eta: float = 1.0

    def flat(self) -> dict[str, float]:
        return {
            "alpha_intra_us": self.intra.alpha_us,
            "beta_intra_GBps": self.intra.beta_GBps,
            "gamma_intra_GBps": self.intra.gamma_GBps,
            "alpha_inter_us": self.inter.alpha_us,
            "beta_inter_GBps": self.inter.beta_GBps,
            "gamma_inter_GBps": self.inter.gamma_GBps,
            "eta": self.eta,
        }

    @classmethod
    def from_flat(cls, values: dict[str, float]) -> CostParams:
        unknown = set(values) - set(PARAM_NAMES)
        if unknown:
            raise CostModelError(
                f"unknown parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(PARAM_NAMES)}"
            )
        missing = set(PARAM_NAMES) - set(values)
        if missing:
            raise CostModelError(f"missing parameter(s) {', '.join(sorted(missing))}")
        params = cls(
            LinkParams(values["alpha_intra_us"], values["beta_intra_GBps"], values["gamma_intra_GBps"]),
            LinkParams(values["alpha_inter_us"], values["beta_inter_GBps"], values["gamma_inter_GBps"]),
            values["eta"],
        )
        params.check()
        return params

    def with_values(self, **values: float) -> CostParams:
        return CostParams.from_flat({**self.flat(), **values})

    def check(self) -> None:
        for name, value in self.flat().items():
            if not math.isfinite(value) or value < 0 or (value == 0 and not name.startswith("alpha")):
                raise CostModelError(f"{name} = {value} is not physical (α ≥ 0, β, γ, η > 0)")


Params = dict[str, "np.ndarray | float"]


def as_arrays(params: CostParams | Params) -> Params:
    return params.flat() if isinstance(params, CostParams) else params

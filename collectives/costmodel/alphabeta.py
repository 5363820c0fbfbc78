"""The α-β-γ model of every algorithm by name: the schedules, and NCCL through its tuner's model.

`predict` is what the calibration (`fit`), the sensitivities and the engine model call; benchmark
backend names map to the model that predicts them through MODEL_OF_BACKEND.
"""

from __future__ import annotations

import numpy as np

from collectives.costmodel.nccl import nccl_predict
from collectives.costmodel.params import CostModelError, CostParams, Params, as_arrays
from collectives.costmodel.schedule import schedule_time
from collectives.schedules import ALGORITHMS

MODELS: tuple[str, ...] = (*ALGORITHMS, "nccl")
# Benchmark backend names (collectives.api, docs/results.md) → the model that predicts them. The CPU
# reference backends execute the schedules themselves; nccl-ring / nccl-tree are NCCL forced to one.
MODEL_OF_BACKEND: dict[str, str] = {
    **{name: name for name in MODELS},
    "reference": "nvrar",
    "reference-ring": "ring",
    "reference-rd": "recursive-doubling",
    "reference-rabenseifner": "rabenseifner",
    "reference-tree": "tree",
    "nccl-ring": "nccl",
    "nccl-tree": "nccl",
}


def predict(
    algorithm: str,
    nodes: int,
    gpus_per_node: int,
    size_bytes,
    params: CostParams | Params,
    *,
    ll128: bool = True,
) -> np.ndarray:
    """Predicted latency (µs) of one all-reduce; broadcasts over sizes and array-valued parameters."""
    if algorithm == "nccl":
        return nccl_predict(nodes, gpus_per_node, size_bytes, as_arrays(params), ll128=ll128)[0]
    if algorithm not in ALGORITHMS:
        raise CostModelError(f"unknown algorithm {algorithm!r}; choose from {', '.join(MODELS)}")
    return schedule_time(algorithm, nodes, gpus_per_node, size_bytes, params)

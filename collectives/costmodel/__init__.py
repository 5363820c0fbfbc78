"""Cost models of the all-reduce family and of inference steps (numpy only; runs anywhere).

Modules, each with one job:
- `params`: the α-β-γ parameters and the package's errors.
- `schedule`: α-β-γ time of every algorithm from its step schedule, and the closed forms.
- `nccl`: NCCL's tuner (its 2.27 constants are data: nccl_tuning.json) - what NCCL picks, its estimate.
- `alphabeta`: `predict` by algorithm name over α-β-γ parameters (schedules and NCCL).
- `fit`: sensitivities of the α-β-γ model and its least-squares fit to one measured sweep.
- `grounded`: the model of GPU platforms with per-transport latencies, launches and protocol
  efficiencies, whose parameters `study model calibrate` fits to published measurements.
- `engine`: prefill and decode step times of TP × PP inference.
"""

from collectives.costmodel.alphabeta import MODEL_OF_BACKEND, MODELS, predict
from collectives.costmodel.engine import MODEL_SHAPES, GpuRates, ModelShape, engine_step, p2p_us, tp_topology
from collectives.costmodel.fit import (
    FIT_PARAMS,
    THETA_NAMES,
    FitResult,
    elasticities,
    fit,
    prediction_stderr,
)
from collectives.costmodel.nccl import (
    NCCL_ALGORITHMS,
    NCCL_PROTOCOLS,
    nccl_bus_bandwidth,
    nccl_candidates,
    nccl_predict,
)
from collectives.costmodel.params import PARAM_NAMES, CostModelError, CostParams, FitError, LinkParams, Params
from collectives.costmodel.schedule import RING_SCHEDULE_LIMIT, Profile, classic, nvrar_published, profile
from collectives.schedules import ALGORITHMS

__all__ = [
    "ALGORITHMS",
    "FIT_PARAMS",
    "MODELS",
    "MODEL_OF_BACKEND",
    "MODEL_SHAPES",
    "NCCL_ALGORITHMS",
    "NCCL_PROTOCOLS",
    "PARAM_NAMES",
    "RING_SCHEDULE_LIMIT",
    "THETA_NAMES",
    "CostModelError",
    "CostParams",
    "FitError",
    "FitResult",
    "GpuRates",
    "LinkParams",
    "ModelShape",
    "Params",
    "Profile",
    "classic",
    "elasticities",
    "engine_step",
    "fit",
    "nccl_bus_bandwidth",
    "nccl_candidates",
    "nccl_predict",
    "nvrar_published",
    "p2p_us",
    "predict",
    "prediction_stderr",
    "profile",
    "tp_topology",
]

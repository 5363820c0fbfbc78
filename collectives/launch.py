"""Find rank, local rank and node layout from whichever launcher started us, and start torch.distributed.

Understood launchers: torchrun (RANK/WORLD_SIZE/LOCAL_RANK), srun (SLURM_PROCID/SLURM_NTASKS/
SLURM_LOCALID), Open MPI's mpirun (OMPI_COMM_WORLD_*), MPICH / Cray PALS mpiexec (PMI_RANK/PMI_SIZE,
PALS_LOCAL_RANKID / MPI_LOCALRANKID). A single process with none of these is rank 0 of 1.
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass

# (rank, world size, local rank, local world size) variable names per launcher, first match wins.
_LAUNCHERS = (
    ("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"),
    (
        "openmpi",
        "OMPI_COMM_WORLD_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "OMPI_COMM_WORLD_LOCAL_SIZE",
    ),
    ("slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),
    ("pals", "PMI_RANK", "PMI_SIZE", "PALS_LOCAL_RANKID", "PALS_LOCAL_SIZE"),
    ("mpich", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
)


@dataclass(frozen=True)
class LaunchInfo:
    launcher: str
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @property
    def nodes(self) -> int:
        return max(1, self.world_size // max(1, self.local_world_size))


def _int(value: str | None, default: int) -> int:
    if value is None or value == "":
        return default
    # SLURM_NTASKS_PER_NODE may read "4(x2)"; the leading count is the per-node one.
    return int(value.split("(")[0].split(",")[0])


def detect_launch(environ: dict[str, str] | None = None) -> LaunchInfo:
    env = dict(os.environ if environ is None else environ)
    for name, rank, size, local, local_size in _LAUNCHERS:
        if rank in env and size in env:
            world = _int(env[size], 1)
            return LaunchInfo(
                launcher=name,
                rank=_int(env[rank], 0),
                world_size=world,
                local_rank=_int(env.get(local), 0),
                local_world_size=_int(env.get(local_size), world),
            )
    return LaunchInfo("single", 0, 1, 0, 1)


def init_distributed(backend: str | None = None, *, timeout_s: float = 600.0) -> LaunchInfo:
    """Start the default process group from the launcher's environment (env:// rendezvous).

    MASTER_ADDR defaults to 127.0.0.1 and MASTER_PORT to 29500; on several nodes the job script sets
    MASTER_ADDR to the first host. `backend` defaults to nccl with CUDA, else gloo.
    """
    import torch
    import torch.distributed as dist

    info = detect_launch()
    if dist.is_available() and dist.is_initialized():
        return info
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    os.environ["RANK"] = str(info.rank)
    os.environ["WORLD_SIZE"] = str(info.world_size)
    os.environ["LOCAL_RANK"] = str(info.local_rank)
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    kwargs = {}
    if backend == "nccl" and torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank % torch.cuda.device_count())
        kwargs["device_id"] = torch.device("cuda", torch.cuda.current_device())
    dist.init_process_group(
        backend=backend,
        rank=info.rank,
        world_size=info.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
        **kwargs,
    )
    return info


def gather_hosts() -> list[str]:
    """Host name of every rank, in rank order (one entry when torch.distributed is not started)."""
    import torch.distributed as dist

    me = socket.gethostname()
    if not (dist.is_available() and dist.is_initialized()):
        return [me]
    hosts: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(hosts, me)
    return [h or "?" for h in hosts]


def runtime_versions() -> dict[str, str | None]:
    """Versions that explain a measurement: Python, torch, CUDA, NCCL, NVSHMEM, the driver and MPI."""
    import platform

    import torch

    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "nccl": None,
        "nvshmem": None,
        "driver": None,
        "mpi": None,
    }
    try:
        if torch.cuda.is_available():
            versions["nccl"] = ".".join(str(x) for x in torch.cuda.nccl.version())
            versions["gpu"] = torch.cuda.get_device_name()
    except (RuntimeError, AttributeError):
        pass
    try:
        from importlib.metadata import PackageNotFoundError, version

        for dist_name in ("nvidia-nvshmem-cu13", "nvidia-nvshmem-cu12"):
            try:
                versions["nvshmem"] = version(dist_name)
                break
            except PackageNotFoundError:
                continue
    except ImportError:
        pass
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8") as fh:
            versions["driver"] = fh.readline().strip()
    except OSError:
        pass
    try:
        import mpi4py

        if "OMPI_COMM_WORLD_SIZE" not in os.environ:  # (init_distributed sets torchrun's variables too)
            # Only under Open MPI's mpirun does anything here use MPI (collectives.bench's `mpi`).
            # Elsewhere importing mpi4py.MPI would start MPI in every rank (under torchrun, singletons
            # racing to make Open MPI's session folder in /tmp) only to read a version string, which
            # MPI gives without MPI_Init.
            mpi4py.rc.initialize = mpi4py.rc.finalize = False
        from mpi4py import MPI

        versions["mpi"] = MPI.Get_library_version().splitlines()[0].strip().rstrip("\x00")
    except Exception:  # noqa: BLE001 - mpi4py missing or its MPI library not loadable
        pass
    return versions


def leave_process_group() -> None:
    """Every rank leaves the process group together before the interpreter exits: a gloo worker thread
    still alive at exit can abort a rank whose work succeeded (seen as SIGABRT after an engine run with
    TP = 2 on CPUs)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()

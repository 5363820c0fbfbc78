"""Systems: one YAML file per machine in jobs/systems/ (or any path), validated by the schema below.

Adding a machine needs no code: drop `jobs/systems/<name>.yaml` or pass `--system path/to/file.yaml`.
The account is deliberately absent from the schema: it is personal and comes from `--account`,
`STUDY_ACCOUNT` or `~/.config/study/config.yaml` (see `resolve_account`). docs/systems.md documents
every key; change both together.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator

from study.config import DIRECTIVE_FIELDS, StrictModel, directive_field, validate_model
from study.errors import InputError
from study.parameters import ENGINES, ENV_NAME_RE
from study.yamlpos import load_yaml, suggest

SYSTEMS_DIR = Path(__file__).resolve().parent.parent / "jobs" / "systems"
DEFAULT_SYSTEM = "local"


class Gpu(StrictModel):
    model: str
    memory_gb: float = Field(gt=0)
    bf16_tflops: float = Field(gt=0)
    hbm_TBps: float = Field(gt=0)


class Interconnect(StrictModel):
    name: str
    nics_per_node: int = Field(ge=0)
    link_Gbps: float = Field(ge=0)
    topology: str


class IntraNodeLink(StrictModel):
    name: str
    bandwidth_GBps: float = Field(gt=0)


class SchedulerOptions(StrictModel):
    """Site options rendered as directives; per-experiment `resources.scheduler` overrides them."""

    partition: str | None = None
    qos: str | None = None
    constraint: str | None = None
    queue: str | None = None
    reservation: str | None = None
    filesystems: str | None = None
    place: str | None = None
    cpus_per_task: int | None = Field(default=None, ge=1)
    cpu_bind: str | None = None
    gpu_directives: bool = True

    @field_validator(*DIRECTIVE_FIELDS, "filesystems", "place", "cpu_bind")
    @classmethod
    def _directives(cls, value: Any) -> Any:
        return directive_field(value)


class LinkCost(StrictModel):
    alpha_us: float
    beta_GBps: float
    gamma_GBps: float
    source: str


class CostModel(StrictModel):
    """Either α-β-γ per level (intra, inter, eta: the schedule model, for CPU systems), or the classes
    of the grounded model (network, fabric, ...: docs/costmodel.md) with the values fitted to them."""

    intra: LinkCost | None = None
    inter: LinkCost | None = None
    eta: float | None = None
    network: str | None = None
    fabric: str | None = None
    fabric_GBps: float | None = None
    switched: bool = False
    nvshmem: str | None = None
    cpu: str | None = None
    sm: int | None = None
    nic_path: str | None = None
    fitted: dict[str, float] | None = None
    fitted_to: dict[str, list[str]] | None = None
    source: str = ""

    @model_validator(mode="after")
    def _one_form(self) -> CostModel:
        alpha_beta = self.intra is not None or self.inter is not None
        grounded = self.network is not None or self.fabric is not None
        if alpha_beta == grounded:
            raise ValueError(
                "give either intra, inter and eta (the α-β-γ model) or network / fabric classes (the "
                "grounded model), not both"
            )
        if alpha_beta and (self.intra is None or self.inter is None or self.eta is None):
            raise ValueError("the α-β-γ form needs intra, inter and eta")
        return self


EXTERNAL_ENGINES = tuple(e for e in ENGINES if e != "bundled")


class ExternalEngine(StrictModel):
    """How a site runs an external engine (docs/engines.md): its own Python (a venv or a module's),
    what to load and export before it, and options for the launcher that starts it on every node."""

    python: str = Field(
        default="python3",
        description="its interpreter; a relative path is relative to the project (make vllm puts "
        "one at .venv-vllm/bin/python); $STUDY_<ENGINE>_PYTHON at render time wins",
    )
    modules: list[str] = Field(default_factory=list)
    env: dict[str, str | int | float | bool] = Field(default_factory=dict)
    launcher_options: list[str] = Field(default_factory=list)


class System(StrictModel):
    """A machine: how to get nodes (scheduler), start ranks (launcher) and what the hardware is."""

    version: Literal[1] = 1
    name: str
    description: str = ""
    scheduler: Literal["local", "slurm", "pbs"]
    launcher: Literal["srun", "mpiexec", "mpirun", "torchrun", "spawn"]
    launcher_options: list[str] = Field(default_factory=list)
    gpus_per_node: int = Field(ge=1)
    gpu: Gpu | None = None
    cpu_cores: int = Field(ge=1)
    interconnect: Interconnect | None = None
    intra_node: IntraNodeLink | None = None
    scheduler_options: SchedulerOptions = Field(default_factory=SchedulerOptions)
    modules: list[str] = Field(default_factory=list)
    env: dict[str, str | int | float | bool] = Field(default_factory=dict)
    requires_account: bool = False
    max_nodes: int | None = Field(default=None, ge=1)
    python: str | None = Field(default="python3", description="null: the Python that runs `study`")
    sources: dict[str, str] = Field(default_factory=dict)
    cost_model: CostModel | None = None
    engines: dict[Literal[EXTERNAL_ENGINES], ExternalEngine] = Field(default_factory=dict)  # type: ignore[valid-type]

    _path: str = PrivateAttr(default="<memory>")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", value):
            raise ValueError(f"expected lower-case letters, digits, '-' and '_', got {value!r}")
        return value

    @model_validator(mode="after")
    def _spawn_is_one_node(self) -> System:
        if self.launcher == "spawn" and self.max_nodes != 1:
            raise ValueError("launcher spawn starts the ranks of one node: set max_nodes: 1")
        return self

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not ENV_NAME_RE.match(name):
                raise ValueError(f"environment variable name {name!r} is not [A-Za-z_][A-Za-z0-9_]*")
        return value

    @property
    def path(self) -> str:
        return self._path

    @property
    def has_gpus(self) -> bool:
        """False for CPU-only systems, where gpus_per_node counts ranks and no GPU directive is rendered."""
        return self.gpu is not None


def system_files(directory: Path = SYSTEMS_DIR) -> dict[str, Path]:
    """Name -> file for the bundled catalogue."""
    return {p.stem: p for p in sorted(directory.glob("*.yaml"))}


def load_system(name_or_path: str | Path | None = None) -> System:
    """A system by catalogue name (`perlmutter`) or path to a YAML file; InputError if unknown or invalid."""
    name_or_path = DEFAULT_SYSTEM if name_or_path in (None, "") else name_or_path
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text:
        path = Path(text)
    else:
        files = system_files()
        if text not in files:
            raise InputError(
                f"unknown system `{text}`",
                hint=suggest(text, files) or f"known: {', '.join(files)}; or pass a path to a YAML file",
            )
        path = files[text]
    data, positions = load_yaml(path)
    if not isinstance(data, dict):
        raise positions.error((), "expected a mapping describing one system")
    system = validate_model(System, data, positions)
    system._path = str(path)
    return system


def system_for(experiment: Any, override: str | None = None) -> System:
    """The system a command runs `experiment` on: `--system` when given, else the experiment's own
    `system:`, whose errors (an unknown name) point at that line of the experiment file."""
    if override:
        try:
            return load_system(override)
        except InputError as exc:
            if exc.file is None:
                raise InputError(str(exc), key="--system") from None
            raise
    try:
        return load_system(experiment.system)
    except InputError as exc:
        if exc.file is not None and exc.line is None and exc.file == str(experiment.system):
            # a path that names no file: the mistake is on the experiment's line, not in a file
            raise experiment.positions.error(
                ("system",), f"no such system file {experiment.system}"
            ) from None
        if exc.file is not None or not experiment.system:
            raise
        text = str(exc)
        raise experiment.positions.error(("system",), text.split(" (")[0], hint=exc.hint) from None


def list_systems() -> list[System]:
    """Every system in jobs/systems/, sorted by name."""
    return [load_system(path) for path in system_files().values()]


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "study" / "config.yaml"


def resolve_account(system: System, account: str | None = None) -> str | None:
    """The account for `system`: `--account`, else $STUDY_ACCOUNT, else the user config file.

    The config file (~/.config/study/config.yaml) reads
    `accounts: {perlmutter: m1234, polaris: MyProject}` and optionally `account: default-account`.
    """
    if account:
        return account
    if os.environ.get("STUDY_ACCOUNT"):
        return os.environ["STUDY_ACCOUNT"]
    path = user_config_path()
    if not path.exists():
        return None
    data, positions = load_yaml(path)
    if data is None:
        return None
    if not isinstance(data, dict):
        raise positions.error((), "expected a mapping with `accounts:` and/or `account:`")
    unknown = set(data) - {"accounts", "account"}
    if unknown:
        key = sorted(unknown)[0]
        raise positions.error(
            (key,), f"unknown key `{key}`", at_value=False, hint=suggest(key, ["accounts", "account"])
        )
    accounts = data.get("accounts") or {}
    if not isinstance(accounts, dict):
        raise positions.error(("accounts",), "expected a mapping of system name to account")
    value = accounts.get(system.name, data.get("account"))
    return None if value is None else str(value)

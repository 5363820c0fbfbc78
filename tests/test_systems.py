"""The systems catalogue, user-added systems, and where the account comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from study.errors import InputError
from study.systems import SYSTEMS_DIR, list_systems, load_system, resolve_account

NAMES = sorted(p.stem for p in SYSTEMS_DIR.glob("*.yaml"))


def test_catalogue_has_the_required_machines():
    assert {"local", "perlmutter", "polaris", "vista", "generic-ib"} <= set(NAMES)
    assert [s.name for s in list_systems()] == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_system_is_complete(name):
    system = load_system(name)
    assert system.name == name and system.description
    assert system.sources, "every fact needs a source"
    if name != "local":
        assert system.gpu is not None and system.interconnect is not None and system.intra_node is not None
        assert system.requires_account or name == "generic-ib"


def test_perlmutter_carries_the_study_environment():
    system = load_system("perlmutter")
    assert (system.scheduler, system.launcher, system.gpus_per_node) == ("slurm", "srun", 4)
    assert system.interconnect.nics_per_node == 4 and system.interconnect.link_Gbps == 200
    assert system.scheduler_options.constraint == "gpu" and system.scheduler_options.cpus_per_task == 32
    env = {k: str(v) for k, v in system.env.items()}
    assert env["NCCL_NET"] == "AWS Libfabric" and env["FI_PROVIDER"] == "cxi"
    assert env["NCCL_GRAPH_MIXING_SUPPORT"] == "0" and env["NVSHMEM_REMOTE_TRANSPORT"] == "libfabric"


def test_polaris_is_pbs_with_mpiexec_and_filesystems():
    system = load_system("polaris")
    assert (system.scheduler, system.launcher) == ("pbs", "mpiexec")
    assert system.scheduler_options.filesystems and system.scheduler_options.queue


def test_local_is_the_default_and_cpu_only():
    system = load_system(None)
    assert system.name == "local" and not system.has_gpus and system.python is None


def test_unknown_system_suggests():
    with pytest.raises(InputError, match="did you mean `polaris`"):
        load_system("polars")


def test_a_user_system_by_path_needs_no_code(tmp_path):
    path = tmp_path / "mycluster.yaml"
    path.write_text(
        (SYSTEMS_DIR / "generic-ib.yaml").read_text().replace("name: generic-ib", "name: mycluster")
    )
    assert load_system(str(path)).name == "mycluster"


def test_system_schema_errors_are_positioned(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nscheduler: slurm\nlauncher: srunn\ngpus_per_node: 4\ncpu_cores: 8\ninterconect: {}\n"
    )
    with pytest.raises(InputError) as info:
        load_system(str(path))
    text = str(info.value)
    assert f"{path}:3:11: launcher:" in text and "also:" in text and "did you mean `interconnect`?" in text


def test_account_precedence(tmp_path, monkeypatch):
    system = load_system("perlmutter")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("STUDY_ACCOUNT", raising=False)
    assert resolve_account(system) is None
    config = Path(tmp_path) / "study" / "config.yaml"
    config.parent.mkdir()
    config.write_text("account: fallback\naccounts:\n  perlmutter: m1234\n")
    assert resolve_account(system) == "m1234"
    assert resolve_account(load_system("polaris")) == "fallback"
    monkeypatch.setenv("STUDY_ACCOUNT", "from-env")
    assert resolve_account(system) == "from-env"
    assert resolve_account(system, "from-flag") == "from-flag"


def test_bad_user_config_is_positioned(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("STUDY_ACCOUNT", raising=False)
    config = tmp_path / "study" / "config.yaml"
    config.parent.mkdir()
    config.write_text("acounts: {perlmutter: m1}\n")
    with pytest.raises(
        InputError, match=r"config.yaml:1:1: acounts: unknown key `acounts` \(did you mean `accounts`\?\)"
    ):
        resolve_account(load_system("perlmutter"))

"""A real single-node Slurm 22.05 (munged, MariaDB, slurmdbd, slurmctld, slurmd) in a temporary folder.

Started once per test session by the `slurm_cluster` fixture (tests/conftest.py) exactly as
/work/shared/ENV.md describes, with free TCP ports so that it never collides with another Slurm on
the machine, and stopped by pid at the end. Skipped when the binaries are missing, unless CI=true:
then a missing binary fails the session, because CI installs them (.ci/run).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BINARIES = (
    "munged",
    "mariadbd",
    "mariadb-install-db",
    "mariadb",
    "slurmdbd",
    "slurmctld",
    "slurmd",
    "sbatch",
    "squeue",
    "sacct",
    "sacctmgr",
    "scancel",
    "scontrol",
)
CLUSTER_NAME = "studytest"


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if _which(b) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(what: str, check, timeout_s: float = 30.0, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not come up within {timeout_s:.0f} s\n{tail}")


class SlurmCluster:
    """One controller, one node `localhost` with 2 CPUs, accounting through slurmdbd + MariaDB."""

    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "etc" / "slurm.conf"
        self.procs: list[tuple[str, subprocess.Popen | None, Path | None]] = []
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def run(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, check=check, timeout=timeout
        )

    def start(self) -> None:
        for sub in ("etc", "state", "spool", "log", "run", "mysql"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self._start_munge()
        self._start_mariadb()
        ctld_port, slurmd_port, dbd_port = _free_port(), _free_port(), _free_port()
        self._write_configs(ctld_port, slurmd_port, dbd_port)
        self._start_daemon("slurmdbd", ["slurmdbd", "-D"], self.root / "log" / "slurmdbd.log")
        _wait_for("slurmdbd", lambda: self._port_open(dbd_port), log=self.root / "log" / "slurmdbd.log")
        _wait_for(
            "sacctmgr add cluster",
            lambda: self.run("sacctmgr", "-i", "add", "cluster", CLUSTER_NAME, check=False).returncode == 0,
            timeout_s=20,
        )
        self._start_daemon("slurmctld", ["slurmctld", "-D", "-i"], self.root / "log" / "slurmctld.log")
        _wait_for(
            "slurmctld",
            lambda: self.run("scontrol", "ping", check=False).stdout.count("UP") > 0,
            log=self.root / "log" / "slurmctld.log",
        )
        self._start_daemon("slurmd", ["slurmd", "-D", "-N", "localhost"], self.root / "log" / "slurmd.log")
        _wait_for("node localhost idle", self._node_idle, log=self.root / "log" / "slurmd.log")

    def restart_controller_cold(self) -> None:
        """Stop slurmctld, delete its saved state and start it again: queued jobs are lost and job
        ids start again at 1, while slurmdbd keeps the old records (what a site sees after a
        controller whose state files were lost). Waits until the node is idle again."""
        for i, (name, proc, _pidfile) in enumerate(self.procs):
            if name != "slurmctld" or proc is None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            del self.procs[i]
            break
        for saved in (self.root / "state").iterdir():  # `-c` alone keeps the job id counter
            shutil.rmtree(saved) if saved.is_dir() else saved.unlink()
        self._start_daemon("slurmctld", ["slurmctld", "-D", "-i"], self.root / "log" / "slurmctld.log")
        _wait_for(
            "slurmctld",
            lambda: self.run("scontrol", "ping", check=False).stdout.count("UP") > 0,
            log=self.root / "log" / "slurmctld.log",
        )
        _wait_for("node localhost idle", self._node_idle, timeout_s=60, log=self.root / "log" / "slurmd.log")

    def _port_open(self, port: int) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    def _node_idle(self) -> bool:
        out = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.strip()
        return out.startswith("idle")

    def _start_daemon(self, name: str, argv: list[str], log: Path) -> subprocess.Popen:
        argv = [_which(argv[0]) or argv[0], *argv[1:]]
        fh = open(log, "ab")  # noqa: SIM115 - kept open for the daemon's lifetime, closed in stop()
        proc = subprocess.Popen(
            argv, env=self.env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        fh.close()
        self.procs.append((name, proc, None))
        return proc

    def _start_munge(self) -> None:
        # munged refuses world-writable or foreign-owned folders: give it its own under the temp root.
        sock_dir = self.root / "munge"
        sock_dir.mkdir(exist_ok=True)
        shutil.chown(sock_dir, "munge", "munge")
        os.chmod(sock_dir, 0o755)
        self.munge_socket = sock_dir / "munge.socket.2"
        pidfile = sock_dir / "munged.pid"
        subprocess.run(
            [
                "runuser",
                "-u",
                "munge",
                "--",
                _which("munged"),
                f"--socket={self.munge_socket}",
                f"--pid-file={pidfile}",
                "--seed-file",
                str(sock_dir / "seed"),
                "--log-file",
                str(sock_dir / "munged.log"),
                "--force",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        _wait_for("munged", pidfile.exists)
        self.procs.append(("munged", None, pidfile))

    def _start_mariadb(self) -> None:
        data = self.root / "mysql" / "data"
        subprocess.run(
            [
                _which("mariadb-install-db"),
                "--no-defaults",
                f"--datadir={data}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.db_socket = self.root / "mysql" / "mysqld.sock"
        self.db_port = _free_port()
        self._start_daemon(
            "mariadbd",
            [
                "mariadbd",
                "--no-defaults",
                "--user=root",
                f"--datadir={data}",
                f"--socket={self.db_socket}",
                f"--port={self.db_port}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                f"--pid-file={self.root / 'mysql' / 'mysqld.pid'}",
                "--innodb-buffer-pool-size=32M",
            ],
            self.root / "log" / "mariadb.log",
        )
        _wait_for("mariadbd", lambda: self._port_open(self.db_port), log=self.root / "log" / "mariadb.log")
        sql = (
            "CREATE DATABASE slurm_acct_db; CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmdbpw';"
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
        )
        subprocess.run(
            [_which("mariadb"), "--no-defaults", f"--socket={self.db_socket}", "-uroot", "-e", sql],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def _write_configs(self, ctld_port: int, slurmd_port: int, dbd_port: int) -> None:
        r = self.root
        self.conf.write_text(f"""\
ClusterName={CLUSTER_NAME}
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
ReturnToService=2
MpiDefault=none
StateSaveLocation={r / "state"}
SlurmdSpoolDir={r / "spool"}
SlurmctldPidFile={r / "run" / "slurmctld.pid"}
SlurmdPidFile={r / "run" / "slurmd.pid"}
SlurmctldLogFile={r / "log" / "slurmctld.log"}
SlurmdLogFile={r / "log" / "slurmd.log"}
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={dbd_port}
AccountingStoragePass={self.munge_socket}
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=2
KillWait=2
OverTimeLimit=0
InactiveLimit=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=20000
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
        dbd = r / "etc" / "slurmdbd.conf"
        dbd.write_text(f"""\
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
DbdHost=localhost
DbdPort={dbd_port}
SlurmUser=root
LogFile={r / "log" / "slurmdbd.log"}
PidFile={r / "run" / "slurmdbd.pid"}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.db_port}
StorageUser=slurm
StoragePass=slurmdbpw
StorageLoc=slurm_acct_db
""")
        os.chmod(dbd, 0o600)

    def stop(self) -> None:
        """Stop everything this cluster started, newest first, by pid; SIGKILL what lingers.

        Jobs are cancelled first: a slurmstepd whose slurmd is gone would otherwise wait forever."""
        self._cancel_all_jobs()
        for _name, proc, pidfile in reversed(self.procs):
            pid = proc.pid if proc is not None else _read_pid(pidfile)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and _alive(pid, proc):
                time.sleep(0.1)
            if _alive(pid, proc):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if proc is not None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        self.procs.clear()
        for pid in self._leftover_steps():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _cancel_all_jobs(self) -> None:
        if not any(name == "slurmctld" for name, _, _ in self.procs):
            return
        self.run("scancel", "--quiet", f"--user={os.geteuid()}", check=False)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            live = self.run("squeue", "-h", "-o", "%i", check=False)
            if live.returncode != 0 or not live.stdout.strip():
                break
            time.sleep(0.3)

    def _leftover_steps(self) -> list[int]:
        """slurmstepd processes of this cluster (their environment names our slurm.conf)."""
        mark = f"SLURM_CONF={self.conf}".encode()
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if (
                    b"slurmstepd" in (proc / "cmdline").read_bytes()
                    and mark in (proc / "environ").read_bytes()
                ):
                    found.append(int(proc.name))
            except OSError:
                continue
        return found


def _read_pid(pidfile: Path | None) -> int | None:
    try:
        return int(pidfile.read_text().strip()) if pidfile else None
    except (OSError, ValueError):
        return None


def _alive(pid: int, proc: subprocess.Popen | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A running Slurm for the whole session; SLURM_CONF is exported for the code under test."""
    missing = missing_binaries()
    if missing or os.geteuid() != 0:
        why = (
            f"Slurm test cluster needs {', '.join(missing)} (apt-get install slurm-wlm slurmdbd munge "
            "mariadb-server, see .ci/run)"
            if missing
            else "Slurm test cluster needs root"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    # munged runs as the munge user, which cannot enter pytest's private temporary folders
    root = Path(tempfile.mkdtemp(prefix="study-slurm-"))
    cluster = SlurmCluster(root)
    previous = os.environ.get("SLURM_CONF")
    try:
        cluster.start()
        os.environ["SLURM_CONF"] = str(cluster.conf)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous

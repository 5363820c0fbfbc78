"""The workspace's state store: which job carries which runs, its scheduler id and state, each run's outcome.

SQLite in WAL mode (`<workspace>/state.sqlite`): every change is one transaction, readers never block
writers, and several `study` commands may work on the same workspace at once. Submitting is a
compare-and-set from `planned` to `submitting` (with the submitter's host and pid), so two
concurrent submits never both send a job; a submit that died between the scheduler's answer and
the state write leaves `submitting` behind, and the next command adopts the job from the scheduler
by its name (study.submit.reconcile).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from study.errors import StudyError
from study.results import now_iso

STATE_FILE = "state.sqlite"
SCHEMA_VERSION = "1"

# Job lifecycle in the store (the scheduler's own state is in `state`).
PLANNED, SUBMITTING, SUBMITTED = "planned", "submitting", "submitted"
# Run outcomes.
RUN_PLANNED, RUN_PENDING, RUN_RUNNING, RUN_OK, RUN_FAILED = "planned", "pending", "running", "ok", "failed"
RUN_DONE = (RUN_OK, RUN_FAILED)

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,          -- the scheduler job name: the tag that finds it again
    script TEXT NOT NULL,
    runs TEXT NOT NULL,             -- JSON list of run ids, run back to back
    round INTEGER NOT NULL,         -- 1 for the first submission, k for the (k-1)-th rerun
    status TEXT NOT NULL,           -- planned | submitting | submitted
    job_id TEXT,
    state TEXT,                     -- study.schedulers.JobState
    native TEXT, reason TEXT, exit_code INTEGER,
    submitter TEXT,                 -- host:pid of the command that is submitting it
    submitted_at TEXT, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    job TEXT NOT NULL,              -- the job that carries the run's current attempt
    floor INTEGER NOT NULL,         -- attempt folders that existed before that job: later ones are its
    status TEXT NOT NULL,           -- planned | pending | running | ok | failed
    attempt INTEGER,                -- the attempt folder the status comes from
    reason TEXT,
    updated_at TEXT NOT NULL);
"""


@dataclass(frozen=True)
class JobRow:
    name: str
    script: str
    runs: list[str]
    round: int
    status: str
    job_id: str | None
    state: str | None
    native: str | None
    reason: str | None
    exit_code: int | None
    submitter: str | None
    submitted_at: str | None


@dataclass(frozen=True)
class RunRow:
    run_id: str
    job: str
    floor: int
    status: str
    attempt: int | None
    reason: str | None


def submitter_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class State:
    """One connection to a workspace's store; use as a context manager or call close()."""

    def __init__(self, workspace: str | os.PathLike[str], *, read_only: bool = False):
        """`read_only` opens an existing store only to read it (what collect needs, on any disk).

        On a read-only file system an existing store is always opened for reading: `status` and
        `collect` still show what it holds, and any change is refused with a clear error."""
        self.workspace = Path(workspace)
        self.path = self.workspace / STATE_FILE
        self.read_only = self.path.exists() and (read_only or read_only_folder(self.workspace))
        self.why_read_only = "on a read-only file system" if self.read_only and not read_only else ""
        try:
            if self.read_only:
                self.db = _connect_read_only(self.path)
                return
            self.workspace.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=60000")
            with self.transaction():
                for statement in filter(str.strip, _DDL.split(";")):
                    self.db.execute(statement)
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        except (sqlite3.Error, OSError) as exc:
            if self.read_only or not self.path.exists():
                raise StudyError(f"cannot open the state store {self.path}: {exc}") from exc
            # It exists but cannot be written now (a full disk): read what it holds, change nothing.
            try:
                self.db = _connect_read_only(self.path)
            except sqlite3.Error:
                raise StudyError(f"cannot open the state store {self.path}: {exc}") from exc
            self.read_only = True
            self.why_read_only = f"not writable now ({exc}{_full_disk_note(self.workspace)})"

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: take the write lock up front so read-modify-write cannot interleave.

        A store that cannot be written (a read-only or full file system) raises StudyError naming it."""
        if self.read_only:
            raise StudyError(
                f"the state store of {self.workspace} is {self.why_read_only or 'opened read-only'}: it "
                "cannot record anything (status and collect --no-refresh still read it)"
            )
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StudyError(f"cannot write the state store {self.path}: {exc}") from exc
        try:
            yield self.db
        except sqlite3.Error as exc:
            self.db.execute("ROLLBACK")
            raise StudyError(f"cannot write the state store {self.path}: {exc}") from exc
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            self.db.execute("ROLLBACK")
            raise StudyError(f"cannot write the state store {self.path}: {exc}") from exc

    # meta
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # jobs
    def add_job(
        self, name: str, script: str, runs: list[str], round_: int, floors: dict[str, int] | None = None
    ) -> bool:
        """Record a job and point its runs at it; False (and no change) when the name is known already."""
        now = now_iso()
        with self.transaction():
            if self.db.execute("SELECT 1 FROM jobs WHERE name = ?", (name,)).fetchone():
                return False
            self.db.execute(
                "INSERT INTO jobs (name, script, runs, round, status, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (name, script, json.dumps(runs), round_, PLANNED, now),
            )
            for run_id in runs:
                self.db.execute(
                    "INSERT INTO runs (run_id, job, floor, status, updated_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(run_id) DO UPDATE SET job = excluded.job, floor = excluded.floor, "
                    "status = excluded.status, attempt = NULL, reason = NULL, "
                    "updated_at = excluded.updated_at",
                    (run_id, name, (floors or {}).get(run_id, 0), RUN_PLANNED, now),
                )
        return True

    def jobs(self, status: str | None = None) -> list[JobRow]:
        sql = "SELECT * FROM jobs" + (" WHERE status = ?" if status else "") + " ORDER BY round, name"
        return [_job(r) for r in self.db.execute(sql, (status,) if status else ())]

    def job(self, name: str) -> JobRow | None:
        row = self.db.execute("SELECT * FROM jobs WHERE name = ?", (name,)).fetchone()
        return _job(row) if row else None

    def claim(self, name: str) -> bool:
        """planned → submitting, only if still planned: the caller that wins submits the job."""
        with self.transaction():
            cur = self.db.execute(
                "UPDATE jobs SET status = ?, submitter = ?, updated_at = ? WHERE name = ? AND status = ?",
                (SUBMITTING, submitter_id(), now_iso(), name, PLANNED),
            )
        return cur.rowcount == 1

    def unclaim(self, name: str) -> None:
        """submitting → planned: the scheduler refused the job, or it was never sent."""
        with self.transaction():
            self.db.execute(
                "UPDATE jobs SET status = ?, submitter = NULL, updated_at = ? WHERE name = ? AND status = ?",
                (PLANNED, now_iso(), name, SUBMITTING),
            )

    def mark_submitted(self, name: str, job_id: str, state: str = "PENDING") -> None:
        now = now_iso()
        with self.transaction():
            self.db.execute(
                "UPDATE jobs SET status = ?, job_id = ?, state = ?, submitted_at = ?, "
                "updated_at = ? WHERE name = ?",
                (SUBMITTED, job_id, state, now, now, name),
            )
            for run_id in json.loads(
                self.db.execute("SELECT runs FROM jobs WHERE name = ?", (name,)).fetchone()["runs"]
            ):
                self.db.execute(
                    "UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ? AND job = ? AND status = ?",
                    (RUN_PENDING, now, run_id, name, RUN_PLANNED),
                )

    def set_job_state(self, name: str, state: str, native: str, reason: str, exit_code: int | None) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE jobs SET state = ?, native = ?, reason = ?, exit_code = ?, updated_at = ? "
                "WHERE name = ?",
                (state, native, reason, exit_code, now_iso(), name),
            )

    # runs
    def runs(self) -> list[RunRow]:
        return [_run(r) for r in self.db.execute("SELECT * FROM runs ORDER BY run_id")]

    def run(self, run_id: str) -> RunRow | None:
        row = self.db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return _run(row) if row else None

    def set_runs(self, updates: Iterable[tuple[str, str, int | None, str | None]]) -> None:
        """(run_id, status, attempt, reason) for many runs in one transaction."""
        now = now_iso()
        with self.transaction():
            self.db.executemany(
                "UPDATE runs SET status = ?, attempt = ?, reason = ?, updated_at = ? WHERE run_id = ?",
                [(status, attempt, reason, now, run_id) for run_id, status, attempt, reason in updates],
            )


def _job(row: sqlite3.Row) -> JobRow:
    return JobRow(
        row["name"],
        row["script"],
        json.loads(row["runs"]),
        row["round"],
        row["status"],
        row["job_id"],
        row["state"],
        row["native"],
        row["reason"],
        row["exit_code"],
        row["submitter"],
        row["submitted_at"],
    )


def _run(row: sqlite3.Row) -> RunRow:
    return RunRow(row["run_id"], row["job"], row["floor"], row["status"], row["attempt"], row["reason"])


def read_only_folder(folder: Path) -> bool:
    """True when `folder` is on a file system mounted read-only (root ignores permission bits, so
    the mount flag is what counts), or when this user may not write it."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY) or not os.access(folder, os.W_OK)
    except OSError:
        return False


def disk_full(folder: str | os.PathLike[str]) -> bool:
    """Less than 1 MiB left for this user on the file system holding `folder`."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < (1 << 20)


def _full_disk_note(folder: Path) -> str:
    return f"; the disk holding {folder} is full" if disk_full(folder) else ""


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """Open a WAL store on a read-only file system: `mode=ro` reads it while its -wal and -shm files
    can be used; when they cannot be made, `immutable=1` reads the main file as it stands."""
    try:
        return _open_uri(path, "mode=ro")
    except sqlite3.Error:
        return _open_uri(path, "mode=ro&immutable=1")


def _open_uri(path: Path, query: str) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{path}?{query}", uri=True, timeout=60, isolation_level=None)
    db.row_factory = sqlite3.Row
    try:
        db.execute("SELECT count(*) FROM jobs").fetchone()
    except sqlite3.Error:
        db.close()
        raise
    return db


def has_state(workspace: str | os.PathLike[str]) -> bool:
    return (Path(workspace) / STATE_FILE).exists()

"""The results contract: one `results.json` per run attempt, written here and read here.

Standard library only, and importable without the rest of `study/`: the engine and the collectives
benchmark import it on compute nodes whose Python has torch and nothing else. Nobody else parses or
writes result files; see docs/results.md for the format and the dataset columns built from it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import socket
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

SCHEMA = "study.result/1"
KINDS = ("collective", "inference")
STATUSES = ("ok", "failed")

# Environment variables the harness sets for every run it launches (docs/results.md).
ENV_RUN_ID = "STUDY_RUN_ID"
ENV_RESULTS = "STUDY_RESULTS"
ENV_PARAMS = "STUDY_PARAMS"

_SECRET = re.compile(r"(TOKEN|SECRET|PASSW|PASSWD|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_?KEY|AUTH)", re.I)
# Also any name with KEY as a word of its own (SSH_KEY, KEY_FILE) but not PKEY (NCCL_IB_PKEY).
_SECRET_KEY_WORD = re.compile(r"(?<![A-Z])KEY", re.I)
# Values that look like credentials whatever their variable is called.
_SECRET_VALUE = re.compile(
    r"(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|glpat-[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|sk-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{30,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----)"
)
_RANDOM_WORD = re.compile(r"[A-Za-z0-9+=_-]{32,}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Only these prefixes are worth recording: they change what the job does or where it ran.
_ENV_PREFIXES = (
    "NCCL_",
    "NVSHMEM_",
    "FI_",
    "UCX_",
    "CUDA_",
    "TORCH_",
    "OMP_",
    "SLURM_JOB",
    "SLURM_NNODES",
    "SLURM_NTASKS",
    "SLURM_CLUSTER",
    "PBS_JOB",
    "PBS_O_",
    "OMPI_COMM_WORLD_SIZE",
    "STUDY_",
    "MASTER_",
    "WORLD_SIZE",
    "PYTORCH_",
)


class ResultError(ValueError):
    """A results file that does not follow the contract; the message names the file and the key."""


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def filtered_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The part of the environment that explains a run, with anything secret-looking removed."""
    environ = os.environ if environ is None else environ
    return {
        k: v
        for k, v in sorted(environ.items())
        if k.startswith(_ENV_PREFIXES) and not is_secret_name(k) and not looks_like_secret(v)
    }


def is_secret_name(name: str) -> bool:
    """True for variable names that usually hold credentials (TOKEN, SECRET, PASSWORD, KEY, AUTH, …)."""
    return bool(_SECRET.search(name) or _SECRET_KEY_WORD.search(name))


def looks_like_secret(value: str) -> bool:
    """True for values shaped like credentials: known token prefixes (ghp_, xox…, AKIA…), JWTs, PEM
    private keys, and long random-looking words (32+ characters mixing upper case, lower case and
    digits; UUIDs such as GPU-8f3c…, and hex such as git hashes, are not taken for secrets)."""
    if _SECRET_VALUE.search(value):
        return True
    for word in _RANDOM_WORD.findall(_UUID.sub(" ", value)):
        if re.search(r"[a-z]", word) and re.search(r"[A-Z]", word) and re.search(r"[0-9]", word):
            return True
    return False


def git_state(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Commit and dirtiness of the checkout holding `path` (this file by default); None off a checkout."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if sha.returncode != 0:
            return {"git_sha": None, "dirty": None}
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"git_sha": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": None, "dirty": None}


def scheduler_job_id(environ: Mapping[str, str] | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    for key in ("SLURM_JOB_ID", "PBS_JOBID", "FLUX_JOB_ID", "STUDY_LOCAL_JOB_ID"):
        if environ.get(key):
            return environ[key]
    return None


def provenance(
    *,
    versions: Mapping[str, Any] | None = None,
    hosts: list[str] | None = None,
    start: str | None = None,
    end: str | None = None,
) -> dict[str, Any]:
    """Where, when and with what a result was made. `versions` holds torch, nccl, nvshmem, cuda, driver."""
    prov: dict[str, Any] = dict(git_state())
    prov.update(
        {
            "versions": dict(versions or {}),
            "hosts": list(hosts) if hosts is not None else [socket.gethostname()],
            "scheduler_job_id": scheduler_job_id(),
            "env": filtered_env(),
            "start": start or now_iso(),
            "end": end,
        }
    )
    return prov


def new_result(
    *,
    kind: str,
    params: Mapping[str, Any],
    topology: Mapping[str, Any],
    run_id: str | None = None,
) -> dict[str, Any]:
    """An empty result to fill in; `run_id` defaults to $STUDY_RUN_ID (or "adhoc" outside the harness)."""
    if kind not in KINDS:
        raise ResultError(f"kind: expected one of {KINDS}, got {kind!r}")
    return {
        "schema": SCHEMA,
        "run_id": run_id or os.environ.get(ENV_RUN_ID) or "adhoc",
        "kind": kind,
        "status": "ok",
        "error": None,
        "params": dict(params),
        "topology": dict(topology),
        "metrics": {},
        "samples": [],
        "timers": [],
        "provenance": provenance(),
    }


def default_results_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where to write: the explicit path, else $STUDY_RESULTS, else ./results.json."""
    return Path(explicit or os.environ.get(ENV_RESULTS) or "results.json")


# Where a run's results live in a workspace: runs/<run_id>/attempt-<n>/results.json, one folder per
# attempt (the job script makes it; attempt-1 is the first).
ATTEMPT_RE = re.compile(r"^attempt-(\d+)$")


def attempt_folders(run_dir: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """The run's attempt folders (as strings: collecting 10,000 runs feels pathlib), oldest first."""
    run_dir = os.fspath(run_dir)
    try:
        names = os.listdir(run_dir)
    except FileNotFoundError:
        return []
    found = [(int(m.group(1)), os.path.join(run_dir, n)) for n in names if (m := ATTEMPT_RE.match(n))]
    return sorted(found)


def _process_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes files readable by their owner only; results, tables and figures are shared within a
# project, so the renamed file gets the mode a plain open() would have given it.
_FILE_MODE = 0o666 & ~_process_umask()


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Let `write(tmp_path)` fill a temporary file beside `path`, then rename it over `path`.

        Readers see the old file or the whole new one, never a part; on any error the temporary file is
        removed and `path` is untouched. Every atomic write of the project goes through here, except the
    bulk writes of a render (study/files.py, tens of thousands of small files, unchanged ones skipped).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """`text` written atomically and fsynced before the rename (results and state must survive a crash)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_write(path, write)


def write_result(result: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> Path:
    """Validate and atomically write one result; stamps provenance.end if it is still empty."""
    result = dict(result)
    prov = dict(result.get("provenance") or {})
    if not prov.get("end"):
        prov["end"] = now_iso()
    result["provenance"] = prov
    target = default_results_path(path)
    validate_result(result, source=str(target))
    return atomic_write_text(
        target, json.dumps(result, indent=1, sort_keys=False, default=_json_default) + "\n"
    )


def _json_default(obj: Any) -> Any:
    # numpy scalars and the like carry .item(); paths and other objects become strings.
    item = getattr(obj, "item", None)
    if callable(item):
        return item()
    return str(obj)


# What a collective sample's `latency_us` is over the ranks (each rank's mean time per call): the
# values of nccl-tests' -a/--average in order, so STATISTICS[a] is the statistic of `-a a`
# (0: rank 0's value, 1: the mean over ranks, nccl-tests' default, 2: the minimum, 3: the maximum).
STATISTICS = ("rank0", "mean", "min", "max")
# The benchmark's statistic when none is asked for: nccl-tests' default, -a 1.
DEFAULT_STATISTIC = "mean"
# Samples written before they carried `statistic` are the maximum over ranks, all the benchmark
# reported then; read_result fills it in (docs/results.md).
LEGACY_STATISTIC = "max"
# The sample keys that say which measurement a latency is: two samples of one configuration and size
# that differ in one of them are different measurements, never repeats to pool (docs/analysis.md).
SAMPLE_DISTINCTIONS = ("in_place", "statistic")

# One sample's keys and their types (docs/results.md, "Collective samples"); None stands for "not
# measured". Other keys are free, but one whose name carries a unit (`_us`, `_GBps`, ...) is a number.
SAMPLE_TYPES: dict[str, type] = {
    "algorithm": str,
    "dtype": str,
    "redop": str,
    "statistic": str,
    "graphs": bool,
    "in_place": bool,
    "size_bytes": int,
    "count": int,
    "wrong": int,
    "iterations": int,
    "warmup": int,
    "latency_us": float,
    "latency_us_min": float,
    "latency_us_max": float,
    "latency_us_mean": float,
    "latency_us_rank0": float,
    "algbw_GBps": float,
    "busbw_GBps": float,
}
_UNIT_SUFFIX = re.compile(r"_(us|ms|s|bytes|GBps|TBps|GB)$")
MAX_TIMER_DEPTH = 64  # deeper trees are not timer trees; the limit keeps validation bounded


def read_result(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate one results.json; every problem raises ResultError naming the file and key,
    whatever the file holds (binary bytes, nesting deep enough to exhaust the parser). A latency sample
    without `statistic` (written before samples carried it) gets LEGACY_STATISTIC."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ResultError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise ResultError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultError(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise ResultError(f"{path}: not a result: nested too deeply to read") from exc
    validate_result(data, source=str(path))
    for sample in data["samples"]:
        if "latency_us" in sample and "statistic" not in sample:
            sample["statistic"] = LEGACY_STATISTIC
    return data


def _sample_error(key: str, value: Any) -> str | None:
    """Why one sample value does not fit its type, or None."""
    if value is None:
        return None
    want = SAMPLE_TYPES.get(key, float if _UNIT_SUFFIX.search(key) else None)
    if want is None:
        return None
    if want is bool:
        ok = isinstance(value, bool)
    elif want is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif want is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, want)
    name = {float: "number", int: "whole number", bool: "true or false", str: "string"}[want]
    return None if ok else f"expected a {name}, got {type(value).__name__} {value!r:.40}"


def validate_result(data: Any, *, source: str = "<result>") -> None:
    def fail(key: str, msg: str) -> None:
        raise ResultError(f"{source}: {key}: {msg}")

    if not isinstance(data, dict):
        fail("(top level)", "expected a JSON object")
    if data.get("schema") != SCHEMA:
        fail("schema", f"expected {SCHEMA!r}, got {data.get('schema')!r}")
    for key, typ in (
        ("run_id", str),
        ("kind", str),
        ("status", str),
        ("params", dict),
        ("topology", dict),
        ("metrics", dict),
        ("samples", list),
        ("timers", list),
        ("provenance", dict),
    ):
        if key not in data:
            fail(key, "missing")
        if not isinstance(data[key], typ):
            fail(key, f"expected {typ.__name__}, got {type(data[key]).__name__}")
    if data["kind"] not in KINDS:
        fail("kind", f"expected one of {KINDS}, got {data['kind']!r}")
    if data["status"] not in STATUSES:
        fail("status", f"expected one of {STATUSES}, got {data['status']!r}")
    if data["status"] == "failed" and not data.get("error"):
        fail("error", "a failed result must say why")
    for name, value in data["metrics"].items():
        if value is not None and not isinstance(value, (int, float)):
            fail(f"metrics.{name}", f"expected a number, got {type(value).__name__}")
    for i, sample in enumerate(data["samples"]):
        _validate_sample(sample, f"samples[{i}]", fail)
    for i, node in enumerate(data["timers"]):
        _validate_timer_node(node, f"timers[{i}]", fail)


def _validate_sample(sample: Any, where: str, fail) -> None:
    if not isinstance(sample, dict):
        fail(where, "expected an object")
    for key, value in sample.items():
        problem = _sample_error(str(key), value)
        if problem:
            fail(f"{where}.{key}", problem)
    if sample.get("statistic") is not None and sample["statistic"] not in STATISTICS:
        fail(f"{where}.statistic", f"expected one of {', '.join(STATISTICS)}, got {sample['statistic']!r}")


def _validate_timer_node(node: Any, where: str, fail, depth: int = 0) -> None:
    if depth > MAX_TIMER_DEPTH:
        fail(where, f"timer tree deeper than {MAX_TIMER_DEPTH} levels")
    if not isinstance(node, dict):
        fail(where, "expected a Hatchet literal node (an object)")
    frame = node.get("frame")
    if not isinstance(frame, dict) or not isinstance(frame.get("name"), str):
        fail(f"{where}.frame.name", "missing or not a string")
    metrics = node.get("metrics")
    if not isinstance(metrics, dict):
        fail(f"{where}.metrics", "missing or not an object")
    for key in ("time (inc)", "time"):
        if not isinstance(metrics.get(key), (int, float)):
            fail(f"{where}.metrics.{key}", "missing or not a number")
    children = node.get("children", [])
    if not isinstance(children, list):
        fail(f"{where}.children", "expected a list")
    for i, child in enumerate(children):
        _validate_timer_node(child, f"{where}.children[{i}]", fail, depth + 1)


# Hatchet literal timer trees (docs/results.md, "Timers").
TIMER_TYPES = ("region", "compute", "comm")
# The timers table `study collect` writes (docs/results.md, "The timer table"), first columns in order;
# the run's parameters and topology follow. analysis/dataset.py reads it with these names.
TIMER_TABLE_COLUMNS = (
    "experiment",
    "run_id",
    "repeat",
    "attempt",
    "path",
    "name",
    "type",
    "depth",
    "time_inc_ms",
    "time_ms",
    "calls",
)


def timer_node(
    name: str,
    time_inc_ms: float,
    children: list[dict[str, Any]] | None = None,
    *,
    type: str = "region",
    calls: int = 1,
    time_ms: float | None = None,
    metrics: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """One Hatchet literal node; exclusive time defaults to inclusive minus the children's (never < 0).
    `metrics` adds more of them (the engine's `time (max)`, `time (mean)` and `ranks` over ranks)."""
    if type not in TIMER_TYPES:
        raise ResultError(f"timer {name!r}: type: expected one of {TIMER_TYPES}, got {type!r}")
    children = list(children or [])
    if time_ms is None:
        time_ms = max(0.0, float(time_inc_ms) - sum(c["metrics"]["time (inc)"] for c in children))
    return {
        "frame": {"name": name, "type": type},
        "metrics": {"time (inc)": float(time_inc_ms), "time": float(time_ms), "calls": int(calls)}
        | dict(metrics or {}),
        "children": children,
    }


def timers_from_nested(timings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Build timer roots from nested timings, the shape code measuring regions naturally keeps:
    `{"decode": {"time_ms": 12.0, "calls": 8, "type": "region", "children": {"allreduce": 3.1}}}`;
    a bare number is a leaf's inclusive time in ms. A node without `time_ms` gets its children's sum."""
    roots = []
    for name, spec in timings.items():
        if isinstance(spec, (int, float)):
            roots.append(timer_node(name, spec))
            continue
        if not isinstance(spec, Mapping):
            raise ResultError(f"timer {name!r}: expected a number or a mapping, got {type(spec).__name__}")
        children = timers_from_nested(spec.get("children") or {})
        inc = spec.get("time_ms")
        if inc is None:
            inc = sum(c["metrics"]["time (inc)"] for c in children)
        roots.append(
            timer_node(name, inc, children, type=spec.get("type", "region"), calls=spec.get("calls", 1))
        )
    return roots


def flatten_timers(roots: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Timer trees → one row per node, depth first: path (names joined by "/"), name, type, depth,
    time_inc_ms, time_ms, calls: the rows of timers.parquet (docs/results.md)."""
    rows: list[dict[str, Any]] = []

    def walk(node: Mapping[str, Any], prefix: str, depth: int) -> None:
        frame, metrics = node["frame"], node["metrics"]
        path = f"{prefix}/{frame['name']}" if prefix else frame["name"]
        rows.append(
            {
                "path": path,
                "name": frame["name"],
                "type": frame.get("type", "region"),
                "depth": depth,
                "time_inc_ms": metrics["time (inc)"],
                "time_ms": metrics["time"],
                "calls": metrics.get("calls"),
            }
        )
        for child in node.get("children", []):
            walk(child, path, depth + 1)

    for root in roots:
        walk(root, "", 0)
    return rows

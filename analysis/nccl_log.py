"""NCCL's algorithm and protocol choice, read from `NCCL_DEBUG=INFO` logs, mapped over size × GPU count.

NCCL has printed its choice in three shapes over its 2.x releases (`src/enqueue.cc`), all with the
usual `host:pid:tid [cudaDev] NCCL INFO ` prefix:

* numeric, rank 0 only, with `NCCL_DEBUG_SUBSYS` including TUNING (older 2.x):
  `131072 Bytes -> Algo 1 proto 0 time 23.456000`
* named, rank 0 only (2.19 and later):
  `AllReduce: 131072 Bytes -> Algo RING proto LL channel{Lo..Hi}={0..1}` (some builds add `comm 0x…`)
* `Best tuning, algorithm, RING, protocol, LL` (tuner-plugin era), which carries no size.

Names may be padded (`Broadcast:    32768 Bytes -> …`), a named line may carry numeric ids and a
`time` (`AllGather: 37756928 Bytes -> Algo 1 proto 2 time 2860.208008`), and a launcher may put its
own prefix before NCCL's (`2: ` from `srun --label`, `[1,0]<stdout>:` from `mpirun --tag-output`):
all are read. A line that looks like a tuning decision but matches none of these is counted, and the
count reaches the caller (`unparsed`) instead of vanishing.

The size and the communicator's rank count come from the collective's own line (subsystem COLL):
`AllReduce: opCount 4 sendbuff 0x… recvbuff 0x… count 32768 datatype 9 op 0 root 0 comm 0x… [nranks=8]
stream 0x…`. A tuning line without a size or rank count takes them from the last collective line of
the same process and thread, which is where NCCL computes the choice.
Algorithm numbers: 0 Tree, 1 Ring, 2 CollNetDirect, 3 CollNetChain, 4 NVLS, 5 NVLSTree, 6 PAT;
protocols: 0 LL, 1 LL128, 2 Simple.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from study.results import ResultError, read_result

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

ALGORITHMS: dict[int, str] = {
    0: "Tree",
    1: "Ring",
    2: "CollNetDirect",
    3: "CollNetChain",
    4: "NVLS",
    5: "NVLSTree",
    6: "PAT",
}
PROTOCOLS: dict[int, str] = {0: "LL", 1: "LL128", 2: "Simple"}
_ALGO_NAMES = {v.upper().replace("_", ""): v for v in ALGORITHMS.values()}
_PROTO_NAMES = {v.upper(): v for v in PROTOCOLS.values()}
# ncclDataType_t → bytes per element: int8 uint8 int32 uint32 int64 uint64 half float double bfloat16
# then the fp8 types (e4m3, e5m2) of NCCL 2.24+.
DTYPE_BYTES: dict[int, int] = {0: 1, 1: 1, 2: 4, 3: 4, 4: 8, 5: 8, 6: 2, 7: 4, 8: 8, 9: 2, 10: 1, 11: 1}

# NCCL's own prefix, wherever a launcher's label puts it on the line (searched, not anchored).
_PREFIX = r"(?:^|(?<=[\s:>\]]))(?P<host>[^\s:\[\]<>]+):(?P<pid>\d+):(?P<tid>\d+) \[(?P<dev>\d+)\] NCCL INFO "
_COLL = re.compile(
    _PREFIX + r"(?P<coll>\w+): opCount (?P<op>[0-9a-fA-Fx]+) sendbuff \S+ recvbuff \S+ count (?P<count>\d+) "
    r"datatype (?P<dtype>\d+) op (?P<redop>\d+) root (?P<root>\d+) "
    r"comm (?P<comm>\S+) \[nranks=(?P<nranks>\d+)\]"
)
_NUMERIC = re.compile(
    _PREFIX + r"(?P<bytes>\d+) Bytes -> Algo (?P<algo>\d+) proto (?P<proto>\d+) time (?P<time>[-+0-9.eE]+)"
)
_NAMED = re.compile(
    _PREFIX + r"(?P<coll>\w+):\s+(?P<bytes>\d+) Bytes -> Algo (?P<algo>\w+) proto (?P<proto>\w+)"
    r"(?: time (?P<time>[-+0-9.eE]+))?"
    r"(?: channel\{Lo\.\.Hi\}=\{(?P<clo>\d+)\.\.(?P<chi>\d+)\})?(?: comm (?P<comm>\S+))?"
)
_LOOKS_LIKE_TUNING = re.compile(r"\d+ Bytes\b.*\bAlgo\b|Best tuning")
_BEST = re.compile(_PREFIX + r"Best tuning, algorithm, (?P<algo>\w+), protocol, (?P<proto>\w+)")
_INIT = re.compile(_PREFIX + r".*?comm (?P<comm>0x[0-9a-fA-F]+) rank \d+ nranks (?P<nranks>\d+)")

COLUMNS = (
    "source",
    "host",
    "pid",
    "collective",
    "size_bytes",
    "nranks",
    "algorithm",
    "protocol",
    "predicted_us",
    "channels",
)


@dataclass
class _Call:
    coll: str
    size: int | None
    nranks: int | None


def _algo(value: str) -> str:
    if value.isdigit():
        return ALGORITHMS.get(int(value), f"algo{value}")
    return _ALGO_NAMES.get(value.upper().replace("_", ""), value)


def _proto(value: str) -> str:
    if value.isdigit():
        return PROTOCOLS.get(int(value), f"proto{value}")
    return _PROTO_NAMES.get(value.upper(), value)


def parse_lines(
    lines: Iterable[str], source: str = "<log>", nranks: int | None = None, unparsed: list[str] | None = None
) -> list[dict]:
    """One dict per tuning decision found in `lines` (see the module docstring for the formats).

    `nranks`, when given (the run's world size), fills in decisions whose rank count the log lacks.
    Lines that look like tuning decisions but match no known shape are appended to `unparsed`.
    """
    last: dict[tuple[str, str, str], _Call] = {}
    comm_ranks: dict[str, int] = {}
    out: list[dict] = []
    for raw in lines:
        if "NCCL INFO" not in raw:
            continue
        line = raw.rstrip("\n")
        m = _COLL.search(line)
        if m:
            size = int(m["count"]) * DTYPE_BYTES[int(m["dtype"])] if int(m["dtype"]) in DTYPE_BYTES else None
            comm_ranks[m["comm"]] = int(m["nranks"])
            last[(m["host"], m["pid"], m["tid"])] = _Call(m["coll"], size, int(m["nranks"]))
            continue
        m = _NAMED.search(line)
        kind = "named"
        if not m:
            m = _NUMERIC.search(line)
            kind = "numeric"
        if not m:
            m = _BEST.search(line)
            kind = "best"
        if not m:
            m = _INIT.search(line)
            if m:
                comm_ranks[m["comm"]] = int(m["nranks"])
            elif unparsed is not None and _LOOKS_LIKE_TUNING.search(line):
                unparsed.append(line)
            continue
        call = last.get((m["host"], m["pid"], m["tid"]))
        groups = m.groupdict()
        if kind == "best":
            if call is None or call.size is None:
                continue
            size = call.size
        else:
            size = int(groups["bytes"])
        ranks = None
        if groups.get("comm") and groups["comm"] in comm_ranks:
            ranks = comm_ranks[groups["comm"]]
        elif call is not None:
            ranks = call.nranks
        ranks = ranks or nranks
        channels = None
        if groups.get("clo") is not None:
            channels = int(groups["chi"]) - int(groups["clo"]) + 1
        out.append(
            {
                "source": source,
                "host": m["host"],
                "pid": int(m["pid"]),
                "collective": groups.get("coll") or (call.coll if call else None),
                "size_bytes": size,
                "nranks": ranks,
                "algorithm": _algo(groups["algo"]),
                "protocol": _proto(groups["proto"]),
                "predicted_us": float(groups["time"]) if groups.get("time") else None,
                "channels": channels,
            }
        )
    return out


def _frame(rows: list[dict], unparsed: list[str]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame.attrs["unparsed"] = len(unparsed)
    return frame


def parse_log(path: str | os.PathLike[str], nranks: int | None = None) -> pd.DataFrame:
    """The tuning decisions of one log file as a DataFrame (columns `COLUMNS`); `attrs["unparsed"]`
    counts the lines that looked like decisions but could not be read."""
    p = Path(path)
    unparsed: list[str] = []
    with open(p, encoding="utf-8", errors="replace") as fh:
        rows = parse_lines(fh, str(p), nranks, unparsed)
    return _frame(rows, unparsed)


def parse_text(text: str, nranks: int | None = None, source: str = "<text>") -> pd.DataFrame:
    unparsed: list[str] = []
    return _frame(parse_lines(text.splitlines(), source, nranks, unparsed), unparsed)


def algorithm_map(decisions: pd.DataFrame, collective: str = "AllReduce") -> pd.DataFrame:
    """The choice NCCL made most often per (message size, GPU count), with how often it made it.

    Columns: size_bytes, nranks, algorithm, protocol, choice ("Ring/LL"), calls, agreement (the
    fraction of calls at that point that made this choice: below 1, NCCL changed its mind).
    """
    import pandas as pd

    cols = ["size_bytes", "nranks", "algorithm", "protocol", "choice", "calls", "agreement"]
    if decisions.empty:
        return pd.DataFrame(columns=cols)
    d = decisions.dropna(subset=["size_bytes", "nranks"])
    if collective:
        d = d[(d["collective"].isna()) | (d["collective"].str.lower() == collective.lower())]
    if d.empty:
        return pd.DataFrame(columns=cols)
    counts = d.groupby(["size_bytes", "nranks", "algorithm", "protocol"]).size().rename("calls").reset_index()
    totals = counts.groupby(["size_bytes", "nranks"])["calls"].transform("sum")
    counts["agreement"] = counts["calls"] / totals
    best = counts.sort_values(["size_bytes", "nranks", "calls"], ascending=[True, True, False])
    best = best.drop_duplicates(["size_bytes", "nranks"]).copy()
    best["choice"] = best["algorithm"] + "/" + best["protocol"]
    best["size_bytes"] = best["size_bytes"].astype("int64")
    best["nranks"] = best["nranks"].astype("int64")
    return best[cols].reset_index(drop=True)


LOG_NAMES = ("stdout", "stderr", "nccl.log")


def workspace_decisions(workspace: str | os.PathLike[str]) -> pd.DataFrame:
    """Every tuning decision in the logs of a workspace's run attempts (runs/*/attempt-*/...).

    The rank count falls back to the attempt's results.json topology where the log lacks it.
    """
    import pandas as pd

    frames = []
    unparsed = 0
    runs = Path(workspace) / "runs"
    if not runs.is_dir():
        return _frame([], [])
    for attempt in sorted(runs.glob("*/attempt-*")):
        world = None
        result = attempt / "results.json"
        if result.is_file():
            try:
                world = read_result(result)["topology"].get("world_size")
            except ResultError:
                world = None
        logs = [attempt / name for name in LOG_NAMES if (attempt / name).is_file()]
        for log in logs + sorted(attempt.glob("*.nccl.log")):
            frame = parse_log(log, world)
            unparsed += frame.attrs["unparsed"]
            if not frame.empty:
                frame["run_id"] = attempt.parent.name
                frames.append(frame)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
    out.attrs["unparsed"] = unparsed
    return out

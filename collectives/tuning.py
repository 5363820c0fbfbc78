"""NVRAR launch parameters per message size: a heuristic default, a measured table, and its JSON cache.

The best protocol, grid and chunk size depend on the message size, the GPU, the number of PEs and the
node shape, so a table is measured once per (GPU model, world size, GPUs per node, dtype) by
`tune()` (through `python -m collectives.bench --autotune ...`) and cached in
$STUDY_CACHE_DIR/nvrar-tuning.json (default ~/.cache/study). Sizes between measured ones take the
entry of the next larger measured size; sizes with no entry fall back to `default_params`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from study.results import atomic_write_text

PROTOCOLS = ("ll", "simple")
MAX_BLOCKS = 32
# Above this LL's doubled traffic is assumed to cost more than the flag round trip it saves; tune per machine.
LL_LIMIT_BYTES = 256 << 10


@dataclass(frozen=True)
class LaunchParams:
    protocol: str
    blocks: int
    threads: int
    chunk_bytes: int

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {self.protocol!r}")
        if not 1 <= self.blocks <= MAX_BLOCKS:
            raise ValueError(f"blocks: expected 1..{MAX_BLOCKS}, got {self.blocks}")
        if not (32 <= self.threads <= 1024 and self.threads % 32 == 0):
            raise ValueError(f"threads: expected a multiple of 32 in 32..1024, got {self.threads}")
        if self.chunk_bytes < 4:
            raise ValueError(f"chunk_bytes: expected at least 4, got {self.chunk_bytes}")


def default_params(size_bytes: int, gpus_per_node: int) -> LaunchParams:
    """One block per 32 KiB of a PE's slice (up to 32), LL for small messages, SIMPLE above."""
    slice_bytes = max(4, size_bytes // max(1, gpus_per_node))
    blocks = max(1, min(MAX_BLOCKS, slice_bytes // (32 << 10)))
    protocol = "ll" if size_bytes <= LL_LIMIT_BYTES else "simple"
    return LaunchParams(protocol, blocks, 512, 16 << 10 if protocol == "ll" else 64 << 10)


def candidates() -> list[LaunchParams]:
    """The grid `tune` searches: both protocols, 1-32 blocks, two chunk sizes, 512 threads."""
    return [
        LaunchParams(protocol, blocks, 512, chunk)
        for protocol in PROTOCOLS
        for blocks in (1, 2, 4, 8, 16, 32)
        for chunk in (16 << 10, 64 << 10)
    ]


def cache_path() -> Path:
    root = Path(os.environ.get("STUDY_CACHE_DIR") or Path.home() / ".cache" / "study")
    return root / "nvrar-tuning.json"


def table_key(gpu: str, world_size: int, gpus_per_node: int, dtype: str) -> str:
    return f"{gpu}|world={world_size}|gpus_per_node={gpus_per_node}|{dtype}"


class TuningTable:
    """Measured launch parameters for one (GPU, world size, GPUs per node, dtype), by message size."""

    def __init__(self, key: str, gpus_per_node: int, entries: dict[int, LaunchParams] | None = None) -> None:
        self.key = key
        self.gpus_per_node = gpus_per_node
        self.entries = dict(sorted((entries or {}).items()))

    @classmethod
    def load(cls, key: str, gpus_per_node: int, path: Path | None = None) -> TuningTable:
        """The cached table for `key`, or an empty one (defaults) when the cache lacks it or is unreadable."""
        path = path or cache_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            raw = data.get(key, {})
            entries = {int(size): LaunchParams(**params) for size, params in raw.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            entries = {}
        return cls(key, gpus_per_node, entries)

    def params(self, size_bytes: int) -> LaunchParams:
        for size, params in self.entries.items():
            if size >= size_bytes:
                return params
        return default_params(size_bytes, self.gpus_per_node)

    def save(self, path: Path | None = None) -> Path:
        """Merge this table into the cache file (atomically: temp file + rename)."""
        path = path or cache_path()
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        data[self.key] = {str(size): asdict(p) for size, p in self.entries.items()}
        return atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))


def tune(
    sizes: Iterable[int],
    time_call_us: Callable[[int, LaunchParams], float],
    table: TuningTable,
    grid: list[LaunchParams] | None = None,
) -> TuningTable:
    """Fill `table` with the fastest candidate per size.

    `time_call_us(size, params)` must be collective and return the same number on every rank (the
    maximum over ranks of the mean time per call), so that every rank picks the same parameters.
    """
    for size in sizes:
        best: tuple[float, LaunchParams] | None = None
        for params in grid or candidates():
            t = time_call_us(size, params)
            if best is None or t < best[0]:
                best = (t, params)
        if best is not None:
            table.entries[size] = best[1]
    table.entries = dict(sorted(table.entries.items()))
    return table

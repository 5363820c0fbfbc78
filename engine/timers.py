"""Nested timers (CUDA events on GPUs, the host clock on CPUs) and their Hatchet literal tree.

A region records two marks and nothing else; the elapsed times are read once, after the run has
synchronised, so timing adds no host-device synchronisation to the timed work.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch

Totals = dict[str, tuple[str, float, int]]  # "a/b/c" -> (type, total ms, calls)


class Timers:
    """Regions keyed by their path of names; `mark()` gives a bare time stamp (step boundaries)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.stack: list[str] = []
        self.spans: dict[str, tuple[str, list[tuple[Any, Any]]]] = {}

    def mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def elapsed_ms(self, start: Any, end: Any) -> float:
        if self.cuda:
            return float(start.elapsed_time(end))
        return (end - start) * 1000.0

    @contextlib.contextmanager
    def region(self, name: str, kind: str = "region") -> Iterator[None]:
        self.stack.append(name)
        path = "/".join(self.stack)
        start = self.mark()
        try:
            yield
        finally:
            end = self.mark()
            self.stack.pop()
            self.spans.setdefault(path, (kind, []))[1].append((start, end))

    def totals(self) -> Totals:
        """Total ms and calls per region; call after the device has finished (torch.cuda.synchronize)."""
        return {
            path: (kind, sum(self.elapsed_ms(a, b) for a, b in spans), len(spans))
            for path, (kind, spans) in self.spans.items()
        }


def literal_tree(per_rank: Sequence[Totals]) -> list[dict[str, Any]]:
    """Hatchet literal roots from every rank's totals: `time (inc)` is rank 0's (or the maximum where rank
    0 has no such region, e.g. the LM head under pipeline parallelism), with max and mean over ranks."""
    paths: list[str] = []
    for totals in per_rank:
        paths.extend(p for p in totals if p not in paths)
    nodes: dict[str, dict[str, Any]] = {}
    roots: list[dict[str, Any]] = []
    for path in sorted(paths, key=lambda p: (p.count("/"), paths.index(p))):
        values = [t[path] for t in per_rank if path in t]
        times = [v[1] for v in values]
        own = per_rank[0].get(path)
        node = {
            "frame": {"name": path.rsplit("/", 1)[-1], "type": values[0][0]},
            "metrics": {
                "time (inc)": own[1] if own else max(times),
                "time": 0.0,
                "calls": own[2] if own else values[0][2],
                "time (max)": max(times),
                "time (mean)": sum(times) / len(times),
                "ranks": len(values),
            },
            "children": [],
        }
        nodes[path] = node
        parent = path.rsplit("/", 1)[0] if "/" in path else None
        (nodes[parent]["children"] if parent in nodes else roots).append(node)
    for node in nodes.values():
        inner = sum(c["metrics"]["time (inc)"] for c in node["children"])
        node["metrics"]["time"] = max(0.0, node["metrics"]["time (inc)"] - inner)
    return roots

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

from study.results import timer_node

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
    known = set(paths)
    children: dict[str | None, list[str]] = {}
    # Shallow regions first, each level in the order the ranks first timed them; a region whose parent
    # was never timed is a root.
    for path in sorted(paths, key=lambda p: (p.count("/"), paths.index(p))):
        parent = path.rsplit("/", 1)[0] if "/" in path else None
        children.setdefault(parent if parent in known else None, []).append(path)

    def node(path: str) -> dict[str, Any]:
        values = [t[path] for t in per_rank if path in t]
        times = [v[1] for v in values]
        own = per_rank[0].get(path)
        return timer_node(
            path.rsplit("/", 1)[-1],
            own[1] if own else max(times),
            [node(child) for child in children.get(path, [])],
            type=values[0][0],
            calls=own[2] if own else values[0][2],
            metrics={"time (max)": max(times), "time (mean)": sum(times) / len(times), "ranks": len(values)},
        )

    return [node(root) for root in children.get(None, [])]

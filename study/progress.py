"""Live progress of a workspace's runs: a bar of finished runs and a table of run states (rich)."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ORDER = ("planned", "pending", "running", "ok", "failed")
STYLES = {"planned": "dim", "pending": "yellow", "running": "cyan", "ok": "green", "failed": "red"}


def state_table(counts: dict[str, int]) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for name in ORDER:
        table.add_column(name, justify="right", style=STYLES[name])
    table.add_row(*(str(counts.get(name, 0)) for name in ORDER))
    return table


class RunProgress:
    """Context manager; call update(counts) after each refresh. Off a terminal it prints a line per change."""

    def __init__(self, total: int, title: str, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.total = total
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.task = self.bar.add_task(title, total=total)
        self.live: Live | None = None
        self._last: tuple[int, ...] | None = None

    def __enter__(self) -> RunProgress:
        if self.console.is_terminal:
            self.live = Live(Group(self.bar, state_table({})), console=self.console, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def update(self, counts: dict[str, int]) -> None:
        done = counts.get("ok", 0) + counts.get("failed", 0)
        self.bar.update(self.task, completed=done)
        if self.live is not None:
            self.live.update(Group(self.bar, state_table(counts)))
            return
        key = tuple(counts.get(n, 0) for n in ORDER)
        if key != self._last:
            self._last = key
            words = ", ".join(f"{counts.get(n, 0)} {n}" for n in ORDER)
            print(f"{done}/{self.total} runs finished: {words}", file=sys.stderr, flush=True)

"""`study model figures`: every figure of experiments/paper/ as predictions (filled in next)."""

from __future__ import annotations

HANDLERS: dict = {}


def add_arguments(sub) -> None:
    return None

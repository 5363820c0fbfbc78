"""Sizes and durations as people write them in experiment files (`64KiB`, `2MiB`, `1MB`, `00:20:00`).

Binary (KiB, MiB, GiB) and decimal (KB, MB, GB) prefixes are both accepted and never confused: a bare
`K`, `M` or `G` is refused because it is ambiguous.
"""

from __future__ import annotations

import math
import re

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_size(value: object) -> int:
    """Bytes from an int or a string such as `64KiB`, `2MiB`, `1MB`; ValueError says what was expected."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 64KiB, 2MiB or 1MB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a size of 0 bytes or more, got {value}")
        return _bounded_size(value)
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return _bounded_size(int(value))
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m and m.group(2).lower() in _SIZE_UNITS:
            number = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
            if number.is_integer():
                return _bounded_size(int(number))
            raise ValueError(f"size {value!r} is not a whole number of bytes")
    raise ValueError(
        f"expected a size such as 64KiB, 2MiB or 1MB (units B, KiB, MiB, GiB, KB, MB, GB), got {value!r}"
    )


MAX_SIZE_BYTES = 1 << 60  # 1 EiB: more than any machine holds, so a larger size is a typo


def _bounded_size(size: int) -> int:
    if size > MAX_SIZE_BYTES:
        raise ValueError(f"size {size:.3g} bytes is larger than 1 EiB ({MAX_SIZE_BYTES} bytes)")
    return size


def human_size(n: float | None) -> str:
    """`128 KiB`, `1.5 MiB`: a size as prose and figure ticks state it (rounded, powers of two), where
    format_size spells it exactly."""
    if n is None or not math.isfinite(n):
        return "n/a"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if abs(value - round(value)) < 0.05 else f"{value:.1f} {unit}"
    return f"{n:.0f} B"


def format_size(size_bytes: int) -> str:
    """The shortest exact binary spelling (`65536` -> `64KiB`), for tables and labels."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size_bytes >= factor and size_bytes % factor == 0:
            return f"{size_bytes // factor}{unit}"
    return f"{size_bytes}B"


MAX_DURATION_S = 366 * 86400  # no batch system grants one job more than a year


def parse_duration(value: object) -> int:
    """Seconds from an int, `HH:MM:SS`, `MM:SS`, Slurm's `D-HH:MM:SS`, or `1h30m` / `20m` / `90s`;
    at most a year (MAX_DURATION_S), so a typo cannot plan 10²⁰ node-hours."""
    seconds = _duration_seconds(value)
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{value!r} is {seconds / 86400:,.0f} days; a walltime is at most 366 days")
    return seconds


def _duration_seconds(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 00:20:00 or 20m, got {value!r}")
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, str):
        text = value.strip()
        days = 0
        if re.fullmatch(r"\d+-\d+(:\d+){0,2}", text):
            day_text, text = text.split("-", 1)
            days = int(day_text)
            text = text if text.count(":") == 2 else text + ":00" * (2 - text.count(":"))
        if re.fullmatch(r"\d+(:\d{1,2}){1,2}", text):
            parts = [int(p) for p in text.split(":")]
            if any(p >= 60 for p in parts[1:]):
                raise ValueError(f"minutes and seconds must be below 60 in {value!r}")
            while len(parts) < 3:
                parts.insert(0, 0)
            seconds = days * 86400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
            if seconds > 0:
                return seconds
        compact = text.replace(" ", "")
        if compact and _DURATION_PART_RE.sub("", compact) == "":
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART_RE.findall(compact))
            if seconds > 0 and float(seconds).is_integer():
                return int(seconds)
    raise ValueError(
        f"expected a positive duration such as 00:20:00, 1-00:00:00, 20m or 1h30m, got {value!r}"
    )


def format_walltime(seconds: int) -> str:
    """`HH:MM:SS` (hours may exceed 24), the spelling both Slurm and PBS accept."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"

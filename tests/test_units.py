"""Sizes and durations as written in experiment files."""

from __future__ import annotations

import pytest

from study.units import format_size, format_walltime, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64KiB", 65536),
        ("2MiB", 2 * 1024 * 1024),
        ("1MB", 1_000_000),
        ("1KB", 1000),
        ("1GiB", 1 << 30),
        ("512", 512),
        (4096, 4096),
        ("8B", 8),
        ("1.5KiB", 1536),
        ("64kib", 65536),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["64K", "2M", "lots", "", "-1", True, [1], "1.3B", -5])
def test_parse_size_refuses_ambiguous_or_bad(bad):
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)


def test_format_size_round_trips():
    for size in (1, 1000, 1024, 65536, 3 << 20, 5 << 30):
        assert parse_size(format_size(size)) == size
    assert format_size(65536) == "64KiB"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:20:00", 1200),
        ("20:00", 1200),
        ("1-00:00:00", 86400),
        ("2-1", 2 * 86400 + 3600),
        ("20m", 1200),
        ("1h30m", 5400),
        ("90s", 90),
        (600, 600),
        ("36:00:00", 36 * 3600),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "00:61:00", 0, -5, "", True, "10x"])
def test_parse_duration_refuses(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_walltime_allows_more_than_a_day():
    assert format_walltime(1200) == "00:20:00"
    assert format_walltime(100 * 3600 + 61) == "100:01:01"


def test_human_size_rounds_and_format_size_is_exact():
    from study.units import human_size

    assert [human_size(n) for n in (512, 1024, 1536, 131072, 3 << 30, float("nan"), None)] == [
        "512 B",
        "1 KiB",
        "1.5 KiB",
        "128 KiB",
        "3 GiB",
        "n/a",
        "n/a",
    ]
    assert format_size(1536) == "1536B" and format_size(131072) == "128KiB"

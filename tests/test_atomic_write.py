"""The one atomic writer every results, table, figure and cache file goes through."""

from __future__ import annotations

import pytest

from study.results import atomic_write, atomic_write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "dataset.csv"
    atomic_write_text(target, "old\n")

    def half_then_fail(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset.csv"]


def test_written_files_get_the_mode_a_plain_open_gives(tmp_path):
    # mkstemp alone would leave 0o600: figures and tables must be readable by the project's group.
    plain = tmp_path / "plain"
    plain.write_text("x")
    written = atomic_write(tmp_path / "fig.png", lambda tmp: open(tmp, "wb").close())
    assert written.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777

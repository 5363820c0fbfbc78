"""Writing a rendered workspace's files: each atomically (a temporary file beside it, then a rename), an
unchanged file left alone (same bytes, same mtime), so a re-render touches only what changed.

Plain os calls, not file objects: a render writes or compares tens of thousands of small files. Every
other atomic write of the project (results, datasets, figures, reports) goes through
study.results.atomic_write (mkstemp names, a mode from the umask), which a few files a second afford.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_files(ws: Path, files: dict[str, str]) -> None:
    new_dirs: set[str] = set()  # folders this call created: their files cannot exist yet
    old_dirs: set[str] = set()
    root = str(ws)
    for rel, text in files.items():
        path = f"{root}/{rel}"
        parent = path.rsplit("/", 1)[0]
        if parent not in new_dirs and parent not in old_dirs:
            try:
                os.mkdir(parent)
                new_dirs.add(parent)
            except FileExistsError:
                old_dirs.add(parent)
            except FileNotFoundError:
                os.makedirs(parent)
                new_dirs.add(parent)
        mode = 0o755 if rel.endswith(".sh") else 0o644
        write_if_changed(path, text, mode=mode, parent_exists=True, new=parent in new_dirs)


def write_if_changed(
    path: str | Path,
    text: str,
    mode: int = 0o644,
    sync: bool = False,
    parent_exists: bool = False,
    new: bool = False,
) -> None:
    """Temp file in the same folder + rename; an unchanged file is left alone (same bytes, same mtime).

    Plain os calls, not file objects: a render writes or compares tens of thousands of small files.
    `new` says the folder was just created, so there is nothing to compare with.
    """
    data = text.encode()
    path = str(path)
    if not new:
        try:
            if _read_up_to(path, len(data) + 1) == data:
                return
        except FileNotFoundError:
            if not parent_exists:
                os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_up_to(path: str, size: int) -> bytes:
    """At most `size` bytes of `path` (all of it if shorter): enough to tell whether it equals a text."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks, left = [], size
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)

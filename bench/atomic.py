"""Atomic file replacement: a reader, a second writer or a crash sees the old file or the new one.

Every file the bench writes that something later trusts (build.json, run.json, summary.json,
failures.npz, reports, cached reference logits, the compiled emulator hook) goes through
``atomic_open``: the data is written to a hidden sibling, flushed to disk, renamed over the
target, and the rename itself is made durable by syncing the directory.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open ``path`` for writing (``"w"`` text, ``"wb"`` bytes); it appears only on a clean exit.

    The temporary name carries the pid and a random suffix, so concurrent writers of the same
    target never share a temporary file; on an exception the temporary file is removed and the
    target is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    try:
        with open(tmp, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def fsync_dir(path: str | Path) -> None:
    """Persist a rename or a new file in ``path``; harmless where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

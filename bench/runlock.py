"""The lock on a run folder: one writer at a time, released by the operating system when it dies.

Why a lock: two writers of one run (two ``--resume`` started at once, or a resume while the run
is still streaming) interleave their rows, and the run can then be neither resumed nor reported.
Why ``flock`` on a file in the run folder: the kernel drops the lock when the holder's process
ends for any reason (Ctrl-C, SIGKILL, a crash), so a lock can never go stale and nothing has to
be cleaned up by hand. The file is never deleted (deleting a lock file races with its next
taker); while held it names the holder (pid, host, start time) so the refused writer can say who.

Where ``fcntl`` does not exist (Windows) the lock is a no-op, like the build directory's lock.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from bench.errors import RunError
from bench.results import utc_now

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: The lock file inside a run folder.
LOCK_FILE = "run.lock"
#: How long a refused writer waits for the holder's name (written just after it took the lock).
HOLDER_WAIT_S = 1.0


class RunLocked(RunError):
    """Another live process writes this run; the message names it (pid, host, start time)."""


class RunLock:
    """An exclusive, non-blocking lock on one run folder, held until ``release()``."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise RunLocked(f"run {Path(run_dir).name} is being written by {holder}: wait for that run "
                                "to end (or stop it), then --resume it") from None
            except OSError:
                os.close(fd)   # e.g. a file system without locks: the caller reports the OSError
                raise
        self._fd = fd
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": utc_now()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record + b"\n", 0)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Clear the holder record and unlock (closing the descriptor is what unlocks)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass  # a full or read-only disk must not keep the lock: closing still releases it
        os.close(fd)

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    """``pid 1234 on host lab-pc since 2026-01-01T12:00:00Z``, from the holder's record.

    The holder writes its record just after it takes the lock, so a writer refused in that
    instant waits a moment (``HOLDER_WAIT_S``) for the name instead of reporting nobody.
    """
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        try:
            rec = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
        except (OSError, ValueError):
            rec = {}
        if isinstance(rec, dict) and "pid" in rec:
            return f"pid {rec.get('pid')} on host {rec.get('host')} since {rec.get('started')}"
        if time.monotonic() >= deadline:
            return "another process (it has not written its name yet)"
        time.sleep(0.02)

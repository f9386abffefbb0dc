"""A one-line progress bar on stderr with live accuracy and throughput, without a dependency.

Why stderr: stdout carries the summary a script may parse; the bar must not mix into it. When
stderr is not a terminal (CI logs, nightly), a carriage-return bar would turn into thousands of
lines, so it prints a plain line at most every ``log_every_s`` seconds instead.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _fmt_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    def __init__(self, total: int, done: int = 0, correct: int = 0, mismatches: int = 0,
                 stream: TextIO | None = None, width: int = 24, min_interval_s: float = 0.1,
                 log_every_s: float = 10.0, label: str = "", labeled: bool = True) -> None:
        self.total = total
        self.labeled = labeled      # without labels there is no accuracy to show, only mismatches
        self.done = done
        self.correct = correct
        self.mismatches = mismatches
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.label = label
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._interval = min_interval_s if self._tty else log_every_s
        self._start = time.monotonic()
        self._start_done = done
        self._last = 0.0
        self._drawn = False

    def update(self, correct: bool, mismatch: bool = False) -> None:
        self.done += 1
        self.correct += int(correct)
        self.mismatches += int(mismatch)
        now = time.monotonic()
        if now - self._last >= self._interval or self.done >= self.total:
            self._last = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        rate = (self.done - self._start_done) / elapsed
        frac = self.done / self.total if self.total else 1.0
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        acc = f" acc {100.0 * self.correct / self.done if self.done else 0.0:.2f}%" if self.labeled else ""
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        mm = f" mism {self.mismatches}" if self.mismatches else ""
        label = f"{self.label} " if self.label else ""
        return (f"{label}[{bar}] {self.done}/{self.total}{acc}{mm} "
                f"{rate:.1f} img/s eta {_fmt_eta(eta)}")

    def _draw(self, now: float) -> None:
        text = self.line(now)
        if self._tty:
            self.stream.write("\r" + text + "\x1b[K")
            self._drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line so later messages start on their own line."""
        if self._tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

"""A fault-injecting serial transport: drops, corrupts and delays bytes in both directions.

Why it exists: a nightly bench talks to boards through USB-UART bridges, long cables and
emulators on loaded machines. The retry logic of ``bench.protocol.BenchClient`` and the run
loop must turn a lossy link into a complete, correct run - and the only way to know they do is
to run them over a link that is lossy on purpose. ``potnn-bench run --fault-rate R`` puts
:class:`FaultyPort` between the bench and the board (or the emulator).

Model: every byte, in either direction, is hit with probability ``rate`` by one fault chosen
uniformly among the enabled ``kinds``:

- ``drop``: the byte is lost;
- ``corrupt``: the byte is XORed with a random non-zero value;
- ``delay``: the byte (and everything after it) arrives ``1 ms .. max_delay_s`` later.

A delay shorter than the firmware's inter-byte timeout (20 ms on the boards) is harmless by
design; a longer one cuts the frame, like a drop. The RNG is seeded, so a failing run can be
replayed byte for byte (given the same timing).

``byte_time_s`` paces the wire as a UART does (10 bits a byte at the board's baud rate), for a
link that has no pace of its own: the emulator hands bytes over at memory speed, several times
faster than the board's 115200 baud, which would make a fault's fixed-length delays and waits
look far costlier, against the byte time, than they are on a board. On hardware the UART paces
itself and ``byte_time_s`` is 0.

``disconnect_after`` simulates a port that disappears (a USB bridge unplugged): after that many
bytes in total, every read and write raises ``serial.SerialException``.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import serial

FAULT_KINDS = ("drop", "corrupt", "delay")


@dataclass
class FaultStats:
    """What the transport did: bytes carried and faults injected, per direction."""

    bytes_out: int = 0          # host -> board
    bytes_in: int = 0           # board -> host
    faults: Counter = field(default_factory=Counter)   # ("out"|"in", kind) -> count

    def to_dict(self) -> dict[str, int]:
        d = {"bytes_out": self.bytes_out, "bytes_in": self.bytes_in}
        for (direction, kind), n in sorted(self.faults.items()):
            d[f"{kind}_{direction}"] = n
        return d


class FaultyPort:
    """Wraps a pyserial-like port (``write``, ``read``, ``timeout``, ``in_waiting``,
    ``reset_input_buffer``) and injects faults; see the module docstring."""

    def __init__(self, inner: Any, rate: float, seed: int | None = None,
                 kinds: tuple[str, ...] = FAULT_KINDS, max_delay_s: float = 0.015,
                 disconnect_after: int | None = None, byte_time_s: float = 0.0):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, not {rate}")
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown or not kinds:
            raise ValueError(f"fault kinds must be among {', '.join(FAULT_KINDS)}")
        self.inner = inner
        self.rate = rate
        self.kinds = tuple(kinds)
        self.max_delay_s = max_delay_s
        self.disconnect_after = disconnect_after
        self.byte_time_s = byte_time_s
        self.rng = random.Random(seed)
        self.stats = FaultStats()
        self._held = bytearray()        # received bytes not yet delivered (a delay in progress)
        self._release_at = 0.0
        self._gone = False

    # ------------------------------------------------------------------ pyserial surface
    @property
    def timeout(self) -> float | None:
        return self.inner.timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self.inner.timeout = value

    @property
    def in_waiting(self) -> int:
        ready = len(self._held) if time.monotonic() >= self._release_at else 0
        try:
            return ready + int(getattr(self.inner, "in_waiting", 0) or 0)
        except Exception:
            return ready

    def reset_input_buffer(self) -> None:
        self._held.clear()
        self._release_at = 0.0
        reset = getattr(self.inner, "reset_input_buffer", None)
        if callable(reset):
            reset()

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()

    # ------------------------------------------------------------------ faults
    def _fault(self, direction: str) -> str | None:
        """Count one byte going `direction` ("in" or "out") and draw its fault (None: passed as is)."""
        if direction == "in":
            self.stats.bytes_in += 1
        else:
            self.stats.bytes_out += 1
        if not (self.rate and self.rng.random() < self.rate):
            return None
        kind = self.rng.choice(self.kinds)
        self.stats.faults[direction, kind] += 1
        return kind

    def _carry(self, direction: str, byte: int) -> tuple[int | None, bool]:
        """One byte through the faulty wire: (the byte as it arrives, None when dropped; whether
        it is delayed). A delayed byte is otherwise intact."""
        kind = self._fault(direction)
        if kind == "drop":
            return None, False
        if kind == "corrupt":
            return byte ^ self.rng.randrange(1, 256), False
        return byte, kind == "delay"

    def _check_gone(self, more: int) -> None:
        if self._gone:
            raise serial.SerialException("port disappeared (fault injection: disconnected)")
        if self.disconnect_after is not None and \
                self.stats.bytes_in + self.stats.bytes_out + more > self.disconnect_after:
            self._gone = True
            raise serial.SerialException("port disappeared (fault injection: disconnected)")

    def _pace(self, n: int) -> None:
        """``n`` bytes on the wire take their time (see ``byte_time_s``)."""
        if self.byte_time_s and n:
            time.sleep(n * self.byte_time_s)

    def write(self, data: bytes) -> int:
        self._check_gone(len(data))
        self._pace(len(data))
        chunk = bytearray()
        for byte in bytes(data):
            sent, delayed = self._carry("out", byte)
            if sent is None:
                continue
            if delayed:
                if chunk:
                    self.inner.write(bytes(chunk))
                    chunk.clear()
                time.sleep(self.rng.uniform(0.001, self.max_delay_s))
            chunk.append(sent)
        if chunk:
            self.inner.write(bytes(chunk))
        return len(data)

    def read(self, size: int = 1) -> bytes:
        self._check_gone(0)
        if self._held:
            wait = self._release_at - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, self.inner.timeout if self.inner.timeout is not None else wait))
                if time.monotonic() < self._release_at:
                    return b""
            out = bytes(self._held[:size])
            del self._held[:size]
            return out
        data = self.inner.read(size)
        self._pace(len(data))
        out = bytearray()
        for i, byte in enumerate(data):
            got, delayed = self._carry("in", byte)
            if got is None:
                continue
            if delayed:
                # This byte and the rest of the chunk arrive later; faults of the rest are
                # decided now, so the stream stays reproducible.
                rest = bytearray([got])
                for later in data[i + 1:]:
                    kept, _ = self._carry("in", later)
                    if kept is not None:
                        rest.append(kept)
                self._held += rest
                self._release_at = time.monotonic() + self.rng.uniform(0.001, self.max_delay_s)
                break
            out.append(got)
        return bytes(out)

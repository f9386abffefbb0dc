"""The interface every backend offers the bench: URL, faults, counts, and a serial wrapper.

Why a small shared base: ``bench.run`` must not care whether Unicorn or Renode runs the ELF;
it opens ``emu.url`` like a board's serial port, reads ``emu.last_inference()`` after each
reply, and turns ``emu.fault`` / :class:`EmulatorFault` into a clear error.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

import serial
from serial.urlhandler.protocol_socket import Serial as _SocketSerial

from .faults import EmulatorFault, Fault


@dataclass(frozen=True)
class EmulatorStats:
    """Counters of one emulator session (cumulative since reset).

    ``cycles`` are modelled core clocks (see ``bench.emulator.cycles``); ``instr_per_s`` is the
    emulation speed on this host; ``stack_bytes`` the deepest stack seen (top of stack minus
    the lowest stack pointer); ``stack_limit`` the end of static RAM the stack may not cross.
    """

    backend: str
    instructions: int
    cycles: int
    blocks: int
    wall_s: float
    instr_per_s: float
    hclk_hz: int
    wait_states: int
    stack_bytes: int | None
    stack_top: int | None
    stack_limit: int | None
    uart_tx_bytes: int
    uart_rx_bytes: int
    counter_reads: int
    accelerated: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Emulator:
    """Base class: context manager, fault checking and the serial wrapper.

    Subclasses set ``backend``, ``url`` and ``fault`` and implement ``stats``,
    ``last_inference`` and ``close``.
    """

    backend = "none"
    url: str = ""

    def __init__(self) -> None:
        self.fault: Fault | None = None
        self._done = threading.Event()

    # -------------------------------------------------------------- to be provided
    @property
    def stats(self) -> EmulatorStats:  # pragma: no cover - abstract
        raise NotImplementedError

    def last_inference(self) -> tuple[int, int] | tuple[None, None]:  # pragma: no cover - abstract
        """(instructions, cycles) between the last two cycle-counter reads, or ``(None, None)``."""
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def last_layers(self) -> dict[str, tuple[int, int]] | None:
        """Per layer function of the model, (instructions, cycles) of the last inference; None without a
        cycle model (Renode) or before the second counter read."""
        return None

    def layer_stack(self) -> dict[str, int]:
        """Per layer function, the deepest stack seen while it ran, in bytes; empty without a profile."""
        return {}

    # -------------------------------------------------------------- shared
    @property
    def running(self) -> bool:
        """True while the emulated core can still run (not faulted, not closed)."""
        return not self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the emulated core stops (fault or close); True when it has."""
        return self._done.wait(timeout)

    def check(self) -> None:
        """Raise :class:`EmulatorFault` if the firmware has faulted or hung."""
        if self.fault is not None:
            raise EmulatorFault(self.fault)

    def open_serial(self, timeout: float | None = 5.0, **kwargs: Any) -> "EmulatorSerial":
        """A pyserial port on :attr:`url` whose reads raise :class:`EmulatorFault` on a fault.

        Plain ``serial.serial_for_url(emu.url)`` works too (the socket closes on a fault and
        pyserial raises ``SerialException``); this wrapper just says why.
        """
        return EmulatorSerial(self, self.url, timeout=timeout, **kwargs)

    def __enter__(self) -> "Emulator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EmulatorSerial(_SocketSerial):
    """pyserial socket port that turns a dead emulator into :class:`EmulatorFault`."""

    def __init__(self, emu: Emulator, url: str, **kwargs: Any):
        self._emu = emu
        try:
            super().__init__(url, **kwargs)
        except serial.SerialException:
            # the firmware may have faulted before the host connected (the port is then closed)
            emu.wait(0.5)
            emu.check()
            raise

    def read(self, size: int = 1) -> bytes:
        try:
            data = super().read(size)
        except serial.SerialException:
            self._emu.check()
            raise
        if len(data) < size:
            self._emu.check()
        return data

    def write(self, data: bytes) -> int | None:
        try:
            return super().write(data)
        except serial.SerialException:
            self._emu.check()
            raise

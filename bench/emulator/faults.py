"""What the emulator reports when the firmware does something a real chip would not survive.

Why a separate module: the bench (``bench.run``) and the tests catch :class:`EmulatorFault` and
print :class:`Fault` without importing Unicorn or Renode, and both backends produce the same
record, so a report reads the same whichever engine ran the ELF.

A fault stops the emulated core for good. The backend records it in ``emu.fault`` *before* it
closes the virtual serial port, so a host blocked in ``serial.read()`` wakes up at once (end of
stream) and can ask the emulator why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any


class FaultKind(str, Enum):
    """The kinds of fault; the string values appear in reports and results files."""

    #: A load from an address where the chip has nothing (outside flash, its alias, SRAM and the
    #: modelled peripherals).
    UNMAPPED_READ = "unmapped-read"
    #: A store to an address where the chip has nothing.
    UNMAPPED_WRITE = "unmapped-write"
    #: The program counter left flash/SRAM (a corrupted return address, a bad function pointer).
    UNMAPPED_FETCH = "unmapped-fetch"
    #: A store into flash (the chip ignores or faults it; firmware never means it).
    WRITE_TO_FLASH = "write-to-flash"
    #: The stack pointer went below the end of static RAM (.data/.bss): the stack now overwrites
    #: the model's buffers, or it left SRAM altogether. On hardware this gives wrong answers.
    STACK_OVERFLOW = "stack-overflow"
    #: Static data (.data + .bss) is larger than the chip's SRAM: the image cannot work at all
    #: (only possible with a build that skipped the RAM budget check).
    RAM_OVERFLOW = "ram-overflow"
    #: A word or half-word load/store at an address not a multiple of its size: QingKe V2A
    #: raises a misaligned-access exception, the Cortex-M0+ a HardFault.
    MISALIGNED = "misaligned-access"
    #: The core met an instruction it does not have (e.g. ``mul`` or x16..x31 on RV32EC).
    ILLEGAL_INSTRUCTION = "illegal-instruction"
    #: A peripheral register the emulator does not model was read or written; the firmware grew
    #: a dependency the model must learn before its results can be trusted.
    UNMODELLED_PERIPHERAL = "unmodelled-peripheral"
    #: A CPU exception or interrupt the firmware did not expect (the bench firmware uses none).
    CPU_EXCEPTION = "cpu-exception"
    #: No UART traffic for more instructions than the hang budget allows.
    HANG = "hang"
    #: Something broke inside the emulator itself (a bug here, not in the firmware).
    INTERNAL = "internal-error"


@dataclass(frozen=True)
class Fault:
    """One fault: what happened, where, and how far the run had come.

    ``pc`` is the address of the faulting (or spinning) instruction, ``addr`` the data address
    involved (None where there is none), ``symbol`` the ELF function containing ``pc`` as
    ``name+0xoff`` (None when the ELF has no symbol there).
    """

    kind: FaultKind
    pc: int | None
    addr: int | None = None
    symbol: str | None = None
    message: str = ""
    sp: int | None = None
    instructions: int | None = None
    cycles: int | None = None

    def __str__(self) -> str:
        where = f"pc=0x{self.pc:08x}" if self.pc is not None else "pc=?"
        if self.symbol:
            where += f" ({self.symbol})"
        if self.addr is not None:
            where += f" addr=0x{self.addr:08x}"
        if self.sp is not None:
            where += f" sp=0x{self.sp:08x}"
        text = f"{self.kind.value} at {where}"
        if self.message:
            text += f": {self.message}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for results files."""
        d = asdict(self)
        d["kind"] = self.kind.value
        return d


class EmulatorError(RuntimeError):
    """Base class of everything the emulator raises on purpose."""


class EmulatorFault(EmulatorError):
    """The emulated firmware faulted or hung; ``.fault`` holds the details."""

    def __init__(self, fault: Fault):
        super().__init__(str(fault))
        self.fault = fault


class EmulatorUnavailable(EmulatorError):
    """The requested backend cannot run here (e.g. ``renode`` not on PATH); message says why."""


class ElfLoadError(EmulatorError):
    """The ELF does not fit the board (wrong architecture, bytes outside flash, ...)."""

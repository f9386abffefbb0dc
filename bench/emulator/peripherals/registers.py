"""Register files, the bus that decodes addresses to them, and the strictness rule they share.

Why strict: the emulator has to give the firmware what a real chip gives it (ready bits that
come up, a UART that moves bytes, a SysTick that counts core cycles), but every register it
does *not* model raises :class:`UnmodelledAccess`, which stops the run with an
``unmodelled-peripheral`` fault naming the register. A firmware change that starts using, say,
a timer or the chip's unique ID is then noticed at once instead of silently reading zeros.

Each peripheral is a :class:`RegisterFile` of named 32-bit registers at fixed offsets; byte and
half-word accesses read or merge into the containing word (as the AHB/APB bridges do). Unknown
offsets fault. Subclasses give registers behaviour through ``on_read_<NAME>`` /
``on_write_<NAME>`` methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol


class UnmodelledAccess(Exception):
    """An access to a register (or peripheral) the emulator does not model."""

    def __init__(self, address: int, write: bool, size: int, value: int | None = None, detail: str = ""):
        what = "write" if write else "read"
        msg = f"{what} of {size} byte(s) at 0x{address:08x}"
        if write and value is not None:
            msg += f" (value 0x{value:x})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)
        self.address = address
        self.write = write
        self.size = size
        self.value = value


class MachineContext(Protocol):
    """What peripherals may ask of the running machine (implemented by the backend)."""

    def now_cycles(self) -> int:
        """Core clock cycles executed up to the current instruction."""

    def on_counter_read(self) -> None:
        """The cycle-counter register was read (the backend records inference windows)."""

    def set_wait_states(self, ws: int) -> None:
        """FLASH latency changed: the cycle model must recompute block costs."""

    def uart_activity(self) -> None:
        """The firmware moved a byte through the UART (resets the hang budget)."""

    def uart_tx(self, byte: int) -> None:
        """The firmware sent a byte to the host."""

    def uart_rx_pop(self) -> int | None:
        """Next byte from the host, or None when none is waiting."""

    def uart_rx_ready(self) -> bool:
        """Whether a host byte is waiting."""

    def uart_rx_wait(self, bounded: bool) -> bool:
        """Block until a host byte arrives (``bounded``: at most one wait slice); True when one did."""


@dataclass
class Reg:
    """One register: name, reset value, and the bits software can change."""

    name: str
    reset: int = 0
    writable: int = 0xFFFFFFFF
    value: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.value = self.reset


class RegisterFile:
    """A peripheral made of 32-bit registers at fixed offsets; unknown offsets fault."""

    name = "peripheral"

    def __init__(self, base: int, size: int, regs: dict[int, Reg], ctx: MachineContext, name: str | None = None):
        self.base = base
        self.size = size
        self.regs = regs
        self.ctx = ctx
        if name:
            self.name = name
        self._by_name = {r.name: r for r in regs.values()}

    def reg(self, name: str) -> Reg:
        return self._by_name[name]

    def read(self, offset: int, size: int) -> int:
        word = offset & ~3
        reg = self.regs.get(word)
        if reg is None:
            raise UnmodelledAccess(self.base + offset, False, size, detail=f"no register modelled at {self.name}+0x{offset:x}")
        hook: Callable[[], int] | None = getattr(self, f"on_read_{reg.name}", None)
        value = hook() if hook is not None else reg.value
        shift = (offset & 3) * 8
        return (value >> shift) & ((1 << (8 * size)) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        word = offset & ~3
        reg = self.regs.get(word)
        if reg is None:
            raise UnmodelledAccess(self.base + offset, True, size, value, detail=f"no register modelled at {self.name}+0x{offset:x}")
        shift = (offset & 3) * 8
        mask = ((1 << (8 * size)) - 1) << shift
        full = (reg.value & ~mask) | ((value << shift) & mask)
        hook: Callable[[int], None] | None = getattr(self, f"on_write_{reg.name}", None)
        if hook is not None:
            hook(full & 0xFFFFFFFF)
        else:
            reg.value = (reg.value & ~reg.writable) | (full & reg.writable)

    def unmodelled(self, offset: int, write: bool, value: int | None, why: str) -> UnmodelledAccess:
        return UnmodelledAccess(self.base + offset, write, 4, value, detail=f"{self.name}: {why}")


def regs(*items: tuple[int, str] | tuple[int, str, int] | tuple[int, str, int, int]) -> dict[int, Reg]:
    """Offset -> :class:`Reg` from ``(offset, name[, reset[, writable]])`` tuples."""
    out: dict[int, Reg] = {}
    for it in items:
        off, name, *rest = it
        out[off] = Reg(name, *rest)
    return out


def ready_follows_enable(value: int, pairs: tuple[tuple[int, int], ...]) -> int:
    """``value`` with each ready bit equal to its enable bit (clock sources lock at once here)."""
    for enable, ready in pairs:
        value = (value | (1 << ready)) if value & (1 << enable) else (value & ~(1 << ready))
    return value


class GpioPort(RegisterFile):
    """A GPIO port: configuration accepted, set/reset registers act on the output register,
    the input register reads back the outputs (nothing drives the pins).

    Subclasses name the output register (``OUT``) and the pins (``PINS`` mask) and bind the
    ``on_*`` hooks of their register names to the methods below.
    """

    OUT = "ODR"
    PINS = 0xFFFF

    def read_input(self) -> int:
        return self.reg(self.OUT).value & self.PINS

    def write_set_reset(self, value: int) -> None:
        out = self.reg(self.OUT)
        out.value = (out.value | (value & 0xFFFF)) & ~((value >> 16) & 0xFFFF)

    def write_reset(self, value: int) -> None:
        self.reg(self.OUT).value &= ~(value & 0xFFFF)

    def read_zero(self) -> int:
        """Write-only registers read as 0."""
        return 0


class FlashInterface(RegisterFile):
    """A flash controller: its latency register feeds the cycle model, programming faults.

    Subclasses name the latency register (``LATENCY``) and its field (``LATENCY_BITS``), give
    the offset of the programming control register (``CONTROL``) and bind the ``on_write_*``
    hooks of their register names to the methods below.
    """

    LATENCY = "ACR"
    LATENCY_BITS = 0x1
    CONTROL = 0x14

    def write_latency(self, value: int) -> None:
        ws = value & self.LATENCY_BITS
        self.reg(self.LATENCY).value = ws
        self.ctx.set_wait_states(ws)

    def write_ignored(self, value: int) -> None:
        """Status flags cleared by writing: nothing latches in this model."""

    def write_control(self, value: int) -> None:
        raise self.unmodelled(self.CONTROL, True, value, "flash programming is not modelled")


class RomRegion(RegisterFile):
    """Read-only bytes outside flash the firmware reads (e.g. PY32F003 factory trim words).

    Declared by the board file (``[[memory.regions]]``); contents are a plausible pattern
    (``fill`` word, default 0x00001000: a mid-range 13-bit trim) since only the firmware's use
    of it matters, not the factory value. Writes fault.
    """

    def __init__(self, ctx: MachineContext, base: int, size: int, name: str, fill: int = 0x00001000):
        super().__init__(base, size, {}, ctx, name)
        self.data = bytearray(fill.to_bytes(4, "little") * ((size + 3) // 4))[:size]

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.data[offset:offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        raise UnmodelledAccess(self.base + offset, True, size, value, detail=f"{self.name} is read-only")


class Bus:
    """Address decoder over the modelled peripherals.

    It also watches the board's cycle-counter register: every read of it is reported to the
    machine (``ctx.on_counter_read``), which records the instructions and cycles between the
    last two reads — the firmware reads it just before and after ``potnn_predict``.
    """

    def __init__(self, peripherals: list[RegisterFile], ctx: MachineContext, counter_address: int | None = None):
        self.peripherals = sorted(peripherals, key=lambda p: p.base)
        self.ctx = ctx
        self.counter_address = counter_address

    def find(self, address: int) -> RegisterFile | None:
        for p in self.peripherals:
            if p.base <= address < p.base + p.size:
                return p
        return None

    def read(self, address: int, size: int) -> int:
        p = self.find(address)
        if p is None:
            raise UnmodelledAccess(address, False, size, detail="no peripheral modelled at this address")
        value = p.read(address - p.base, size)
        if address & ~3 == self.counter_address:
            self.ctx.on_counter_read()
        return value

    def write(self, address: int, size: int, value: int) -> None:
        p = self.find(address)
        if p is None:
            raise UnmodelledAccess(address, True, size, value, detail="no peripheral modelled at this address")
        p.write(address - p.base, size, value)

    def pages(self, page_size: int) -> list[int]:
        """Base addresses of the pages that must be MMIO-mapped to reach every peripheral."""
        pages: set[int] = set()
        for p in self.peripherals:
            a = p.base & ~(page_size - 1)
            while a < p.base + p.size:
                pages.add(a)
                a += page_size
        return sorted(pages)

    def by_name(self, name: str) -> RegisterFile | None:
        for p in self.peripherals:
            if p.name == name:
                return p
        return None

"""Register-level models of the peripherals the bench firmware touches, and nothing more.

Why so few, and why strict: the emulator has to give the firmware what a real chip gives it
(ready bits that come up, a UART that moves bytes, a SysTick that counts core cycles), but every
register it does *not* model raises :class:`UnmodelledAccess`, which stops the run with an
``unmodelled-peripheral`` fault naming the register. A firmware change that starts using, say, a
timer or the chip's unique ID is then noticed at once instead of silently reading zeros.

Each peripheral is a :class:`RegisterFile` of named 32-bit registers at fixed offsets; byte and
half-word accesses read or merge into the containing word (as the AHB/APB bridges do). Unknown
offsets fault. Subclasses give registers behaviour through ``on_read_<NAME>`` /
``on_write_<NAME>`` methods.

Register layouts and reset values: WCH CH32V003 Reference Manual (RCC ch. 3, FLASH ch. 16,
GPIO/AFIO ch. 7, USART ch. 12, SysTick/PFIC ch. 6); Puya PY32F003 Reference Manual (RCC ch. 6,
FLASH ch. 4, GPIO ch. 7, USART ch. 21) and ARM ARMv6-M Architecture Reference Manual (SysTick
B3.3, NVIC B3.4, SCB B3.2).
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
        """A cycle-counter register was read (the backend records inference windows)."""

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


def _regs(*items: tuple[int, str] | tuple[int, str, int] | tuple[int, str, int, int]) -> dict[int, Reg]:
    out: dict[int, Reg] = {}
    for it in items:
        off, name, *rest = it
        out[off] = Reg(name, *rest)
    return out


# ====================================================================================== USART
class Usart(RegisterFile):
    """STM32F1-style USART (CH32V003 USART1 and PY32F003 USART1 share the layout).

    TX is instantaneous (TXE and TC always set) and goes straight to the host socket. RX comes
    from the host. When the firmware polls the status register twice in a row with nothing
    received, the emulator blocks until host bytes arrive instead of running the polling loop
    millions of times. One exception keeps the firmware's partial-frame timeout working: if
    the firmware has read bytes since it last transmitted (a request is half received) and
    the host stays silent for one wait (``rx_wait_s``), the next ``ctx.idle_polls`` polls return
    "empty" without blocking, so a poll-counting timeout expires as it would on the chip.
    Interrupt-driven operation is not modelled: enabling a USART interrupt faults.
    """

    SR, DR, BRR, CR1, CR2, CR3, GTPR = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18
    TXE, TC, RXNE = 1 << 7, 1 << 6, 1 << 5
    #: CR1 interrupt enables: PEIE(8) TXEIE(7) TCIE(6) RXNEIE(5) IDLEIE(4)
    IRQ_ENABLES = 0x1F0

    def __init__(self, base: int, ctx: MachineContext, names: tuple[str, ...], name: str = "USART1"):
        sr, dr, brr, cr1, cr2, cr3, gtpr = names
        regs = _regs((0x00, sr, 0xC0), (0x04, dr), (0x08, brr), (0x0C, cr1), (0x10, cr2), (0x14, cr3), (0x18, gtpr))
        super().__init__(base, 0x400, regs, ctx, name)
        self._sr, self._dr, self._cr1 = sr, dr, cr1
        self._empty_polls = 0
        self._free_polls = 0
        self._partial = False
        self._last_rx = 0
        self.tx_bytes = 0
        self.rx_bytes = 0

    def _status(self) -> int:
        if self.ctx.uart_rx_ready():
            self._empty_polls = 0
            return self.TXE | self.TC | self.RXNE
        if self._free_polls > 0:
            self._free_polls -= 1
            return self.TXE | self.TC
        self._empty_polls += 1
        if self._empty_polls < 2:
            return self.TXE | self.TC
        if self.ctx.uart_rx_wait(bounded=self._partial):
            self._empty_polls = 0
            return self.TXE | self.TC | self.RXNE
        if self._partial:
            self._partial = False
            self._free_polls = getattr(self.ctx, "idle_polls", 0)
        return self.TXE | self.TC

    def _data_read(self) -> int:
        b = self.ctx.uart_rx_pop()
        self._empty_polls = 0
        if b is not None:
            self._partial = True
            self._last_rx = b
            self.rx_bytes += 1
            self.ctx.uart_activity()
        return self._last_rx

    def _data_write(self, value: int) -> None:
        self._empty_polls = 0
        self._partial = False
        self.tx_bytes += 1
        self.ctx.uart_tx(value & 0xFF)
        self.ctx.uart_activity()

    def _cr1_write(self, value: int) -> None:
        if value & self.IRQ_ENABLES:
            raise self.unmodelled(self.CR1, True, value, "USART interrupts are not modelled (the bench firmware polls)")
        self.reg(self._cr1).value = value

    def read(self, offset: int, size: int) -> int:
        word = offset & ~3
        if word == self.SR:
            return (self._status() >> ((offset & 3) * 8)) & ((1 << (8 * size)) - 1)
        if word == self.DR:
            return (self._data_read() >> ((offset & 3) * 8)) & ((1 << (8 * size)) - 1)
        return super().read(offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        word = offset & ~3
        if word == self.DR and (offset & 3) == 0:
            self._data_write(value)
        elif word == self.SR:
            pass  # clearing flags by writing 0 (rc_w0 bits): nothing latches in this model
        elif word == self.CR1 and (offset & 3) == 0 and size == 4:
            self._cr1_write(value)
        else:
            super().write(offset, size, value)


# ==================================================================================== CH32V003
class Ch32Rcc(RegisterFile):
    """CH32V003 RCC: ready bits follow their enables, SWS follows SW; gives HCLK for reports."""

    def __init__(self, ctx: MachineContext, base: int = 0x40021000):
        regs = _regs(
            (0x00, "CTLR", 0x00000083), (0x04, "CFGR0", 0x00000020), (0x08, "INTR"),
            (0x0C, "APB2PRSTR"), (0x10, "APB1PRSTR"), (0x14, "AHBPCENR", 0x00000014),
            (0x18, "APB2PCENR"), (0x1C, "APB1PCENR"), (0x24, "RSTSCKR", 0x0C000000),
        )
        super().__init__(base, 0x400, regs, ctx, "RCC")

    def on_read_CTLR(self) -> int:
        v = self.reg("CTLR").value & ~((1 << 1) | (1 << 17) | (1 << 25))
        if v & 1:
            v |= 1 << 1  # HSIRDY
        if v & (1 << 16):
            v |= 1 << 17  # HSERDY
        if v & (1 << 24):
            v |= 1 << 25  # PLLRDY
        return v

    def on_read_CFGR0(self) -> int:
        v = self.reg("CFGR0").value & ~0xC
        return v | ((v & 3) << 2)  # SWS = SW

    def on_write_INTR(self, value: int) -> None:
        self.reg("INTR").value = value & 0x00001F00  # keep only the enables; flags clear at once

    def hclk_hz(self) -> int:
        cfgr = self.reg("CFGR0").value
        sw = cfgr & 3
        if sw == 2:  # PLL: 2x its source (HSI 24 MHz or HSE, taken as 24 MHz)
            sysclk = 48_000_000
        else:
            sysclk = 24_000_000
        hpre = (cfgr >> 4) & 0xF
        div = (hpre + 1) if hpre < 8 else (2 << (hpre - 8))
        return sysclk // div


class Ch32Flash(RegisterFile):
    """CH32V003 flash interface: only ACTLR (latency) is modelled; it feeds the cycle model."""

    def __init__(self, ctx: MachineContext, base: int = 0x40022000):
        regs = _regs((0x00, "ACTLR", 0x00000000), (0x0C, "STATR", 0x00000000), (0x10, "CTLR", 0x00000080))
        super().__init__(base, 0x400, regs, ctx, "FLASH")

    def on_write_ACTLR(self, value: int) -> None:
        self.reg("ACTLR").value = value & 0x3
        self.ctx.set_wait_states(value & 0x3)

    def on_write_STATR(self, value: int) -> None:
        pass

    def on_write_CTLR(self, value: int) -> None:
        raise self.unmodelled(0x10, True, value, "flash programming is not modelled")


class Ch32Gpio(RegisterFile):
    """CH32V003 GPIO port: configuration accepted; BSHR/BCR act on OUTDR; INDR reads OUTDR."""

    def __init__(self, ctx: MachineContext, base: int, name: str):
        regs = _regs((0x00, "CFGLR", 0x44444444), (0x08, "INDR"), (0x0C, "OUTDR"), (0x10, "BSHR"),
                     (0x14, "BCR"), (0x18, "LCKR"))
        super().__init__(base, 0x400, regs, ctx, name)

    def on_read_INDR(self) -> int:
        return self.reg("OUTDR").value & 0xFF

    def on_write_BSHR(self, value: int) -> None:
        out = self.reg("OUTDR")
        out.value = (out.value | (value & 0xFFFF)) & ~((value >> 16) & 0xFFFF)

    def on_read_BSHR(self) -> int:
        return 0

    def on_write_BCR(self, value: int) -> None:
        out = self.reg("OUTDR")
        out.value &= ~(value & 0xFFFF)

    def on_read_BCR(self) -> int:
        return 0


class Ch32Afio(RegisterFile):
    """CH32V003 AFIO: remap and EXTI line selection, writes accepted."""

    def __init__(self, ctx: MachineContext, base: int = 0x40010000):
        super().__init__(base, 0x400, _regs((0x04, "PCFR1"), (0x08, "EXTICR")), ctx, "AFIO")


class Ch32SysTick(RegisterFile):
    """CH32V003 SysTick (QingKe V2): 32-bit up-counter clocked by HCLK or HCLK/8.

    Every read of CNT returns the modelled core-cycle count (divided as configured) and is
    reported to the backend, which records the instructions and cycles between the last two
    reads — the firmware reads it just before and after ``potnn_predict``.
    """

    STE, STIE, STCLK, STRE, SWIE = 1, 2, 4, 8, 1 << 31

    def __init__(self, ctx: MachineContext, base: int = 0xE000F000):
        regs = _regs((0x00, "CTLR"), (0x04, "SR"), (0x08, "CNT"), (0x10, "CMP"))
        super().__init__(base, 0x100, regs, ctx, "SysTick")
        self._base_value = 0
        self._base_cycles = 0
        self._running = False

    def _div(self) -> int:
        return 1 if self.reg("CTLR").value & self.STCLK else 8

    def _current(self) -> int:
        if not self._running:
            return self._base_value
        ticks = (self.ctx.now_cycles() - self._base_cycles) // self._div()
        v = self._base_value + ticks
        cmp_ = self.reg("CMP").value
        if self.reg("CTLR").value & self.STRE and cmp_:
            v %= cmp_ + 1
        return v & 0xFFFFFFFF

    def on_read_CNT(self) -> int:
        v = self._current()
        self.ctx.on_counter_read()
        return v

    def on_write_CNT(self, value: int) -> None:
        self._base_value = value
        self._base_cycles = self.ctx.now_cycles()

    def on_write_CTLR(self, value: int) -> None:
        if value & (self.STIE | self.SWIE):
            raise self.unmodelled(0x00, True, value, "SysTick interrupts are not modelled (the bench firmware polls)")
        cur = self._current()
        self.reg("CTLR").value = value
        self._running = bool(value & self.STE)
        self._base_value = cur  # re-base: the count continues from here at the new rate
        self._base_cycles = self.ctx.now_cycles()

    def on_read_SR(self) -> int:
        cmp_ = self.reg("CMP").value
        return 1 if cmp_ and self._current() >= cmp_ else 0

    def on_write_SR(self, value: int) -> None:
        pass


class Pfic(RegisterFile):
    """CH32V003 PFIC: enable/disable/priority registers accepted; nothing is ever delivered.

    The bench firmware polls; any enable written here is remembered only so that the stats can
    show it. (A firmware that waits for an interrupt would hang, and the hang is reported.)
    """

    def __init__(self, ctx: MachineContext, base: int = 0xE000E000):
        items: list[tuple] = [(0x40, "ITHRESDR"), (0x48, "CFGR"), (0x4C, "GISR")]
        for i in range(2):
            items += [(0x000 + 4 * i, f"ISR{i}"), (0x020 + 4 * i, f"IPR{i}"), (0x100 + 4 * i, f"IENR{i}"),
                      (0x180 + 4 * i, f"IRER{i}"), (0x200 + 4 * i, f"IPSR{i}"), (0x280 + 4 * i, f"IPRR{i}"),
                      (0x300 + 4 * i, f"IACTR{i}")]
        items += [(0x400 + 4 * i, f"IPRIOR{i}") for i in range(16)]
        items += [(0xD10, "SCTLR")]
        super().__init__(base, 0x1000, _regs(*items), ctx, "PFIC")

    def on_write_SCTLR(self, value: int) -> None:
        if value & (1 << 31):
            raise self.unmodelled(0xD10, True, value, "system reset request (SCTLR.SYSRESET) is not modelled")
        self.reg("SCTLR").value = value

    def on_write_CFGR(self, value: int) -> None:
        if (value >> 16) == 0xBEEF and value & 0x80:
            raise self.unmodelled(0x48, True, value, "system reset via PFIC_CFGR is not modelled")
        self.reg("CFGR").value = value


# ==================================================================================== PY32F003
class Py32Rcc(RegisterFile):
    """PY32F003 RCC: ready bits follow enables, SWS follows SW; HSI frequency from ICSCR."""

    HSI_FS = {0: 4_000_000, 1: 8_000_000, 2: 16_000_000, 3: 22_120_000, 4: 24_000_000}

    def __init__(self, ctx: MachineContext, base: int = 0x40021000):
        regs = _regs(
            (0x00, "CR", 0x00000100), (0x04, "ICSCR", 0x10FF0000), (0x08, "CFGR"), (0x0C, "PLLCFGR"),
            (0x10, "ECSCR"), (0x18, "CIER"), (0x1C, "CIFR"), (0x20, "CICR"), (0x24, "IOPRSTR"),
            (0x28, "AHBRSTR"), (0x2C, "APBRSTR1"), (0x30, "APBRSTR2"), (0x34, "IOPENR"),
            (0x38, "AHBENR", 0x00000100), (0x3C, "APBENR1"), (0x40, "APBENR2"), (0x54, "CCIPR"),
            (0x5C, "BDCR"), (0x60, "CSR"),
        )
        super().__init__(base, 0x400, regs, ctx, "RCC")

    def on_read_CR(self) -> int:
        v = self.reg("CR").value & ~((1 << 10) | (1 << 17) | (1 << 25))
        if v & (1 << 8):
            v |= 1 << 10  # HSIRDY
        if v & (1 << 16):
            v |= 1 << 17  # HSERDY
        if v & (1 << 24):
            v |= 1 << 25  # PLLRDY
        return v

    def on_read_CFGR(self) -> int:
        v = self.reg("CFGR").value & ~(7 << 3)
        return v | ((v & 7) << 3)

    def on_read_CSR(self) -> int:
        v = self.reg("CSR").value & ~2
        return v | ((v & 1) << 1)  # LSIRDY = LSION

    def on_write_CICR(self, value: int) -> None:
        pass

    def hclk_hz(self) -> int:
        hsi = self.HSI_FS.get((self.reg("ICSCR").value >> 13) & 7, 8_000_000)
        cfgr = self.reg("CFGR").value
        sw = cfgr & 7
        sysclk = hsi * 2 if sw == 2 else hsi
        hpre = (cfgr >> 8) & 0xF
        div = 1 if hpre < 8 else (2 << (hpre - 8)) if hpre < 12 else (64 << (hpre - 12))
        return sysclk // div


class Py32Flash(RegisterFile):
    """PY32F003 flash interface: ACR.LATENCY feeds the cycle model; programming faults."""

    def __init__(self, ctx: MachineContext, base: int = 0x40022000):
        regs = _regs((0x00, "ACR", 0x00000000), (0x10, "SR"), (0x14, "CR", 0xC0000000))
        super().__init__(base, 0x400, regs, ctx, "FLASH")

    def on_write_ACR(self, value: int) -> None:
        self.reg("ACR").value = value & 0x1
        self.ctx.set_wait_states(value & 0x1)

    def on_write_SR(self, value: int) -> None:
        pass

    def on_write_CR(self, value: int) -> None:
        raise self.unmodelled(0x14, True, value, "flash programming is not modelled")


class Py32Gpio(RegisterFile):
    """PY32F003 GPIO port (STM32F0-style): configuration accepted; BSRR/BRR act on ODR."""

    def __init__(self, ctx: MachineContext, base: int, name: str, moder_reset: int = 0xFFFFFFFF, pupdr_reset: int = 0):
        regs = _regs((0x00, "MODER", moder_reset), (0x04, "OTYPER"), (0x08, "OSPEEDR"), (0x0C, "PUPDR", pupdr_reset),
                     (0x10, "IDR"), (0x14, "ODR"), (0x18, "BSRR"), (0x1C, "LCKR"), (0x20, "AFRL"),
                     (0x24, "AFRH"), (0x28, "BRR"))
        super().__init__(base, 0x400, regs, ctx, name)

    def on_read_IDR(self) -> int:
        return self.reg("ODR").value & 0xFFFF

    def on_write_BSRR(self, value: int) -> None:
        odr = self.reg("ODR")
        odr.value = (odr.value | (value & 0xFFFF)) & ~((value >> 16) & 0xFFFF)

    def on_read_BSRR(self) -> int:
        return 0

    def on_write_BRR(self, value: int) -> None:
        self.reg("ODR").value &= ~(value & 0xFFFF)

    def on_read_BRR(self) -> int:
        return 0


class ArmSysTick(RegisterFile):
    """ARMv6-M SysTick at 0xE000E010: 24-bit down-counter from LOAD, core clock or HCLK/8.

    Reads of VAL return the modelled count and are reported to the backend like the
    CH32V003 counter (the firmware computes ``start - end`` modulo 2^24).
    """

    ENABLE, TICKINT, CLKSOURCE, COUNTFLAG = 1, 2, 4, 1 << 16

    def __init__(self, ctx: MachineContext, base: int = 0xE000E010):
        regs = _regs((0x00, "CSR"), (0x04, "RVR"), (0x08, "CVR"), (0x0C, "CALIB", 0x40000000))
        super().__init__(base, 0x10, regs, ctx, "SysTick")
        self._zero_at = 0  # cycle count when VAL was last cleared
        self._frozen: int | None = 0

    def _div(self) -> int:
        return 1 if self.reg("CSR").value & self.CLKSOURCE else 8

    def _ticks(self) -> int:
        return (self.ctx.now_cycles() - self._zero_at) // self._div()

    def _current(self) -> int:
        if self._frozen is not None:
            return self._frozen
        t = self._ticks()
        load = self.reg("RVR").value & 0xFFFFFF
        if t == 0 or load == 0:
            return 0
        return load - ((t - 1) % (load + 1))

    def on_read_CVR(self) -> int:
        v = self._current()
        self.ctx.on_counter_read()
        return v

    def on_write_CVR(self, value: int) -> None:
        self._zero_at = self.ctx.now_cycles()
        if self._frozen is not None:
            self._frozen = 0

    def on_write_RVR(self, value: int) -> None:
        self.reg("RVR").value = value & 0xFFFFFF

    def on_read_CSR(self) -> int:
        v = self.reg("CSR").value & 7
        load = self.reg("RVR").value & 0xFFFFFF
        if self._frozen is None and load and self._ticks() > load:
            v |= self.COUNTFLAG
        return v

    def on_write_CSR(self, value: int) -> None:
        if value & self.TICKINT:
            raise self.unmodelled(0x00, True, value, "SysTick interrupts are not modelled (the bench firmware polls)")
        cur = self._current()
        self.reg("CSR").value = value & 7
        if value & self.ENABLE:
            if self._frozen is not None:
                # resume counting from the frozen value
                load = self.reg("RVR").value & 0xFFFFFF
                t = 0 if cur == 0 else (load - cur + 1)
                self._zero_at = self.ctx.now_cycles() - t * self._div()
                self._frozen = None
        else:
            self._frozen = cur


class ArmScb(RegisterFile):
    """ARMv6-M SCB (0xE000ED00): identification and configuration registers accepted."""

    def __init__(self, ctx: MachineContext, base: int = 0xE000ED00):
        regs = _regs((0x00, "CPUID", 0x410CC601, 0), (0x04, "ICSR"), (0x08, "VTOR"), (0x0C, "AIRCR", 0xFA050000),
                     (0x10, "SCR"), (0x14, "CCR", 0x00000208, 0), (0x1C, "SHPR2"), (0x20, "SHPR3"), (0x24, "SHCSR"))
        super().__init__(base, 0x40, regs, ctx, "SCB")

    def on_write_AIRCR(self, value: int) -> None:
        if (value >> 16) == 0x05FA and value & 4:
            raise self.unmodelled(0x0C, True, value, "system reset request (AIRCR.SYSRESETREQ) is not modelled")

    def on_write_ICSR(self, value: int) -> None:
        if value & ((1 << 31) | (1 << 28) | (1 << 26)):
            raise self.unmodelled(0x04, True, value, "pending exceptions (NMI/PendSV/SysTick) are not modelled")


class ArmNvic(RegisterFile):
    """ARMv6-M NVIC (0xE000E100..): enables and priorities accepted; nothing is delivered."""

    def __init__(self, ctx: MachineContext, base: int = 0xE000E100):
        items: list[tuple] = [(0x000, "ISER"), (0x080, "ICER"), (0x100, "ISPR"), (0x180, "ICPR")]
        items += [(0x300 + 4 * i, f"IPR{i}") for i in range(8)]
        super().__init__(base, 0x320, _regs(*items), ctx, "NVIC")


class Bus:
    """Address decoder over the modelled peripherals (one per MMIO page set)."""

    def __init__(self, peripherals: list[RegisterFile]):
        self.peripherals = sorted(peripherals, key=lambda p: p.base)

    def find(self, address: int) -> RegisterFile | None:
        for p in self.peripherals:
            if p.base <= address < p.base + p.size:
                return p
        return None

    def read(self, address: int, size: int) -> int:
        p = self.find(address)
        if p is None:
            raise UnmodelledAccess(address, False, size, detail="no peripheral modelled at this address")
        return p.read(address - p.base, size)

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


class RomRegion(RegisterFile):
    """Read-only bytes outside flash the firmware reads (e.g. PY32F003 factory trim words).

    Declared by the board file (``[[emulator.regions]]``); contents default to a plausible
    pattern (``fill`` word, default 0x00001000: a mid-range 13-bit trim) since only the
    firmware's use of it matters, not the factory value. Writes fault.
    """

    def __init__(self, ctx: MachineContext, base: int, size: int, name: str, fill: int = 0x00001000):
        super().__init__(base, size, {}, ctx, name)
        self.data = bytearray(fill.to_bytes(4, "little") * ((size + 3) // 4))[:size]

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.data[offset:offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        raise UnmodelledAccess(self.base + offset, True, size, value, detail=f"{self.name} is read-only")


_Factory = Callable[[MachineContext, int], RegisterFile]

#: name -> (default base, model). Names are those of the board file's [emulator.peripherals].
MODELS: dict[str, dict[str, tuple[int, _Factory]]] = {
    "ch32v003": {
        "rcc": (0x40021000, lambda c, b: Ch32Rcc(c, b)),
        "flash": (0x40022000, lambda c, b: Ch32Flash(c, b)),
        "afio": (0x40010000, lambda c, b: Ch32Afio(c, b)),
        "gpioa": (0x40010800, lambda c, b: Ch32Gpio(c, b, "GPIOA")),
        "gpioc": (0x40011000, lambda c, b: Ch32Gpio(c, b, "GPIOC")),
        "gpiod": (0x40011400, lambda c, b: Ch32Gpio(c, b, "GPIOD")),
        "usart1": (0x40013800, lambda c, b: Usart(b, c, ("STATR", "DATAR", "BRR", "CTLR1", "CTLR2", "CTLR3", "GPR"))),
        "systick": (0xE000F000, lambda c, b: Ch32SysTick(c, b)),
        "pfic": (0xE000E000, lambda c, b: Pfic(c, b)),
    },
    "py32f003": {
        "rcc": (0x40021000, lambda c, b: Py32Rcc(c, b)),
        "flash": (0x40022000, lambda c, b: Py32Flash(c, b)),
        "gpioa": (0x50000000, lambda c, b: Py32Gpio(c, b, "GPIOA", 0xEBFFFFFF, 0x24000000)),
        "gpiob": (0x50000400, lambda c, b: Py32Gpio(c, b, "GPIOB")),
        "gpiof": (0x50001400, lambda c, b: Py32Gpio(c, b, "GPIOF")),
        "usart1": (0x40013800, lambda c, b: Usart(b, c, ("SR", "DR", "BRR", "CR1", "CR2", "CR3", "GTPR"))),
        "systick": (0xE000E010, lambda c, b: ArmSysTick(c, b)),
        "nvic": (0xE000E100, lambda c, b: ArmNvic(c, b)),
        "scb": (0xE000ED00, lambda c, b: ArmScb(c, b)),
    },
}


def build_peripherals(chip: str, ctx: MachineContext, selection: dict[str, int] | None = None,
                      regions: tuple[dict, ...] | list[dict] = ()) -> list[RegisterFile]:
    """The peripheral models for ``chip``: those the board names (at its bases) or all of them.

    Why the board decides: only what the firmware uses is mapped, so a stray access to a
    peripheral the firmware has no business touching faults instead of hitting a model.
    """
    models = MODELS[chip]
    out: list[RegisterFile] = []
    names = selection if selection is not None else {k: v[0] for k, v in models.items()}
    for name, base in names.items():
        if name not in models:
            raise ValueError(f"the board lists peripheral {name!r}, which the {chip} emulator does not model "
                             f"(modelled: {', '.join(models)})")
        out.append(models[name][1](ctx, int(base)))
    for r in regions:
        if "w" in str(r.get("access", "r")):
            raise ValueError(f"region {r.get('name')!r}: only read-only extra regions are supported")
        out.append(RomRegion(ctx, int(r["origin"]), int(r["size"]), str(r.get("name", "region")),
                             int(r.get("fill", 0x00001000))))
    return out

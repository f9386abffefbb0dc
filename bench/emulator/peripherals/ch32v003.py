"""The CH32V003 peripherals the bench firmware touches (and a few it might), register by register.

Register layouts and reset values: WCH CH32V003 Reference Manual (RCC ch. 3, FLASH ch. 16,
GPIO/AFIO ch. 7, USART ch. 12, SysTick/PFIC ch. 6). Base addresses come from the board file's
``[peripherals]`` table, never from here.
"""

from __future__ import annotations

from typing import Callable

from .registers import FlashInterface, GpioPort, MachineContext, RegisterFile, ready_follows_enable, regs
from .usart import Usart


class Ch32Rcc(RegisterFile):
    """CH32V003 RCC: ready bits follow their enables, SWS follows SW; gives HCLK for reports."""

    #: (enable bit, ready bit) in CTLR: HSION/HSIRDY, HSEON/HSERDY, PLLON/PLLRDY
    READY = ((0, 1), (16, 17), (24, 25))

    def __init__(self, ctx: MachineContext, base: int):
        table = regs(
            (0x00, "CTLR", 0x00000083), (0x04, "CFGR0", 0x00000020), (0x08, "INTR"),
            (0x0C, "APB2PRSTR"), (0x10, "APB1PRSTR"), (0x14, "AHBPCENR", 0x00000014),
            (0x18, "APB2PCENR"), (0x1C, "APB1PCENR"), (0x24, "RSTSCKR", 0x0C000000),
        )
        super().__init__(base, 0x400, table, ctx, "RCC")

    def on_read_CTLR(self) -> int:
        return ready_follows_enable(self.reg("CTLR").value, self.READY)

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


class Ch32Flash(FlashInterface):
    """CH32V003 flash interface: only ACTLR (latency) is modelled; it feeds the cycle model."""

    LATENCY, LATENCY_BITS, CONTROL = "ACTLR", 0x3, 0x10

    def __init__(self, ctx: MachineContext, base: int):
        table = regs((0x00, "ACTLR", 0x00000000), (0x0C, "STATR", 0x00000000), (0x10, "CTLR", 0x00000080))
        super().__init__(base, 0x400, table, ctx, "FLASH")

    on_write_ACTLR = FlashInterface.write_latency
    on_write_STATR = FlashInterface.write_ignored
    on_write_CTLR = FlashInterface.write_control


class Ch32Gpio(GpioPort):
    """CH32V003 GPIO port: configuration accepted; BSHR/BCR act on OUTDR; INDR reads OUTDR."""

    OUT, PINS = "OUTDR", 0xFF

    def __init__(self, ctx: MachineContext, base: int, name: str):
        table = regs((0x00, "CFGLR", 0x44444444), (0x08, "INDR"), (0x0C, "OUTDR"), (0x10, "BSHR"),
                     (0x14, "BCR"), (0x18, "LCKR"))
        super().__init__(base, 0x400, table, ctx, name)

    on_read_INDR = GpioPort.read_input
    on_write_BSHR = GpioPort.write_set_reset
    on_write_BCR = GpioPort.write_reset
    on_read_BSHR = on_read_BCR = GpioPort.read_zero


class Ch32Afio(RegisterFile):
    """CH32V003 AFIO: remap and EXTI line selection, writes accepted."""

    def __init__(self, ctx: MachineContext, base: int):
        super().__init__(base, 0x400, regs((0x04, "PCFR1"), (0x08, "EXTICR")), ctx, "AFIO")


class Ch32SysTick(RegisterFile):
    """CH32V003 SysTick (QingKe V2): 32-bit up-counter clocked by HCLK or HCLK/8.

    CNT reads return the modelled core-cycle count (divided as configured).
    """

    STE, STIE, STCLK, STRE, SWIE = 1, 2, 4, 8, 1 << 31

    def __init__(self, ctx: MachineContext, base: int):
        table = regs((0x00, "CTLR"), (0x04, "SR"), (0x08, "CNT"), (0x10, "CMP"))
        super().__init__(base, 0x100, table, ctx, "SysTick")
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
        return self._current()

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

    def __init__(self, ctx: MachineContext, base: int):
        items: list[tuple] = [(0x40, "ITHRESDR"), (0x48, "CFGR"), (0x4C, "GISR")]
        for i in range(2):
            items += [(0x000 + 4 * i, f"ISR{i}"), (0x020 + 4 * i, f"IPR{i}"), (0x100 + 4 * i, f"IENR{i}"),
                      (0x180 + 4 * i, f"IRER{i}"), (0x200 + 4 * i, f"IPSR{i}"), (0x280 + 4 * i, f"IPRR{i}"),
                      (0x300 + 4 * i, f"IACTR{i}")]
        items += [(0x400 + 4 * i, f"IPRIOR{i}") for i in range(16)]
        items += [(0xD10, "SCTLR")]
        super().__init__(base, 0x1000, regs(*items), ctx, "PFIC")

    def on_write_SCTLR(self, value: int) -> None:
        if value & (1 << 31):
            raise self.unmodelled(0xD10, True, value, "system reset request (SCTLR.SYSRESET) is not modelled")
        self.reg("SCTLR").value = value

    def on_write_CFGR(self, value: int) -> None:
        if (value >> 16) == 0xBEEF and value & 0x80:
            raise self.unmodelled(0x48, True, value, "system reset via PFIC_CFGR is not modelled")
        self.reg("CFGR").value = value


#: Board ``[peripherals]`` name -> model.
MODELS: dict[str, Callable[[MachineContext, int], RegisterFile]] = {
    "rcc": Ch32Rcc,
    "flash": Ch32Flash,
    "afio": Ch32Afio,
    "gpioa": lambda c, b: Ch32Gpio(c, b, "GPIOA"),
    "gpioc": lambda c, b: Ch32Gpio(c, b, "GPIOC"),
    "gpiod": lambda c, b: Ch32Gpio(c, b, "GPIOD"),
    "usart1": lambda c, b: Usart(b, c, ("STATR", "DATAR", "BRR", "CTLR1", "CTLR2", "CTLR3", "GPR")),
    "systick": Ch32SysTick,
    "pfic": Pfic,
}

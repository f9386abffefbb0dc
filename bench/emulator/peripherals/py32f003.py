"""The PY32F003 peripherals the bench firmware touches (and a few it might), register by register.

Register layouts and reset values: Puya PY32F003 Reference Manual (RCC ch. 6, FLASH ch. 4,
GPIO ch. 7, USART ch. 21) and ARM ARMv6-M Architecture Reference Manual (SysTick B3.3, NVIC
B3.4, SCB B3.2). Base addresses come from the board file's ``[peripherals]`` table, never from
here.
"""

from __future__ import annotations

from typing import Callable

from .registers import FlashInterface, GpioPort, MachineContext, RegisterFile, ready_follows_enable, regs
from .usart import Usart


class Py32Rcc(RegisterFile):
    """PY32F003 RCC: ready bits follow enables, SWS follows SW; HSI frequency from ICSCR."""

    HSI_FS = {0: 4_000_000, 1: 8_000_000, 2: 16_000_000, 3: 22_120_000, 4: 24_000_000}
    #: (enable bit, ready bit) in CR: HSION/HSIRDY, HSEON/HSERDY, PLLON/PLLRDY
    READY = ((8, 10), (16, 17), (24, 25))

    def __init__(self, ctx: MachineContext, base: int):
        table = regs(
            (0x00, "CR", 0x00000100), (0x04, "ICSCR", 0x10FF0000), (0x08, "CFGR"), (0x0C, "PLLCFGR"),
            (0x10, "ECSCR"), (0x18, "CIER"), (0x1C, "CIFR"), (0x20, "CICR"), (0x24, "IOPRSTR"),
            (0x28, "AHBRSTR"), (0x2C, "APBRSTR1"), (0x30, "APBRSTR2"), (0x34, "IOPENR"),
            (0x38, "AHBENR", 0x00000100), (0x3C, "APBENR1"), (0x40, "APBENR2"), (0x54, "CCIPR"),
            (0x5C, "BDCR"), (0x60, "CSR"),
        )
        super().__init__(base, 0x400, table, ctx, "RCC")

    def on_read_CR(self) -> int:
        return ready_follows_enable(self.reg("CR").value, self.READY)

    def on_read_CFGR(self) -> int:
        v = self.reg("CFGR").value & ~(7 << 3)
        return v | ((v & 7) << 3)

    def on_read_CSR(self) -> int:
        return ready_follows_enable(self.reg("CSR").value, ((0, 1),))  # LSIRDY = LSION

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


class Py32Flash(FlashInterface):
    """PY32F003 flash interface: ACR.LATENCY feeds the cycle model; programming faults."""

    LATENCY, LATENCY_BITS, CONTROL = "ACR", 0x1, 0x14

    def __init__(self, ctx: MachineContext, base: int):
        table = regs((0x00, "ACR", 0x00000000), (0x10, "SR"), (0x14, "CR", 0xC0000000))
        super().__init__(base, 0x400, table, ctx, "FLASH")

    on_write_ACR = FlashInterface.write_latency
    on_write_SR = FlashInterface.write_ignored
    on_write_CR = FlashInterface.write_control


class Py32Gpio(GpioPort):
    """PY32F003 GPIO port (STM32F0-style): configuration accepted; BSRR/BRR act on ODR."""

    OUT, PINS = "ODR", 0xFFFF

    def __init__(self, ctx: MachineContext, base: int, name: str, moder_reset: int = 0xFFFFFFFF, pupdr_reset: int = 0):
        table = regs((0x00, "MODER", moder_reset), (0x04, "OTYPER"), (0x08, "OSPEEDR"), (0x0C, "PUPDR", pupdr_reset),
                     (0x10, "IDR"), (0x14, "ODR"), (0x18, "BSRR"), (0x1C, "LCKR"), (0x20, "AFRL"),
                     (0x24, "AFRH"), (0x28, "BRR"))
        super().__init__(base, 0x400, table, ctx, name)

    on_read_IDR = GpioPort.read_input
    on_write_BSRR = GpioPort.write_set_reset
    on_write_BRR = GpioPort.write_reset
    on_read_BSRR = on_read_BRR = GpioPort.read_zero


class ArmSysTick(RegisterFile):
    """ARMv6-M SysTick: 24-bit down-counter from LOAD, core clock or HCLK/8.

    Reads of CVR return the modelled count (the firmware computes ``start - end`` modulo 2^24).
    """

    ENABLE, TICKINT, CLKSOURCE, COUNTFLAG = 1, 2, 4, 1 << 16

    def __init__(self, ctx: MachineContext, base: int):
        table = regs((0x00, "CSR"), (0x04, "RVR"), (0x08, "CVR"), (0x0C, "CALIB", 0x40000000))
        super().__init__(base, 0x10, table, ctx, "SysTick")
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
        return self._current()

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
    """ARMv6-M SCB: identification and configuration registers accepted."""

    def __init__(self, ctx: MachineContext, base: int):
        table = regs((0x00, "CPUID", 0x410CC601, 0), (0x04, "ICSR"), (0x08, "VTOR"), (0x0C, "AIRCR", 0xFA050000),
                     (0x10, "SCR"), (0x14, "CCR", 0x00000208, 0), (0x1C, "SHPR2"), (0x20, "SHPR3"), (0x24, "SHCSR"))
        super().__init__(base, 0x40, table, ctx, "SCB")

    def on_write_AIRCR(self, value: int) -> None:
        if (value >> 16) == 0x05FA and value & 4:
            raise self.unmodelled(0x0C, True, value, "system reset request (AIRCR.SYSRESETREQ) is not modelled")

    def on_write_ICSR(self, value: int) -> None:
        if value & ((1 << 31) | (1 << 28) | (1 << 26)):
            raise self.unmodelled(0x04, True, value, "pending exceptions (NMI/PendSV/SysTick) are not modelled")


class ArmNvic(RegisterFile):
    """ARMv6-M NVIC: enables and priorities accepted; nothing is delivered."""

    def __init__(self, ctx: MachineContext, base: int):
        items: list[tuple] = [(0x000, "ISER"), (0x080, "ICER"), (0x100, "ISPR"), (0x180, "ICPR")]
        items += [(0x300 + 4 * i, f"IPR{i}") for i in range(8)]
        super().__init__(base, 0x320, regs(*items), ctx, "NVIC")


#: Board ``[peripherals]`` name -> model.
MODELS: dict[str, Callable[[MachineContext, int], RegisterFile]] = {
    "rcc": Py32Rcc,
    "flash": Py32Flash,
    "gpioa": lambda c, b: Py32Gpio(c, b, "GPIOA", 0xEBFFFFFF, 0x24000000),
    "gpiob": lambda c, b: Py32Gpio(c, b, "GPIOB"),
    "gpiof": lambda c, b: Py32Gpio(c, b, "GPIOF"),
    "usart1": lambda c, b: Usart(b, c, ("SR", "DR", "BRR", "CR1", "CR2", "CR3", "GTPR")),
    "systick": ArmSysTick,
    "nvic": ArmNvic,
    "scb": ArmScb,
}

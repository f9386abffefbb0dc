"""The STM32F1-style USART both chips have (CH32V003 USART1, PY32F003 USART1), polled."""

from __future__ import annotations

from .registers import MachineContext, RegisterFile, regs


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
        table = regs((0x00, sr, 0xC0), (0x04, dr), (0x08, brr), (0x0C, cr1), (0x10, cr2), (0x14, cr3), (0x18, gtpr))
        super().__init__(base, 0x400, table, ctx, name)
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

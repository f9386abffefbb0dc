"""Emulator pieces that need no cross compiler: cycle models, peripheral models, serial bridge.

The cycle-model tests replay the published CH32V003 measurements the QingKe table is built on
([T1] cpldcpu's instruction-timing loops, [T2] jnk0le's sequences; see bench/emulator/cycles.py)
and the Cortex-M0+ TRM figures, so a change to the model that breaks a sourced number fails here.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import serial

from bench.board import load_board
from bench.emulator import EmulatorUnavailable, available_backends, backend_status, launch, machine_for
from bench.emulator.cycles import WRITES_SP, CortexM0Plus, Insn, QingKeV2A
from bench.emulator.peripherals import Bus, UnmodelledAccess, build_peripherals
from bench.emulator.peripherals.ch32v003 import Ch32Flash, Ch32Gpio, Ch32Rcc, Ch32SysTick
from bench.emulator.peripherals.py32f003 import ArmSysTick, Py32Gpio, Py32Rcc
from bench.emulator.peripherals.registers import RomRegion
from bench.emulator.peripherals.usart import Usart
from bench.emulator.renode_backend import generate_resc
from bench.emulator.serial_bridge import SerialBridge


# ------------------------------------------------------------------------------------ helpers
def rv(address: int, *items: tuple[str, str, int]) -> list[Insn]:
    out, a = [], address
    for mnemonic, ops, size in items:
        out.append(Insn(a, size, mnemonic, ops))
        a += size
    return out


def loop_cost(model, insns: list[Insn], in_flash: bool, ws: int) -> int:
    """Cycles of one iteration of a loop whose body is one block ending in a taken branch."""
    size = sum(i.size for i in insns)
    c = model.block_cost(insns, insns[0].address, size, in_flash, ws)
    return c.cycles + c.exit_penalty + c.entry_penalty


NOP16 = ("c.nop", "", 2)
NOP32 = ("addi", "zero, zero, 0", 4)
ADDI = ("c.addi", "a0, -1", 2)
BNEZ = ("c.bnez", "a0, -4", 2)


# ------------------------------------------------------------------------------- QingKe V2A
class TestQingKeV2A:
    m = QingKeV2A()

    def test_bare_loop_sram_4_flash_6(self) -> None:
        # [T1]: "the bare loop without any additional instructions takes 4 cycles to execute in
        # SRAM and 6 cycles in Flash" (48 MHz, 1 wait state)
        assert loop_cost(self.m, rv(0x20000006, ADDI, BNEZ), False, 1) == 4
        assert loop_cost(self.m, rv(0x00000006, ADDI, BNEZ), True, 1) == 6

    def test_flash_loop_steps_in_pairs_of_nops(self) -> None:
        # [T1]: from flash, 0 and 1 inserted nops cost the same, and so do 2 and 3
        costs = [loop_cost(self.m, rv(0x00000006, *([NOP16] * n), ADDI, BNEZ), True, 1) for n in range(4)]
        assert costs[0] == costs[1] and costs[2] == costs[3] and costs[2] == costs[0] + 2

    def test_sram_loop_grows_one_cycle_per_nop(self) -> None:
        costs = [loop_cost(self.m, rv(0x20000006, *([nop] * n), ADDI, BNEZ), False, 1)
                 for nop in (NOP16, NOP32) for n in range(3)]
        assert costs == [4, 5, 6, 4, 5, 6]

    @pytest.mark.parametrize("seq,ws,expected", [
        ([NOP16] * 10, 0, 10), ([NOP16] * 10, 1, 10),          # [T2] 10x c.nop
        ([NOP32] * 10, 0, 10), ([NOP32] * 10, 1, 20),          # [T2] 10x 32-bit nop
        ([NOP16] + [NOP32] * 9, 1, 20),                         # [T2] c.nop + 9x nop
        ([NOP16] * 5 + [NOP32] * 5, 1, 16),                     # [T2] 5x c.nop + 5x nop
        ([("c.lw", "a0, 0(a1)", 2)] * 10, 1, 20),               # [T2] 10x c.lw from SRAM
        ([("c.sw", "a0, 0(a1)", 2)] * 10, 0, 20),
    ])
    def test_straight_line_sequences(self, seq, ws: int, expected: int) -> None:
        insns = rv(0x00000100, *seq)
        cost = self.m.block_cost(insns, 0x100, sum(i.size for i in insns), True, ws)
        assert cost.cycles == expected
        assert cost.instructions == len(seq)

    def test_prefix_offsets_for_mid_block_counter_reads(self) -> None:
        insns = rv(0x20000000, ("lw", "a0, 8(a5)", 4), NOP16, NOP16, ("lw", "a1, 8(a5)", 4))
        cost = self.m.block_cost(insns, 0x20000000, 12, False, 0)
        assert cost.prefix == (0, 2, 3, 4)
        assert cost.offset_of(0x20000006) == 2 and cost.offset_of(0x20000008) == 3

    @pytest.mark.parametrize("ins", [("mul", "a0, a0, a1", 4), ("div", "a0, a0, a1", 4),
                                     ("addi", "a6, zero, 1", 4), ("add", "a0, a0, t3", 4),
                                     ("wfi", "", 4), ("flw", "fa0, 0(a0)", 4)])
    def test_instructions_rv32ec_lacks_are_flagged(self, ins) -> None:
        insns = rv(0x0, ("c.li", "a0, 1", 2), ins)
        cost = self.m.block_cost(insns, 0, 2 + ins[2], True, 0)
        assert cost.illegal and cost.illegal_pc == 2

    def test_stack_pointer_writes_are_flagged(self) -> None:
        assert self.m.block_cost(rv(0, ("c.addi16sp", "sp, -32", 2)), 0, 2, True, 0).flags & WRITES_SP
        assert not self.m.block_cost(rv(0, ("c.swsp", "ra, 12(sp)", 2)), 0, 2, True, 0).flags & WRITES_SP


# ------------------------------------------------------------------------------- Cortex-M0+
class TestCortexM0Plus:
    m = CortexM0Plus()

    def cost(self, *items: tuple[str, str, int], ws: int = 0):
        insns = rv(0x08000000, *items)
        return self.m.block_cost(insns, 0x08000000, sum(i.size for i in insns), True, ws)

    def test_trm_cycle_counts(self) -> None:
        c = self.cost(("movs", "r0, #1", 2), ("ldr", "r1, [r0]", 2), ("str", "r1, [r0]", 2), ("muls", "r0, r1, r0", 2))
        assert c.cycles == 1 + 2 + 2 + 1
        c = self.cost(("push", "{r4, r5, r6, r7, lr}", 2))
        assert c.cycles == 6 and c.flags & WRITES_SP
        c = self.cost(("pop", "{r4, pc}", 2))
        assert c.cycles + c.exit_penalty == 3 + 2        # TRM: 3+N with N=2
        c = self.cost(("bl", "#0x100", 4))
        assert c.cycles + c.exit_penalty == 3
        c = self.cost(("cmp", "r0, #0", 2), ("bne", "#0x20", 2))
        assert (c.cycles, c.cycles + c.exit_penalty) == (2, 3)   # b<cond>: 1 not taken, 2 taken
        c = self.cost(("bx", "lr", 2))
        assert c.cycles + c.exit_penalty == 2
        c = self.cost(("dsb", "sy", 4))
        assert c.cycles == 3 and not c.illegal

    def test_one_wait_state_slows_32bit_fetches(self) -> None:
        seq = [("movs", "r0, #1", 2)] * 8
        assert self.cost(*seq, ws=0).cycles == 8
        assert self.cost(*seq, ws=1).cycles == 8            # 2 per word = 1 per 16-bit instruction
        assert self.cost(("bl", "#0x100", 4), ("bl", "#0x100", 4), ws=1).cycles == 4

    @pytest.mark.parametrize("ins", [("mov.w", "r0, #1", 4), ("udf", "#0", 2), ("wfi", "", 2), ("svc", "#0", 2)])
    def test_instructions_the_bench_core_lacks_are_flagged(self, ins) -> None:
        assert self.cost(("movs", "r0, #1", 2), ins).illegal


# ------------------------------------------------------------------------------- peripherals
class FakeCtx:
    def __init__(self) -> None:
        self.cycles = 0
        self.ws: list[int] = []
        self.tx: list[int] = []
        self.rx: list[int] = []
        self.waits = 0
        self.reads = 0
        self.idle_polls = 3

    def now_cycles(self) -> int:
        return self.cycles

    def on_counter_read(self) -> None:
        self.reads += 1

    def set_wait_states(self, ws: int) -> None:
        self.ws.append(ws)

    def uart_activity(self) -> None:
        pass

    def uart_tx(self, byte: int) -> None:
        self.tx.append(byte)

    def uart_rx_pop(self):
        return self.rx.pop(0) if self.rx else None

    def uart_rx_ready(self) -> bool:
        return bool(self.rx)

    def uart_rx_wait(self, bounded: bool) -> bool:
        self.waits += 1
        return bool(self.rx)


def test_ch32_rcc_ready_bits_and_clock() -> None:
    rcc = Ch32Rcc(FakeCtx(), 0x40021000)
    assert rcc.read(0x00, 4) & 0x2                  # HSIRDY after reset
    assert not rcc.read(0x00, 4) & (1 << 25)
    rcc.write(0x00, 4, rcc.read(0x00, 4) | (1 << 24))
    assert rcc.read(0x00, 4) & (1 << 25)            # PLLRDY follows PLLON
    assert rcc.hclk_hz() == 8_000_000               # reset: HSI / 3
    rcc.write(0x04, 4, 0x2)                         # SW = PLL, HPRE = /1
    assert rcc.read(0x04, 4) & 0xC == 0x8           # SWS = PLL
    assert rcc.hclk_hz() == 48_000_000
    assert rcc.read(0x00, 1) == rcc.read(0x00, 4) & 0xFF
    with pytest.raises(UnmodelledAccess):
        rcc.read(0x20, 4)                           # reserved offset


def test_py32_rcc_ready_bits() -> None:
    rcc = Py32Rcc(FakeCtx(), 0x40021000)
    assert rcc.read(0x00, 4) & (1 << 10)            # HSIRDY with HSION set at reset
    rcc.write(0x08, 4, 0)
    assert rcc.read(0x08, 4) & (7 << 3) == 0
    rcc.write(0x04, 4, (4 << 13) | 0x1000)
    assert rcc.hclk_hz() == 24_000_000


def test_flash_latency_reaches_the_cycle_model() -> None:
    ctx = FakeCtx()
    f = Ch32Flash(ctx, 0x40022000)
    f.write(0x00, 4, 1)
    assert ctx.ws == [1] and f.read(0x00, 4) == 1
    with pytest.raises(UnmodelledAccess):
        f.write(0x10, 4, 1)                         # programming flash is not modelled


def test_ch32_systick_counts_core_cycles() -> None:
    ctx = FakeCtx()
    stk = Ch32SysTick(ctx, 0xE000F000)
    stk.write(0x00, 4, 0)
    stk.write(0x08, 4, 0)
    stk.write(0x00, 4, 5)                           # STE | STCLK (HCLK)
    ctx.cycles = 1000
    assert stk.read(0x08, 4) == 1000
    stk.write(0x00, 4, 1)                           # HCLK/8
    ctx.cycles = 1800
    assert stk.read(0x08, 4) == 1100
    with pytest.raises(UnmodelledAccess):
        stk.write(0x00, 4, 7)                       # STIE: interrupts are not modelled


def test_arm_systick_counts_down_from_load() -> None:
    ctx = FakeCtx()
    st = ArmSysTick(ctx, 0xE000E010)
    st.write(0x04, 4, 0xFFFFFF)
    st.write(0x08, 4, 0)
    st.write(0x00, 4, 5)
    ctx.cycles = 1
    a = st.read(0x08, 4)
    ctx.cycles = 1001
    b = st.read(0x08, 4)
    assert a == 0xFFFFFF and (a - b) & 0xFFFFFF == 1000
    with pytest.raises(UnmodelledAccess):
        st.write(0x00, 4, 7)


def test_usart_tx_rx_and_blocking_rule() -> None:
    ctx = FakeCtx()
    u = Usart(0x40013800, ctx, ("SR", "DR", "BRR", "CR1", "CR2", "CR3", "GTPR"))
    assert u.read(0x00, 4) & 0x80                   # TXE
    u.write(0x04, 4, 0x41)
    assert ctx.tx == [0x41]
    assert not u.read(0x00, 4) & 0x20 and ctx.waits == 0   # one empty poll: no wait yet
    u.read(0x00, 4)
    assert ctx.waits == 1                           # polling an empty receiver: wait for the host
    ctx.rx.append(0x55)
    assert u.read(0x00, 4) & 0x20
    assert u.read(0x04, 4) == 0x55
    with pytest.raises(UnmodelledAccess):
        u.write(0x0C, 4, (1 << 13) | (1 << 5))      # RXNEIE


def test_usart_lets_polls_through_after_a_silent_wait_mid_request() -> None:
    ctx = FakeCtx()
    u = Usart(0x40013800, ctx, ("SR", "DR", "BRR", "CR1", "CR2", "CR3", "GTPR"))
    ctx.rx.append(1)
    u.read(0x04, 4)                                 # a request has started
    u.read(0x00, 4)
    u.read(0x00, 4)                                 # silent wait (bounded)
    assert ctx.waits == 1
    for _ in range(ctx.idle_polls):
        u.read(0x00, 4)                             # free polls: no waiting
    assert ctx.waits == 1
    u.read(0x00, 4)
    assert ctx.waits == 2


def test_gpio_set_and_reset_registers_act_on_the_outputs() -> None:
    for port, (bsr, br, out, inp) in ((Ch32Gpio(FakeCtx(), 0x40011400, "GPIOD"), (0x10, 0x14, 0x0C, 0x08)),
                                      (Py32Gpio(FakeCtx(), 0x50000000, "GPIOA"), (0x18, 0x28, 0x14, 0x10))):
        port.write(bsr, 4, 0x0000_0041)             # set pins 0 and 6
        assert port.read(out, 4) == 0x41 and port.read(inp, 4) == 0x41
        port.write(bsr, 4, 0x0001_0000)             # reset pin 0
        assert port.read(out, 4) == 0x40
        port.write(br, 4, 0x40)                     # reset pin 6
        assert port.read(out, 4) == 0 and port.read(bsr, 4) == 0 and port.read(br, 4) == 0


def test_bus_reports_reads_of_the_boards_cycle_counter_only() -> None:
    ctx = FakeCtx()
    board = load_board("ch32v003")
    bus = Bus(build_peripherals("ch32v003", ctx, board.peripherals), ctx, board.counter_address)
    bus.write(0xE000F000, 4, 5)                     # SysTick on at HCLK
    ctx.cycles = 700
    assert bus.read(board.counter_address, 4) == 700 and ctx.reads == 1
    bus.read(0xE000F000, 4)                         # CTLR: not the counter
    bus.read(0x40013800, 4)                         # USART status
    assert ctx.reads == 1
    assert bus.read(board.counter_address, 4) == 700 and ctx.reads == 2
    with pytest.raises(UnmodelledAccess, match="no peripheral modelled"):
        bus.read(0x40000000, 4)                     # TIM2: the board does not list it


def test_rom_region_and_board_selection() -> None:
    ctx = FakeCtx()
    rom = RomRegion(ctx, 0x1FFF0F00, 0x100, "trim")
    assert rom.read(0x10, 4) == 0x1000
    with pytest.raises(UnmodelledAccess):
        rom.write(0x10, 4, 0)
    names = {p.name for p in build_peripherals("ch32v003", ctx, {"rcc": 0x40021000, "usart1": 0x40013800})}
    assert names == {"RCC", "USART1"}
    with pytest.raises(ValueError):
        build_peripherals("ch32v003", ctx, {"tim2": 0x40000000})


# ------------------------------------------------------------------------------- serial bridge
def test_serial_bridge_backlog_round_trip_and_close() -> None:
    bridge = SerialBridge()
    try:
        bridge.send(b"boot\n")                      # before any client: kept
        port = serial.serial_for_url(bridge.url, timeout=2)
        assert port.read(5) == b"boot\n"
        port.write(b"xy")
        assert bridge.wait_rx(2)
        deadline = time.monotonic() + 2
        while len(bridge._rx) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bridge.rx_pop() == ord("x") and bridge.rx_pop() == ord("y") and bridge.rx_pop() is None
        bridge.send(b"ok")
        assert port.read(2) == b"ok"
        t = time.monotonic()
        bridge.close()
        with pytest.raises(serial.SerialException):
            port.read(1)
        assert time.monotonic() - t < 1
    finally:
        bridge.close()


# ------------------------------------------------------------------------------- machine, backends
@pytest.mark.parametrize("name", ["ch32v003", "py32f003", "py32f003x8"])
def test_machine_specs_come_from_the_board_file(name: str) -> None:
    board = load_board(name)
    spec = machine_for(name)
    assert (spec.arch, spec.core, spec.clock_hz) == (board.arch, board.core, board.clock_hz)
    assert (spec.flash_origin, spec.flash_size, spec.ram_origin, spec.ram_size) == \
        (board.flash_origin, board.flash_size, board.ram_origin, board.ram_size)
    assert dict(spec.peripherals) == dict(board.peripherals) and spec.regions == board.regions
    assert spec.counter_address == board.counter_address
    # flash is reachable at its link address, where the flasher writes it, and at every alias
    for base in (board.flash_origin, board.flash_load, *board.flash_aliases):
        assert spec.in_flash(base) and spec.in_flash(base + board.flash_size - 1)
        assert not spec.in_flash(base + board.flash_size)


def test_the_chips_differ_where_the_board_files_say() -> None:
    ch, py = machine_for("ch32v003"), machine_for("py32f003x8")
    assert ch.flash_regions == [(0, 16384), (0x0800_0000, 16384)]
    assert py.flash_regions == [(0x0800_0000, 65536), (0, 65536)]
    assert (py.ram_size, py.regions[0].origin) == (8192, 0x1FFF0F00)


def test_backends_report_why_they_cannot_run() -> None:
    assert "unicorn" in available_backends()
    status = backend_status()
    if shutil.which("renode") is None:
        assert "renode" not in available_backends()
        assert "PATH" in status["renode"]
        with pytest.raises(EmulatorUnavailable):
            launch("ch32v003", Path("/nonexistent.elf"), backend="renode")


@pytest.mark.parametrize("board", ["ch32v003", "py32f003"])
def test_generated_renode_script(board: str) -> None:
    spec = machine_for(board)
    text = generate_resc(spec, Path("/x/fw.elf"), 4321, Path("/r/p.repl"))
    assert "sysbus LoadELF @/x/fw.elf" in text
    assert "CreateServerSocketTerminal 4321" in text and "connector Connect sysbus.usart1 uart" in text
    assert f"PerformanceInMips {spec.clock_hz // 1_000_000}" in text
    assert text.rstrip().endswith("start")

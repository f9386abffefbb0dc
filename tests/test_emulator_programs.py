"""The Unicorn backend on tiny purpose-built programs, for both chips.

Each test compiles a small C program (tests/emulator_programs.py) and checks one behaviour: the
UART round trip, exact counter reads, every fault kind (with PC, address and symbol), hang
detection, the partial-frame timeout, and that the C and Python block hooks count the same.
Skipped when the cross compiler for a chip is missing.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.emulator import EmulatorFault, FaultKind, launch
from emulator_programs import compile_program, have_compiler

CHIPS = ["ch32v003", "py32f003"]

ECHO = r"""
#if defined(__riscv)
#define MEASURE(t0, t1, p) __asm__ volatile("lw %0, 0(%2)\n.rept 10\nc.nop\n.endr\nlw %1, 0(%2)\n" \
                                            : "=&r"(t0), "=&r"(t1) : "r"(p) : "memory")
#define ELAPSED(t0, t1) ((t1) - (t0))
#else
#define MEASURE(t0, t1, p) __asm__ volatile("ldr %0, [%2]\n.rept 10\nnop\n.endr\nldr %1, [%2]\n" \
                                            : "=&l"(t0), "=&l"(t1) : "l"(p) : "memory")
#define ELAPSED(t0, t1) (((t0) - (t1)) & 0xFFFFFFu)
#endif
int main(void)
{
    counter_init();
    puts_("HI\n");
    for (;;) {
        int c = getc_();
        uint32_t t0, t1;
        volatile uint32_t *p = (volatile uint32_t *)COUNTER_ADDR;
        MEASURE(t0, t1, p);
        putc_(c + 1);
        put32(ELAPSED(t0, t1));
    }
}
"""

FAULTS = r"""
typedef void (*fn_t)(void);
static const uint32_t table[4] = {1, 2, 3, 4};
volatile uint32_t sink;
__attribute__((noinline)) void do_unmapped_write(void) { R32(0x30000000u) = 1; }
__attribute__((noinline)) void do_flash_write(void) { *(volatile uint32_t *)&table[1] = 7; }
__attribute__((noinline)) void do_bad_jump(void) { fn_t f = (fn_t)(uintptr_t)0x10000000u; f(); }
__attribute__((noinline)) void do_timer_read(void) { sink = R32(0x40000000u); }
__attribute__((noinline)) uint32_t do_recurse(uint32_t n) { volatile uint32_t pad[8]; pad[n & 7] = n;
                                                            return n ? do_recurse(n + 1) + pad[n & 7] : 0; }
__attribute__((noinline)) void do_spin(void) { for (;;) { sink++; } }
__attribute__((noinline)) void do_usart_irq(void) { R32(0x4001380Cu) |= 1u << 5; }
uint8_t bytes_in_ram[8] __attribute__((aligned(4)));
volatile uint32_t misalign = 2;
__attribute__((noinline)) void do_misaligned(void) { sink = *(volatile uint32_t *)(bytes_in_ram + misalign); }
#if defined(__riscv)
__attribute__((noinline)) void do_illegal(void) { __asm__ volatile(".insn r 0x33, 0, 1, a0, a0, a1"); }  /* mul */
__attribute__((noinline)) void do_high_reg(void) { __asm__ volatile(".word 0x00100813"); }   /* addi x16, x0, 1 */
#else
__attribute__((noinline)) void do_illegal(void) { __asm__ volatile("udf #0"); }
__attribute__((noinline)) void do_high_reg(void) { __asm__ volatile(".inst.w 0xf04f0001"); }            /* mov.w */
#endif
int main(void)
{
    counter_init();
    for (;;) {
        switch (getc_()) {
        case 'w': do_unmapped_write(); break;
        case 'f': do_flash_write(); break;
        case 'j': do_bad_jump(); break;
        case 'p': do_timer_read(); break;
        case 'r': sink = do_recurse(1); break;
        case 'h': do_spin(); break;
        case 'u': do_usart_irq(); break;
        case 'a': do_misaligned(); break;
        case 'i': do_illegal(); break;
        case 'e': do_high_reg(); break;
        default: break;
        }
        putc_('k');
    }
}
"""

LOOP = r"""
__attribute__((noinline)) int32_t work(const uint8_t *p, int n)
{
    int32_t s = 0;
    for (int i = 0; i < n; i++) { int32_t v = p[i]; s += (i & 1) ? (v << 2) : -v; }
    return s;
}
uint8_t buf[256];
int main(void)
{
    counter_init();
#if defined(__riscv)
    R32(0x40022000u) = 1u;             /* one flash wait state, as at 48 MHz */
#endif
    for (;;) {
        int c = getc_();
        for (int i = 0; i < 256; i++) buf[i] = (uint8_t)(c + i);
        uint32_t t0 = counter();
        int32_t s = 0;
        for (int k = 0; k < 200; k++) { __asm__ volatile("" ::: "memory"); s += work(buf, 256); }
        uint32_t t1 = counter();
        put32((uint32_t)s);
        put32(t1 - t0);
    }
}
"""

PARTIAL = r"""
int main(void)
{
    counter_init();
    for (;;) {
        (void)getc_();
        uint32_t polls = 0;
        int timed_out = 0;
        while (!(R32(USART_SR) & 0x20u)) {
            if (++polls > 60000u) { timed_out = 1; break; }
        }
        if (timed_out) { putc_('T'); continue; }
        (void)getc_();
        putc_('B');
    }
}
"""


def _elf(tmp_path: Path, chip: str, body: str, name: str) -> Path:
    if not have_compiler(chip):
        pytest.skip(f"no cross compiler for {chip}")
    return compile_program(chip, body, tmp_path / chip, name)


@pytest.mark.parametrize("chip", CHIPS)
def test_echo_and_exact_counter_reads(tmp_path: Path, chip: str) -> None:
    elf = _elf(tmp_path, chip, ECHO, "echo")
    with launch(chip, elf) as emu:
        assert emu.url.startswith("socket://127.0.0.1:")
        port = emu.open_serial(timeout=5)
        assert port.read(3) == b"HI\n"           # sent before we connected: kept for us
        for c in b"ab":
            port.write(bytes([c]))
            reply = port.read(5)
            assert reply[0] == c + 1
            fw_cycles = int.from_bytes(reply[1:], "little")
            # 10 one-cycle nops plus the 2-cycle load that takes the second reading; 11 instructions
            # from the first reading's load up to the second's.
            assert emu.last_inference() == (11, 12)
            assert fw_cycles == 12
        st = emu.stats
        assert st.instructions > 0 and st.cycles >= st.instructions
        assert st.counter_reads == 4
        assert st.stack_bytes is not None and 0 < st.stack_bytes < 256
        assert emu.fault is None


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("cmd,kind,symbol", [
    ("w", FaultKind.UNMAPPED_WRITE, "do_unmapped_write"),
    ("f", FaultKind.WRITE_TO_FLASH, "do_flash_write"),
    ("j", FaultKind.UNMAPPED_FETCH, None),
    ("p", FaultKind.UNMODELLED_PERIPHERAL, "do_timer_read"),
    ("r", FaultKind.STACK_OVERFLOW, "do_recurse"),
    ("u", FaultKind.UNMODELLED_PERIPHERAL, "do_usart_irq"),
    ("a", FaultKind.MISALIGNED, "do_misaligned"),
    ("i", FaultKind.ILLEGAL_INSTRUCTION, "do_illegal"),
    ("e", FaultKind.ILLEGAL_INSTRUCTION, "do_high_reg"),
])
def test_faults_are_reported_and_wake_the_host(tmp_path: Path, chip: str, cmd: str, kind: FaultKind,
                                               symbol: str | None) -> None:
    elf = _elf(tmp_path, chip, FAULTS, "faults")
    with launch(chip, elf) as emu:
        port = emu.open_serial(timeout=10)
        port.write(cmd.encode())
        t = time.monotonic()
        with pytest.raises(EmulatorFault) as info:
            port.read(1)
        assert time.monotonic() - t < 3, "a blocked host read must end soon after the fault"
        fault = info.value.fault
        assert fault is emu.fault
        assert fault.kind == kind, str(fault)
        assert fault.pc is not None
        if symbol:
            assert fault.symbol and fault.symbol.startswith(symbol), str(fault)
        if kind in (FaultKind.UNMAPPED_WRITE, FaultKind.UNMODELLED_PERIPHERAL) and cmd in "wp":
            assert fault.addr == (0x30000000 if cmd == "w" else 0x40000000)
        if cmd == "j":
            assert fault.addr == 0x10000000
        assert not emu.running


@pytest.mark.parametrize("chip", CHIPS)
def test_hang_reports_where_it_spins(tmp_path: Path, chip: str) -> None:
    elf = _elf(tmp_path, chip, FAULTS, "faults")
    with launch(chip, elf, hang_instructions=2_000_000) as emu:
        port = emu.open_serial(timeout=10)
        port.write(b"h")
        with pytest.raises(EmulatorFault) as info:
            port.read(1)
        fault = info.value.fault
        assert fault.kind == FaultKind.HANG
        assert fault.symbol and fault.symbol.startswith("do_spin"), str(fault)
        assert fault.instructions is not None and fault.instructions >= 2_000_000


@pytest.mark.parametrize("chip", CHIPS)
def test_partial_frame_timeout_still_expires(tmp_path: Path, chip: str) -> None:
    """A host that goes quiet mid-request must not freeze the firmware's poll-count timeout."""
    elf = _elf(tmp_path, chip, PARTIAL, "partial")
    with launch(chip, elf, rx_wait_s=0.05) as emu:
        port = emu.open_serial(timeout=10)
        port.write(b"x")
        assert port.read(1) == b"T"
        port.write(b"xy")            # a complete "frame": no timeout
        assert port.read(1) == b"B"
        assert emu.fault is None


@pytest.mark.parametrize("chip", CHIPS)
def test_c_and_python_block_hooks_count_the_same(tmp_path: Path, chip: str) -> None:
    elf = _elf(tmp_path, chip, LOOP, "loop")
    results = []
    for accelerate in (None, False):
        with launch(chip, elf, accelerate=accelerate) as emu:
            port = emu.open_serial(timeout=60)
            port.write(b"a")
            reply = port.read(8)
            assert len(reply) == 8
            results.append((reply, emu.last_inference(), emu.stats.accelerated))
    (r1, li1, acc1), (r2, li2, acc2) = results
    assert acc2 is False
    assert r1 == r2 and li1 == li2
    instructions, cycles = li1
    assert instructions > 200 * 256 * 5
    assert cycles > instructions   # loads cost 2, taken branches 2-3: CPI above 1 on both cores


def test_wait_states_change_the_cycle_count(tmp_path: Path) -> None:
    """The CH32V003 cycle model reads FLASH->ACTLR: 1 wait state costs cycles, not instructions."""
    if not have_compiler("ch32v003"):
        pytest.skip("no RISC-V cross compiler")
    fast = compile_program("ch32v003", LOOP.replace("R32(0x40022000u) = 1u;", ""), tmp_path / "fast", "loop")
    slow = compile_program("ch32v003", LOOP, tmp_path / "slow", "loop")
    figures = []
    for elf in (fast, slow):
        with launch("ch32v003", elf) as emu:
            port = emu.open_serial(timeout=60)
            port.write(b"a")
            assert len(port.read(8)) == 8
            figures.append((emu.last_inference(), emu.stats.wait_states))
    ((i0, c0), ws0), ((i1, c1), ws1) = figures
    assert (ws0, ws1) == (0, 1)
    assert i0 == i1
    assert c1 > c0

"""Benchmark: emulation speed, bench throughput, and the cycle model's BitNetMCU calibration.

Run: ``pytest -m benchmark -s tests/benchmarks/test_emulator_benchmark.py``. Prints

- emulated instructions per second on a tight inference-like loop, C block hook and pure
  Python hook, both chips (target: at least 10 M instr/s with the C hook on one core);
- the bench firmware with the tiny exported model: instructions and modelled cycles per
  inference, and the end-to-end rate including the UART protocol;
- the calibration against BitNetMCU's published 481,624 cycles (12k FP1.3.0 FC MNIST model,
  CH32V002 at 48 MHz). BitNetMCU's code is not part of this repository: build its inference
  (``-march=rv32ec -mabi=ilp32e -Os``, ``processfclayer`` in SRAM as its demo does) with a small
  harness of your own, outside the repository, that waits for one byte on USART1, then for each
  test sample sends ``pred:u8 label:u8 cycles:u32le`` (cycles = two SysTick CNT reads around the
  inference), and point ``POTNN_CALIBRATION_ELF`` at it. The figures of the last such run are
  recorded in ``bench.emulator.cycles.CALIBRATION_RESULT``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bench.emulator import launch
from bench.emulator.cycles import CALIBRATION_RESULT
from emulator_programs import compile_program, have_compiler

pytestmark = pytest.mark.benchmark

SPEED_LOOP = r"""
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
    for (;;) {
        int c = getc_();
        for (int i = 0; i < 256; i++) buf[i] = (uint8_t)(c + i);
        int32_t s = 0;
        uint32_t t0 = counter();
        for (int k = 0; k < 4000; k++) { __asm__ volatile("" ::: "memory"); s += work(buf, 256); }
        uint32_t t1 = counter();
        put32((uint32_t)s);
        put32(t1 - t0);
    }
}
"""


@pytest.mark.parametrize("chip", ["ch32v003", "py32f003"])
def test_emulated_instructions_per_second(tmp_path: Path, chip: str) -> None:
    if not have_compiler(chip):
        pytest.skip(f"no cross compiler for {chip}")
    elf = compile_program(chip, SPEED_LOOP, tmp_path, "speed")
    rates = {}
    for accelerate, label in ((None, "C hook"), (False, "Python hook")):
        with launch(chip, elf, accelerate=accelerate) as emu:
            port = emu.open_serial(timeout=600)
            port.write(b"a")                  # first request: start-up and block decoding
            assert len(port.read(8)) == 8
            port.write(b"b")                  # timed: pure emulation plus 9 UART bytes
            t = time.perf_counter()
            assert len(port.read(8)) == 8
            dt = time.perf_counter() - t
            instructions, cycles = emu.last_inference()
            rates[label] = instructions / dt
            print(f"\n{chip} {label}: {instructions:,} instructions, {cycles:,} modelled cycles "
                  f"in {dt:.3f} s = {instructions / dt / 1e6:.1f} M instr/s "
                  f"(accelerated={emu.stats.accelerated})")
    assert rates["C hook"] >= 10e6, "the C block hook should run at least 10 M instructions/s"


@pytest.mark.parametrize("board", ["ch32v003", "py32f003"])
def test_bench_firmware_throughput(tmp_path: Path, board: str) -> None:
    from bench.board import load_board
    from bench.build import build
    from bench.protocol import BenchClient
    from bench.toolchain import ToolchainError, find_toolchain
    from firmware_models import export_tiny

    try:
        find_toolchain(load_board(board))
    except ToolchainError as exc:
        pytest.skip(str(exc))
    (tmp_path / "model").mkdir()
    model = export_tiny(tmp_path / "model", n_images=100)
    result = build(board, model.header, tmp_path / board)
    with launch(board, result.elf) as emu:
        client = BenchClient(emu.open_serial(timeout=5))
        client.info()
        before = emu.stats.instructions
        t = time.perf_counter()
        per = []
        for i in range(100):
            answer = client.infer(model.images[i].tobytes())
            instructions, cycles = emu.last_inference()
            # the firmware's own counter difference is the modelled cycle count, read for read
            assert answer.cycles == cycles
            per.append((instructions, cycles))
        dt = time.perf_counter() - t
        total = emu.stats.instructions - before
    instr = sum(p[0] for p in per) / len(per)
    cyc = sum(p[1] for p in per) / len(per)
    clock = load_board(board).clock_hz
    print(f"\n{board}: {instr:,.0f} instructions and {cyc:,.0f} modelled cycles per inference "
          f"({cyc / clock * 1e3:.2f} ms at {clock / 1e6:g} MHz); 100 inferences over the UART in {dt:.2f} s, "
          f"{total / dt / 1e6:.1f} M instr/s end to end")
    # Both cores take 1 cycle for the cheapest instruction and at most a few for loads, stores
    # and taken branches: a mean outside [1, 3] cycles per instruction is a broken model.
    assert 1.0 <= cyc / instr <= 3.0


def test_bitnetmcu_calibration() -> None:
    reference = int(CALIBRATION_RESULT["reference_cycles"])
    print(f"\nrecorded calibration: {CALIBRATION_RESULT}")
    path = os.environ.get("POTNN_CALIBRATION_ELF")
    if not path:
        pytest.skip("set POTNN_CALIBRATION_ELF to a BitNetMCU build (see this module's docstring)")
    samples = int(os.environ.get("POTNN_CALIBRATION_SAMPLES", "3"))
    with launch("ch32v003", Path(path)) as emu:
        port = emu.open_serial(timeout=60)
        port.write(b"g")
        records = []
        for _ in range(samples):
            r = port.read(6)
            assert len(r) == 6
            records.append((r[0], r[1], int.from_bytes(r[2:], "little")))
        instructions, cycles = emu.last_inference()
    mean = sum(r[2] for r in records) / len(records)
    print(f"BitNetMCU 12k FP1.3.0 under the QingKe V2A model: {mean:,.0f} cycles/inference "
          f"(last: {instructions:,} instructions, {cycles:,} cycles) vs {reference:,} published "
          f"= {mean / reference:.3f}; predictions {[r[0] for r in records]} labels {[r[1] for r in records]}")
    assert all(r[0] == r[1] for r in records)
    assert abs(mean / reference - 1) <= 0.15

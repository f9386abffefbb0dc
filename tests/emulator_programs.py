"""Tiny bare-metal test programs for the emulator tests, compiled on the fly.

Why not the bench firmware: these programs do one thing each (echo a byte, fault in one precise
way, spin, read the cycle counter around a known instruction sequence), so a failing test points
at one emulator feature. They need only the cross compilers (riscv64-unknown-elf-gcc with the
rv32e multilib, arm-none-eabi-gcc); tests skip when those are missing.

Every program gets: a start-up (stack, .data copy, .bss clear), ``putc``/``getc`` on USART1
(polled, same registers on both chips), ``counter()`` (the SysTick register the bench reads)
and ``main()`` from the test.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

RISCV_CC = "riscv64-unknown-elf-gcc"
ARM_CC = "arm-none-eabi-gcc"

COMMON = r"""
#include <stdint.h>
#define R32(a) (*(volatile uint32_t *)(a))
#define USART_SR  0x40013800u
#define USART_DR  0x40013804u
static void putc_(int c) { while (!(R32(USART_SR) & 0x80u)) {} R32(USART_DR) = (uint32_t)c; }
static int getc_(void) { while (!(R32(USART_SR) & 0x20u)) {} return (int)(R32(USART_DR) & 0xFFu); }
static void put32(uint32_t v) { for (int i = 0; i < 4; i++) putc_((int)((v >> (8 * i)) & 0xFFu)); }
__attribute__((unused)) static void puts_(const char *s) { while (*s) putc_(*s++); }
int main(void);
extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[];
void reset_c(void) __attribute__((used, noreturn));
void reset_c(void)
{
    uint32_t *s = _sidata, *d = _sdata;
    while (d < _edata) *d++ = *s++;
    for (d = _sbss; d < _ebss; d++) *d = 0;
    main();
    for (;;) {}
}
"""

RISCV_PRELUDE = r"""
#define COUNTER_ADDR 0xE000F008u
static void counter_init(void) { R32(0xE000F000u) = 5u; }          /* STE | STCLK (HCLK) */
static inline uint32_t counter(void) { return R32(COUNTER_ADDR); }
__asm__(".section .text.start, \"ax\"\n.globl _start\n_start:\n"
        "  la sp, _estack\n  j reset_c\n.text\n");
"""

ARM_PRELUDE = r"""
#define COUNTER_ADDR 0xE000E018u
static void counter_init(void) { R32(0xE000E014u) = 0xFFFFFFu; R32(0xE000E018u) = 0; R32(0xE000E010u) = 5u; }
static inline uint32_t counter(void) { return R32(COUNTER_ADDR); }
extern uint32_t _estack[];
void fault_loop(void) { for (;;) {} }
__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)_estack, (void (*)(void))reset_c, fault_loop, fault_loop,
};
"""

LINKER = """
ENTRY({entry})
MEMORY {{ FLASH (rx) : ORIGIN = {flash:#x}, LENGTH = 16K
         RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 2K }}
SECTIONS {{
  .text : {{ KEEP(*(.vectors)) KEEP(*(.text.start)) *(.text*) *(.rodata*) *(.srodata*) . = ALIGN(4); }} > FLASH
  _sidata = LOADADDR(.data);
  .data : {{ _sdata = .; *(.ramfunc*) *(.data*) *(.sdata*) . = ALIGN(4); _edata = .; }} > RAM AT > FLASH
  .bss (NOLOAD) : {{ _sbss = .; *(.bss*) *(.sbss*) *(COMMON) . = ALIGN(4); _ebss = .; }} > RAM
  _estack = ORIGIN(RAM) + LENGTH(RAM);
}}
"""


def have_compiler(chip: str) -> bool:
    return shutil.which(RISCV_CC if chip == "ch32v003" else ARM_CC) is not None


def compile_program(chip: str, body: str, out_dir: Path, name: str = "prog", opt: str = "-Os") -> Path:
    """Compile ``body`` (C with ``main``) for ``chip`` into ``out_dir/name.elf``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    src = out_dir / f"{name}.c"
    ld = out_dir / f"{name}.ld"
    elf = out_dir / f"{name}.elf"
    if chip == "ch32v003":
        cc, prelude, entry, flash = RISCV_CC, RISCV_PRELUDE, "_start", 0x0
        flags = ["-march=rv32ec_zicsr", "-mabi=ilp32e"]
    else:
        cc, prelude, entry, flash = ARM_CC, ARM_PRELUDE, "reset_c", 0x08000000
        flags = ["-mcpu=cortex-m0plus", "-mthumb"]
    src.write_text(COMMON + prelude + body)
    ld.write_text(LINKER.format(entry=entry, flash=flash))
    cmd = [cc, *flags, opt, "-g", "-ffreestanding", "-nostdlib", "-fno-builtin", "-T", str(ld), "-o", str(elf),
           str(src), "-lgcc"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        # GCC 12 spells the Zicsr extension as part of rv32ec; older ones reject "_zicsr".
        if chip == "ch32v003" and "zicsr" in proc.stderr:
            cmd[1] = "-march=rv32ec"
            proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{cc} failed:\n{proc.stderr}")
    return elf

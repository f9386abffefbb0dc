/*
 * chips/py32f003/chip.h - Puya PY32F003 (Cortex-M0+) cycle counter and constants.
 *
 * The cycle counter is the ARMv6-M SysTick CVR (regs.h): 24 bits, counting down at the core
 * clock, reloading from RVR after 0.  With RVR = 0xFFFFFF the counter period is 2^24 cycles;
 * the modulo-2^24 difference below is exact for any call shorter than that: 16,777,215
 * cycles = 0.70 s at 24 MHz.  A longer call aliases (the bench flags cycle counts near the
 * limit; INFO reports the width).
 */
#ifndef BENCH_CHIP_H
#define BENCH_CHIP_H

#include <stdint.h>

#include "regs.h"

#define PORT_CORE_CLOCK_HZ ((uint32_t)BENCH_CLOCK_HZ)

/* One volatile 32-bit load; the emulator counts instructions between two of these. */
#define PORT_CYCLE_COUNTER() (SYST_CVR)
/* Down-counter: elapsed = (t0 - t1) mod 2^24. */
#define PORT_CYCLES_ELAPSED(t0, t1) ((uint32_t)(((uint32_t)(t0) - (uint32_t)(t1)) & 0x00FFFFFFu))
#define PORT_COUNTER_BITS 24u

/* An empty RX poll costs more than 8 cycles, so this is at least 20 ms of silence. */
#define PORT_RX_TIMEOUT_POLLS ((uint32_t)BENCH_CLOCK_HZ / 8u / 50u)

#endif /* BENCH_CHIP_H */

/*
 * chips/ch32v003/chip.h - WCH CH32V003 (QingKe V2A, RV32EC) cycle counter and constants.
 *
 * The cycle counter is SysTick CNT (regs.h): 32 bits, counting up at HCLK, free-running.
 */
#ifndef BENCH_CHIP_H
#define BENCH_CHIP_H

#include <stdint.h>

#include "regs.h"

#define PORT_CORE_CLOCK_HZ ((uint32_t)BENCH_CLOCK_HZ)

/* One volatile 32-bit load; the emulator counts instructions between two of these. */
#define PORT_CYCLE_COUNTER() (STK_CNT)
/* Up-counter at HCLK: modulo-2^32 difference, valid below 2^32 cycles (89 s at 48 MHz). */
#define PORT_CYCLES_ELAPSED(t0, t1) ((uint32_t)((uint32_t)(t1) - (uint32_t)(t0)))
#define PORT_COUNTER_BITS 32u

/* An empty RX poll costs more than 8 cycles, so this is at least 20 ms of silence. */
#define PORT_RX_TIMEOUT_POLLS ((uint32_t)BENCH_CLOCK_HZ / 8u / 50u)

#endif /* BENCH_CHIP_H */

/*
 * chips/ch32v003/chip.h - WCH CH32V003 (QingKe V2A, RV32EC) cycle counter and constants.
 *
 * SysTick (CH32V003 reference manual, "STK"): base 0xE000F000,
 *   CTLR +0x00 (STE bit0 enable, STIE bit1, STCLK bit2: 1 = HCLK, 0 = HCLK/8, STRE bit3),
 *   SR +0x04, CNT +0x08 (32-bit, counts up), CMP +0x10.
 * We run it from HCLK, free-running, and read only CNT.
 */
#ifndef BENCH_CHIP_H
#define BENCH_CHIP_H

#include <stdint.h>

#define PORT_CORE_CLOCK_HZ ((uint32_t)BENCH_CLOCK_HZ)

#define CH32_STK_CNT (*(volatile uint32_t *)0xE000F008u)

/* One volatile 32-bit load; the emulator counts instructions between two of these. */
#define PORT_CYCLE_COUNTER() (CH32_STK_CNT)
/* Up-counter at HCLK: modulo-2^32 difference, valid below 2^32 cycles (89 s at 48 MHz). */
#define PORT_CYCLES_ELAPSED(t0, t1) ((uint32_t)((uint32_t)(t1) - (uint32_t)(t0)))
#define PORT_COUNTER_BITS 32u

/* An empty RX poll costs more than 8 cycles, so this is at least 20 ms of silence. */
#define PORT_RX_TIMEOUT_POLLS ((uint32_t)BENCH_CLOCK_HZ / 8u / 50u)

#endif /* BENCH_CHIP_H */

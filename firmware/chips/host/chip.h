/*
 * chips/host/chip.h - the bench application as a host program (fast protocol tests).
 *
 * The "cycle counter" is CLOCK_MONOTONIC in nanoseconds (clock_hz reported as 1e9).
 */
#ifndef BENCH_CHIP_H
#define BENCH_CHIP_H

#include <stdint.h>

#define PORT_CORE_CLOCK_HZ 1000000000u

uint32_t host_monotonic_ns(void);

#define PORT_CYCLE_COUNTER() host_monotonic_ns()
#define PORT_CYCLES_ELAPSED(t0, t1) ((uint32_t)((uint32_t)(t1) - (uint32_t)(t0)))
#define PORT_COUNTER_BITS 32u

/* port_uart_getc() waits up to 1 ms per empty poll: about 50 ms of silence. */
#define PORT_RX_TIMEOUT_POLLS 50u

#endif /* BENCH_CHIP_H */

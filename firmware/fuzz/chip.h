/*
 * fuzz/chip.h - the "chip" of the coverage fuzzer: app.c and protocol.c on the host, fed from
 * a byte buffer instead of a UART (fuzz_protocol.c).
 *
 * The inter-byte timeout is 4 empty polls, so a fuzz input can cut a frame short cheaply.
 */
#ifndef BENCH_CHIP_H
#define BENCH_CHIP_H

#include <stdint.h>

#define PORT_CORE_CLOCK_HZ 1000000u

uint32_t fuzz_cycle_counter(void);

#define PORT_CYCLE_COUNTER() fuzz_cycle_counter()
#define PORT_CYCLES_ELAPSED(t0, t1) ((uint32_t)((uint32_t)(t1) - (uint32_t)(t0)))
#define PORT_COUNTER_BITS 32u
#define PORT_RX_TIMEOUT_POLLS 4u

#endif /* BENCH_CHIP_H */

/*
 * port.h - what the bench application needs from a chip (or from the host).
 *
 * Each port is one directory under firmware/chips/<chip>/ with:
 *   regs.h  the registers it touches: base addresses (those of the board file's
 *           [peripherals], checked by tests/test_boards.py), register offsets and bits;
 *   chip.h  cycle-counter macros (inlined at the two measurement points), clock and timeout
 *           constants;
 *   chip.c  start-up entry, clock tree, UART, cycle counter set-up.
 * MCU ports share startup.c (.data/.bss set-up, stack painting, high-water mark).
 *
 * Build-time definitions passed by bench/build.py from the board file:
 *   BENCH_BOARD        board name as a bare identifier (e.g. ch32v003)
 *   BENCH_CLOCK_HZ     core clock the port must configure
 *   BENCH_UART_BASE    USART instance base address (the port checks it supports it)
 *   BENCH_UART_BAUD    baud rate
 *   BENCH_MODEL_HASH   first 4 bytes (LE) of SHA-256 of the model header
 *   BENCH_INPUT_SIZE, BENCH_NUM_CLASSES   copied from the header's POTNN_* macros
 *   BENCH_STACK_SIZE   stack bytes the board reserves (reported by INFO)
 */
#ifndef BENCH_PORT_H
#define BENCH_PORT_H

#include <stdint.h>
#include "chip.h"

/*
 * chip.h provides:
 *   PORT_CYCLE_COUNTER()        one volatile 32-bit read of the cycle counter
 *   PORT_CYCLES_ELAPSED(t0, t1) core cycles between two such reads (handles one wrap)
 *   PORT_COUNTER_BITS           width of the counter (elapsed times wrap at 2^bits)
 *   PORT_CORE_CLOCK_HZ          core clock after port_init()
 *   PORT_RX_TIMEOUT_POLLS       empty RX polls after which a partial frame is dropped
 */

/* Clock tree, UART pins and baud, cycle counter.  Called once, before anything else. */
void port_init(void);

/* Non-blocking: returns 1 and stores a byte if one was received, else 0. */
int port_uart_getc(uint8_t *byte);

/* Blocking: returns once the byte is in the transmitter. */
void port_uart_putc(uint8_t byte);

/* Deepest stack use since reset, in bytes (0 where it cannot be measured). */
uint32_t port_stack_high_water(void);

/* The bench application (app.c); never returns. */
void bench_run(void);

#endif /* BENCH_PORT_H */

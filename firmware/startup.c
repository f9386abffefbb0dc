/*
 * startup.c - C run-time set-up shared by the MCU ports, and the stack high-water mark.
 *
 * The chip's entry code (chips/<chip>/chip.c) points the stack at __stack_top and calls
 * bench_reset().  We copy .data from flash, zero .bss, paint the free RAM between the end of
 * .bss and the current stack with STACK_PAINT, set up the chip, and run the application.
 * An INFO request scans upward from the end of .bss for the first word that is no longer the
 * paint pattern: everything above it has been stack at some point since reset.
 *
 * Symbols come from the linker script generated from firmware/link.ld.in.
 */
#include <stdint.h>

#include "port.h"

#define STACK_PAINT 0xC5C5C5C5u

extern uint32_t __data_start[], __data_end[], __data_load[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __stack_top[];

void bench_reset(void);

void bench_reset(void)
{
    volatile uint32_t here = 0;   /* an address inside this (tiny) frame */
    uint32_t *src = __data_load;
    uint32_t *dst;
    uint32_t *paint_end;

    for (dst = __data_start; dst < __data_end; dst++, src++)
        *dst = *src;
    for (dst = __bss_start; dst < __bss_end; dst++)
        *dst = 0;
    /* Stop 16 words below our own frame: those words are in use right now anyway. */
    paint_end = (uint32_t *)((uintptr_t)&here - 64u);
    for (dst = __bss_end; dst < paint_end; dst++)
        *dst = STACK_PAINT;

    port_init();
    bench_run();
    for (;;) {
    }
}

uint32_t port_stack_high_water(void)
{
    const uint32_t *p = __bss_end;

    while (p < __stack_top && *p == STACK_PAINT)
        p++;
    return (uint32_t)((uintptr_t)__stack_top - (uintptr_t)p);
}

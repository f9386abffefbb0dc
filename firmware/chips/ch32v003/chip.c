/*
 * chips/ch32v003/chip.c - WCH CH32V003: entry, clock, USART1, SysTick.
 *
 * Registers: regs.h.  Clock: 48 MHz = HSI 24 MHz x2 PLL, HCLK = SYSCLK, 1 flash wait state
 * (24 MHz: HSI, 0 WS).  No interrupts are enabled; mtvec points at bench_fault, a tight loop,
 * so any trap parks the core where a debugger or the emulator can see it.
 */
#include <stdint.h>

#include "port.h"
#include "regs.h"

#if BENCH_UART_BASE != USART1_BASE
#error "chips/ch32v003 drives USART1 on PD5/PD6 only"
#endif
#if BENCH_CLOCK_HZ != 48000000 && BENCH_CLOCK_HZ != 24000000
#error "chips/ch32v003 supports 48 MHz (HSI x2 PLL) or 24 MHz (HSI)"
#endif

/* USARTDIV with 16x oversampling; BRR holds it as 12.4 fixed point, i.e. round(f / baud). */
#define UART_BRR (((uint32_t)BENCH_CLOCK_HZ + (uint32_t)BENCH_UART_BAUD / 2u) / (uint32_t)BENCH_UART_BAUD)

/* Entry at the first flash word (address 0): global pointer, stack, trap vector, C. */
__asm__(
    "    .section .init, \"ax\", @progbits\n"
    "    .globl bench_entry\n"
    "bench_entry:\n"
    "    .option push\n"
    "    .option norelax\n"
    "    la   gp, __global_pointer$\n"
    "    .option pop\n"
    "    la   sp, __stack_top\n"
    "    la   t0, bench_fault\n"
    "    .option push\n"
    "    .option arch, +zicsr\n"
    "    csrw mtvec, t0\n"
    "    .option pop\n"
    "    j    bench_reset\n"
    "    .balign 4\n"
    "    .globl bench_fault\n"
    "bench_fault:\n"
    "    j    bench_fault\n"
    "    .text\n");

static void clock_init(void)
{
#if BENCH_CLOCK_HZ == 48000000
    FLASH_ACTLR = (FLASH_ACTLR & ~0x3u) | 0x1u;             /* 1 wait state first */
    RCC_CFGR0 &= ~(RCC_HPRE_MASK | RCC_PLLSRC_HSE);          /* HCLK = SYSCLK, PLL from HSI */
    RCC_CTLR |= RCC_PLLON;
    while (!(RCC_CTLR & RCC_PLLRDY)) {
    }
    RCC_CFGR0 = (RCC_CFGR0 & ~RCC_SW_MASK) | RCC_SW_PLL;
    while ((RCC_CFGR0 & RCC_SWS_MASK) != RCC_SWS_PLL) {
    }
#else
    FLASH_ACTLR &= ~0x3u;                                    /* 0 wait states */
    RCC_CFGR0 &= ~RCC_HPRE_MASK;                             /* HCLK = HSI 24 MHz */
#endif
}

static void uart_init(void)
{
    RCC_APB2PCENR |= RCC_AFIOEN | RCC_IOPDEN | RCC_USART1EN;
    /* PD5 = TX: alternate push-pull, 10 MHz (CNF 10, MODE 01).
     * PD6 = RX: input with pull-up (CNF 10, MODE 00, OUTDR 1) so an open line reads idle. */
    GPIOD_CFGLR = (GPIOD_CFGLR & ~(0xFu << 20 | 0xFu << 24)) | (0x9u << 20) | (0x8u << 24);
    GPIOD_OUTDR |= 1u << 6;
    USART1_BRR = UART_BRR;
    USART1_CTLR1 = USART_UE | USART_TE | USART_RE;           /* 8N1 */
}

static void counter_init(void)
{
    STK_CTLR = 0;
    STK_CNT = 0;
    STK_CMP = 0xFFFFFFFFu;
    STK_CTLR = STK_STE | STK_STCLK_HCLK;                     /* count up at HCLK, no IRQ */
}

void port_init(void)
{
    clock_init();
    uart_init();
    counter_init();
}

int port_uart_getc(uint8_t *byte)
{
    if (!(USART1_STATR & USART_RXNE))
        return 0;
    *byte = (uint8_t)USART1_DATAR;                           /* also clears ORE */
    return 1;
}

void port_uart_putc(uint8_t byte)
{
    while (!(USART1_STATR & USART_TXE)) {
    }
    USART1_DATAR = byte;
}

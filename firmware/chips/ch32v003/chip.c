/*
 * chips/ch32v003/chip.c - WCH CH32V003: entry, clock, USART1, SysTick.
 *
 * Register facts from the CH32V003 reference manual (V1.x):
 *   RCC    0x40021000  CTLR +0x00 (HSION b0, HSIRDY b1, PLLON b24, PLLRDY b25)
 *                      CFGR0 +0x04 (SW[1:0], SWS[3:2], HPRE[7:4], PLLSRC b16: 0 = HSI)
 *                      APB2PCENR +0x18 (AFIOEN b0, IOPDEN b5, USART1EN b14)
 *   FLASH  0x40022000  ACTLR +0x00 (LATENCY[1:0]: 0 = 0 WS up to 24 MHz, 1 = 1 WS up to 48 MHz)
 *   GPIOD  0x40011400  CFGLR +0x00 (4 bits per pin: MODE[1:0], CNF[1:0]), OUTDR +0x0C
 *   USART1 0x40013800  STATR +0x00 (RXNE b5, TXE b7), DATAR +0x04, BRR +0x08,
 *                      CTLR1 +0x0C (RE b2, TE b3, UE b13); default pins TX PD5, RX PD6
 *   STK    0xE000F000  see chip.h
 * Clock: 48 MHz = HSI 24 MHz x2 PLL, HCLK = SYSCLK, 1 flash wait state (24 MHz: HSI, 0 WS).
 * No interrupts are enabled; mtvec points at bench_fault, a tight loop, so any trap parks
 * the core where a debugger or the emulator can see it.
 */
#include <stdint.h>

#include "port.h"

#define REG32(addr) (*(volatile uint32_t *)(addr))

#define RCC_CTLR        REG32(0x40021000u)
#define RCC_CFGR0       REG32(0x40021004u)
#define RCC_APB2PCENR   REG32(0x40021018u)
#define FLASH_ACTLR     REG32(0x40022000u)
#define GPIOD_CFGLR     REG32(0x40011400u)
#define GPIOD_OUTDR     REG32(0x4001140Cu)
#define USART1_STATR    REG32(0x40013800u)
#define USART1_DATAR    REG32(0x40013804u)
#define USART1_BRR      REG32(0x40013808u)
#define USART1_CTLR1    REG32(0x4001380Cu)
#define STK_CTLR        REG32(0xE000F000u)
#define STK_CNT         REG32(0xE000F008u)
#define STK_CMP         REG32(0xE000F010u)

#define RCC_PLLON       (1u << 24)
#define RCC_PLLRDY      (1u << 25)
#define RCC_SW_MASK     0x3u
#define RCC_SW_PLL      0x2u
#define RCC_SWS_MASK    0xCu
#define RCC_SWS_PLL     0x8u
#define RCC_HPRE_MASK   0xF0u
#define RCC_PLLSRC_HSE  (1u << 16)
#define RCC_AFIOEN      (1u << 0)
#define RCC_IOPDEN      (1u << 5)
#define RCC_USART1EN    (1u << 14)
#define USART_RXNE      (1u << 5)
#define USART_TXE       (1u << 7)
#define USART_RE        (1u << 2)
#define USART_TE        (1u << 3)
#define USART_UE        (1u << 13)
#define STK_STE         (1u << 0)
#define STK_STCLK_HCLK  (1u << 2)

#if BENCH_UART_BASE != 0x40013800
#error "chips/ch32v003 drives USART1 (0x40013800) on PD5/PD6 only"
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

/*
 * chips/py32f003/chip.c - Puya PY32F003: vector table, clock, USART1, SysTick.
 *
 * Register facts from the PY32F003 reference manual / datasheet:
 *   RCC    0x40021000  CR +0x00 (HSION b8, HSIRDY b10)
 *                      ICSCR +0x04 (HSI_TRIM[12:0], HSI_FS[15:13]: 4 = 24 MHz)
 *                      CFGR +0x08 (SW[2:0], SWS[5:3], HPRE[11:8], PPRE[14:12])
 *                      IOPENR +0x34 (GPIOAEN b0), APBENR2 +0x40 (USART1EN b14)
 *   FLASH  0x40022000  ACR +0x00 (LATENCY b0: 1 wait state above 24 MHz)
 *   GPIOA  0x50000000  MODER +0x00, PUPDR +0x0C, AFRL +0x20; USART1 = AF1 on PA2 (TX), PA3 (RX)
 *   USART1 0x40013800  SR +0x00 (RXNE b5, TXE b7), DR +0x04, BRR +0x08, CR1 +0x0C (RE b2,
 *                      TE b3, UE b13)
 *   HSI 24 MHz factory trim: system memory word 0x1FFF0F10, bits [12:0].
 * Clock: the datasheet's maximum is 32 MHz, reachable only from an external 32 MHz crystal
 * (HSE); the PY32F003 has no PLL.  Boards without a crystal run at the fastest internal
 * setting, HSI 24 MHz, with 0 flash wait states.  That is what this port implements.
 * No interrupts are enabled; every exception vector is bench_fault, a tight loop.
 */
#include <stdint.h>

#include "port.h"

#define REG32(addr) (*(volatile uint32_t *)(addr))

#define RCC_CR          REG32(0x40021000u)
#define RCC_ICSCR       REG32(0x40021004u)
#define RCC_CFGR        REG32(0x40021008u)
#define RCC_IOPENR      REG32(0x40021034u)
#define RCC_APBENR2     REG32(0x40021040u)
#define FLASH_ACR       REG32(0x40022000u)
#define GPIOA_MODER     REG32(0x50000000u)
#define GPIOA_PUPDR     REG32(0x5000000Cu)
#define GPIOA_AFRL      REG32(0x50000020u)
#define USART1_SR       REG32(0x40013800u)
#define USART1_DR       REG32(0x40013804u)
#define USART1_BRR      REG32(0x40013808u)
#define USART1_CR1      REG32(0x4001380Cu)
#define SYST_CSR        REG32(0xE000E010u)
#define SYST_RVR        REG32(0xE000E014u)
#define SYST_CVR        REG32(0xE000E018u)
#define HSI_TRIM_24MHZ  REG32(0x1FFF0F10u)

#define RCC_HSIRDY      (1u << 10)
#define RCC_HSI_FS_24   (4u << 13)
#define RCC_ICSCR_HSI   0xFFFFu          /* HSI_FS + HSI_TRIM */
#define RCC_CFGR_SW     0x7u
#define RCC_CFGR_SWS    (0x7u << 3)
#define RCC_CFGR_HPRE   (0xFu << 8)
#define RCC_CFGR_PPRE   (0x7u << 12)
#define RCC_GPIOAEN     (1u << 0)
#define RCC_USART1EN    (1u << 14)
#define USART_RXNE      (1u << 5)
#define USART_TXE       (1u << 7)
#define USART_RE        (1u << 2)
#define USART_TE        (1u << 3)
#define USART_UE        (1u << 13)
#define SYST_ENABLE     (1u << 0)
#define SYST_CLKSOURCE  (1u << 2)

#if BENCH_UART_BASE != 0x40013800
#error "chips/py32f003 drives USART1 (0x40013800) on PA2/PA3 only"
#endif
#if BENCH_CLOCK_HZ != 24000000
#error "chips/py32f003 supports HSI 24 MHz only (32 MHz needs a 32 MHz HSE crystal)"
#endif

#define UART_BRR (((uint32_t)BENCH_CLOCK_HZ + (uint32_t)BENCH_UART_BAUD / 2u) / (uint32_t)BENCH_UART_BAUD)

extern uint32_t __stack_top[];
void bench_reset(void);
void bench_entry(void);
void bench_fault(void);

/* Reset vector, and the ELF entry point the linker script names. */
void bench_entry(void)
{
    bench_reset();
}

void bench_fault(void)
{
    for (;;) {
    }
}

/* ARMv6-M core vectors only: no peripheral interrupt is ever enabled. */
__attribute__((section(".vectors"), used))
static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)__stack_top,   /* initial SP */
    bench_entry,                               /* Reset */
    bench_fault,                               /* NMI */
    bench_fault,                               /* HardFault */
    0, 0, 0, 0, 0, 0, 0,                       /* reserved */
    bench_fault,                               /* SVCall */
    0, 0,                                      /* reserved */
    bench_fault,                               /* PendSV */
    bench_fault                                /* SysTick (never enabled) */
};

static void clock_init(void)
{
    FLASH_ACR &= ~0x1u;                                           /* 0 wait states at 24 MHz */
    RCC_ICSCR = (RCC_ICSCR & ~RCC_ICSCR_HSI) | RCC_HSI_FS_24 | (HSI_TRIM_24MHZ & 0x1FFFu);
    while (!(RCC_CR & RCC_HSIRDY)) {
    }
    RCC_CFGR &= ~(RCC_CFGR_HPRE | RCC_CFGR_PPRE | RCC_CFGR_SW);   /* HSI, HCLK = PCLK = SYSCLK */
    while (RCC_CFGR & RCC_CFGR_SWS) {
    }
}

static void uart_init(void)
{
    RCC_IOPENR |= RCC_GPIOAEN;
    RCC_APBENR2 |= RCC_USART1EN;
    GPIOA_AFRL = (GPIOA_AFRL & ~(0xFu << 8 | 0xFu << 12)) | (1u << 8) | (1u << 12);
    GPIOA_PUPDR = (GPIOA_PUPDR & ~(0x3u << 6)) | (0x1u << 6);      /* RX pull-up */
    GPIOA_MODER = (GPIOA_MODER & ~(0x3u << 4 | 0x3u << 6)) | (0x2u << 4) | (0x2u << 6);
    USART1_BRR = UART_BRR;
    USART1_CR1 = USART_UE | USART_TE | USART_RE;                   /* 8N1 */
}

static void counter_init(void)
{
    SYST_CSR = 0;
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0;                                                  /* any write clears it */
    SYST_CSR = SYST_CLKSOURCE | SYST_ENABLE;                       /* core clock, no IRQ */
}

void port_init(void)
{
    clock_init();
    uart_init();
    counter_init();
}

int port_uart_getc(uint8_t *byte)
{
    if (!(USART1_SR & USART_RXNE))
        return 0;
    *byte = (uint8_t)USART1_DR;
    return 1;
}

void port_uart_putc(uint8_t byte)
{
    while (!(USART1_SR & USART_TXE)) {
    }
    USART1_DR = byte;
}

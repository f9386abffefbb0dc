/*
 * chips/py32f003/chip.c - Puya PY32F003: vector table, clock, USART1, SysTick.
 *
 * Registers: regs.h.  Clock: the datasheet's maximum is 32 MHz, reachable only from an
 * external 32 MHz crystal (HSE); the PY32F003 has no PLL.  Boards without a crystal run at
 * the fastest internal setting, HSI 24 MHz, with 0 flash wait states.  That is what this port
 * implements.  No interrupts are enabled; every exception vector is bench_fault, a tight loop.
 */
#include <stdint.h>

#include "port.h"
#include "regs.h"

#if BENCH_UART_BASE != USART1_BASE
#error "chips/py32f003 drives USART1 on PA2/PA3 only"
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

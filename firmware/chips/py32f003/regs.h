/*
 * chips/py32f003/regs.h - the Puya PY32F003 registers this port touches, and their bits.
 *
 * Sources: PY32F003 reference manual / datasheet; ARMv6-M Architecture Reference Manual
 * (SysTick).  The *_BASE addresses are the board file's [peripherals] and [[memory.regions]]
 * (boards/py32f003.toml); tests/test_boards.py checks every address here against it.
 */
#ifndef BENCH_PY32F003_REGS_H
#define BENCH_PY32F003_REGS_H

#include <stdint.h>

#define REG32(addr) (*(volatile uint32_t *)(addr))

#define RCC_BASE            0x40021000u
#define FLASH_BASE          0x40022000u
#define GPIOA_BASE          0x50000000u
#define USART1_BASE         0x40013800u
#define SYSTICK_BASE        0xE000E010u
#define FACTORY_TRIM_BASE   0x1FFF0F00u

/* RCC */
#define RCC_CR          REG32(RCC_BASE + 0x00u)
#define RCC_ICSCR       REG32(RCC_BASE + 0x04u)   /* HSI_TRIM[12:0], HSI_FS[15:13] */
#define RCC_CFGR        REG32(RCC_BASE + 0x08u)
#define RCC_IOPENR      REG32(RCC_BASE + 0x34u)
#define RCC_APBENR2     REG32(RCC_BASE + 0x40u)
#define RCC_HSIRDY      (1u << 10)
#define RCC_HSI_FS_24   (4u << 13)
#define RCC_ICSCR_HSI   0xFFFFu          /* HSI_FS + HSI_TRIM */
#define RCC_CFGR_SW     0x7u
#define RCC_CFGR_SWS    (0x7u << 3)
#define RCC_CFGR_HPRE   (0xFu << 8)
#define RCC_CFGR_PPRE   (0x7u << 12)
#define RCC_GPIOAEN     (1u << 0)
#define RCC_USART1EN    (1u << 14)

/* FLASH: ACR LATENCY b0: 1 wait state above 24 MHz */
#define FLASH_ACR       REG32(FLASH_BASE + 0x00u)

/* GPIOA: USART1 is alternate function 1 on PA2 (TX) and PA3 (RX) */
#define GPIOA_MODER     REG32(GPIOA_BASE + 0x00u)
#define GPIOA_PUPDR     REG32(GPIOA_BASE + 0x0Cu)
#define GPIOA_AFRL      REG32(GPIOA_BASE + 0x20u)

/* USART1 */
#define USART1_SR       REG32(USART1_BASE + 0x00u)
#define USART1_DR       REG32(USART1_BASE + 0x04u)
#define USART1_BRR      REG32(USART1_BASE + 0x08u)
#define USART1_CR1      REG32(USART1_BASE + 0x0Cu)
#define USART_RXNE      (1u << 5)
#define USART_TXE       (1u << 7)
#define USART_RE        (1u << 2)
#define USART_TE        (1u << 3)
#define USART_UE        (1u << 13)

/* SysTick: CVR is a 24-bit down-counter that reloads from RVR after 0 */
#define SYST_CSR        REG32(SYSTICK_BASE + 0x00u)
#define SYST_RVR        REG32(SYSTICK_BASE + 0x04u)
#define SYST_CVR        REG32(SYSTICK_BASE + 0x08u)
#define SYST_ENABLE     (1u << 0)
#define SYST_CLKSOURCE  (1u << 2)        /* 1 = core clock */

/* HSI 24 MHz factory trim: bits [12:0] of a system memory word */
#define HSI_TRIM_24MHZ  REG32(FACTORY_TRIM_BASE + 0x10u)

#endif /* BENCH_PY32F003_REGS_H */

/*
 * chips/ch32v003/regs.h - the WCH CH32V003 registers this port touches, and their bits.
 *
 * Source: CH32V003 reference manual (V1.x).  The *_BASE addresses are the board file's
 * [peripherals] (boards/ch32v003.toml); tests/test_boards.py checks every address here
 * against it.
 */
#ifndef BENCH_CH32V003_REGS_H
#define BENCH_CH32V003_REGS_H

#include <stdint.h>

#define REG32(addr) (*(volatile uint32_t *)(addr))

#define RCC_BASE        0x40021000u
#define FLASH_BASE      0x40022000u
#define GPIOD_BASE      0x40011400u
#define USART1_BASE     0x40013800u
#define SYSTICK_BASE    0xE000F000u

/* RCC: clock control, configuration, APB2 peripheral clock enables */
#define RCC_CTLR        REG32(RCC_BASE + 0x00u)
#define RCC_CFGR0       REG32(RCC_BASE + 0x04u)
#define RCC_APB2PCENR   REG32(RCC_BASE + 0x18u)
#define RCC_PLLON       (1u << 24)
#define RCC_PLLRDY      (1u << 25)
#define RCC_SW_MASK     0x3u            /* CFGR0 SW[1:0] */
#define RCC_SW_PLL      0x2u
#define RCC_SWS_MASK    0xCu            /* CFGR0 SWS[3:2] */
#define RCC_SWS_PLL     0x8u
#define RCC_HPRE_MASK   0xF0u           /* CFGR0 HPRE[7:4] */
#define RCC_PLLSRC_HSE  (1u << 16)      /* CFGR0 PLLSRC: 0 = HSI */
#define RCC_AFIOEN      (1u << 0)
#define RCC_IOPDEN      (1u << 5)
#define RCC_USART1EN    (1u << 14)

/* FLASH: ACTLR LATENCY[1:0]: 0 = 0 wait states up to 24 MHz, 1 = 1 wait state up to 48 MHz */
#define FLASH_ACTLR     REG32(FLASH_BASE + 0x00u)

/* GPIOD: CFGLR holds 4 bits per pin (MODE[1:0], CNF[1:0]) */
#define GPIOD_CFGLR     REG32(GPIOD_BASE + 0x00u)
#define GPIOD_OUTDR     REG32(GPIOD_BASE + 0x0Cu)

/* USART1: default pins TX PD5, RX PD6 */
#define USART1_STATR    REG32(USART1_BASE + 0x00u)
#define USART1_DATAR    REG32(USART1_BASE + 0x04u)
#define USART1_BRR      REG32(USART1_BASE + 0x08u)
#define USART1_CTLR1    REG32(USART1_BASE + 0x0Cu)
#define USART_RXNE      (1u << 5)
#define USART_TXE       (1u << 7)
#define USART_RE        (1u << 2)
#define USART_TE        (1u << 3)
#define USART_UE        (1u << 13)

/* SysTick ("STK"): CNT is a 32-bit up-counter */
#define STK_CTLR        REG32(SYSTICK_BASE + 0x00u)
#define STK_CNT         REG32(SYSTICK_BASE + 0x08u)
#define STK_CMP         REG32(SYSTICK_BASE + 0x10u)
#define STK_STE         (1u << 0)       /* enable */
#define STK_STCLK_HCLK  (1u << 2)       /* 1 = HCLK, 0 = HCLK/8 */

#endif /* BENCH_CH32V003_REGS_H */

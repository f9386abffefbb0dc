/*
 * protocol.c - byte-at-a-time frame parser and frame writer (see PROTOCOL.md).
 *
 * Designed to survive a fuzzer:
 *  - one byte in, at most one event out; no recursion, no buffering beyond `capacity`;
 *  - a length above `capacity` is rejected as soon as the header is complete, so the payload
 *    index can never pass the end of the buffer;
 *  - after any error the parser hunts for the next A5 5A, so garbage costs at most the frame
 *    it landed in; a frame cut short is dropped by the caller's timeout (proto_rx_reset).
 * Only shifts, xors and adds: no multiply on RV32EC.
 */
#include "protocol.h"

#define HEADER_BYTES 4u   /* VER, TYPE, LEN lo, LEN hi */

/* Keep the CRC step out of line: inlined copies cost flash on a 16 KB part for no gain
 * that matters at 115200 baud. */
#if defined(__GNUC__)
#define PROTO_NOINLINE __attribute__((noinline))
#else
#define PROTO_NOINLINE
#endif

enum {
    ST_HUNT = 0,          /* waiting for SYNC0 */
    ST_SYNC1,             /* got SYNC0, waiting for SYNC1 */
    ST_BODY               /* header, payload, CRC: `received` says where we are */
};

PROTO_NOINLINE uint16_t proto_crc16(uint16_t crc, uint8_t byte)
{
    uint8_t bit;

    crc ^= (uint16_t)((uint16_t)byte << 8);
    for (bit = 0; bit < 8u; bit++) {
        if (crc & 0x8000u)
            crc = (uint16_t)((crc << 1) ^ 0x1021u);
        else
            crc = (uint16_t)(crc << 1);
    }
    return crc;
}

void proto_rx_init(struct proto_rx *rx, uint8_t *payload, uint16_t capacity)
{
    rx->payload = payload;
    rx->capacity = capacity > PROTO_MAX_PAYLOAD ? (uint16_t)PROTO_MAX_PAYLOAD : capacity;
    rx->dropped = 0;
    rx->version = 0;
    rx->type = 0;
    rx->length = 0;
    proto_rx_reset(rx);
}

void proto_rx_reset(struct proto_rx *rx)
{
    rx->state = ST_HUNT;
}

int proto_rx_busy(const struct proto_rx *rx)
{
    return rx->state != ST_HUNT;
}

enum proto_event proto_rx_feed(struct proto_rx *rx, uint8_t byte)
{
    uint16_t at;

    if (rx->state == ST_HUNT) {
        if (byte == PROTO_SYNC0)
            rx->state = ST_SYNC1;
        else if (rx->dropped != 0xFFFFu)
            rx->dropped++;                /* garbage between frames */
        return PROTO_EV_NONE;
    }
    if (rx->state == ST_SYNC1) {
        if (byte == PROTO_SYNC1) {
            rx->state = ST_BODY;
            rx->received = 0;
            rx->crc = 0xFFFFu;
        } else if (byte != PROTO_SYNC0) { /* A5 A5 5A still syncs */
            rx->state = ST_HUNT;
        }
        return PROTO_EV_NONE;
    }

    at = rx->received++;
    rx->crc = proto_crc16(rx->crc, byte);
    if (at < HEADER_BYTES) {
        if (at == 0) {
            rx->version = byte;
        } else if (at == 1) {
            rx->type = byte;
        } else if (at == 2) {
            rx->length = byte;
        } else {
            rx->length = (uint16_t)(rx->length | ((uint16_t)byte << 8));
            if (rx->length > rx->capacity) {
                rx->state = ST_HUNT;
                return PROTO_EV_TOO_LONG;
            }
        }
        return PROTO_EV_NONE;
    }
    at = (uint16_t)(at - HEADER_BYTES);
    if (at < rx->length) {
        rx->payload[at] = byte;
        return PROTO_EV_NONE;
    }
    if (at == rx->length)                 /* first CRC byte */
        return PROTO_EV_NONE;
    rx->state = ST_HUNT;                  /* second CRC byte: the frame is complete */
    return rx->crc == 0 ? PROTO_EV_FRAME : PROTO_EV_BAD_CRC;
}

static uint16_t tx_crc;

PROTO_NOINLINE void proto_tx_u8(uint8_t value)
{
    tx_crc = proto_crc16(tx_crc, value);
    port_uart_putc(value);
}

void proto_tx_le(uint32_t value, uint8_t count)
{
    while (count--) {
        proto_tx_u8((uint8_t)value);
        value >>= 8;
    }
}

void proto_tx_bytes(const uint8_t *bytes, uint16_t count)
{
    while (count--)
        proto_tx_u8(*bytes++);
}

void proto_tx_begin(uint8_t type, uint16_t length)
{
    port_uart_putc(PROTO_SYNC0);
    port_uart_putc(PROTO_SYNC1);
    tx_crc = 0xFFFFu;
    proto_tx_u8(PROTO_VERSION);
    proto_tx_u8(type);
    proto_tx_le(length, 2);
}

void proto_tx_end(void)
{
    port_uart_putc((uint8_t)(tx_crc >> 8));
    port_uart_putc((uint8_t)tx_crc);
    proto_tx_le(0, PROTO_TX_PAD);         /* the padding zeros (the CRC they update is not sent) */
}

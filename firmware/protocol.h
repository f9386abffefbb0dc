/*
 * protocol.h - the bench wire protocol: frame parser and frame writer.
 *
 * The byte layout is specified in PROTOCOL.md; bench/frames.py and bench/protocol.py implement
 * the same document on the host.  This file and protocol.c depend on nothing but <stdint.h>
 * and the one output function below, so the parser can be built and fuzzed on the host with
 * sanitizers.
 *
 * Frame:  A5 5A | VER | TYPE | LEN lo | LEN hi | PAYLOAD[LEN] | CRC hi | CRC lo
 * CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over VER..PAYLOAD, sent high byte first, so
 * the CRC run over VER..CRC of a good frame is zero.
 */
#ifndef BENCH_PROTOCOL_H
#define BENCH_PROTOCOL_H

#include <stdint.h>

#define PROTO_SYNC0        0xA5u
#define PROTO_SYNC1        0x5Au
#define PROTO_VERSION      2u
#define PROTO_MAX_PAYLOAD  8192u   /* no frame of protocol version 2 is longer */
#define PROTO_TX_PAD       4u      /* zeros after every frame sent: they complete a frame that
                                      lost bytes on the way, so the receiver rejects it at once */

/* Frame types.  A response is its request's type with bit 7 set. */
#define PROTO_INFO_REQ     0x01u
#define PROTO_INFER_REQ    0x02u
#define PROTO_LOAD_REQ     0x03u
#define PROTO_INFO_RESP    0x81u
#define PROTO_INFER_RESP   0x82u
#define PROTO_LOAD_RESP    0x83u
#define PROTO_NAK          0xFFu

/* NAK reasons (first payload byte of a NAK).  BAD_CRC and TOO_LONG refuse a frame whose CRC
 * was never found good, so the link may be to blame; the others refuse a frame received intact. */
#define PROTO_NAK_BAD_CRC      1u
#define PROTO_NAK_BAD_LENGTH   2u
#define PROTO_NAK_UNKNOWN_TYPE 3u
#define PROTO_NAK_BAD_VERSION  4u
#define PROTO_NAK_TOO_LONG     5u

/* What one received byte completed. */
enum proto_event {
    PROTO_EV_NONE = 0,     /* nothing yet */
    PROTO_EV_FRAME,        /* a frame with a good CRC: version, type, length, payload valid */
    PROTO_EV_BAD_CRC,      /* a whole frame arrived, its CRC did not match */
    PROTO_EV_TOO_LONG      /* the header announced more than `capacity` payload bytes */
};

/* Receiver state.  The payload buffer belongs to the caller (a static array); between frames
 * the caller may point `payload` and `capacity` at another part of it (app.c does). */
struct proto_rx {
    uint8_t *payload;
    uint16_t capacity;     /* longest payload accepted, <= PROTO_MAX_PAYLOAD */
    uint16_t length;       /* payload length announced by the current frame */
    uint16_t received;     /* bytes of the current frame after the sync pair */
    uint16_t crc;          /* running CRC over the frame after the sync pair */
    uint16_t dropped;      /* non-sync bytes seen between frames (saturates) */
    uint8_t state;
    uint8_t version;       /* of the current frame */
    uint8_t type;
};

uint16_t proto_crc16(uint16_t crc, uint8_t byte);

void proto_rx_init(struct proto_rx *rx, uint8_t *payload, uint16_t capacity);
/* Drop any partial frame and hunt for sync again (the caller's inter-byte timeout). */
void proto_rx_reset(struct proto_rx *rx);
/* Nonzero while a frame has started but not finished. */
int proto_rx_busy(const struct proto_rx *rx);
enum proto_event proto_rx_feed(struct proto_rx *rx, uint8_t byte);

/* Writer: one per program (the board has one UART).  Bytes go out through port_uart_putc
 * (port.h; the fuzz harness has its own); the CRC is kept on the way.  A frame is begin +
 * exactly `length` payload bytes + end. */
void port_uart_putc(uint8_t byte);
void proto_tx_begin(uint8_t type, uint16_t length);
void proto_tx_u8(uint8_t value);
/* `count` bytes of `value`, least significant first (u16: 2, u32: 4). */
void proto_tx_le(uint32_t value, uint8_t count);
void proto_tx_bytes(const uint8_t *bytes, uint16_t count);
void proto_tx_end(void);

#endif /* BENCH_PROTOCOL_H */

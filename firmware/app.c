/*
 * app.c - the bench application, shared by every chip and by the host build.
 *
 * Loop: poll the UART, feed the frame parser, answer INFO and INFER requests (PROTOCOL.md).
 * Polled I/O only, no interrupts, so the emulator and the hardware see the same program.
 *
 * Cycle measurement: the cycle counter is read exactly twice per INFER request, immediately
 * before and immediately after the potnn_predict() call, and nowhere else in the loop.
 * potnn_predict lives in another translation unit (model.c), so the compiler cannot move
 * model code across those two volatile reads.
 */
#include <stdint.h>

#include "port.h"
#include "protocol.h"

#define BENCH_FW_VERSION 0x0100u   /* major.minor = 1.0 */

#if !defined(BENCH_INPUT_SIZE) || !defined(BENCH_NUM_CLASSES) || !defined(BENCH_MODEL_HASH)
#error "build with -DBENCH_INPUT_SIZE, -DBENCH_NUM_CLASSES and -DBENCH_MODEL_HASH (bench/build.py)"
#endif
#if BENCH_INPUT_SIZE < 1 || BENCH_INPUT_SIZE > PROTO_MAX_PAYLOAD
#error "model input does not fit one protocol frame"
#endif
#if BENCH_NUM_CLASSES < 1 || (8 + 4 * BENCH_NUM_CLASSES) > PROTO_MAX_PAYLOAD
#error "model logits do not fit one protocol frame"
#endif

#if !defined(BENCH_STACK_SIZE)
#define BENCH_STACK_SIZE 0
#endif

#define BENCH_STR2(x) #x
#define BENCH_STR(x) BENCH_STR2(x)
#define LE16(v) (uint8_t)((v) & 0xFFu), (uint8_t)(((v) >> 8) & 0xFFu)
#define LE32(v) LE16((v) & 0xFFFFu), LE16(((v) >> 16) & 0xFFFFu)

/* Defined by the exported model header, compiled in model.c. */
int potnn_predict(const uint8_t *input, int32_t *logits);

static uint8_t request[BENCH_INPUT_SIZE];     /* frame payload; the image for INFER */
static int32_t logits[BENCH_NUM_CLASSES];
static struct proto_rx rx;
static struct proto_tx tx;
static uint16_t naks_sent;                    /* saturating, reported by INFO */

/* INFO payload bytes 0..19: fixed when the image is built (PROTOCOL.md, "INFO_RESP"). */
static const uint8_t info_fixed[20] = {
    LE16(BENCH_FW_VERSION),
    LE32((uint32_t)BENCH_MODEL_HASH),
    LE16(BENCH_INPUT_SIZE),
    LE16(BENCH_NUM_CLASSES),
    LE32((uint32_t)PORT_CORE_CLOCK_HZ),
    LE16(BENCH_STACK_SIZE),
    LE16(BENCH_INPUT_SIZE),                   /* rx capacity = the request buffer */
    PORT_COUNTER_BITS,
    0                                         /* flags: none defined in version 1 */
};

/* INFO payload tail: board name, length-prefixed. */
static const char board_name[] = BENCH_STR(BENCH_BOARD);

static void send_nak(uint8_t reason, uint8_t type, uint16_t detail)
{
    uint8_t payload[4];

    payload[0] = reason;
    payload[1] = type;
    payload[2] = (uint8_t)detail;
    payload[3] = (uint8_t)(detail >> 8);
    if (naks_sent != 0xFFFFu)
        naks_sent++;
    proto_tx_begin(&tx, PROTO_NAK, sizeof payload);
    proto_tx_bytes(&tx, payload, sizeof payload);
    proto_tx_end(&tx);
}

static void send_info(void)
{
    uint16_t name_len = (uint16_t)(sizeof board_name - 1u);

    proto_tx_begin(&tx, PROTO_INFO_RESP, (uint16_t)(sizeof info_fixed + 7u + name_len));
    proto_tx_bytes(&tx, info_fixed, sizeof info_fixed);
    proto_tx_le(&tx, port_stack_high_water(), 2);
    proto_tx_le(&tx, rx.dropped, 2);
    proto_tx_le(&tx, naks_sent, 2);
    proto_tx_u8(&tx, (uint8_t)name_len);
    proto_tx_bytes(&tx, (const uint8_t *)board_name, name_len);
    proto_tx_end(&tx);
}

static void run_inference(void)
{
    uint32_t t0, t1;
    int cls;
    uint16_t i;

    t0 = PORT_CYCLE_COUNTER();
    cls = potnn_predict(request, logits);
    t1 = PORT_CYCLE_COUNTER();

    proto_tx_begin(&tx, PROTO_INFER_RESP, (uint16_t)(8u + 4u * BENCH_NUM_CLASSES));
    proto_tx_le(&tx, (uint32_t)cls, 2);
    proto_tx_le(&tx, BENCH_NUM_CLASSES, 2);
    proto_tx_le(&tx, PORT_CYCLES_ELAPSED(t0, t1), 4);
    for (i = 0; i < BENCH_NUM_CLASSES; i++)
        proto_tx_le(&tx, (uint32_t)logits[i], 4);
    proto_tx_end(&tx);
}

static void handle_frame(void)
{
    if (rx.version != PROTO_VERSION) {
        send_nak(PROTO_NAK_BAD_VERSION, rx.type, PROTO_VERSION);
        return;
    }
    switch (rx.type) {
    case PROTO_INFO_REQ:
        if (rx.length != 0)
            send_nak(PROTO_NAK_BAD_LENGTH, rx.type, 0);
        else
            send_info();
        break;
    case PROTO_INFER_REQ:
        if (rx.length != BENCH_INPUT_SIZE)
            send_nak(PROTO_NAK_BAD_LENGTH, rx.type, BENCH_INPUT_SIZE);
        else
            run_inference();
        break;
    default:
        send_nak(PROTO_NAK_UNKNOWN_TYPE, rx.type, 0);
        break;
    }
}

void bench_run(void)
{
    uint32_t idle_polls = 0;
    uint8_t byte;

    tx.put = port_uart_putc;
    proto_rx_init(&rx, request, BENCH_INPUT_SIZE);

    for (;;) {
        if (!port_uart_getc(&byte)) {
            /* A frame cut short must not swallow the next one: drop it after a quiet gap. */
            if (proto_rx_busy(&rx) && ++idle_polls >= PORT_RX_TIMEOUT_POLLS) {
                proto_rx_reset(&rx);
                idle_polls = 0;
            }
            continue;
        }
        idle_polls = 0;
        switch (proto_rx_feed(&rx, byte)) {
        case PROTO_EV_FRAME:
            handle_frame();
            break;
        case PROTO_EV_BAD_CRC:
            send_nak(PROTO_NAK_BAD_CRC, rx.type, 0);
            break;
        case PROTO_EV_BAD_LENGTH:
            send_nak(PROTO_NAK_BAD_LENGTH, rx.type, rx.capacity);
            break;
        default:
            break;
        }
    }
}

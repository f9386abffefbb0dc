/*
 * app.c - the bench application, shared by every chip and by the host build.
 *
 * Loop: poll the UART, feed the frame parser, answer INFO, LOAD and INFER requests (PROTOCOL.md).
 * Polled I/O only, no interrupts, so the emulator and the hardware see the same program.
 *
 * The image arrives in LOAD chunks, so that a lossy link costs a chunk, not the whole image.
 * The board keeps the first `loaded` bytes it has taken and answers every LOAD with that
 * count.  The parser stores each frame's payload right behind them (request + loaded), so a
 * frame corrupted on the way can only scribble on bytes not taken yet.  `request` is the
 * model's own input buffer (potnn_input_buffer(): a place in its arena with room for the image
 * and a chunk's 2-byte offset), so the firmware holds no copy of the image; the model reuses
 * those bytes during an inference, after which the next LOAD starts a new image anyway.
 * INFER runs the model once the image is complete; asked again before the next image is
 * complete it repeats its last answer, so a lost answer costs a resend, not another inference.
 *
 * Cycle measurement: the cycle counter is read exactly twice per inference, immediately
 * before and immediately after the potnn_predict() call, and nowhere else in the loop.
 * potnn_predict lives in another translation unit (model.c), so the compiler cannot move
 * model code across those two volatile reads.
 */
#include <stdint.h>

#include "port.h"
#include "protocol.h"

#define BENCH_FW_VERSION 0x0200u   /* major.minor = 2.0 */

#if !defined(BENCH_INPUT_SIZE) || !defined(BENCH_NUM_CLASSES) || !defined(BENCH_MODEL_HASH)
#error "build with -DBENCH_INPUT_SIZE, -DBENCH_NUM_CLASSES and -DBENCH_MODEL_HASH (bench/build.py)"
#endif
#if BENCH_INPUT_SIZE < 1 || BENCH_INPUT_SIZE + 2 > PROTO_MAX_PAYLOAD
#error "model input does not fit one protocol frame"
#endif
#if BENCH_NUM_CLASSES < 1 || (10 + 4 * BENCH_NUM_CLASSES) > PROTO_MAX_PAYLOAD
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
uint8_t *potnn_input_buffer(void);

#define REQUEST_CAPACITY (BENCH_INPUT_SIZE + 2)  /* the image, then room for a chunk's offset */
static uint8_t *request;                         /* potnn_input_buffer(), set by bench_run */
static int32_t logits[BENCH_NUM_CLASSES];
static struct proto_rx rx;
static uint16_t naks_sent;                    /* saturating, reported by INFO */
static uint16_t loaded;                       /* image bytes taken, from offset 0 */
static uint16_t answer_class;                 /* the last inference: class, cycles, */
static uint32_t answer_cycles;
static uint16_t answer_crc;                   /* and the CRC-16 of its image */

/* INFO payload bytes 0..19: fixed when the image is built (PROTOCOL.md, "INFO_RESP"). */
static const uint8_t info_fixed[20] = {
    LE16(BENCH_FW_VERSION),
    LE32((uint32_t)BENCH_MODEL_HASH),
    LE16(BENCH_INPUT_SIZE),
    LE16(BENCH_NUM_CLASSES),
    LE32((uint32_t)PORT_CORE_CLOCK_HZ),
    LE16(BENCH_STACK_SIZE),
    LE16(BENCH_INPUT_SIZE + 2),               /* rx capacity: a whole image in one chunk */
    PORT_COUNTER_BITS,
    0                                         /* flags: none defined in version 2 */
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
    proto_tx_begin(PROTO_NAK, sizeof payload);
    proto_tx_bytes(payload, sizeof payload);
    proto_tx_end();
}

static void send_info(void)
{
    uint16_t name_len = (uint16_t)(sizeof board_name - 1u);

    proto_tx_begin(PROTO_INFO_RESP, (uint16_t)(sizeof info_fixed + 7u + name_len));
    proto_tx_bytes(info_fixed, sizeof info_fixed);
    proto_tx_le(port_stack_high_water(), 2);
    proto_tx_le(rx.dropped, 2);
    proto_tx_le(naks_sent, 2);
    proto_tx_u8((uint8_t)name_len);
    proto_tx_bytes((const uint8_t *)board_name, name_len);
    proto_tx_end();
}

/* LOAD: take the chunk if it continues the image (offset == loaded); a chunk at offset 0 that
 * does not starts a new image (the host sends it again).  Either way, say how much is held, and
 * which LOAD this answers (its offset + n), so that a late answer to an earlier LOAD is told apart. */
static void take_chunk(void)
{
    uint16_t n = (uint16_t)(rx.length - 2u);
    uint16_t offset = (uint16_t)(rx.payload[n] | (rx.payload[n + 1u] << 8));

    if (offset == loaded)
        loaded = (uint16_t)(loaded + n);
    else if (offset == 0)
        loaded = 0;
    proto_tx_begin(PROTO_LOAD_RESP, 4);
    proto_tx_le(loaded, 2);
    proto_tx_le((uint16_t)(offset + n), 2);
    proto_tx_end();
}

static void run_inference(void)
{
    uint32_t t0, t1;
    const uint8_t *p;
    uint16_t crc = 0xFFFFu;

    for (p = request; p < request + BENCH_INPUT_SIZE; p++)
        crc = proto_crc16(crc, *p);
    answer_crc = crc;

    t0 = PORT_CYCLE_COUNTER();
    answer_class = (uint16_t)potnn_predict(request, logits);
    t1 = PORT_CYCLE_COUNTER();

    answer_cycles = PORT_CYCLES_ELAPSED(t0, t1);
    loaded = 0;                               /* the next LOAD at offset 0 begins a new image */
}

static void send_answer(void)
{
    uint16_t i;

    proto_tx_begin(PROTO_INFER_RESP, (uint16_t)(10u + 4u * BENCH_NUM_CLASSES));
    proto_tx_le(answer_class, 2);
    proto_tx_le(BENCH_NUM_CLASSES, 2);
    proto_tx_le(answer_cycles, 4);
    for (i = 0; i < BENCH_NUM_CLASSES; i++)
        proto_tx_le((uint32_t)logits[i], 4);
    proto_tx_le(answer_crc, 2);
    proto_tx_end();
}

static void handle_frame(void)
{
    uint8_t type = rx.type;

    if (rx.version != PROTO_VERSION) {
        send_nak(PROTO_NAK_BAD_VERSION, type, PROTO_VERSION);
    } else if (type == PROTO_LOAD_REQ) {
        if (rx.length < 2u)
            send_nak(PROTO_NAK_BAD_LENGTH, type, 2);
        else
            take_chunk();
    } else if (type != PROTO_INFO_REQ && type != PROTO_INFER_REQ) {
        send_nak(PROTO_NAK_UNKNOWN_TYPE, type, 0);
    } else if (rx.length != 0) {
        send_nak(PROTO_NAK_BAD_LENGTH, type, 0);
    } else if (type == PROTO_INFO_REQ) {
        send_info();
    } else {
        if (loaded == BENCH_INPUT_SIZE)
            run_inference();
        send_answer();
    }
    /* The next frame's payload lands behind the bytes taken. */
    rx.payload = request + loaded;
    rx.capacity = (uint16_t)(REQUEST_CAPACITY - loaded);
}

void bench_run(void)
{
    uint32_t idle_polls = 0;
    uint8_t byte;

    loaded = 0;                               /* (zero after reset; the fuzz harness re-enters) */
    request = potnn_input_buffer();
    proto_rx_init(&rx, request, REQUEST_CAPACITY);

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
        case PROTO_EV_TOO_LONG:
            send_nak(PROTO_NAK_TOO_LONG, rx.type, rx.capacity);
            break;
        default:
            break;
        }
    }
}

/*
 * fuzz_protocol.c - coverage-guided fuzzing of the bench request loop (app.c + protocol.c).
 *
 * Build (bench/fuzz_coverage.py build_libfuzzer does this):
 *   clang -fsanitize=fuzzer,address,undefined -Ifirmware -Ifirmware/fuzz \
 *         -DBENCH_INPUT_SIZE=256 -DBENCH_NUM_CLASSES=10 -DBENCH_MODEL_HASH=0x12345678u \
 *         -DBENCH_BOARD=fuzz fuzz_protocol.c ../app.c ../protocol.c
 * With -DFUZZ_STANDALONE (no libFuzzer, e.g. gcc -fsanitize=address,undefined) a small main()
 * replays the files named on the command line and then random inputs.
 *
 * One fuzz input is one session of the real bench_run() loop:
 *   byte 0      silence period P: after every P further bytes the "UART" stays empty long
 *               enough for the inter-byte timeout (0: never);
 *   bytes 1..   what the host sends.
 * When the input is used up, port_uart_getc() longjmps out of bench_run().
 *
 * Besides the sanitizers' checks, every byte the firmware sends is parsed again with the same
 * parser: it must be a sequence of whole frames with good CRCs, each followed by its
 * PROTO_TX_PAD zeros, of the four answer types (INFO, INFER, LOAD, NAK), every NAK 4 bytes with
 * a known reason and every LOAD answer at most the input size.  Anything else aborts (a finding).
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "port.h"
#include "protocol.h"

static const uint8_t *in_data;
static size_t in_size;
static size_t in_pos;
static size_t silence_every;
static size_t since_silence;
static uint32_t silent_polls;
static jmp_buf input_done;
static uint32_t cycles;

/* The checker: the firmware's output, parsed as the host would. */
static uint8_t out_payload[PROTO_MAX_PAYLOAD];
static struct proto_rx out_rx;
static unsigned pad_due;              /* zeros still owed after the last frame */

uint32_t fuzz_cycle_counter(void)
{
    return cycles += 1000u;
}

/* The model's input buffer, as an exported header has it: the image and a chunk's offset. */
static uint8_t model_input[BENCH_INPUT_SIZE + 2];

uint8_t *potnn_input_buffer(void)
{
    return model_input;
}

/* Any function of the image will do: the fuzz target is the protocol, not the model. */
int potnn_predict(const uint8_t *input, int32_t *logits)
{
    int32_t sum = 0;
    int best = 0;
    int k;
    uint16_t i;

    for (i = 0; i < BENCH_INPUT_SIZE; i++)
        sum += (int32_t)input[i] ^ (int32_t)i;
    for (k = 0; k < BENCH_NUM_CLASSES; k++) {
        int32_t v = (sum >> (k & 7)) - k;
        if (logits)
            logits[k] = v;
        if (k == 0 || v > ((sum >> (best & 7)) - best))
            best = k;
    }
    return best;
}

void port_init(void)
{
}

int port_uart_getc(uint8_t *byte)
{
    if (silent_polls) {
        silent_polls--;
        return 0;
    }
    if (in_pos >= in_size)
        longjmp(input_done, 1);
    if (silence_every && since_silence == silence_every) {
        since_silence = 0;
        silent_polls = PORT_RX_TIMEOUT_POLLS;
        return 0;
    }
    since_silence++;
    *byte = in_data[in_pos++];
    return 1;
}

static void check_answer(void)
{
    switch (out_rx.type) {
    case PROTO_INFO_RESP:
        break;
    case PROTO_INFER_RESP:
        if (out_rx.length != 10u + 4u * BENCH_NUM_CLASSES)
            abort();
        break;
    case PROTO_LOAD_RESP:
        if (out_rx.length != 4u || (out_payload[0] | out_payload[1] << 8) > BENCH_INPUT_SIZE)
            abort();
        break;
    case PROTO_NAK:
        if (out_rx.length != 4u || out_payload[0] < PROTO_NAK_BAD_CRC || out_payload[0] > PROTO_NAK_TOO_LONG)
            abort();
        break;
    default:
        abort();
    }
    if (out_rx.version != PROTO_VERSION)
        abort();
}

void port_uart_putc(uint8_t byte)
{
    if (pad_due) {
        if (byte != 0)
            abort();                  /* a frame not followed by its padding */
        pad_due--;
        return;
    }
    switch (proto_rx_feed(&out_rx, byte)) {
    case PROTO_EV_NONE:
        break;
    case PROTO_EV_FRAME:
        check_answer();
        pad_due = PROTO_TX_PAD;
        break;
    default:
        abort();                      /* a corrupt or oversize frame from the firmware */
    }
    if (out_rx.dropped != 0)
        abort();                      /* bytes between frames */
}

uint32_t port_stack_high_water(void)
{
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    silence_every = data[0];
    since_silence = 0;
    silent_polls = 0;
    in_data = data + 1;
    in_size = size - 1;
    in_pos = 0;
    pad_due = 0;
    proto_rx_init(&out_rx, out_payload, PROTO_MAX_PAYLOAD);
    if (setjmp(input_done) == 0)
        bench_run();                  /* never returns: the input's end longjmps here */
    if (proto_rx_busy(&out_rx) || pad_due)
        abort();                      /* the firmware stopped in the middle of an answer */
    return 0;
}

#ifdef FUZZ_STANDALONE
#include <stdio.h>

static uint32_t rng_state = 2463534242u;

static uint32_t xorshift32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* Replay the files named on the command line, then `FUZZ_RANDOM` random inputs. */
int main(int argc, char **argv)
{
    static uint8_t buf[1 << 16];
    long random_inputs = 2000;
    const char *env = getenv("FUZZ_RANDOM");
    int i;
    long n;

    if (env)
        random_inputs = strtol(env, NULL, 10);
    for (i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        size_t len;

        if (!f) {
            perror(argv[i]);
            return 2;
        }
        len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
    }
    for (n = 0; n < random_inputs; n++) {
        size_t len = xorshift32() % 2048u + 1u;
        size_t k;

        for (k = 0; k < len; k++) {
            uint32_t r = xorshift32();
            /* Plenty of sync pairs and small lengths, or random bytes would never form a frame. */
            buf[k] = (r & 0x300u) == 0 ? (uint8_t)((k & 1u) ? 0x5Au : 0xA5u) : (uint8_t)r;
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf("replayed %d files and %ld random inputs\n", argc - 1, random_inputs);
    return 0;
}
#endif

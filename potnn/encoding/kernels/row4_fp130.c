/* fp130, four neighbouring outputs of a row at once, for convs 3 taps wide at stride 1: each weight is
 * decoded once and applied to four inputs, where the one-output kernel decodes it for every output.
 * x: the receptive field of the four outputs, rows of 6 inputs (3 taps + 3 more positions), one row per
 * weight row; w: the filter, 3 weights a row, two rows (3 bytes) per step; steps: rows / 2.
 * acc[4] holds the four sums on entry and on return (uint32, wrapping, as in the dot kernel).
 * POTNN_ROW4_TAP adds one weight (shift e, sign mask m) times inputs o..o+3; the barrier after it keeps
 * GCC from decoding every weight of a step first and spilling them (RV32EC has 16 registers). */
#ifndef POTNN_ROW4_TAP
#define POTNN_ROW4_TAP(e, m, o) do { \
        const int e_ = (e); \
        const uint32_t m_ = (uint32_t)(m); \
        a0 += ((uint32_t)x[(o)] << e_) ^ m_; \
        a1 += ((uint32_t)x[(o) + 1] << e_) ^ m_; \
        a2 += ((uint32_t)x[(o) + 2] << e_) ^ m_; \
        a3 += ((uint32_t)x[(o) + 3] << e_) ^ m_; \
        POTNN_ROW4_ORDER(); \
    } while (0)
#if defined(__GNUC__)
#define POTNN_ROW4_ORDER() __asm__("" : "+r"(x), "+r"(w) : "r"(a0), "r"(a1), "r"(a2), "r"(a3))
#else
#define POTNN_ROW4_ORDER() ((void)0)
#endif
#endif
POTNN_KERNEL POTNN_RAMFUNC static void NAME(uint32_t *acc, const X *x, const int8_t *w, int steps)
{
    uint32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    do {
        int32_t b = w[0];
        POTNN_ROW4_TAP(b & 7, POTNN_NEG(b, 3), 0);
        POTNN_ROW4_TAP(b >> 4 & 7, b >> 7, 1);
        b = w[1];
        POTNN_ROW4_TAP(b & 7, POTNN_NEG(b, 3), 2);
        POTNN_ROW4_TAP(b >> 4 & 7, b >> 7, 6);
        b = w[2];
        POTNN_ROW4_TAP(b & 7, POTNN_NEG(b, 3), 7);
        POTNN_ROW4_TAP(b >> 4 & 7, b >> 7, 8);
        x += 12;
        w += 3;
    } while (--steps);
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

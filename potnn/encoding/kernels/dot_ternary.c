/* ternary: n codes, four per byte, lowest bits first; 00 = 0, 01 = +1, 10 = -1, 11 = the previous
 * value for two more inputs. keep/neg are the masks of the current value (0/0, ~0/0, ~0/~0). */
#define POTNN_TERNARY_STEP(c)                                              \
    if ((c) == 3u) {                                                       \
        t = (uint32_t)x[0] + (uint32_t)x[1];                               \
        x += 2;                                                            \
    } else {                                                               \
        keep = 0u - (uint32_t)((c) != 0u);                                 \
        neg = 0u - ((c) >> 1);                                             \
        t = (uint32_t)*x++;                                                \
    }                                                                      \
    acc += (t & keep) ^ neg;
POTNN_KERNEL POTNN_RAMFUNC static uint32_t NAME(const X *x, const uint8_t *w, int n)
{
    uint32_t acc = 0, keep = 0, neg = 0, t, codes;
    for (; n >= 4; n -= 4) {
        codes = *w++;
        POTNN_TERNARY_STEP(codes & 3u)
        POTNN_TERNARY_STEP(codes >> 2 & 3u)
        POTNN_TERNARY_STEP(codes >> 4 & 3u)
        POTNN_TERNARY_STEP(codes >> 6)
    }
    if (n > 0)
        for (codes = *w; n > 0; n--, codes >>= 2) {
            POTNN_TERNARY_STEP(codes & 3u)
        }
    return acc;
}

/* 2bit: n weights, 16 per uint32, lowest bits first; code = [sign][shift]. Eight per inner
 * iteration: fully unrolled words would cost 260 more bytes of flash for 4 % fewer instructions. */
POTNN_KERNEL POTNN_RAMFUNC static uint32_t NAME(const X *x, const uint32_t *w, int n)
{
    uint32_t acc = 0, c;
    const X *const end = x + (n & ~15);
    while (x != end) {
        c = *w++;
        for (int half = 0; half < 2; half++, x += 8, c >>= 16) {
            acc += ((uint32_t)x[0] << (c & 1u)) ^ (uint32_t)POTNN_NEG(c, 1);
            acc += ((uint32_t)x[1] << (c >> 2 & 1u)) ^ (uint32_t)POTNN_NEG(c, 3);
            acc += ((uint32_t)x[2] << (c >> 4 & 1u)) ^ (uint32_t)POTNN_NEG(c, 5);
            acc += ((uint32_t)x[3] << (c >> 6 & 1u)) ^ (uint32_t)POTNN_NEG(c, 7);
            acc += ((uint32_t)x[4] << (c >> 8 & 1u)) ^ (uint32_t)POTNN_NEG(c, 9);
            acc += ((uint32_t)x[5] << (c >> 10 & 1u)) ^ (uint32_t)POTNN_NEG(c, 11);
            acc += ((uint32_t)x[6] << (c >> 12 & 1u)) ^ (uint32_t)POTNN_NEG(c, 13);
            acc += ((uint32_t)x[7] << (c >> 14 & 1u)) ^ (uint32_t)POTNN_NEG(c, 15);
        }
    }
    if (n & 15)
        for (c = *w, n &= 15; n > 0; n--, c >>= 2)
            acc += ((uint32_t)*x++ << (c & 1u)) ^ (uint32_t)POTNN_NEG(c, 1);
    return acc;
}

/* 5level: n entries, two per byte, low nibble first; entry = [zeros before(2)][sign][x8]:
 * skip the zeros, then add x << (0 or 3). */
POTNN_KERNEL POTNN_RAMFUNC static uint32_t NAME(const X *x, const uint8_t *w, int n)
{
    uint32_t acc = 0;
    for (; n >= 2; n -= 2, x += 2) {
        const uint32_t b = *w++;
        x += b >> 2 & 3u;
        acc += ((uint32_t)x[0] << (POTNN_NEG(b, 0) & 3)) ^ (uint32_t)POTNN_NEG(b, 1);
        x += b >> 6;
        acc += ((uint32_t)x[1] << (POTNN_NEG(b, 4) & 3)) ^ (uint32_t)POTNN_NEG(b, 5);
    }
    if (n > 0) {
        const uint32_t b = *w;
        x += b >> 2 & 3u;
        acc += ((uint32_t)x[0] << (POTNN_NEG(b, 0) & 3)) ^ (uint32_t)POTNN_NEG(b, 1);
    }
    return acc;
}

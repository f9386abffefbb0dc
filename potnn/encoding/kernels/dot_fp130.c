/* fp130: n weights, two per byte, low nibble first; nibble = [sign][shift(3)]. */
POTNN_KERNEL POTNN_RAMFUNC static uint32_t NAME(const X *x, const int8_t *w, int n)
{
    uint32_t acc = 0;
    const X *const end = x + (n & ~3);
    for (; x != end; x += 4, w += 2) {
        const int32_t b0 = w[0], b1 = w[1];
        acc += ((uint32_t)x[0] << (b0 & 7)) ^ (uint32_t)POTNN_NEG(b0, 3);
        acc += ((uint32_t)x[1] << (b0 >> 4 & 7)) ^ (uint32_t)(b0 >> 7);
        acc += ((uint32_t)x[2] << (b1 & 7)) ^ (uint32_t)POTNN_NEG(b1, 3);
        acc += ((uint32_t)x[3] << (b1 >> 4 & 7)) ^ (uint32_t)(b1 >> 7);
    }
    if (n & 2) {
        const int32_t b = *w++;
        acc += ((uint32_t)x[0] << (b & 7)) ^ (uint32_t)POTNN_NEG(b, 3);
        acc += ((uint32_t)x[1] << (b >> 4 & 7)) ^ (uint32_t)(b >> 7);
        x += 2;
    }
    if (n & 1) {
        const int32_t b = *w;
        acc += ((uint32_t)x[0] << (b & 7)) ^ (uint32_t)POTNN_NEG(b, 3);
    }
    return acc;
}

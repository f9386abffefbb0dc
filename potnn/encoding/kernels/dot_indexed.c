/* indexed: one filter's sum from its lists of input positions, an exponent's positive then negative
 * weights, highest exponent first (potnn/encoding/indexed.py). Each weight costs a load and an add;
 * each exponent one doubling of the sum (Horner), so no weight is shifted. Each list is the steps from
 * one position to the next, from the place before x (taken as an integer address: C does not define a
 * pointer before an array), ended by a 0. */
POTNN_KERNEL POTNN_RAMFUNC static uint32_t NAME(const X *x, const uint8_t *w)
{
    const unsigned head = *w++;
    const uintptr_t before = (uintptr_t)x - 1u;
    uint32_t acc = 0;
    for (unsigned levels = head >> 3; levels; levels--) {
        const X *p = (const X *)before;
        unsigned d = *w++;
        acc += acc;
        if (d) {
            do {
                p += d;
                acc += (uint32_t)*p;
                d = *w++;
            } while (d);
        }
        p = (const X *)before;
        d = *w++;
        if (d) {
            do {
                p += d;
                acc -= (uint32_t)*p;
                d = *w++;
            } while (d);
        }
    }
    return acc << (head & 7);
}

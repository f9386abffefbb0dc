/* indexed, four neighbouring outputs of a row at once, for convs 3 taps wide at stride 1: each listed
 * weight adds (or subtracts) inputs i..i+3 of the four outputs' receptive field x (rows of 6 inputs:
 * 3 taps + 3 more positions; the stream's positions are places in that layout). acc[4] gains the four
 * sums; the return value is the next filter's stream (filters follow each other, no offset table).
 * A list's steps start from the place before x: its address is taken as an integer, since C does not
 * define a pointer before an array (the loops are written as do-while so that each weight costs one
 * branch). */
POTNN_KERNEL POTNN_RAMFUNC static const uint8_t *NAME(uint32_t *acc, const X *x, const uint8_t *w)
{
    const unsigned head = *w++;
    const uintptr_t before = (uintptr_t)x - 1u;
    uint32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (unsigned levels = head >> 3; levels; levels--) {
        const X *p = (const X *)before;
        unsigned d = *w++;
        a0 += a0;
        a1 += a1;
        a2 += a2;
        a3 += a3;
        if (d) {
            do {
                p += d;
                a0 += (uint32_t)p[0];
                a1 += (uint32_t)p[1];
                a2 += (uint32_t)p[2];
                a3 += (uint32_t)p[3];
                d = *w++;
            } while (d);
        }
        p = (const X *)before;
        d = *w++;
        if (d) {
            do {
                p += d;
                a0 -= (uint32_t)p[0];
                a1 -= (uint32_t)p[1];
                a2 -= (uint32_t)p[2];
                a3 -= (uint32_t)p[3];
                d = *w++;
            } while (d);
        }
    }
    const unsigned low = head & 7;
    acc[0] += a0 << low;
    acc[1] += a1 << low;
    acc[2] += a2 << low;
    acc[3] += a3 << low;
    return w;
}

/* One output of an unrolled linear layer from tables: n[] counts its weights of each exponent
 * MAX_EXPONENT..0, positive then negative, whose input indices follow each other in ix[]. Horner: the sum
 * is doubled once per exponent, so each weight costs a load and an add, not a shift. */
POTNN_KERNEL POTNN_RAMFUNC static int32_t NAME(const X *x, const INDEX *ix, const INDEX *n)
{
    int32_t acc = 0, sum;
    for (const INDEX *end = n + COUNTS; n != end; n++) {
        unsigned c = *n;
        sum = 0;
        if (c & 1)
            sum += x[*ix++];
        if (c & 2) {
            sum += x[ix[0]] + x[ix[1]];
            ix += 2;
        }
        for (c >>= 2; c; c--, ix += 4)
            sum += x[ix[0]] + x[ix[1]] + x[ix[2]] + x[ix[3]];
        acc = (end - n) & 1 ? acc - sum : acc + acc + sum;
    }
    return acc;
}

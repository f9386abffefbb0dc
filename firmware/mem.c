/*
 * mem.c - memset/memcpy/memmove/memcmp for a firmware linked without a C library.
 *
 * Compilers may turn plain loops (in the model or the app) into calls to these even with
 * -ffreestanding.  Byte loops: small, and nothing here is on a measured hot path.  Unused
 * ones are dropped by --gc-sections.
 */
#include <stddef.h>
#include <stdint.h>

/* Keep GCC from recognising these loops as memset/memcpy and calling themselves. */
#if defined(__GNUC__) && !defined(__clang__)
#define BENCH_NO_IDIOM __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define BENCH_NO_IDIOM
#endif

BENCH_NO_IDIOM void *memset(void *dst, int value, size_t count)
{
    uint8_t *d = (uint8_t *)dst;

    while (count--)
        *d++ = (uint8_t)value;
    return dst;
}

BENCH_NO_IDIOM void *memcpy(void *dst, const void *src, size_t count)
{
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;

    while (count--)
        *d++ = *s++;
    return dst;
}

BENCH_NO_IDIOM void *memmove(void *dst, const void *src, size_t count)
{
    uint8_t *d = (uint8_t *)dst;
    const uint8_t *s = (const uint8_t *)src;

    if (d < s) {
        while (count--)
            *d++ = *s++;
    } else {
        d += count;
        s += count;
        while (count--)
            *--d = *--s;
    }
    return dst;
}

int memcmp(const void *a, const void *b, size_t count)
{
    const uint8_t *x = (const uint8_t *)a;
    const uint8_t *y = (const uint8_t *)b;

    for (; count; count--, x++, y++) {
        if (*x != *y)
            return *x < *y ? -1 : 1;
    }
    return 0;
}

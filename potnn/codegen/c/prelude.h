/* All ones if bit k of b is set, else 0 (the sign mask of a packed weight). */
#define POTNN_NEG(b, k) ((int32_t)((uint32_t)(b) << (31 - (k))) >> 31)

/* GCC/Clang only, no effect on results: keep each layer a function of its own (map files and
 * profiles name it), and make a pointer opaque so that the compiler re-loads the inputs of each
 * output channel instead of caching them across channels in registers RV32EC does not have
 * (volatile: Clang would otherwise merge the identical statements of all channels into one).
 * POTNN_BARRIER makes a value opaque where merging is harmless. */
#if defined(__GNUC__)
#define POTNN_NOINLINE __attribute__((noinline))
#define POTNN_OPAQUE(p) __asm__ __volatile__("" : "+r"(p))
#define POTNN_AFTER(p, v) __asm__("" : "+r"(p) : "r"(v))
#define POTNN_BARRIER(v) __asm__("" : "+r"(v))
#else
#define POTNN_NOINLINE
#define POTNN_OPAQUE(p) ((void)0)
#define POTNN_AFTER(p, v) ((void)0)
#define POTNN_BARRIER(v) ((void)0)
#endif
/* No multiply, whatever the compiler: it would rewrite -(x << 2) as x * -4, x + (x << 2) as x * 5, and a
 * variable stepped by a constant in a loop as the constant times the loop's count, then call __mulsi3
 * (RV32EC) or use muls (Cortex-M0+). An opaque value cannot be rewritten so: every shift's operand and
 * result are, and POTNN_STEP(v) at the top of a loop's body keeps v a running sum. */
static inline int32_t potnn_shl(uint32_t x, int n)
{
    POTNN_BARRIER(x);
    x <<= n;
    POTNN_BARRIER(x);
    return (int32_t)x;
}
/* x << n, through uint32 for a value that may be negative (C99 leaves that undefined for signed types). */
#define POTNN_SHL(x, n) potnn_shl((uint32_t)(int32_t)(x), (n))
#define POTNN_STEP(v) POTNN_BARRIER(v)
/* The dot-product kernels stay generic (GCC: not specialised per call), so their size is known. */
#if defined(__GNUC__) && !defined(__clang__)
#define POTNN_KERNEL __attribute__((noipa))
#else
#define POTNN_KERNEL POTNN_NOINLINE
#endif
/* Where the kernels run: a firmware may define this to place them in SRAM, and POTNN_RAMFUNC_<kernel>
 * (empty) to keep one of them in flash all the same. */
#ifndef POTNN_RAMFUNC
#define POTNN_RAMFUNC
#endif

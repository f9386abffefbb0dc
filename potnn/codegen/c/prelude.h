/* x << n for a value that may be negative (C99 leaves that undefined for signed types). */
#define POTNN_SHL(x, n) ((int32_t)((uint32_t)(int32_t)(x) << (n)))
/* All ones if bit k of b is set, else 0 (the sign mask of a packed weight). */
#define POTNN_NEG(b, k) ((int32_t)((uint32_t)(b) << (31 - (k))) >> 31)

/* GCC/Clang only, no effect on results: keep each layer a function of its own (map files and
 * profiles name it), and make a pointer opaque so that the compiler re-loads the inputs of each
 * output channel instead of caching them across channels in registers RV32EC does not have. */
#if defined(__GNUC__)
#define POTNN_NOINLINE __attribute__((noinline))
#define POTNN_OPAQUE(p) __asm__("" : "+r"(p))
#define POTNN_AFTER(p, v) __asm__("" : "+r"(p) : "r"(v))
#else
#define POTNN_NOINLINE
#define POTNN_OPAQUE(p) ((void)0)
#define POTNN_AFTER(p, v) ((void)0)
#endif
/* The dot-product kernels stay generic (GCC: not specialised per call), so their size is known. */
#if defined(__GNUC__) && !defined(__clang__)
#define POTNN_KERNEL __attribute__((noipa))
#else
#define POTNN_KERNEL POTNN_NOINLINE
#endif
/* The packed dot-product kernels; a firmware may define this to place them in SRAM. */
#ifndef POTNN_RAMFUNC
#define POTNN_RAMFUNC
#endif

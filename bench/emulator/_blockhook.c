/*
 * Block-hook accelerator for the Unicorn backend (bench/emulator/blockhook.py).
 *
 * Why C: Unicorn calls the block hook once per executed basic block. A Python callback costs
 * about 0.6 us, which caps the emulator near 1.5 M blocks/s (5-8 M instructions/s on tight
 * inference loops). This hook does the same bookkeeping in a few nanoseconds: look the block
 * up in a table of precomputed costs (filled from Python, once per block, via `miss`), add its
 * cycles and instructions, add the taken-branch penalty when the block was not entered by
 * fall-through, check the stack pointer after blocks that write it, and stop the emulation when
 * the instruction budget is spent.
 *
 * Per-layer profile: every block has an owner (a layer of the model, "outside", or BH_INHERIT for
 * shared code such as the dot kernels, which runs for whoever called it). The hook keeps the
 * current context and adds each block's cycles and instructions, and the lowest stack pointer
 * seen, to that context's slot in the prof_* arrays.
 *
 * The layout of bh_state and bh_entry is mirrored by ctypes structures in blockhook.py; keep the
 * two in step. Compiled on first use with the host C compiler (`cc -O2 -shared -fPIC`).
 */
#include <stdint.h>

typedef struct uc_struct uc_engine;
typedef int (*bh_emu_stop_fn)(uc_engine *);
typedef int (*bh_reg_read_fn)(uc_engine *, int, void *);
typedef void (*bh_miss_fn)(uint32_t addr, uint32_t size);

#define BH_WRITES_SP 1u
#define BH_INHERIT 0xFFFFFFFFu /* block owner: the context of the code that called it */

#define BH_ST_LIMIT 1u   /* instruction budget reached */
#define BH_ST_STACK 2u   /* stack pointer below the static-RAM end */
#define BH_ST_MISS 4u    /* Python could not describe a block */
#define BH_ST_ALIGN 8u   /* a misaligned load or store (both cores fault on those) */

typedef struct {
    uint64_t key; /* ((uint64_t)addr << 24 | size) + 1; 0 marks an empty slot */
    uint32_t cycles;
    uint32_t instrs;
    uint32_t fallthrough;
    uint32_t exit_penalty;
    uint32_t entry_penalty;
    uint32_t flags;
    uint32_t owner;       /* profile context, or BH_INHERIT */
    uint32_t pad;
} bh_entry;

typedef struct {
    uint64_t cycles;
    uint64_t instrs;
    uint64_t blocks;
    uint64_t instr_limit;
    uint64_t blk_cycles0; /* counters when the current block started */
    uint64_t blk_instrs0;
    uint64_t data_reads;
    uint32_t blk_addr;
    uint32_t blk_size;
    uint32_t prev_ft;
    uint32_t prev_pen;
    uint32_t prev_flags;
    uint32_t sp_reg;
    uint32_t sp_min;
    uint32_t stack_limit;
    uint32_t status;
    uint32_t mask;
    uint32_t data_penalty;
    uint32_t last_sp;
    bh_entry *table;
    bh_emu_stop_fn emu_stop;
    bh_reg_read_fn reg_read;
    bh_miss_fn miss;
    uint64_t bad_addr;   /* first misaligned access: address, size, write?, PC */
    uint32_t bad_size;
    uint32_t bad_write;
    uint32_t bad_pc;
    uint32_t pc_reg;
    uint32_t ctx;          /* profile context of the block being executed */
    uint32_t pad;
    uint64_t *prof_cycles; /* per context (blockhook.py sizes the arrays) */
    uint64_t *prof_instrs;
    uint32_t *prof_sp_min;
} bh_state;

static inline uint32_t bh_hash(uint64_t key, uint32_t mask) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 40) & mask;
}

static bh_entry *bh_lookup(bh_state *s, uint64_t key) {
    uint32_t i = bh_hash(key, s->mask);
    for (uint32_t n = 0; n <= s->mask; n++) {
        bh_entry *e = &s->table[i];
        if (e->key == key) return e;
        if (e->key == 0) return 0;
        i = (i + 1) & s->mask;
    }
    return 0;
}

int bh_insert(bh_state *s, uint32_t addr, uint32_t size, uint32_t cycles, uint32_t instrs,
              uint32_t exit_penalty, uint32_t entry_penalty, uint32_t flags, uint32_t owner) {
    uint64_t key = (((uint64_t)addr << 24) | size) + 1;
    uint32_t i = bh_hash(key, s->mask);
    for (uint32_t n = 0; n <= s->mask; n++) {
        bh_entry *e = &s->table[i];
        if (e->key == 0 || e->key == key) {
            e->key = key;
            e->cycles = cycles;
            e->instrs = instrs;
            e->fallthrough = addr + size;
            e->exit_penalty = exit_penalty;
            e->entry_penalty = entry_penalty;
            e->flags = flags;
            e->owner = owner;
            return 0;
        }
        i = (i + 1) & s->mask;
    }
    return -1; /* full: Python clears the table and retries */
}

void bh_block(uc_engine *uc, uint64_t address, uint32_t size, void *user_data) {
    bh_state *s = (bh_state *)user_data;
    uint32_t addr = (uint32_t)address;
    uint64_t key = (((uint64_t)addr << 24) | size) + 1;
    bh_entry *e;
    uint64_t cycles0 = s->cycles;
    uint32_t ctx;

    if (s->prev_flags & BH_WRITES_SP) {
        uint32_t sp = 0;
        s->reg_read(uc, (int)s->sp_reg, &sp);
        s->last_sp = sp;
        if (sp < s->sp_min) s->sp_min = sp;
        if (sp < s->prof_sp_min[s->ctx]) s->prof_sp_min[s->ctx] = sp; /* the context that wrote SP */
        if (sp < s->stack_limit) {
            s->status |= BH_ST_STACK;
            s->emu_stop(uc);
        }
    }
    e = bh_lookup(s, key);
    if (!e) {
        s->miss(addr, size);
        e = bh_lookup(s, key);
        if (!e) {
            s->status |= BH_ST_MISS;
            s->emu_stop(uc);
            return;
        }
    }
    if (addr != s->prev_ft) s->cycles += s->prev_pen + e->entry_penalty;
    s->blk_addr = addr;
    s->blk_size = size;
    s->blk_cycles0 = s->cycles;
    s->blk_instrs0 = s->instrs;
    s->cycles += e->cycles;
    s->instrs += e->instrs;
    s->blocks++;
    s->prev_ft = e->fallthrough;
    s->prev_pen = e->exit_penalty;
    s->prev_flags = e->flags;
    ctx = e->owner == BH_INHERIT ? s->ctx : e->owner;
    if (ctx != s->ctx) { /* entering a layer (or leaving one): its stack starts at the caller's SP */
        uint32_t sp = 0;
        s->reg_read(uc, (int)s->sp_reg, &sp);
        if (sp < s->prof_sp_min[ctx]) s->prof_sp_min[ctx] = sp;
        s->ctx = ctx;
    }
    s->prof_cycles[ctx] += s->cycles - cycles0;
    s->prof_instrs[ctx] += e->instrs;
    if (s->instrs >= s->instr_limit) {
        s->status |= BH_ST_LIMIT;
        s->emu_stop(uc);
    }
}

#define UC_MEM_WRITE_TYPE 17 /* uc_mem_type UC_MEM_WRITE */

static inline void bh_check_align(bh_state *s, uc_engine *uc, int type, uint64_t address, int size) {
    if (size > 1 && (address & (uint64_t)(size - 1))) {
        if (!(s->status & BH_ST_ALIGN)) {
            uint32_t pc = 0;
            s->reg_read(uc, (int)s->pc_reg, &pc);
            s->bad_addr = address;
            s->bad_size = (uint32_t)size;
            s->bad_write = type == UC_MEM_WRITE_TYPE;
            s->bad_pc = pc;
        }
        s->status |= BH_ST_ALIGN;
        s->emu_stop(uc);
    }
}

/* UC_HOOK_MEM_READ on flash: one more access to the slow flash array per data read. */
void bh_data_read(uc_engine *uc, int type, uint64_t address, int size, int64_t value, void *user_data) {
    bh_state *s = (bh_state *)user_data;
    (void)value;
    s->cycles += s->data_penalty;
    s->prof_cycles[s->ctx] += s->data_penalty;
    s->data_reads++;
    bh_check_align(s, uc, type, address, size);
}

/* UC_HOOK_MEM_READ|WRITE on SRAM and peripherals: alignment check (this hook also makes
 * Unicorn keep the PC exact for those accesses, which the peripheral models need). */
void bh_align(uc_engine *uc, int type, uint64_t address, int size, int64_t value, void *user_data) {
    (void)value;
    bh_check_align((bh_state *)user_data, uc, type, address, size);
}

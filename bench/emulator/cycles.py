"""Cycle models: how many core clocks a basic block costs on QingKe V2A and Cortex-M0+.

Why per block and not per instruction: a Python (or C) callback per instruction would make the
emulator 10-50x slower. Unicorn calls us once per translated block; the block's cost is computed
once (capstone decodes it), cached, and only the taken/not-taken decision is made at run time:
when the next block does not start at this block's fall-through address, the block ended in a
taken branch or jump and the pipeline-flush penalty is added.

The model is deliberately simple and every number has its source next to it. It is calibrated
against one published hardware figure (BitNetMCU, see CALIBRATION below); treat absolute cycle
counts as estimates within about ±15 %, and differences between two builds on the same model
as much more reliable than that.

QingKe V2A (WCH CH32V003, RV32EC, 2-stage pipeline)
===================================================

==========================  ======  ===========================================================
class                       cycles  source
==========================  ======  ===========================================================
ALU, lui/auipc, c.* ALU     1       [T1] SRAM loop grows by 1 cycle per inserted 16- or 32-bit
                                    nop; [T2] 10x c.nop = 10 cycles at 0 and 1 wait state
load (lb/lh/lw/..., c.lw)   2       [T1] "every [memory] instruction takes two cycles"
                                    (SRAM and I/O share the AHB-Lite bus); [T2] 10x c.lw /
                                    c.sw from SRAM = 20 cycles at 0 and 1 wait state
store (sb/sh/sw, c.sw)      2       [T1], [T2] as loads
branch, not taken           1       [T1] static prediction "not taken"
taken branch / jump extra   +2      [T1] bare ``c.addi; c.bnez`` loop = 4 cycles from SRAM
                                    (1 + 1 + 2 for the flush); jal/jalr always pay it
csr*, fence                 1       assumption (not measured; not used in inference loops)
mul/div/rem, x16..x31       fault   RV32EC has no M extension and 16 registers
                                    (QingKe V2 processor manual, CH32V003 RM ch. 1)
flash fetch                 words   [T1] "the Flash can only provide 32 bits of data every two
                            ×(1+ws) cycles" at 48 MHz / 1 wait state; [T2] 10x 32-bit nop =
                                    20 cycles at 1 ws, 10 at 0 ws. A block from flash costs
                                    max(execution, 32-bit words it spans × (1 + wait states));
                                    a word shared with the block before is not fetched again
                                    on fall-through. This reproduces [T1]'s bare loop from
                                    flash (6 cycles) and its "0/1 and 2/3 nops cost the same"
                                    steps.
SRAM fetch                  free    [T1] code in SRAM runs 1 cycle/instruction (16 or 32 bit)
data read from flash        +ws     assumption (one flash access; unmeasured)
wait states                 ACTLR   read from FLASH->ACTLR.LATENCY at run time (the CH32V003
                                    RM requires 1 wait state above 24 MHz; 0 at or below)
==========================  ======  ===========================================================

Cortex-M0+ (Puya PY32F003, ARMv6-M Thumb, 2-stage pipeline)
===========================================================

==========================  ======  ===========================================================
class                       cycles  source (ARM DDI 0484 Cortex-M0+ TRM, table 3-1, 0 ws)
==========================  ======  ===========================================================
data processing, mov, adr   1       TRM
muls                        1       TRM (fast-multiplier option; Puya does not publish which
                                    option it built — assumption)
ldr*/str* (incl. literal)   2       TRM
ldm/stm/push/pop            1+N     TRM
pop {..,pc}                 3+N     TRM (1+N plus 2 for the refill)
b<cond>                     1 / 2   TRM (not taken / taken)
b, bx, blx, mov/add pc      2       TRM
bl                          3       TRM
mrs, msr, dmb, dsb, isb     3       TRM
svc, bkpt, udf, wfi, wfe    fault   the bench firmware uses none of them
32-bit encodings other      fault   ARMv6-M has only bl/mrs/msr/dmb/dsb/isb as 32-bit
than the six above                  instructions (ARMv6-M ARM, A5.1)
flash fetch                 words   the core fetches 32 bits per access [A1]; with ws wait
                            ×(1+ws) states one word costs 1+ws cycles (assumption, no
                                    prefetch buffer documented for PY32F003)
refill after a taken jump   words   as for QingKe: a jump target's words are all fetched anew
data read from flash        +ws     assumption (literal pools, const tables)
wait states                 ACR     read from FLASH->ACR.LATENCY at run time (PY32F003 RM:
                                    1 wait state above 24 MHz)
==========================  ======  ===========================================================

Sources
-------
[T1] cpldcpu, "CH32V003 Instruction Timing Test", github.com/cpldcpu/DRAM_exploration,
     instruction_timing/README.md (CH32V003 at 48 MHz, SysTick-measured loops, flash and SRAM).
[T2] jnk0le, measurements posted in cnlohr/rv003usb issue #5 "some performance investigation"
     (CH32V003, straight-line sequences at 0 and 1 wait state).
[A1] ARM community forum answer (ARM staff) "How does the Cortex M0+ pipeline handle a branch
     instruction to an address that is not 32-bit aligned?": the M0+ fetches 32 bits per fetch.

CALIBRATION
-----------
BitNetMCU (cpldcpu) publishes 481,624 cycles per inference for its 12k-parameter FP1.3.0
fully-connected MNIST model on a CH32V002 at 48 MHz (mcu/readme.md). Its demo places the layer
kernel in SRAM (``.srodata``) and runs the rest from flash. Built here with Debian GCC 12,
``-march=rv32ec -Os`` and the same placement, and run under this model (0 ws for SRAM code,
1 ws flash as on CH32V003 at 48 MHz): 469,624 cycles per inference (mean of the demo's three
samples), 330,398 instructions: 2.5 % below the published 481,624, inside the ±15 % target.
Built with -O2 instead (the kernel then gets inlined into flash-resident code): 560,487 cycles
(+16 %); -Os with the kernel left in flash: 704,482 (+46 %) — the SRAM placement matters as
much as the author's measurements suggest. ``CALIBRATION_RESULT`` holds the figures;
``tests/benchmarks/test_emulator_benchmark.py`` (``pytest -m benchmark``) re-measures them when a
BitNetMCU build is supplied (BitNetMCU's code is never part of this repository). The CH32V002 has one more flash wait state than the CH32V003 but the hot
loop runs from SRAM, so the comparison is about the SRAM timing, which is the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple, Protocol

#: Filled in from the calibration run (figures only; see the module docstring).
CALIBRATION_RESULT: dict[str, object] = {
    "reference_cycles": 481_624,
    "reference": "BitNetMCU 12k FP1.3.0 FC MNIST, CH32V002 @48 MHz (cpldcpu/BitNetMCU mcu/readme.md)",
    "build": "Debian GCC 12.2 riscv64-unknown-elf, -march=rv32ec -mabi=ilp32e -Os -flto, "
             "processfclayer in SRAM (.srodata) as in BitNetMCU's demo; flash at 1 wait state",
    "emulated_cycles": 469_624,  # mean of the demo's 3 samples (469,642 / 469,666 / 469,564)
    "instructions": 330_398,  # last sample
    "ratio": 0.975,  # emulated / published: -2.5 %
    # Sensitivity, same model: -O2 inlines the kernel into flash-resident code: 560,487 cycles,
    # 285,257 instructions (+16 %); -Os with the kernel left in flash: 704,482 cycles (+46 %).
}

#: Flag bit: the block writes the stack pointer (checked against the static-RAM end).
WRITES_SP = 1


class Insn(NamedTuple):
    """A decoded instruction: just what the models need (keeps capstone objects out)."""

    address: int
    size: int
    mnemonic: str
    op_str: str


@dataclass(frozen=True)
class BlockCost:
    """Precomputed cost of one translated block.

    ``cycles`` is the cost when the block is left through its fall-through address;
    ``exit_penalty`` is added when the next block starts anywhere else (a taken branch or a
    jump), ``entry_penalty`` when this block is entered other than by fall-through (refill of
    the fetch path at its address). ``prefix`` gives, per instruction, the cycles spent in the
    block before it starts, for counter reads in the middle of a block.
    """

    address: int
    size: int
    cycles: int
    instructions: int
    exit_penalty: int
    entry_penalty: int
    flags: int
    prefix: tuple[int, ...]
    addresses: tuple[int, ...]
    illegal: str | None = None
    illegal_pc: int | None = None

    def offset_of(self, pc: int) -> int:
        """Index of the instruction at ``pc`` in the block (0 when not found)."""
        try:
            return self.addresses.index(pc)
        except ValueError:
            return 0


class CycleModel(Protocol):
    """What a core's timing model provides to the backend."""

    name: str

    def block_cost(self, insns: list[Insn], address: int, size: int, in_flash: bool, ws: int) -> BlockCost:
        ...

    def data_read_penalty(self, ws: int) -> int:
        ...


def _words_spanned(address: int, size: int) -> int:
    """32-bit fetch words covered by ``size`` bytes starting at ``address``."""
    if size <= 0:
        return 0
    return ((address + size - 1) >> 2) - (address >> 2) + 1


def _fetch_bound(exec_cycles: int, address: int, size: int, in_flash: bool, ws: int) -> tuple[int, int]:
    """(cycles when entered by fall-through, extra cycles when entered by a jump).

    From flash, a block cannot run faster than its 32-bit fetch words arrive (1 + ws cycles
    each). Entered by fall-through from a block ending mid-word, its first word is already
    fetched; entered by a jump, every word it spans must be fetched.
    """
    if not in_flash:
        return exec_cycles, 0
    words = _words_spanned(address, size)
    seq_words = words - 1 if address & 3 else words
    seq = max(exec_cycles, seq_words * (1 + ws))
    jump = max(exec_cycles, words * (1 + ws))
    return seq, jump - seq


def _scale_prefix(exec_prefix: list[int], exec_total: int, total: int) -> tuple[int, ...]:
    """Stretch per-instruction start offsets when fetch, not execution, limits the block."""
    if exec_total <= 0 or total == exec_total:
        return tuple(exec_prefix)
    return tuple((p * total) // exec_total for p in exec_prefix)


class _Step(NamedTuple):
    """One instruction's share of a block: execution cycles and what it does to the block."""

    cycles: int
    exit_penalty: int | None = None   # extra cycles when the block is left by a jump (None: no say)
    writes_sp: bool = False
    illegal: str | None = None        # why the core cannot execute it


class _PerInstructionModel:
    """A block costs the sum of its instructions, bounded below by the flash fetch rate.

    Subclasses say what one instruction costs (:meth:`step`); the last instruction that names an
    exit penalty sets the block's, and the first illegal one is where the run stops.
    """

    name = ""

    def step(self, ins: Insn) -> _Step:  # pragma: no cover - abstract
        raise NotImplementedError

    def block_cost(self, insns: list[Insn], address: int, size: int, in_flash: bool, ws: int) -> BlockCost:
        exec_cycles = 0
        prefix: list[int] = []
        flags = 0
        illegal: str | None = None
        illegal_pc: int | None = None
        exit_penalty = 0
        for ins in insns:
            prefix.append(exec_cycles)
            step = self.step(ins)
            if step.exit_penalty is not None:
                exit_penalty = step.exit_penalty
            if step.writes_sp:
                flags |= WRITES_SP
            if illegal is None and step.illegal is not None:
                illegal, illegal_pc = step.illegal, ins.address
            exec_cycles += step.cycles
        total, entry_penalty = _fetch_bound(exec_cycles, address, size, in_flash, ws)
        return BlockCost(address, size, total, len(insns), exit_penalty, entry_penalty, flags,
                         _scale_prefix(prefix, exec_cycles, total),
                         tuple(i.address for i in insns), illegal, illegal_pc)

    def data_read_penalty(self, ws: int) -> int:
        """A data read from flash is one flash access: ``ws`` extra cycles."""
        return ws


# ---------------------------------------------------------------------------------- QingKe V2A
_RV_LOADS = {"lb", "lh", "lw", "lbu", "lhu", "lwsp"}
_RV_STORES = {"sb", "sh", "sw", "swsp"}
_RV_BRANCHES = {"beq", "bne", "blt", "bge", "bltu", "bgeu", "beqz", "bnez", "blez", "bgez",
                "bltz", "bgtz", "bgt", "ble", "bgtu", "bleu"}
_RV_JUMPS = {"j", "jal", "jr", "jalr", "ret", "call", "tail"}
_RV_NO_M = {"mul", "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu"}
_RV_UNSUPPORTED = {"wfi", "ecall", "ebreak", "unimp", "sret", "uret", "dret"}
# ABI names of x16..x31, which RV32E does not have.
_RV_HIGH_REGS = re.compile(r"\b(a6|a7|s[2-9]|s1[01]|t[3-6]|x(1[6-9]|2\d|3[01]))\b")


class QingKeV2A(_PerInstructionModel):
    """QingKe V2A timing (CH32V003); see the module docstring for every number's source."""

    name = "qingke-v2a"
    TAKEN_FLUSH = 2  # [T1]

    def step(self, ins: Insn) -> _Step:
        m = ins.mnemonic[2:] if ins.mnemonic.startswith("c.") else ins.mnemonic
        cost = 2 if m in _RV_LOADS or m in _RV_STORES else 1
        exit_penalty = self.TAKEN_FLUSH if m in _RV_BRANCHES or m in _RV_JUMPS or m == "mret" else None
        illegal: str | None = None
        if m in _RV_NO_M or m.startswith(("f", "amo", "lr.", "sc.")) and m not in ("fence", "fence.i"):
            illegal = f"'{ins.mnemonic} {ins.op_str}' is not an RV32EC instruction"
        elif m in _RV_UNSUPPORTED:
            illegal = f"'{ins.mnemonic}' is not supported by the bench emulator (polled firmware never needs it)"
        elif _RV_HIGH_REGS.search(ins.op_str):
            illegal = f"'{ins.mnemonic} {ins.op_str}' uses a register RV32E does not have"
        first = ins.op_str.split(",", 1)[0].strip()
        writes_sp = first == "sp" and m not in _RV_STORES and m not in _RV_BRANCHES
        return _Step(cost, exit_penalty, writes_sp, illegal)


# ---------------------------------------------------------------------------------- Cortex-M0+
_ARM_COND = ("eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le")
_ARM_32BIT_OK = {"bl", "mrs", "msr", "dmb", "dsb", "isb"}
_ARM_UNSUPPORTED = {"svc", "bkpt", "udf", "wfi", "wfe"}
_ARM_THREE = {"mrs", "msr", "dmb", "dsb", "isb"}


def _reglist_len(op_str: str) -> int:
    m = re.search(r"\{([^}]*)\}", op_str)
    if not m:
        return 1
    n = 0
    for part in m.group(1).split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-")
            n += int(b.strip()[1:]) - int(a.strip()[1:]) + 1
        elif part:
            n += 1
    return n


class CortexM0Plus(_PerInstructionModel):
    """Cortex-M0+ timing (PY32F003); see the module docstring for every number's source."""

    name = "cortex-m0plus"

    def step(self, ins: Insn) -> _Step:
        m = ins.mnemonic.split(".")[0]
        ops = ins.op_str
        first = ops.split(",", 1)[0].strip()
        cost = 1
        exit_penalty: int | None = None
        writes_sp = first == "sp" and not m.startswith(("str", "ldr", "cmp", "tst"))
        if m in ("push", "pop", "ldm", "stm", "ldmia", "stmia"):
            cost = 1 + _reglist_len(ops)
            if m == "pop" and "pc" in ops:
                exit_penalty = 2
            writes_sp = writes_sp or m in ("push", "pop") or first.startswith("sp")
        elif m.startswith(("ldr", "str")):
            cost = 2
            if first == "pc":
                exit_penalty = 2
        elif m == "bl":
            cost, exit_penalty = 2, 1
        elif m in ("b", "bx", "blx") or (m.startswith("b") and m[1:] in _ARM_COND):
            exit_penalty = 1
        elif m in _ARM_THREE:
            cost = 3
        elif first == "pc" and m in ("mov", "add"):
            exit_penalty = 1
        illegal: str | None = None
        if m in _ARM_UNSUPPORTED:
            illegal = f"'{ins.mnemonic}' is not supported by the bench emulator (polled firmware never needs it)"
        elif ins.size == 4 and m not in _ARM_32BIT_OK:
            illegal = f"'{ins.mnemonic} {ops}' is a Thumb-2 instruction ARMv6-M does not have"
        return _Step(cost, exit_penalty, writes_sp, illegal)


MODELS: dict[str, type[_PerInstructionModel]] = {QingKeV2A.name: QingKeV2A, CortexM0Plus.name: CortexM0Plus}


def get_model(name: str) -> CycleModel:
    """Instantiate a cycle model by name (``qingke-v2a`` or ``cortex-m0plus``)."""
    try:
        return MODELS[name]()
    except KeyError:
        raise ValueError(f"unknown cycle model {name!r}; known: {', '.join(MODELS)}") from None

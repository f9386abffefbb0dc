"""Find multiply and divide instructions (and calls to the libgcc helpers that emulate them) in
the code that runs an inference.

Why: the CH32V003 (RV32EC) has no multiplier; potnn's contract is that the exported model
runs with shifts and adds only.  A ``mul`` would not even execute there, and a call to
``__mulsi3`` would silently cost hundreds of cycles per use.  The check disassembles the linked
ELF (what actually runs), follows direct calls from ``potnn_predict``, and reports offenders per
function.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import capstone

from bench.elf import EM_ARM, EM_RISCV, read_elf
from potnn.codegen.multiply import MULTIPLY_HELPERS

RISCV_MULDIV = frozenset({"mul", "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu",
                          "c.mul"})
# ARMv6-M has muls, but the contract is shifts and adds on every core (export checks the same:
# potnn.codegen.multiply); division never exists there
ARM_MULDIV = frozenset({"mul", "muls", "sdiv", "udiv"})
HELPERS = MULTIPLY_HELPERS


@dataclass(frozen=True)
class Offense:
    function: str
    address: int
    text: str                 # e.g. "mul a0, a0, a1" or "call __mulsi3"


@dataclass(frozen=True)
class _Function:
    name: str
    address: int
    code: bytes


def _functions(elf: Path) -> tuple[str, dict[int, _Function]]:
    image = read_elf(elf)
    if not image.symbols:
        raise ValueError(f"{elf}: no symbol table (build with symbols, e.g. -g)")
    code = [s for s in image.sections if s.executable and s.data]
    funcs: dict[int, _Function] = {}
    for sym in image.symbols:
        if sym.kind != "STT_FUNC" or sym.size == 0:
            continue
        addr = sym.value & ~1
        for sec in code:
            if sec.address <= addr < sec.address + sec.size:
                off = addr - sec.address
                funcs[addr] = _Function(sym.name, addr, sec.data[off: off + sym.size])
                break
    return image.machine, funcs


def _disassembler(machine: str) -> capstone.Cs:
    if machine == EM_RISCV:
        md = capstone.Cs(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV32 | capstone.CS_MODE_RISCVC)
    elif machine == EM_ARM:
        md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
    else:
        raise ValueError(f"unsupported ELF machine {machine}")
    md.detail = True
    md.skipdata = True
    return md


def _call_targets(machine: str, insn: capstone.CsInsn, auipc: dict[int, int]) -> list[int]:
    """Direct call/jump targets of one instruction (absolute addresses)."""
    m = insn.mnemonic
    if machine == EM_RISCV:
        ops = insn.operands
        if m in ("jal", "c.jal", "c.j", "j") and ops and ops[-1].type == capstone.CS_OP_IMM:
            return [insn.address + ops[-1].imm]
        if m == "auipc" and len(ops) == 2:
            auipc[ops[0].reg] = insn.address + (ops[1].imm << 12)
        elif m == "jalr" and ops:
            for op in ops:
                if op.type == capstone.CS_OP_MEM and op.mem.base in auipc:
                    return [auipc[op.mem.base] + op.mem.disp]
            if len(ops) >= 2 and ops[1].type == capstone.CS_OP_REG and ops[1].reg in auipc:
                imm = ops[2].imm if len(ops) > 2 and ops[2].type == capstone.CS_OP_IMM else 0
                return [auipc[ops[1].reg] + imm]
        return []
    if m in ("bl", "b", "b.w") and insn.operands and insn.operands[0].type == capstone.CS_OP_IMM:
        return [insn.operands[0].imm]
    return []


def _walk(machine: str, funcs: dict[int, _Function], roots: list[int]) -> Iterator[tuple[_Function, capstone.CsInsn, list[int]]]:
    """Yield (function, instruction, direct call/jump targets) for every function reachable from roots."""
    md = _disassembler(machine)
    todo, seen = list(roots), set()
    while todo:
        addr = todo.pop()
        if addr in seen or addr not in funcs:
            continue
        seen.add(addr)
        fn = funcs[addr]
        auipc: dict[int, int] = {}
        for insn in md.disasm(fn.code, fn.address):
            targets = [t & ~1 for t in _call_targets(machine, insn, auipc)]
            todo.extend(t for t in targets if not fn.address <= t < fn.address + len(fn.code))
            yield fn, insn, targets


def _roots(elf: Path, funcs: dict[int, _Function], names: tuple[str, ...] | None) -> list[int]:
    if names is None:
        return list(funcs)
    by_name = {f.name: f.address for f in funcs.values()}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"{elf.name}: no function {', '.join(missing)}")
    return [by_name[n] for n in names]


def muldiv_report(elf: str | Path, roots: tuple[str, ...] | None = ("potnn_predict",)) -> dict[str, list[Offense]]:
    """Offending instructions per function, for the functions reachable from ``roots``.

    ``roots=None`` checks every function in the image.  Functions reached by a direct call or
    tail call are followed; an empty dict means clean.
    """
    elf = Path(elf)
    machine, funcs = _functions(elf)
    forbidden = RISCV_MULDIV if machine == EM_RISCV else ARM_MULDIV
    report: dict[str, list[Offense]] = {}
    for fn, insn, targets in _walk(machine, funcs, _roots(elf, funcs, roots)):
        if insn.mnemonic in forbidden:
            report.setdefault(fn.name, []).append(Offense(fn.name, insn.address, f"{insn.mnemonic} {insn.op_str}"))
        for target in targets:
            callee = funcs.get(target)
            # zig's compiler_rt names them e.g. "compiler_rt.mulXi3.__mulsi3"
            if callee is not None and callee.name.rsplit(".", 1)[-1] in HELPERS:
                report.setdefault(fn.name, []).append(Offense(fn.name, insn.address, f"call {callee.name}"))
    return report


def reachable_functions(elf: str | Path, root: str = "potnn_predict") -> list[str]:
    """Names of the functions reachable from ``root`` by direct calls (root included)."""
    elf = Path(elf)
    machine, funcs = _functions(elf)
    names = {fn.name for fn, _, _ in _walk(machine, funcs, _roots(elf, funcs, (root,)))}
    return sorted(names)


def call_graph(elf: str | Path) -> dict[str, set[str]]:
    """Each function of the image and the functions it calls or tail-calls directly (by name)."""
    elf = Path(elf)
    machine, funcs = _functions(elf)
    graph: dict[str, set[str]] = {fn.name: set() for fn in funcs.values()}
    for fn, _, targets in _walk(machine, funcs, list(funcs)):
        graph[fn.name].update(funcs[t].name for t in targets if t in funcs)
    return graph

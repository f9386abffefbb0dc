"""Find multiplies in a compiler's assembly of a header: the no-multiply contract, checked at export.

Why at export: the generated C has no `*`, but a compiler may still multiply: it rewrites -(x << 2) as
x * -4, or a variable stepped by a constant in a loop as the constant times the loop's count, and then
calls __mulsi3 (RV32EC, no M extension: hundreds of cycles per call) or uses muls (Cortex-M0+). The
generator writes optimisation barriers against every such rewrite it knows of (c/prelude.h); this check
is what tells the user, at export and not at build, should a compiler find another one.

The assembly is read as text (GCC and Clang write the same GNU syntax), so no disassembler is needed:
a function starts at its label (declared by `.type name, @function`/`%function`), and an instruction
multiplies when its mnemonic is a multiply or divide, or it names a runtime helper that is one.
"""

from __future__ import annotations

import re

# RISC-V M extension, Thumb multiply/divide (every form the assembler accepts)
MULTIPLY_MNEMONICS = frozenset({"mul", "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu", "c.mul",
                                "muls", "mla", "mls", "smull", "umull", "smlal", "umlal", "sdiv", "udiv"})
# the C runtime's multiply/divide helpers (libgcc, compiler_rt, the ARM EABI)
MULTIPLY_HELPERS = frozenset({"__mulsi3", "__muldi3", "__divsi3", "__udivsi3", "__modsi3", "__umodsi3",
                              "__divdi3", "__udivdi3", "__moddi3", "__umoddi3", "__aeabi_idiv", "__aeabi_uidiv",
                              "__aeabi_idivmod", "__aeabi_uidivmod", "__aeabi_ldivmod", "__aeabi_uldivmod",
                              "__aeabi_lmul"})
_TYPE = re.compile(r"^\s*\.type\s+([\w.$]+)\s*,\s*[@%]function")
_LABEL = re.compile(r"^([\w.$]+):")
_TOKEN = re.compile(r"[\w.$]+")


def multiplies(assembly: str) -> dict[str, list[str]]:
    """The multiplying instructions of each function in `assembly` (empty: none multiplies)."""
    functions = {m.group(1) for m in map(_TYPE.match, assembly.splitlines()) if m}
    found: dict[str, list[str]] = {}
    current = ""
    for line in assembly.splitlines():
        label = _LABEL.match(line)
        if label:
            current = label.group(1) if label.group(1) in functions else current
            continue
        text = line.split("#", 1)[0].split("@", 1)[0].strip()  # comments: '#' (RISC-V), '@' (ARM)
        if not text or text.startswith(".") or not line[:1].isspace():
            continue
        tokens = _TOKEN.findall(text)
        if tokens and (tokens[0] in MULTIPLY_MNEMONICS or MULTIPLY_HELPERS & set(tokens[1:])):
            found.setdefault(current, []).append(" ".join(text.split()))
    return found

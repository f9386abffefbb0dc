"""Reading a linked firmware ELF: sections, load segments, symbols.

Why one reader: the build's size split, the multiply/divide check, the emulator's loader and
the flashers all look at the same file; each needs a different slice of it, but they must agree
on what "the bytes in flash" and "the symbol at this address" mean.  The file is read once,
into plain records, and no caller touches the ELF library.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

EM_ARM = "EM_ARM"
EM_RISCV = "EM_RISCV"


class ElfReadError(ValueError):
    """The file is not a readable ELF; the message names it."""


@dataclass(frozen=True)
class Section:
    name: str
    address: int              # run address (VMA)
    load_address: int         # where its bytes are stored (LMA); = address for NOBITS
    size: int
    alloc: bool               # occupies memory on the target
    nobits: bool              # .bss-like: occupies RAM, no bytes in the image
    executable: bool
    data: bytes               # contents of allocated sections with bytes; b"" otherwise


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD segment: ``data`` (the file bytes) goes to ``load_address``."""

    load_address: int
    address: int              # run address
    memory_size: int
    data: bytes


@dataclass(frozen=True)
class Symbol:
    name: str
    value: int                # st_value as stored (Thumb functions have bit 0 set)
    size: int
    kind: str                 # STT_FUNC, STT_OBJECT, STT_NOTYPE, ...
    defined: bool             # in a section of the image (not absolute, not undefined)


@dataclass(frozen=True)
class ElfFile:
    path: Path
    machine: str              # EM_RISCV or EM_ARM
    sections: tuple[Section, ...]
    segments: tuple[Segment, ...]
    symbols: tuple[Symbol, ...]   # .symtab order; no unnamed or mapping ("$x", "$d") symbols

    def symbol(self, name: str) -> int | None:
        """Value of the first symbol called ``name``, or None."""
        return next((s.value for s in self.symbols if s.name == name), None)

    def function_at(self, address: int | None) -> str | None:
        """``name+0xoff`` of the function containing ``address`` (None when nothing plausible).

        Sized function symbols win over labels at the same address.  Why size-aware: a PC past
        the end of the last sized function (in padding or data) must not be blamed on it; a
        label (no size) is trusted for 4 KiB at most.
        """
        return self._functions.lookup(address)

    @cached_property
    def _functions(self) -> "_FunctionIndex":
        return _FunctionIndex(self)


def read_elf(path: str | Path) -> ElfFile:
    """Read ``path`` once; OSError if it cannot be opened, :class:`ElfReadError` if it is no ELF."""
    path = Path(path)
    with open(path, "rb") as fh:
        try:
            return _read(ELFFile(fh), path)
        except (ELFError, ValueError, KeyError, EOFError) as exc:   # struct and format errors
            raise ElfReadError(f"{path}: not a readable ELF ({type(exc).__name__}: {exc})") from None


def _read(elf: ELFFile, path: Path) -> ElfFile:
    segments = tuple(Segment(int(s["p_paddr"]), int(s["p_vaddr"]), int(s["p_memsz"]), s.data()[: s["p_filesz"]])
                     for s in elf.iter_segments() if s["p_type"] == "PT_LOAD")
    sections: list[Section] = []
    symbols: list[Symbol] = []
    for sec in elf.iter_sections():
        flags = sec["sh_flags"]
        vma, size = int(sec["sh_addr"]), int(sec["sh_size"])
        nobits = sec["sh_type"] == "SHT_NOBITS"
        alloc = bool(flags & SH_FLAGS.SHF_ALLOC)
        sections.append(Section(sec.name, vma, _load_address(vma, nobits, segments), size, alloc, nobits,
                                bool(flags & SH_FLAGS.SHF_EXECINSTR),
                                sec.data() if alloc and not nobits else b""))
        if isinstance(sec, SymbolTableSection):
            for sym in sec.iter_symbols():
                if not sym.name or sym.name.startswith("$"):
                    continue
                shndx = sym["st_shndx"]
                symbols.append(Symbol(sym.name, int(sym["st_value"]), int(sym["st_size"]),
                                      sym["st_info"]["type"], shndx not in ("SHN_ABS", "SHN_UNDEF")))
    return ElfFile(path, elf["e_machine"], tuple(sections), segments, tuple(symbols))


def _load_address(vma: int, nobits: bool, segments: tuple[Segment, ...]) -> int:
    if nobits:
        return vma
    for seg in segments:
        if seg.address <= vma < seg.address + max(seg.memory_size, 1):
            return seg.load_address + vma - seg.address
    return vma


class _FunctionIndex:
    """Functions and code labels sorted by address, for :meth:`ElfFile.function_at`."""

    def __init__(self, elf: ElfFile):
        thumb = elf.machine == EM_ARM
        # ".L" names are the assembler's local labels (clang leaves thousands in zig's objects): they
        # name no function and would hide the function they are in.
        funcs = [((s.value & ~1) if thumb else s.value, s.size, s.name) for s in elf.symbols
                 if (s.kind == "STT_FUNC" or (s.kind == "STT_NOTYPE" and s.defined)) and not s.name.startswith(".L")]
        funcs.sort(key=lambda f: (f[0], -f[1]))
        self._addrs = [f[0] for f in funcs]
        self._funcs = funcs

    def lookup(self, addr: int | None) -> str | None:
        if addr is None or not self._funcs:
            return None
        i = bisect.bisect_right(self._addrs, addr) - 1
        label: tuple[int, str] | None = None
        for j in range(i, max(-1, i - 8), -1):
            start, size, name = self._funcs[j]
            if size and addr < start + size:
                return name if addr == start else f"{name}+0x{addr - start:x}"
            if not size and label is None:
                label = (start, name)
        if label is not None and addr - label[0] < 0x1000:
            start, name = label
            return name if addr == start else f"{name}+0x{addr - start:x}"
        return None

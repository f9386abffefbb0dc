"""Reading the firmware ELF: the bytes a flasher would program, symbols, and static RAM extent.

Why not just ``mem_write`` every section: a real chip only gets what the flasher writes into
flash (segment *load* addresses); ``.data`` reaches SRAM because the start-up code copies it.
Loading exactly the flash image means a start-up bug shows up here as it would on the board.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from .faults import ElfLoadError

EM_ARM = "EM_ARM"
EM_RISCV = "EM_RISCV"

#: Symbols that mark the end of static RAM in common linker scripts (first found wins).
END_OF_STATIC_RAM_SYMBOLS = ("_ebss", "__bss_end__", "_end", "end", "__end__", "_heap_start")


@dataclass(frozen=True)
class LoadChunk:
    """Bytes to place at a physical (load) address before reset."""

    address: int
    data: bytes


class ElfImage:
    """An ELF file read once: flash chunks, entry, machine, symbol lookup."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            with open(self.path, "rb") as fh:
                elf = ELFFile(fh)
                self.machine: str = elf["e_machine"]
                self.entry: int = elf["e_entry"]
                self.chunks: list[LoadChunk] = []
                for seg in elf.iter_segments():
                    if seg["p_type"] != "PT_LOAD" or seg["p_filesz"] == 0:
                        continue
                    self.chunks.append(LoadChunk(seg["p_paddr"], seg.data()[: seg["p_filesz"]]))
                self.sections: list[tuple[str, int, int, bool]] = []  # name, addr, size, alloc
                for sec in elf.iter_sections():
                    alloc = bool(sec["sh_flags"] & SH_FLAGS.SHF_ALLOC)
                    self.sections.append((sec.name, sec["sh_addr"], sec["sh_size"], alloc))
                funcs: list[tuple[int, int, str]] = []
                self.symbols: dict[str, int] = {}
                for sec in elf.iter_sections():
                    if not isinstance(sec, SymbolTableSection):
                        continue
                    for sym in sec.iter_symbols():
                        name = sym.name
                        if not name or name.startswith("$"):
                            continue
                        value = sym["st_value"]
                        styp = sym["st_info"]["type"]
                        self.symbols.setdefault(name, value)
                        if styp == "STT_FUNC" or (styp == "STT_NOTYPE" and sym["st_shndx"] != "SHN_ABS"
                                                  and sym["st_shndx"] != "SHN_UNDEF"):
                            addr = value & ~1 if self.machine == EM_ARM else value
                            funcs.append((addr, sym["st_size"], name))
        except (OSError, ValueError) as exc:  # pyelftools raises ELFError (a ValueError subclass)
            raise ElfLoadError(f"cannot read ELF {self.path}: {exc}") from exc
        # Prefer sized function symbols over labels at the same address.
        funcs.sort(key=lambda f: (f[0], -f[1]))
        self._func_addrs = [f[0] for f in funcs]
        self._funcs = funcs

    # ------------------------------------------------------------------ symbols
    def symbolize(self, addr: int | None) -> str | None:
        """``name+0xoff`` of the function containing ``addr`` (None when nothing plausible).

        Why size-aware: a PC past the end of the last sized function (e.g. in padding or data)
        must not be blamed on that function.
        """
        if addr is None or not self._funcs:
            return None
        i = bisect.bisect_right(self._func_addrs, addr) - 1
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

    def symbol(self, name: str) -> int | None:
        """Address of a named symbol, or None."""
        return self.symbols.get(name)

    # ------------------------------------------------------------------ memory
    def static_ram_end(self, ram_base: int, ram_size: int) -> int:
        """End of statically allocated SRAM (.data, .bss, ...): where the stack must stop.

        Taken from a linker symbol when one exists (it includes alignment padding the
        firmware's own start-up uses); otherwise from the allocated sections inside SRAM,
        ignoring sections named ``*stack*`` or ``*heap*`` (those are reservations for the stack
        itself, not static data).
        """
        ram_end = ram_base + ram_size
        for name in END_OF_STATIC_RAM_SYMBOLS:
            v = self.symbols.get(name)
            if v is not None and ram_base <= v <= ram_end:
                return v
        end = ram_base
        for name, addr, size, alloc in self.sections:
            if not alloc or size == 0 or not (ram_base <= addr < ram_end):
                continue
            low = name.lower()
            if "stack" in low or "heap" in low:
                continue
            end = max(end, addr + size)
        return end

    def check_fits(self, regions: list[tuple[int, int]]) -> None:
        """Raise unless every load chunk lies inside one of ``regions`` ((base, size) pairs).

        Why: bytes outside flash would never reach a real chip; loading them silently would let
        the emulator run a program the board never sees.
        """
        for chunk in self.chunks:
            lo, hi = chunk.address, chunk.address + len(chunk.data)
            if not any(base <= lo and hi <= base + size for base, size in regions):
                raise ElfLoadError(
                    f"{self.path.name}: {len(chunk.data)} bytes to load at 0x{lo:08x}..0x{hi:08x} "
                    "lie outside the board's flash (wrong linker script or board?)"
                )

"""Reading the firmware ELF: the bytes a flasher would program, symbols, and static RAM extent.

Why not just ``mem_write`` every section: a real chip only gets what the flasher writes into
flash (segment *load* addresses); ``.data`` reaches SRAM because the start-up code copies it.
Loading exactly the flash image means a start-up bug shows up here as it would on the board.
"""

from __future__ import annotations

from pathlib import Path

from bench.elf import EM_ARM, ElfReadError, Segment, read_elf

from .faults import ElfLoadError

#: Symbols that mark the end of static RAM in common linker scripts (first found wins).
END_OF_STATIC_RAM_SYMBOLS = ("_ebss", "__bss_end__", "_end", "end", "__end__", "_heap_start")


class ElfImage:
    """An ELF file read once: flash chunks, machine, symbol lookup, static RAM extent."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._elf = read_elf(self.path)
        except ElfReadError as exc:
            raise ElfLoadError(str(exc)) from exc
        except OSError as exc:
            raise ElfLoadError(f"cannot read ELF {self.path}: {exc.strerror}") from exc
        self.machine: str = self._elf.machine
        #: What a flasher writes: the load segments with bytes in the file.
        self.chunks: list[Segment] = [seg for seg in self._elf.segments if seg.data]

    # ------------------------------------------------------------------ symbols
    def symbolize(self, addr: int | None) -> str | None:
        """``name+0xoff`` of the function containing ``addr`` (None when nothing plausible)."""
        return self._elf.function_at(addr)

    def symbol(self, name: str) -> int | None:
        """Address of a named symbol, or None."""
        return self._elf.symbol(name)

    def functions(self) -> list[tuple[int, int, str]]:
        """``(address, size, name)`` of every sized function symbol (Thumb's bit 0 cleared)."""
        thumb = self.machine == EM_ARM
        return [((s.value & ~1) if thumb else s.value, s.size, s.name) for s in self._elf.symbols
                if s.kind == "STT_FUNC" and s.defined and s.size]

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
            v = self._elf.symbol(name)
            if v is not None and ram_base <= v <= ram_end:
                return v
        end = ram_base
        for sec in self._elf.sections:
            if not sec.alloc or sec.size == 0 or not (ram_base <= sec.address < ram_end):
                continue
            low = sec.name.lower()
            if "stack" in low or "heap" in low:
                continue
            end = max(end, sec.address + sec.size)
        return end

    def check_fits(self, regions: list[tuple[int, int]]) -> None:
        """Raise unless every load chunk lies inside one of ``regions`` ((base, size) pairs).

        Why: bytes outside flash would never reach a real chip; loading them silently would let
        the emulator run a program the board never sees.
        """
        for chunk in self.chunks:
            lo, hi = chunk.load_address, chunk.load_address + len(chunk.data)
            if not any(base <= lo and hi <= base + size for base, size in regions):
                raise ElfLoadError(
                    f"{self.path.name}: {len(chunk.data)} bytes to load at 0x{lo:08x}..0x{hi:08x} "
                    "lie outside the board's flash (wrong linker script or board?)"
                )

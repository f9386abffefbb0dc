"""The bytes a flasher writes, taken from the ELF the build produced.

Why not hand the ELF to the tool: the tools place ELF sections differently (wlink adds the
flash base to low addresses, pyOCD uses load addresses), and verifying needs the exact bytes
anyway. One contiguous binary from the flash base, built here from the ELF's loadable segments
at their load addresses (so ``.data`` initialisers are included), is what both tools write and
what is read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.flashers.base import FlashError

ERASED = 0xFF


@dataclass(frozen=True)
class FlashImage:
    address: int
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    @classmethod
    def from_elf(cls, elf: Path, flash_base: int, flash_size: int | None = None,
                 alias_base: int | None = 0) -> "FlashImage":
        """Flatten PT_LOAD segments that land in flash; ``alias_base`` maps an alias (CH32V003: 0)."""
        try:
            from elftools.elf.elffile import ELFFile
        except ImportError as e:  # pyelftools is a declared dependency; say so if it is absent
            raise FlashError("pyelftools is needed to read the firmware ELF (pip install pyelftools)") from e
        limit = flash_base + (flash_size if flash_size is not None else 1 << 30)
        chunks: list[tuple[int, bytes]] = []
        try:
            with open(elf, "rb") as f:
                ef = ELFFile(f)
                for seg in ef.iter_segments():
                    if seg["p_type"] != "PT_LOAD" or seg["p_filesz"] == 0:
                        continue
                    addr = int(seg["p_paddr"])
                    if alias_base is not None and alias_base <= addr < flash_base:
                        addr += flash_base - alias_base
                    if not flash_base <= addr < limit:
                        continue  # RAM-only segment (e.g. .bss has no file bytes anyway)
                    chunks.append((addr, seg.data()[: seg["p_filesz"]]))
        except FileNotFoundError:
            raise FlashError(f"firmware image {elf} not found") from None
        except Exception as e:  # pyelftools raises its own ELFError and struct errors
            if isinstance(e, FlashError):
                raise
            raise FlashError(f"{elf}: not a readable ELF ({type(e).__name__}: {e})") from None
        if not chunks:
            raise FlashError(f"{elf}: no loadable bytes in flash at 0x{flash_base:08x}")
        chunks.sort()
        start = chunks[0][0]
        end = max(a + len(d) for a, d in chunks)
        if end > limit:
            raise FlashError(f"{elf}: image ends at 0x{end:08x}, past flash end 0x{limit:08x}")
        buf = bytearray([ERASED]) * (end - start)
        for a, d in chunks:
            buf[a - start: a - start + len(d)] = d
        return cls(start, bytes(buf))

    def write_bin(self, path: Path) -> Path:
        Path(path).write_bytes(self.data)
        return Path(path)

    def compare(self, readback: bytes) -> int | None:
        """Offset of the first differing byte, or None when the read-back matches."""
        if readback[: len(self.data)] == self.data:
            return None
        for i, (a, b) in enumerate(zip(self.data, readback)):
            if a != b:
                return i
        return len(readback)  # equal as far as it goes, but too short

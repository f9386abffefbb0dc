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

from bench.atomic import write_bytes
from bench.elf import ElfReadError, read_elf
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
    def from_elf(cls, elf: Path, flash_load: int, flash_size: int | None = None,
                 alias_base: int | None = 0) -> "FlashImage":
        """Flatten PT_LOAD segments that land in flash at ``flash_load``, where the flasher writes.

        ``alias_base`` is the link address when the image is linked at an alias of that flash
        (CH32V003: linked at 0, written at 0x08000000); its segments are moved to ``flash_load``.
        """
        limit = flash_load + (flash_size if flash_size is not None else 1 << 30)
        try:
            segments = read_elf(elf).segments
        except FileNotFoundError:
            raise FlashError(f"firmware image {elf} not found") from None
        except ElfReadError as e:
            raise FlashError(str(e)) from None
        except OSError as e:
            raise FlashError(f"{elf}: cannot read the firmware image ({e.strerror})") from None
        chunks: list[tuple[int, bytes]] = []
        for seg in segments:
            if not seg.data:
                continue
            addr = seg.load_address
            if alias_base is not None and alias_base <= addr < flash_load:
                addr += flash_load - alias_base
            if not flash_load <= addr < limit:
                continue  # RAM-only segment (e.g. .bss has no file bytes anyway)
            chunks.append((addr, seg.data))
        if not chunks:
            raise FlashError(f"{elf}: no loadable bytes in flash at 0x{flash_load:08x}")
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
        write_bytes(path, self.data)
        return Path(path)

    def compare(self, readback: bytes) -> int | None:
        """Offset of the first differing byte, or None when the read-back matches."""
        if readback[: len(self.data)] == self.data:
            return None
        for i, (a, b) in enumerate(zip(self.data, readback)):
            if a != b:
                return i
        return len(readback)  # equal as far as it goes, but too short

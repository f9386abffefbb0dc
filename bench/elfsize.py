"""Flash and RAM use of a linked firmware image, read from its ELF.

Why from the ELF and not from the linker's map or ``size``: the same code has to work for GNU
ld and lld, and it has to split the image into "the model" (symbols named ``potnn_*``, which
the header contract reserves for the exported model) and "the firmware around it", which is
what the overhead budget is about.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.elf import ElfFile, Section, read_elf

MODEL_PREFIX = "potnn_"


@dataclass(frozen=True)
class ImageSize:
    flash_bytes: int          # image extent in flash: code, constants, .data initial values
    data_bytes: int           # .data (RAM, initialised from flash)
    bss_bytes: int            # .bss (RAM, zeroed)
    model_flash_bytes: int    # potnn_* code and constants
    model_ram_bytes: int      # potnn_* buffers, and code run from SRAM
    model_ram_code_bytes: int = 0  # ... of which code (the packed kernels the build placed in SRAM)
    ram_kernels: tuple[str, ...] = ()  # the names of those kernels

    @property
    def static_ram_bytes(self) -> int:
        return self.data_bytes + self.bss_bytes


def read_sections(elf: Path) -> list[Section]:
    """Allocated sections with their run and load addresses."""
    return _allocated(read_elf(elf))


def _allocated(image: ElfFile) -> list[Section]:
    return [s for s in image.sections if s.alloc and s.size]


def _inside(addr: int, origin: int, size: int) -> bool:
    return origin <= addr < origin + size


def _initialised_from_flash(image: ElfFile, addr: int, flash_origin: int, flash_span: int) -> bool:
    """Whether RAM at ``addr`` is .data whose initial value the image stores in flash."""
    return any(s.address <= addr < s.address + s.size and not s.nobits
               and _inside(s.load_address, flash_origin, flash_span) for s in _allocated(image))


def measure(elf: Path, flash_origin: int, ram_origin: int, *, flash_span: int = 1 << 28,
            ram_span: int = 1 << 28) -> ImageSize:
    """Sizes of ``elf`` for a chip whose flash starts at ``flash_origin`` and RAM at ``ram_origin``.

    The spans only tell flash addresses from RAM addresses; they are not budgets (the budget
    check is the caller's).  Sections whose name contains "stack" or "heap" are reservations,
    not static data, and are not counted.
    """
    image = read_elf(elf)
    flash_end = flash_origin
    data = bss = 0
    for s in _allocated(image):
        if "stack" in s.name or "heap" in s.name:
            continue
        if _inside(s.address, ram_origin, ram_span):
            if s.nobits:
                bss += s.size
            else:
                data += s.size
        if not s.nobits and _inside(s.load_address, flash_origin, flash_span):
            flash_end = max(flash_end, s.load_address + s.size)
    # the model's code run from SRAM (firmware/link.ld.in's .ramfunc, padding included), kept in flash too
    start, end = image.symbol("__ramfunc_start"), image.symbol("__ramfunc_end")
    ram_code = end - start if start is not None and end is not None else 0
    model_flash = model_ram = ram_code
    ram_kernels: list[str] = []
    for sym in image.symbols:
        if not sym.name.startswith(MODEL_PREFIX) or sym.size == 0:
            continue
        addr = sym.value & ~1                     # Thumb functions have bit 0 set
        if _inside(addr, ram_origin, ram_span):
            if sym.kind == "STT_FUNC":            # in .ramfunc, counted above
                ram_kernels.append(sym.name)
                continue
            model_ram += sym.size
            if _initialised_from_flash(image, addr, flash_origin, flash_span):
                model_flash += sym.size
        elif _inside(addr, flash_origin, flash_span):
            model_flash += sym.size
    return ImageSize(flash_bytes=flash_end - flash_origin, data_bytes=data, bss_bytes=bss,
                     model_flash_bytes=model_flash, model_ram_bytes=model_ram, model_ram_code_bytes=ram_code,
                     ram_kernels=tuple(sorted(ram_kernels)))

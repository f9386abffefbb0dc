"""Flash and RAM use of a linked firmware image, read from its ELF.

Why from the ELF and not from the linker's map or ``size``: the same code has to work for GNU
ld and lld, and it has to split the image into "the model" (symbols named ``potnn_*``, which
the header contract reserves for the exported model) and "the firmware around it", which is
what the overhead budget is about.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

MODEL_PREFIX = "potnn_"


@dataclass(frozen=True)
class Section:
    name: str
    address: int              # run address (VMA)
    load_address: int         # where its bytes are stored (LMA); = address for NOBITS
    size: int
    nobits: bool              # .bss-like: occupies RAM, no bytes in the image


@dataclass(frozen=True)
class ImageSize:
    flash_bytes: int          # image extent in flash: code, constants, .data initial values
    data_bytes: int           # .data (RAM, initialised from flash)
    bss_bytes: int            # .bss (RAM, zeroed)
    model_flash_bytes: int    # potnn_* code and constants
    model_ram_bytes: int      # potnn_* buffers
    sections: tuple[Section, ...]

    @property
    def static_ram_bytes(self) -> int:
        return self.data_bytes + self.bss_bytes


def read_sections(elf: Path) -> list[Section]:
    """Allocated sections with their run and load addresses."""
    out: list[Section] = []
    with open(elf, "rb") as f:
        ef = ELFFile(f)
        segments = [s for s in ef.iter_segments() if s["p_type"] == "PT_LOAD"]
        for sec in ef.iter_sections():
            if not sec["sh_flags"] & SH_FLAGS.SHF_ALLOC or sec["sh_size"] == 0:
                continue
            vma, size = int(sec["sh_addr"]), int(sec["sh_size"])
            nobits = sec["sh_type"] == "SHT_NOBITS"
            lma = vma
            if not nobits:
                for seg in segments:
                    if seg["p_vaddr"] <= vma < seg["p_vaddr"] + max(seg["p_memsz"], 1):
                        lma = int(seg["p_paddr"]) + vma - int(seg["p_vaddr"])
                        break
            out.append(Section(sec.name, vma, lma, size, nobits))
    return out


def _inside(addr: int, origin: int, size: int) -> bool:
    return origin <= addr < origin + size


def measure(elf: Path, flash_origin: int, ram_origin: int, *, flash_span: int = 1 << 28,
            ram_span: int = 1 << 28) -> ImageSize:
    """Sizes of ``elf`` for a chip whose flash starts at ``flash_origin`` and RAM at ``ram_origin``.

    The spans only tell flash addresses from RAM addresses; they are not budgets (the budget
    check is the caller's).  Sections whose name contains "stack" or "heap" are reservations,
    not static data, and are not counted.
    """
    sections = read_sections(elf)
    flash_end = flash_origin
    data = bss = 0
    ram_end = ram_origin
    for s in sections:
        if "stack" in s.name or "heap" in s.name:
            continue
        if _inside(s.address, ram_origin, ram_span):
            ram_end = max(ram_end, s.address + s.size)
            if s.nobits:
                bss += s.size
            else:
                data += s.size
        if not s.nobits and _inside(s.load_address, flash_origin, flash_span):
            flash_end = max(flash_end, s.load_address + s.size)
    model_flash = model_ram = 0
    with open(elf, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        for sym in symtab.iter_symbols() if symtab is not None else ():
            if not sym.name.startswith(MODEL_PREFIX) or sym["st_size"] == 0:
                continue
            addr = int(sym["st_value"]) & ~1          # Thumb functions have bit 0 set
            if _inside(addr, ram_origin, ram_span):
                model_ram += int(sym["st_size"])
            elif _inside(addr, flash_origin, flash_span):
                model_flash += int(sym["st_size"])
    return ImageSize(flash_bytes=flash_end - flash_origin, data_bytes=data, bss_bytes=bss,
                     model_flash_bytes=model_flash, model_ram_bytes=model_ram, sections=tuple(sections))

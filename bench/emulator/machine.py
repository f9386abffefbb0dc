"""What machine to emulate: memory map, core, cycle model and peripherals of a board's chip.

Why a spec separate from the board file: the board file (``boards/<name>.toml``, read by
``bench.board``) is the bench's single source of truth for chip, memory sizes and clock; the
emulator takes the sizes from it and adds what only the emulator needs (core, page size, reset
convention, peripheral set). Those extras have module defaults per chip, and a board file may
override them in its ``[emulator]`` section (``cpu``, ``flash_aliases``, ``fault_symbol``,
``peripherals``, ``regions``, ``hang_instructions``, ``renode_platform``), so a new board of a
known chip needs no emulator code.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

REPO_ROOT = Path(__file__).resolve().parents[2]
BOARDS_DIR = REPO_ROOT / "boards"

#: Instructions the firmware may run without any UART traffic before it counts as hung. At
#: ~50-100 M instructions/s this is a few seconds, and far above one inference (~1 M).
DEFAULT_HANG_INSTRUCTIONS = 200_000_000


@dataclass(frozen=True)
class MachineSpec:
    """Everything the Unicorn backend needs to build the machine for one chip."""

    chip: str  # "ch32v003" or "py32f003"
    arch: str  # "riscv32" or "armv6m"
    cpu: str  # cycle model name: "qingke-v2a" or "cortex-m0plus"
    flash_base: int  # where the image is linked (vector table / first instruction)
    flash_size: int
    ram_base: int
    ram_size: int
    flash_aliases: tuple[int, ...] = ()  # other addresses where the same flash appears
    reset_pc: int | None = None  # RISC-V: first instruction; ARM: None = take the vector table
    hclk_hz: int = 48_000_000  # the board's configured core clock (idle-poll budget, ms figures)
    hang_instructions: int = DEFAULT_HANG_INSTRUCTIONS
    renode_platform: str | None = None
    board: str | None = None
    fault_symbol: str | None = None  # firmware's trap loop: reaching it is a fault
    peripherals: Mapping[str, int] | None = None  # name -> base; None = every model of the chip
    regions: tuple[Mapping[str, Any], ...] = ()  # extra read-only regions (factory trim, ...)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def flash_regions(self) -> list[tuple[int, int]]:
        regions = [(self.flash_base, self.flash_size)]
        for alias in self.flash_aliases:
            if alias != self.flash_base and (alias, self.flash_size) not in regions:
                regions.append((alias, self.flash_size))
        return regions

    def in_flash(self, address: int) -> bool:
        return any(b <= address < b + s for b, s in self.flash_regions)

    def in_ram(self, address: int) -> bool:
        return self.ram_base <= address < self.ram_base + self.ram_size


#: Chip defaults; sizes and addresses are overridden by the board file. Sources: CH32V003
#: datasheet / RM (16 KB flash at 0x08000000 aliased at 0, 2 KB SRAM, execution starts at
#: 0x00000000); PY32F003 datasheet (x4: 16 KB / 2 KB, x6: 32/4, x8: 64/8; Cortex-M0+ vector
#: table at the start of flash, aliased at 0 when booting from main flash).
CHIPS: dict[str, MachineSpec] = {
    "ch32v003": MachineSpec(
        chip="ch32v003", arch="riscv32", cpu="qingke-v2a",
        flash_base=0x00000000, flash_size=16 * 1024, ram_base=0x20000000, ram_size=2 * 1024,
        flash_aliases=(0x08000000,), reset_pc=0x00000000, hclk_hz=48_000_000,
        renode_platform="boards/renode/ch32v003.repl", fault_symbol="bench_fault",
    ),
    "py32f003": MachineSpec(
        chip="py32f003", arch="armv6m", cpu="cortex-m0plus",
        flash_base=0x08000000, flash_size=16 * 1024, ram_base=0x20000000, ram_size=2 * 1024,
        flash_aliases=(0x00000000,), reset_pc=None, hclk_hz=24_000_000,
        renode_platform="boards/renode/py32f003.repl", fault_symbol="bench_fault",
        regions=({"name": "factory_trim", "origin": 0x1FFF0F00, "size": 0x100, "access": "r"},),
    ),
}


def _chip_key(chip: str) -> str:
    c = chip.lower().replace("-", "").replace("_", "")
    for key in CHIPS:
        if c.startswith(key):
            return key
    raise ValueError(f"the emulator knows no chip {chip!r} (known: {', '.join(CHIPS)})")


def machine_for(board: Any) -> MachineSpec:
    """The :class:`MachineSpec` for a board: a ``bench.board.Board``, a board name or file, or a chip.

    A bare chip name (``"ch32v003"``) gives the chip defaults when no board file has that name.
    From a board: flash (link address, load address and ``[emulator] flash_aliases``), SRAM,
    clock, and the ``[emulator]`` keys ``cpu``, ``hang_instructions``, ``fault_symbol``,
    ``peripherals`` (name → base: only these are modelled), ``regions`` and
    ``renode_platform``; anything missing comes from :data:`CHIPS`.
    """
    if isinstance(board, MachineSpec):
        return board
    if isinstance(board, (str, Path)):
        from bench.board import BoardError, load_board

        try:
            board = load_board(board)
        except BoardError:
            try:
                return replace(CHIPS[_chip_key(str(board))], board=str(board))
            except ValueError:
                pass
            raise
    spec = CHIPS[_chip_key(str(board.chip))]
    emu: Mapping[str, Any] = dict(getattr(board, "emulator", {}) or {})
    aliases = {int(board.flash_load), *(int(a) for a in emu.get("flash_aliases", []))} - {int(board.flash_origin)}
    peripherals = emu.get("peripherals")
    return replace(
        spec,
        flash_base=int(board.flash_origin),
        flash_size=int(board.flash_size),
        flash_aliases=tuple(sorted(aliases)),
        ram_base=int(board.ram_origin),
        ram_size=int(board.ram_size),
        hclk_hz=int(board.clock_hz),
        cpu=str(emu.get("cpu", emu.get("cycle_model", spec.cpu))),
        hang_instructions=int(emu.get("hang_instructions", spec.hang_instructions)),
        renode_platform=emu.get("renode_platform", spec.renode_platform),
        fault_symbol=emu.get("fault_symbol", spec.fault_symbol),
        peripherals={str(k).lower(): int(v) for k, v in peripherals.items()} if peripherals else None,
        regions=tuple(dict(r) for r in emu.get("regions", spec.regions)),
        board=str(board.name),
        extra=emu,
    )

"""What machine to emulate: the board file's memory map, core, clock and peripherals, as one record.

Why nothing here has its own numbers: the board file (``boards/<name>.toml``, read by
``bench.board``) is the one home of chip facts (the build links with it, the flashers write
with it), so the emulator takes every address and size from it too.  This module only gathers
what the backends need and adds the emulator's own settings (the ``[emulator]`` table:
``hang_instructions``, ``fault_symbol``, ``renode_platform``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from bench.board import Board, Region, load_board

#: Instructions the firmware may run without any UART traffic before it counts as hung. At
#: ~50-100 M instructions/s this is a few seconds, and far above one inference (~1 M).
DEFAULT_HANG_INSTRUCTIONS = 200_000_000

#: Instruction sets the backends know (the board file's ``arch``).
RV32EC = "rv32ec"
ARMV6M = "armv6-m"


@dataclass(frozen=True)
class MachineSpec:
    """Everything a backend needs to build the machine for one board."""

    board: str
    chip: str
    arch: str                           # RV32EC or ARMV6M
    core: str                           # cycle model name, e.g. "qingke-v2a"
    flash_origin: int                   # link address: vector table (ARM) or first instruction (RISC-V)
    flash_size: int
    flash_aliases: tuple[int, ...]      # other addresses where the same flash appears
    ram_origin: int
    ram_size: int
    clock_hz: int                       # the board's configured core clock
    peripherals: Mapping[str, int]      # name -> base: only these are modelled
    regions: tuple[Region, ...]         # extra read-only regions (factory trim, ...)
    counter_address: int                # reads here delimit one inference
    fault_symbol: str | None = None     # firmware's trap loop: reaching it is a fault
    hang_instructions: int = DEFAULT_HANG_INSTRUCTIONS
    renode_platform: str | None = None

    @property
    def flash_regions(self) -> list[tuple[int, int]]:
        """(base, size) of every view of flash, the link address first."""
        return [(base, self.flash_size) for base in (self.flash_origin, *self.flash_aliases)]

    def in_flash(self, address: int) -> bool:
        return any(b <= address < b + s for b, s in self.flash_regions)

    def in_ram(self, address: int) -> bool:
        return self.ram_origin <= address < self.ram_origin + self.ram_size


def machine_for(board: Board | MachineSpec | str | Path) -> MachineSpec:
    """The :class:`MachineSpec` of a board: a ``bench.board.Board``, or a board name or file."""
    if isinstance(board, MachineSpec):
        return board
    if not isinstance(board, Board):
        board = load_board(board)
    if board.arch not in (RV32EC, ARMV6M):
        raise ValueError(f"{board.name}: the emulator runs {RV32EC} and {ARMV6M} code, not {board.arch!r}")
    emu: Mapping[str, Any] = board.emulator
    return MachineSpec(
        board=board.name,
        chip=board.chip,
        arch=board.arch,
        core=board.core,
        flash_origin=board.flash_origin,
        flash_size=board.flash_size,
        flash_aliases=board.flash_aliases,
        ram_origin=board.ram_origin,
        ram_size=board.ram_size,
        clock_hz=board.clock_hz,
        peripherals=dict(board.peripherals),
        regions=board.regions,
        counter_address=board.counter_address,
        fault_symbol=emu.get("fault_symbol"),
        hang_instructions=int(emu.get("hang_instructions", DEFAULT_HANG_INSTRUCTIONS)),
        renode_platform=emu.get("renode_platform"),
    )

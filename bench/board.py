"""Board files: load, validate and list the boards the bench can build for.

Why declarative files: adding a board (or a memory variant of a chip) must be adding one TOML
file under ``boards/``, not editing Python.  Everything the build, the flashers and the
emulator need to know about a board lives in that file; the schema is in ``boards/README.md``.
A file may ``extends = "<other board>"`` and override only what differs (the PY32F003 x6/x8
variants do), so the facts about a chip are written once.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from potnn.boards import read_board_file

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = REPO_ROOT / "firmware"
_BOARDS_DIR = REPO_ROOT / "boards"

# The pseudo-board ``host``: the bench application built for this computer, its UART a pty.
HOST_BOARD = "host"

_USB_ID = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
FLASHER_TOOLS = ("wlink", "pyocd")


class BoardError(Exception):
    """A board that does not exist or whose file is invalid; the message is one line."""


@dataclass(frozen=True)
class ToolchainFlags:
    """How one toolchain kind (``gnu`` or ``zig``) compiles for this board."""

    compilers: tuple[str, ...] = ()   # gnu: compiler names tried on PATH, in order
    target: str | None = None         # zig: the -target triple
    cflags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()
    libs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Uart:
    base: int                         # USART base address the firmware drives
    baud: int
    usb: tuple[str, ...]              # VID:PID of USB serial adapters usually wired to it


@dataclass(frozen=True)
class Flasher:
    tool: str                         # "wlink" or "pyocd"
    target: str                       # wlink --chip, or the pyOCD target name
    pack: str = ""                    # pyOCD CMSIS pack path ("" = installed / built in)


@dataclass(frozen=True)
class Region:
    """Memory besides flash and SRAM that the firmware reads (e.g. factory trim words)."""

    name: str
    origin: int
    size: int
    access: str                       # "r": read-only (the only kind the emulator maps)


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    chip: str                         # firmware port directory firmware/chips/<chip>/
    core: str                         # names the emulator's cycle model
    arch: str                         # instruction set: rv32ec or armv6-m
    flash_origin: int                 # link address of flash
    flash_load: int                   # address the flasher writes (flash_origin or an alias of it)
    flash_aliases: tuple[int, ...]    # every other address where the same flash appears
    flash_size: int
    ram_origin: int
    ram_size: int
    kernels_in_ram: bool              # the build runs the model's packed kernels from SRAM when they fit
    regions: tuple[Region, ...]
    peripherals: Mapping[str, int]    # name -> base address, for every peripheral the firmware touches
    clock_hz: int
    uart: Uart
    counter_address: int              # the register read before and after potnn_predict
    counter_bits: int                 # its width: elapsed cycles wrap at 2**bits
    flasher: Flasher
    toolchains: Mapping[str, ToolchainFlags]
    emulator: Mapping[str, Any]       # emulator settings: backend, fault_symbol, hang_instructions
    path: Path
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @property
    def baud(self) -> int:
        return self.uart.baud

    @property
    def link_alias(self) -> int | None:
        """The link address when the image is linked at an alias of where it is written, else None
        (CH32V003 links at 0 and is written at 0x08000000)."""
        return self.flash_origin if self.flash_origin != self.flash_load else None


def list_boards(boards_dir: Path | None = None) -> list[str]:
    """Names of the board files in ``boards_dir`` (default: the repository's ``boards/``)."""
    directory = boards_dir or _BOARDS_DIR
    return sorted(p.stem for p in directory.glob("*.toml"))


def load_board(name: str | Path, boards_dir: Path | None = None) -> Board:
    """The board called ``name`` (a file stem in ``boards/``) or the board file at that path."""
    directory = boards_dir or _BOARDS_DIR
    path = Path(name)
    if path.suffix == ".toml" and path.exists():
        directory = path.parent
    else:
        path = directory / f"{name}.toml"
        if not path.exists():
            known = ", ".join(list_boards(directory)) or "none"
            raise BoardError(f"unknown board {str(name)!r}; known boards: {known}")
    try:
        data = read_board_file(path)
    except ValueError as e:
        raise BoardError(str(e)) from None
    return _validate(data, path)


class _Reader:
    """Typed access to one board file's tables, with one-line errors that name the key."""

    def __init__(self, data: Mapping[str, Any], path: Path):
        self.data = data
        self.file = path.name

    def table(self, name: str) -> Mapping[str, Any]:
        value = self.data.get(name)
        if not isinstance(value, Mapping):
            raise BoardError(f"{self.file}: missing table [{name}]")
        return value

    def get(self, table: str, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        t = self.table(table)
        if key not in t:
            if default is ...:
                raise BoardError(f"{self.file}: missing [{table}] {key}")
            return default
        value = t[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise BoardError(f"{self.file}: [{table}] {key} must be {names}, not {value!r}")
        return value

    def flag(self, table: str, key: str) -> bool:
        """A true/false key, false when absent."""
        value = self.table(table).get(key, False)
        if not isinstance(value, bool):
            raise BoardError(f"{self.file}: [{table}] {key} must be true or false, not {value!r}")
        return value

    def positive(self, table: str, key: str) -> int:
        value = self.get(table, key, int)
        if value <= 0:
            raise BoardError(f"{self.file}: [{table}] {key} must be positive, not {value}")
        return value

    def address(self, table: str, key: str, default: Any = ...) -> int:
        value = self.get(table, key, int, default)
        if not 0 <= value <= 0xFFFF_FFFF:
            raise BoardError(f"{self.file}: [{table}] {key} is not a 32-bit address: {value:#x}")
        return value

    def addresses(self, table: str, key: str) -> tuple[int, ...]:
        values = self.get(table, key, list, [])
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFF_FFFF for v in values):
            raise BoardError(f"{self.file}: [{table}] {key} must be a list of 32-bit addresses")
        return tuple(values)

    def strings(self, table: str, key: str, default: Any = ...) -> tuple[str, ...]:
        value = self.get(table, key, list, default)
        if not all(isinstance(v, str) for v in value):
            raise BoardError(f"{self.file}: [{table}] {key} must be a list of strings")
        return tuple(value)

    def usb_ids(self, table: str, key: str) -> tuple[str, ...]:
        ids = self.strings(table, key, [])
        for usb in ids:
            if not _USB_ID.match(usb):
                raise BoardError(f"{self.file}: [{table}] {key}: {usb!r} is not a VID:PID like 1a86:8010")
        return tuple(i.lower() for i in ids)


def _validate(data: Mapping[str, Any], path: Path) -> Board:
    r = _Reader(data, path)
    name = r.get("board", "name", str)
    if name != path.stem:
        raise BoardError(f"{path.name}: [board] name {name!r} must equal the file name {path.stem!r}")
    if not _NAME.match(name) or name == HOST_BOARD:
        raise BoardError(f"{path.name}: board name {name!r} must be lower-case letters, digits, '_' (not 'host')")
    chip = r.get("board", "chip", str)
    if not (FIRMWARE_DIR / "chips" / chip / "chip.c").exists():
        raise BoardError(f"{path.name}: no firmware port for chip {chip!r} (firmware/chips/{chip}/chip.c)")

    flash_size = r.positive("memory", "flash_size")
    ram_size = r.positive("memory", "ram_size")
    flash_origin = r.address("memory", "flash_origin")
    flash_load = r.address("memory", "flash_load", flash_origin)
    aliases = set(r.addresses("memory", "flash_aliases")) | {flash_load}

    tool = r.get("flasher", "tool", str)
    if tool not in FLASHER_TOOLS:
        raise BoardError(f"{path.name}: [flasher] tool {tool!r} is not one of {', '.join(FLASHER_TOOLS)}")
    bits = r.positive("cycle_counter", "bits")
    if bits > 32:
        raise BoardError(f"{path.name}: [cycle_counter] bits must be at most 32")
    emulator = data.get("emulator", {})
    if not isinstance(emulator, Mapping):
        raise BoardError(f"{path.name}: [emulator] must be a table")

    return Board(
        name=name,
        description=r.get("board", "description", str, ""),
        chip=chip,
        core=r.get("board", "core", str),
        arch=r.get("board", "arch", str),
        flash_origin=flash_origin,
        flash_load=flash_load,
        flash_aliases=tuple(sorted(aliases - {flash_origin})),
        flash_size=flash_size,
        ram_origin=r.address("memory", "ram_origin"),
        ram_size=ram_size,
        kernels_in_ram=r.flag("memory", "kernels_in_ram"),
        regions=_regions(r, path),
        peripherals={key: r.address("peripherals", key) for key in r.table("peripherals")},
        clock_hz=r.positive("clock", "hz"),
        uart=Uart(base=r.address("uart", "base"), baud=r.positive("uart", "baud"), usb=r.usb_ids("uart", "usb")),
        counter_address=r.address("cycle_counter", "address"),
        counter_bits=bits,
        flasher=Flasher(tool=tool, target=r.get("flasher", "target", str), pack=r.get("flasher", "pack", str, "")),
        toolchains=_toolchains(r, path),
        emulator=dict(emulator),
        path=path,
        raw=data,
    )


def _toolchains(r: _Reader, path: Path) -> dict[str, ToolchainFlags]:
    toolchains: dict[str, ToolchainFlags] = {}
    for kind, spec in r.table("toolchain").items():
        if not isinstance(spec, Mapping):
            raise BoardError(f"{path.name}: [toolchain.{kind}] must be a table")
        t = _Reader({"t": spec}, path)
        toolchains[kind] = ToolchainFlags(
            compilers=t.strings("t", "compilers", []),
            target=t.get("t", "target", str, None),
            cflags=t.strings("t", "cflags", []),
            ldflags=t.strings("t", "ldflags", []),
            libs=t.strings("t", "libs", []),
        )
    if "gnu" in toolchains and not toolchains["gnu"].compilers:
        raise BoardError(f"{path.name}: [toolchain.gnu] needs compilers = [...]")
    if "zig" in toolchains and not toolchains["zig"].target:
        raise BoardError(f"{path.name}: [toolchain.zig] needs target = \"...\"")
    return toolchains


def _regions(r: _Reader, path: Path) -> tuple[Region, ...]:
    found = r.table("memory").get("regions", [])
    if not isinstance(found, list) or not all(isinstance(x, Mapping) for x in found):
        raise BoardError(f"{path.name}: [[memory.regions]] must be tables")
    regions = []
    for i, spec in enumerate(found):
        t = _Reader({"region": spec}, path)
        access = t.get("region", "access", str)
        if access != "r":
            raise BoardError(f"{path.name}: [[memory.regions]] #{i + 1}: only read-only (access = \"r\") regions")
        regions.append(Region(t.get("region", "name", str), t.address("region", "origin"),
                              t.positive("region", "size"), access))
    return tuple(regions)


# --- CLI: potnn-bench boards -------------------------------------------------------------

def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``potnn-bench boards``."""
    p = subparsers.add_parser("boards", help="list the boards the bench can build for")
    p.set_defaults(func=_cmd_boards)


def _cmd_boards(args: argparse.Namespace) -> int:
    rows = [("board", "chip", "arch", "flash", "RAM", "clock", "flasher")]
    for name in list_boards():
        b = load_board(name)
        rows.append((b.name, b.chip, b.arch, f"{b.flash_size // 1024} KB", f"{b.ram_size // 1024} KB",
                     f"{b.clock_hz / 1e6:g} MHz", f"{b.flasher.tool} {b.flasher.target}"))
    rows.append((HOST_BOARD, "host", "native", "-", "-", "-", "none (UART = pty)"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0

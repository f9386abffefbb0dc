"""Board files: every shipped board loads, variants inherit, mistakes are one clear line, and the
firmware, the linker script, the emulator and the Renode platform agree with them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.board import FIRMWARE_DIR, REPO_ROOT, Board, BoardError, list_boards, load_board
from bench.build import _linker_script
from bench.cli import main
from bench.emulator import machine_for
from bench.emulator.peripherals import Bus, build_peripherals
from bench.emulator.peripherals.registers import RomRegion


def test_shipped_boards_load() -> None:
    names = list_boards()
    assert {"ch32v003", "py32f003", "py32f003x6", "py32f003x8"} <= set(names)
    for name in names:
        b = load_board(name)
        assert b.name == name
        assert b.flasher.tool in ("wlink", "pyocd")
        assert set(b.toolchains) >= {"gnu", "zig"}


def _macros(*headers: Path) -> dict[str, str]:
    """``#define NAME value`` of C headers (function-like macros keyed without their parentheses)."""
    macros: dict[str, str] = {}
    for header in headers:
        text = re.sub(r"/\*.*?\*/", "", header.read_text(), flags=re.S)
        for name, value in re.findall(r"^#define\s+(\w+)(?:\(\))?[ \t]+(.+?)\s*$", text, flags=re.M):
            macros[name] = value
    return macros


def _value(macros: dict[str, str], name: str) -> int:
    """The number a register or constant macro stands for (``REG32(addr)`` is its address)."""
    def expand(text: str) -> str:
        text = re.sub(r"\b(0x[0-9A-Fa-f]+|\d+)[uU]\b", r"\1", text).replace("REG32", "")
        return re.sub(r"\b[A-Z_][A-Z0-9_]*\b", lambda m: f"({expand(macros[m.group()])})", text)

    return int(eval(expand(macros[name]), {"__builtins__": {}}))


def _chip_headers(board: Board) -> dict[str, str]:
    chip = FIRMWARE_DIR / "chips" / board.chip
    return _macros(chip / "regs.h", chip / "chip.h")


@pytest.mark.parametrize("name", list_boards())
def test_the_firmwares_base_addresses_are_the_board_files(name: str) -> None:
    """Every *_BASE in the chip's regs.h is a peripheral or region of the board file, and back."""
    board = load_board(name)
    macros = _chip_headers(board)
    in_header = {n[: -len("_BASE")].lower(): _value(macros, n) for n in macros if n.endswith("_BASE")}
    in_board = {**board.peripherals, **{r.name: r.origin for r in board.regions}}
    assert in_header == in_board
    assert _value(macros, "USART1_BASE") == board.uart.base


@pytest.mark.parametrize("name", list_boards())
def test_every_register_the_firmware_names_is_modelled_by_the_emulator(name: str) -> None:
    board = load_board(name)
    macros = _chip_headers(board)
    spec = machine_for(board)
    bus = Bus(build_peripherals(spec.chip, None, spec.peripherals, spec.regions), None)  # type: ignore[arg-type]
    registers = [n for n, v in macros.items() if v.startswith("REG32(") and n != "REG32"]
    assert len(registers) > 10
    for reg in registers:
        address = _value(macros, reg)
        model = bus.find(address)
        assert model is not None, f"{reg} at {address:#x} is in no peripheral of {name}'s board file"
        assert isinstance(model, RomRegion) or address - model.base in model.regs, f"{reg}: {model.name} lacks it"


@pytest.mark.parametrize("name", list_boards())
def test_the_cycle_counter_is_the_one_the_board_file_names(name: str) -> None:
    board = load_board(name)
    macros = _chip_headers(board)
    assert _value(macros, "PORT_CYCLE_COUNTER") == board.counter_address
    assert _value(macros, "PORT_COUNTER_BITS") == board.counter_bits


@pytest.mark.parametrize("name", list_boards())
def test_linker_script_emulator_and_flasher_share_the_memory_map(name: str) -> None:
    board = load_board(name)
    script = _linker_script(board, probe=False, stack=256)
    regions = {m[0]: (int(m[1], 16), int(m[2])) for m in
               re.findall(r"^\s*(\w+)\s*\(\w+\)\s*:\s*ORIGIN = (0x[0-9a-f]+), LENGTH = (\d+)", script, flags=re.M)}
    assert regions == {"FLASH": (board.flash_origin, board.flash_size), "RAM": (board.ram_origin, board.ram_size)}
    spec = machine_for(board)
    assert (spec.flash_origin, spec.flash_size, spec.ram_origin, spec.ram_size) == \
        (board.flash_origin, board.flash_size, board.ram_origin, board.ram_size)
    # the flasher writes where the emulated core sees the same flash
    assert (board.flash_load, board.flash_size) in spec.flash_regions


@pytest.mark.parametrize("name", [n for n in list_boards() if (REPO_ROOT / "boards" / "renode" / f"{n}.repl").exists()])
def test_renode_platform_addresses_are_board_facts(name: str) -> None:
    """What the Renode platform places on the bus is where the board file says it is."""
    board = load_board(name)
    text = (REPO_ROOT / "boards" / "renode" / f"{name}.repl").read_text()
    placed = {int(a, 16) for a in re.findall(r"sysbus <?(0x[0-9A-Fa-f]+)", text)}
    facts = {board.flash_origin, *board.flash_aliases, board.ram_origin, *board.peripherals.values(),
             *(r.origin for r in board.regions)}
    # Renode's NVIC model spans the ARMv6-M system control space, SysTick included
    inside_nvic = {board.peripherals["systick"]} if board.arch == "armv6-m" else set()
    nvic = {a & ~0xFFF for a in inside_nvic}
    assert placed - nvic == facts - inside_nvic
    sizes = [int(s, 16) for s in re.findall(r"size: (0x[0-9A-Fa-f]+)", text)]
    assert sizes[:2] == [board.flash_size, board.ram_size]


def test_py32_variants_extend_the_base_file() -> None:
    x4, x6, x8 = (load_board(n) for n in ("py32f003", "py32f003x6", "py32f003x8"))
    assert (x4.flash_size, x4.ram_size, x4.flasher.target) == (16384, 2048, "py32f003x4")
    assert (x6.flash_size, x6.ram_size, x6.flasher.target) == (32768, 4096, "py32f003x6")
    assert (x8.flash_size, x8.ram_size, x8.flasher.target) == (65536, 8192, "py32f003x8")
    assert x6.clock_hz == x8.clock_hz == x4.clock_hz == 24_000_000
    assert x8.uart == x4.uart and x8.toolchains == x4.toolchains


def test_unknown_board_lists_the_known_ones() -> None:
    with pytest.raises(BoardError, match="unknown board 'nope'; known boards: ch32v003, py32f003"):
        load_board("nope")


def test_invalid_board_file_is_one_line(tmp_path: Path) -> None:
    text = (Path(load_board("ch32v003").path)).read_text()
    (tmp_path / "mine.toml").write_text(text.replace('name = "ch32v003"', 'name = "mine"')
                                        .replace("ram_size = 2048", "ram_size = -1"))
    with pytest.raises(BoardError, match=r"mine.toml: \[memory\] ram_size must be positive") as err:
        load_board("mine", boards_dir=tmp_path)
    assert "\n" not in str(err.value)


def test_adding_a_board_is_adding_a_file(tmp_path: Path) -> None:
    base = Path(load_board("py32f003").path).read_text()
    (tmp_path / "py32f003.toml").write_text(base)
    (tmp_path / "myboard.toml").write_text('extends = "py32f003"\n[board]\nname = "myboard"\n[uart]\nbaud = 460800\n')
    assert list_boards(tmp_path) == ["myboard", "py32f003"]
    assert load_board("myboard", boards_dir=tmp_path).baud == 460800


def test_cli_lists_boards(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    assert "ch32v003" in out and "py32f003x8" in out and "wlink" in out


def test_cli_unknown_board_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as ex:
        main(["build", "--board", "nope", "--header", str(tmp_path / "m.h")])
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("potnn-bench: error: unknown board 'nope'; known boards:") and err.count("\n") == 1

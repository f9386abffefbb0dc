"""Board files: every shipped board loads, variants inherit, mistakes are one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.board import BoardError, list_boards, load_board
from bench.cli import main


def test_shipped_boards_load() -> None:
    names = list_boards()
    assert {"ch32v003", "py32f003", "py32f003x6", "py32f003x8"} <= set(names)
    for name in names:
        b = load_board(name)
        assert b.name == name
        assert 0 < b.stack_reserve < b.ram_size
        assert b.flasher.tool in ("wlink", "pyocd")
        assert set(b.toolchains) >= {"gnu", "zig"}


def test_ch32v003_facts() -> None:
    b = load_board("ch32v003")
    assert (b.flash_origin, b.flash_base, b.flash_size, b.ram_origin, b.ram_size) == (0, 0x0800_0000, 16384, 0x2000_0000, 2048)
    assert (b.clock_hz, b.baud, b.uart.base, b.uart.tx, b.uart.rx) == (48_000_000, 115200, 0x4001_3800, "PD5", "PD6")
    assert (b.flasher.tool, b.flasher.target, b.flasher.usb) == ("wlink", "ch32v003", ("1a86:8010",))
    assert (b.counter_address, b.counter_bits) == (0xE000_F008, 32)
    assert b.emulator["unicorn_arch"] == "UC_ARCH_RISCV"
    regions = {r["name"]: r for r in b.memory_map()}
    assert regions["flash@0x08000000"]["alias_of"] == "flash"


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

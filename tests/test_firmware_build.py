"""Building the bench firmware: both boards, both toolchains, one exported model.

What must hold: the image fits and lies where the board's memory is, the RV32EC inference code
has no multiply or divide, a model that does not fit is refused with its numbers, and a header
that is not a potnn export is refused in one line.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from bench.board import load_board
from bench.build import BudgetError, BuildError, build, model_hash
from bench.cli import main
from bench.disasm import muldiv_report, reachable_functions
from bench.elfsize import read_sections
from bench.toolchain import ToolchainError, find_toolchain
from firmware_models import ExportedModel, export_tiny, synthetic_header, write_bundle

BOARDS = ("ch32v003", "py32f003")
TOOLCHAINS = ("gnu", "zig")


def _have(board: str, kind: str) -> bool:
    try:
        find_toolchain(load_board(board), kind)
    except ToolchainError:
        return False
    return True


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> ExportedModel:
    return export_tiny(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def builds(tiny: ExportedModel, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("builds")
    results = {}
    for board in BOARDS:
        for kind in TOOLCHAINS:
            if _have(board, kind):
                results[board, kind] = build(board, tiny.header, out / f"{board}-{kind}", toolchain=kind)
    return results


@pytest.mark.parametrize("kind", TOOLCHAINS)
@pytest.mark.parametrize("board", BOARDS)
def test_image_lies_in_the_boards_memory(builds: dict, board: str, kind: str) -> None:
    if (board, kind) not in builds:
        pytest.skip(f"no {kind} toolchain for {board} here")
    r, b = builds[board, kind], load_board(board)
    assert r.flash_bytes <= b.flash_size and r.ram_bytes <= b.ram_size
    assert r.ram_bytes == r.static_ram_bytes + r.stack_bytes
    for s in read_sections(r.elf):
        if "stack" in s.name:
            assert s.address + s.size == b.ram_origin + b.ram_size      # the reserve sits at the top
        elif s.nobits or s.address >= b.ram_origin:
            assert b.ram_origin <= s.address and s.address + s.size <= b.ram_origin + b.ram_size, s
        else:
            assert b.flash_origin <= s.address and s.address + s.size <= b.flash_origin + b.flash_size, s
        if not s.nobits:
            assert b.flash_origin <= s.load_address < b.flash_origin + b.flash_size, s
    assert r.bin.stat().st_size == r.flash_bytes
    assert r.hex.read_text().startswith(f":02000004{b.flash_load >> 16:04X}")   # where the flasher writes


@pytest.mark.parametrize("kind", TOOLCHAINS)
@pytest.mark.parametrize("board", BOARDS)
def test_reset_entry_is_at_the_start_of_flash(builds: dict, board: str, kind: str) -> None:
    if (board, kind) not in builds:
        pytest.skip(f"no {kind} toolchain for {board} here")
    r, b = builds[board, kind], load_board(board)
    with open(r.elf, "rb") as f:
        elf = ELFFile(f)
        symbols = {s.name: int(s["st_value"]) for s in elf.get_section_by_name(".symtab").iter_symbols()}
        entry = int(elf["e_entry"])
    image = r.bin.read_bytes()
    assert entry & ~1 == symbols["bench_entry"] & ~1
    if b.arch == "armv6-m":                         # vector table: initial SP, then reset vector
        assert int.from_bytes(image[0:4], "little") == b.ram_origin + b.ram_size
        assert int.from_bytes(image[4:8], "little") == symbols["bench_entry"] | 1
    else:                                           # RV32EC: execution starts at the first word
        assert symbols["bench_entry"] == b.flash_origin


@pytest.mark.parametrize("kind", TOOLCHAINS)
@pytest.mark.parametrize("board", BOARDS)
def test_build_json_records_the_build(builds: dict, tiny: ExportedModel, board: str, kind: str) -> None:
    if (board, kind) not in builds:
        pytest.skip(f"no {kind} toolchain for {board} here")
    r = builds[board, kind]
    record = json.loads(r.build_json.read_text())
    assert record["board"] == board and record["toolchain_kind"] == kind and record["opt"] == "Os"
    assert record["toolchain"].endswith("-Os") and record["toolchain_version"]
    assert record["model_hash"] == model_hash(tiny.header) and Path(record["elf"]) == r.elf
    assert record["header"] == str(tiny.header.resolve())
    for key in ("flash_bytes", "ram_bytes", "stack_bytes", "flash_budget", "ram_budget",
                "model_flash_bytes", "firmware_flash_bytes"):
        assert isinstance(record[key], int) and record[key] > 0, key


@pytest.mark.parametrize("kind", TOOLCHAINS)
def test_rv32ec_inference_has_no_multiply_or_divide(builds: dict, kind: str) -> None:
    if ("ch32v003", kind) not in builds:
        pytest.skip(f"no {kind} toolchain for ch32v003 here")
    elf = builds["ch32v003", kind].elf
    assert "potnn_predict" in reachable_functions(elf)
    assert muldiv_report(elf) == {}                 # potnn_predict and everything it calls
    assert muldiv_report(elf, roots=None) == {}     # the firmware around it too


def test_checker_finds_a_multiplication(tmp_path: Path) -> None:
    header = synthetic_header(tmp_path / "mul.h", multiply=True)
    r = build("ch32v003", header, tmp_path / "out", toolchain="gnu" if _have("ch32v003", "gnu") else "zig")
    report = muldiv_report(r.elf)
    assert report, "a multiplication in potnn_predict went unnoticed"
    assert any("__mulsi3" in o.text or o.text.startswith("mul") for offs in report.values() for o in offs)


@pytest.mark.parametrize("kind", TOOLCHAINS)
def test_weights_bigger_than_flash_are_refused_with_numbers(tmp_path: Path, kind: str) -> None:
    if not _have("ch32v003", kind):
        pytest.skip(f"no {kind} toolchain here")
    header = synthetic_header(tmp_path / "big.h", weight_bytes=20000)
    with pytest.raises(BudgetError) as err:
        build("ch32v003", header, tmp_path / "out", toolchain=kind)
    e = err.value
    assert e.flash_over and not e.ram_over and e.flash_needed > 20000
    assert f"flash needs {e.flash_needed} B of 16384 B" in str(e) and "too big" in str(e)
    assert not (tmp_path / "out" / "firmware.bin").exists()


def test_static_ram_bigger_than_ram_is_refused_with_numbers(tmp_path: Path) -> None:
    header = synthetic_header(tmp_path / "ram.h", ram_words=600)           # 2400 B of buffers
    with pytest.raises(BudgetError) as err:
        build("py32f003", header, tmp_path / "out")
    e = err.value
    assert e.ram_over and not e.flash_over
    assert e.ram_needed == e.size.static_ram_bytes + e.stack_bytes
    assert e.size.model_ram_bytes == 2400 + 256 + 2   # its buffers, and the image with a chunk's offset
    assert 0 < e.stack_bytes < 256  # measured: this firmware's deepest path
    assert f"RAM needs {e.ram_needed} B of 2048 B" in str(e)


def test_ram_that_leaves_too_little_stack_is_refused(tmp_path: Path) -> None:
    # .data + .bss alone fit in 2 KB, but not with the stack the firmware is measured to need
    header = synthetic_header(tmp_path / "stack.h", ram_words=420)
    with pytest.raises(BudgetError, match=r"\+ stack \d+, measured.*too big"):
        build("ch32v003", header, tmp_path / "out")
    r = build("ch32v003", header, tmp_path / "unchecked", check_ram=False)   # for emulator fault tests
    assert not r.ram_checked and r.ram_bytes > r.ram_budget


def test_not_a_potnn_export_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = tmp_path / "model.h"
    header.write_text("#include <stdint.h>\nint potnn_predict(const uint8_t *i, int32_t *l) { return 0; }\n")
    with pytest.raises(SystemExit) as ex:
        main(["build", "--board", "ch32v003", "--header", str(header), "--out", str(tmp_path / "o")])
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert err == ("potnn-bench: error: model.h has no bundle model.potnn beside it: re-export it with "
                   "potnn.export(model, 'model.h', config), which writes both\n")


def test_compile_errors_are_one_line_with_the_log(tmp_path: Path) -> None:
    header = synthetic_header(tmp_path / "bad.h")
    header.write_text(header.read_text().replace("return 0;", "return undeclared;"))
    write_bundle(header, (1, 16, 16), 10)
    with pytest.raises(BuildError, match=r"undeclared.*full log: .*build.log") as err:
        build("ch32v003", header, tmp_path / "out")
    assert "\n" not in str(err.value)


def test_model_hash_is_sha256_prefix_little_endian(tmp_path: Path) -> None:
    header = synthetic_header(tmp_path / "h.h")
    digest = hashlib.sha256(header.read_bytes()).digest()
    assert model_hash(header) == digest[0] | digest[1] << 8 | digest[2] << 16 | digest[3] << 24


def test_unchanged_build_is_reused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = synthetic_header(tmp_path / "h.h")
    first = build("ch32v003", header, tmp_path / "out")
    assert not first.cached
    again = build("ch32v003", header, tmp_path / "out")
    assert again.cached and again.elf == first.elf and again.flash_bytes == first.flash_bytes
    assert main(["build", "--board", "ch32v003", "--header", str(header), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"flash {first.flash_bytes:6d} / 16384 B" in out and "(cached)" in out


@pytest.mark.parametrize("kind", TOOLCHAINS)
def test_a_forced_rebuild_measures_the_stack_again(tmp_path: Path, kind: str) -> None:
    """``build --force`` of an unchanged build: zig answers the unchanged compiles from its cache and
    writes no stack-usage file then, so each measurement must be a compile zig has not seen."""
    if not _have("ch32v003", kind):
        pytest.skip(f"no {kind} toolchain for ch32v003")
    header = synthetic_header(tmp_path / "h.h")
    first = build("ch32v003", header, tmp_path / "out", toolchain=kind)
    again = build("ch32v003", header, tmp_path / "out", toolchain=kind, force=True)
    assert not again.cached and again.stack_bytes == first.stack_bytes
    assert not list((tmp_path / "out").glob("*.su")) and not list((tmp_path / "out").glob("stack-*"))

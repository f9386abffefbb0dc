"""Packed kernels run from SRAM where the board file asks (`[memory] kernels_in_ram`, the CH32V003, whose
flash has a wait state at 48 MHz) and the image still fits; else from flash. Real builds (GCC, else zig),
the real firmware on the Unicorn emulator and its cycle model, logits compared with potnn.simulate.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import potnn
from potnn import PoTConv2d, PoTLinear
from potnn.boards import load_board_facts
from potnn.codegen.compiled import RAM_KERNEL, measure
from potnn.codegen.kernels import RAM_MARK, dot_kernel

from bench.board import Board, load_board
from bench.build import build
from bench.elf import read_elf
from bench.emulator import launch
from bench.protocol import BenchClient
from bench.toolchain import ToolchainError

REPO = Path(__file__).resolve().parent.parent
REPO_BOARDS = REPO / "boards"


class Packed(nn.Module):
    """16x16: conv 1 -> 4 + pool (unroll), conv 4 -> 16 + pool (fp130, the row kernel), linear (fp130, the
    dot kernel)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = PoTConv2d(1, 4, 3, padding=1)
        self.conv1 = PoTConv2d(4, 16, 3, padding=1)
        self.head = PoTLinear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(torch.relu(self.conv0(x)), 2)
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        return self.head(x.flatten(1))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """The model's header, test images and potnn.simulate's logits for them."""
    out = tmp_path_factory.mktemp("ram_kernels")
    torch.manual_seed(4)
    model = Packed().eval()
    config = potnn.Config(flash=10**6, ram=10**6, mean=0.3, std=0.3,
                          layer_encodings={"conv0": "unroll", "conv1": "fp130", "head": "fp130"})
    images = np.random.default_rng(4).integers(0, 256, (8, 1, 16, 16), dtype=np.uint8)
    x = (torch.from_numpy(images).float() / 255 - 0.3) / 0.3
    potnn.calibrate(model, [(x,)], config)
    potnn.prepare_qat(model, config)
    potnn.export(model, out / "m.h", config)
    assert "potnn_row4_fp130_u8(" in (out / "m.h").read_text() and "potnn_dot_fp130_u8(" in (out / "m.h").read_text()
    return out / "m.h", images, potnn.simulate(model, images)


def _ch32v003_edited(folder: Path, line: str, replacement: str) -> Board:
    """The CH32V003 board file with one of its lines replaced, written into `folder`."""
    text = (REPO_BOARDS / "ch32v003.toml").read_text()
    assert line in text
    folder.mkdir(exist_ok=True)
    (folder / "ch32v003.toml").write_text(text.replace(line, replacement))
    return load_board(folder / "ch32v003.toml")


def _ch32v003_from_flash(tmp_path: Path) -> Board:
    """The CH32V003 board file with kernels_in_ram = false."""
    return _ch32v003_edited(tmp_path, "kernels_in_ram = true", "kernels_in_ram = false")


def _kernel_addresses(elf: Path) -> dict[str, int]:
    return {s.name: s.value & ~1 for s in read_elf(elf).symbols if s.name.startswith(("potnn_row4_", "potnn_dot_"))}


def _run(board: Board | str, elf: Path, images: np.ndarray, reference: np.ndarray) -> int:
    """Every image's logits must equal the reference; the mean cycles per inference."""
    cycles = []
    with launch(board, elf) as emu:
        client = BenchClient(emu.open_serial(timeout=5), timeout=5, infer_timeout=30)
        for image, ref in zip(images, reference):
            answer = client.infer(image.tobytes())
            assert list(answer.logits) == ref.tolist()
            cycles.append(answer.cycles)
        assert emu.fault is None
    return int(np.mean(cycles))


@pytest.mark.parametrize("kind", ["gnu", "zig"])
def test_kernels_run_from_sram_on_the_ch32v003_and_take_fewer_cycles(
        exported: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path, kind: str) -> None:
    header, images, reference = exported
    try:
        in_ram = build("ch32v003", header, tmp_path / "ram", toolchain=kind)
    except ToolchainError as e:
        pytest.skip(str(e))
    in_flash = build(_ch32v003_from_flash(tmp_path), header, tmp_path / "flash", toolchain=kind)
    assert in_ram.ram_kernel_bytes >= 400 and in_flash.ram_kernel_bytes == 0
    board = load_board("ch32v003")
    kernels_ram, kernels_flash = _kernel_addresses(in_ram.elf), _kernel_addresses(in_flash.elf)
    assert len(kernels_ram) == 2 and kernels_ram.keys() == kernels_flash.keys()
    assert all(board.ram_origin <= a < board.ram_origin + board.ram_size for a in kernels_ram.values())
    assert all(a < board.flash_origin + board.flash_size for a in kernels_flash.values())
    # the kernels' bytes are the model's in both builds: in SRAM they also keep their copy in flash
    assert in_ram.model_ram_bytes - in_flash.model_ram_bytes == in_ram.ram_kernel_bytes
    assert abs(in_ram.model_flash_bytes - in_flash.model_flash_bytes) <= 64
    assert in_ram.firmware_flash_bytes <= in_flash.firmware_flash_bytes + 64   # (link relaxation moves a few)
    assert in_ram.firmware_ram_bytes == in_flash.firmware_ram_bytes              # the padding is the model's
    assert in_ram.ram_bytes <= in_ram.ram_budget
    from_ram, from_flash = _run("ch32v003", in_ram.elf, images, reference), _run(
        _ch32v003_from_flash(tmp_path), in_flash.elf, images, reference)
    print(f"{kind}: cycles per inference with the kernels in flash {from_flash:,}, in SRAM {from_ram:,}")
    assert from_ram < 0.9 * from_flash


def _ch32v003_with_sram(tmp_path: Path, ram_size: int) -> Board:
    """The CH32V003 board file with `ram_size` bytes of SRAM."""
    return _ch32v003_edited(tmp_path / str(ram_size), "ram_size = 2048", f"ram_size = {ram_size}")


def test_the_kernels_doing_the_most_work_take_the_sram_there_is(tmp_path: Path) -> None:
    """mnist16-accurate's two kernels fit the CH32V003's 2 KB beside the image. With a word less SRAM than that
    build used, the row kernel of its two convs (almost all of its multiply-accumulates) still runs from SRAM
    and the linear layer's dot kernel from flash; with a word less than that, both run from flash. Every
    build's answers equal potnn.simulate's, and the one kernel in SRAM already saves most of the cycles."""
    header = Path(potnn.__file__).parent / "zoo" / "models" / "mnist16-accurate" / "model.h"
    manifest = potnn.load_bundle(header.with_suffix(".potnn")).manifest
    hottest, coldest = (k["name"] for k in manifest["kernels"])
    assert hottest == "potnn_row4_indexed_u8" and coldest == "potnn_dot_fp130_u8"
    both = build("ch32v003", header, tmp_path / "both")
    assert both.ram_kernels == tuple(sorted((hottest, coldest))) and both.ram_kernel_bytes >= 400
    board = _ch32v003_with_sram(tmp_path, (both.ram_bytes - 1) & ~3)   # word-aligned, as the stack's top must be
    one = build(board, header, tmp_path / "one")
    assert one.ram_kernels == (hottest,) and 0 < one.ram_kernel_bytes < both.ram_kernel_bytes
    assert one.ram_bytes <= one.ram_budget
    addresses = _kernel_addresses(one.elf)
    assert board.ram_origin <= addresses[hottest] < board.ram_origin + board.ram_size
    assert addresses[coldest] < board.flash_origin + board.flash_size
    short = _ch32v003_with_sram(tmp_path, (one.ram_bytes - 1) & ~3)
    none = build(short, header, tmp_path / "none")
    assert none.ram_kernels == () and none.ram_kernel_bytes == 0 and none.ram_bytes <= none.ram_budget
    # export measured the kernels in SRAM, with long calls: kernels left in flash never take more
    assert max(one.model_flash_bytes, none.model_flash_bytes) <= manifest["flash_bytes"]
    images = np.random.default_rng(7).integers(0, 256, (3, 1, 16, 16), dtype=np.uint8)
    reference = potnn.simulate(header.with_suffix(".potnn"), images)
    cycles = {name: _run(b, r.elf, images, reference)
              for name, b, r in (("both", "ch32v003", both), ("one", board, one), ("none", short, none))}
    print(f"cycles per inference with kernels in SRAM: both {cycles['both']:,}, the row kernel {cycles['one']:,}, "
          f"none {cycles['none']:,}")
    assert cycles["both"] <= cycles["one"] < 0.9 * cycles["none"]


def test_a_board_without_wait_states_keeps_its_kernels_in_flash(exported: tuple[Path, np.ndarray, np.ndarray],
                                                                tmp_path: Path) -> None:
    header, images, reference = exported
    result = build("py32f003", header, tmp_path / "py32")
    assert not load_board("py32f003").kernels_in_ram and result.ram_kernel_bytes == 0
    _run("py32f003", result.elf, images[:2], reference[:2])


def test_export_measures_the_flash_of_kernels_in_sram(exported: tuple[Path, np.ndarray, np.ndarray]) -> None:
    """Their copy in flash and the long calls into SRAM: at least the flash the kernels take left in flash."""
    header = exported[0].read_text()
    facts = load_board_facts("ch32v003")
    assert facts.kernels_in_ram
    in_ram, in_flash = measure(header, facts), measure(header, dataclasses.replace(facts, kernels_in_ram=False))
    for kind in in_ram:
        assert in_flash[kind].flash < in_ram[kind].flash <= in_flash[kind].flash + 64, kind
        assert in_ram[kind].stack == in_flash[kind].stack


def test_every_kernel_is_marked_for_sram() -> None:
    """The header gives every kernel its own placement macro (potnn.codegen.kernels rewrites each template's
    RAM_MARK), and compiled.measure finds a header's kernels by how their definitions begin."""
    sources = [*(REPO / "potnn" / "encoding" / "kernels").glob("*.c"), REPO / "potnn" / "codegen" / "c" / "gather.c"]
    assert len(sources) >= 5
    for source in sources:
        text = source.read_text()
        assert text.count("POTNN_KERNEL ") == text.count(RAM_MARK) == 1, source.name
    lines = dot_kernel("fp130", False)
    assert lines[:3] == ["#ifndef POTNN_RAMFUNC_potnn_dot_fp130_u8",
                         "#define POTNN_RAMFUNC_potnn_dot_fp130_u8 POTNN_RAMFUNC", "#endif"]
    assert sum(line.startswith(RAM_KERNEL) for line in lines) == 1


def test_the_bundle_lists_the_kernels_by_their_work(exported: tuple[Path, np.ndarray, np.ndarray]) -> None:
    """The manifest's `kernels` are exactly the kernels the header defines, with the multiply-accumulates each
    does per inference: fp130 spends time on every weight, so conv1's row kernel does 16 x 4 x 3 x 3 weights at
    8 x 8 positions (before its pool) and the head's dot kernel 256 x 10."""
    header = exported[0]
    defined = re.findall(rf"^{RAM_KERNEL}\w* static [\w *]+?(potnn_\w+)\(", header.read_text(), re.M)
    kernels = potnn.load_bundle(header.with_suffix(".potnn")).manifest["kernels"]
    assert sorted(defined) == sorted(k["name"] for k in kernels)
    assert kernels == [{"name": "potnn_row4_fp130_u8", "macs": 16 * 4 * 9 * 8 * 8},
                       {"name": "potnn_dot_fp130_u8", "macs": 256 * 10}]

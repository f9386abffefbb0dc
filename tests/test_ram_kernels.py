"""Packed kernels run from SRAM where the board file asks (`[memory] kernels_in_ram`, the CH32V003, whose
flash has a wait state at 48 MHz) and the image still fits; else from flash. Real builds (GCC, else zig),
the real firmware on the Unicorn emulator and its cycle model, logits compared with potnn.simulate.
"""

from __future__ import annotations

import dataclasses
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


def _ch32v003_from_flash(tmp_path: Path) -> Board:
    """The CH32V003 board file with kernels_in_ram = false."""
    text = (REPO_BOARDS / "ch32v003.toml").read_text()
    assert "kernels_in_ram = true" in text
    (tmp_path / "ch32v003.toml").write_text(text.replace("kernels_in_ram = true", "kernels_in_ram = false"))
    return load_board(tmp_path / "ch32v003.toml")


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


def test_kernels_stay_in_flash_when_sram_is_short(tmp_path: Path) -> None:
    """mnist16-accurate's kernels (444 B) fit the CH32V003's 2 KB beside the image; on a part with 1,800 B of
    SRAM they do not, and the build keeps them in flash."""
    header = Path(potnn.__file__).parent / "zoo" / "models" / "mnist16-accurate" / "model.h"
    assert build("ch32v003", header, tmp_path / "2048").ram_kernel_bytes >= 400
    (tmp_path / "short").mkdir()
    text = (REPO_BOARDS / "ch32v003.toml").read_text()
    assert "ram_size = 2048" in text
    (tmp_path / "short" / "ch32v003.toml").write_text(text.replace("ram_size = 2048", "ram_size = 1800"))
    board = load_board(tmp_path / "short" / "ch32v003.toml")
    result = build(board, header, tmp_path / "1800")
    assert result.ram_kernel_bytes == 0 and result.ram_bytes <= result.ram_budget == 1800
    # export measured the kernels in SRAM, with long calls: kernels left in flash never take more
    assert result.model_flash_bytes <= potnn.load_bundle(header.with_suffix(".potnn")).manifest["flash_bytes"]
    assert all(a < board.flash_origin + board.flash_size for a in _kernel_addresses(result.elf).values())


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
    """compiled.measure finds a header's kernels by how their definitions begin."""
    sources = [*(REPO / "potnn" / "encoding" / "kernels").glob("*.c"), REPO / "potnn" / "codegen" / "c" / "gather.c"]
    assert len(sources) >= 5
    for source in sources:
        text = source.read_text()
        assert text.count("POTNN_KERNEL ") == text.count(RAM_KERNEL) == 1, source.name

"""The bench firmware with an exported potnn model, under the Unicorn backend, on both boards.

What must hold: INFO and 100 inference requests answered, every image's logits
equal to ``potnn.simulate``, per-inference instruction and cycle counts available; and a model
whose buffers plus stack exceed the CH32V003's 2 KB ends in a stack/RAM fault report, never in
answers. The firmware and the model come from the real build (``bench.build``) and export
(``potnn.export``) paths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.board import load_board
from bench.build import build
from bench.emulator import EmulatorFault, FaultKind, launch
from bench.emulator.elfimage import ElfImage
from bench.protocol import BenchClient
from bench.toolchain import ToolchainError, find_toolchain
from firmware_models import export_tiny, synthetic_header

BOARDS = ["ch32v003", "py32f003"]
N_IMAGES = 100


def _need_toolchain(board: str) -> None:
    try:
        find_toolchain(load_board(board))
    except ToolchainError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return export_tiny(tmp_path_factory.mktemp("model"), n_images=N_IMAGES)


@pytest.mark.parametrize("board", BOARDS)
def test_info_and_100_inferences_match_simulate(tmp_path: Path, tiny, board: str) -> None:
    _need_toolchain(board)
    result = build(board, tiny.header, tmp_path / board)
    with launch(board, result.elf) as emu:
        client = BenchClient(emu.open_serial(timeout=5), timeout=5, infer_timeout=30)
        info = client.info()
        assert info.num_classes == 10 and info.input_size == 256
        assert info.board == board
        counts = []
        for i in range(N_IMAGES):
            answer = client.infer(tiny.images[i].tobytes())
            assert list(answer.logits) == tiny.reference[i].tolist(), f"image {i}: logits differ from potnn.simulate"
            assert answer.cls == int(np.argmax(tiny.reference[i]))
            instructions, cycles = emu.last_inference()
            # the firmware's own SysTick difference is the emulator's modelled cycle count
            assert answer.cycles == cycles
            counts.append((instructions, cycles))
        assert emu.fault is None
        stats = emu.stats
    instructions = np.array([c[0] for c in counts])
    cycles = np.array([c[1] for c in counts])
    assert (instructions > 1000).all() and (cycles >= instructions).all()
    # same model, same code path: the counts barely vary from image to image
    assert cycles.max() < 1.2 * cycles.min()
    assert stats.counter_reads == 2 * N_IMAGES
    assert stats.stack_bytes is not None and stats.stack_bytes <= load_board(board).ram_size


def _static_end(elf: Path) -> int:
    image = ElfImage(elf)
    return image.static_ram_end(0x20000000, 1 << 20)


@pytest.mark.parametrize("board", BOARDS)
def test_buffers_plus_stack_over_2k_end_in_a_stack_fault(tmp_path: Path, board: str) -> None:
    """Static RAM that fits but leaves too little stack: a stack-overflow fault, not answers."""
    _need_toolchain(board)
    ram = load_board(board).ram_size
    probe = build(board, synthetic_header(tmp_path / "probe.h", ram_words=4), tmp_path / "probe", check_ram=False)
    base_end = _static_end(probe.elf)
    # grow the model's buffers until only 24 bytes are left above .bss: less than any call chain needs
    words = (0x20000000 + ram - 24 - base_end) // 4 + 4
    result = build(board, synthetic_header(tmp_path / "big.h", ram_words=words), tmp_path / "big", check_ram=False)
    assert not result.ram_checked
    left = 0x20000000 + ram - _static_end(result.elf)
    assert 0 < left <= 32
    with launch(board, result.elf) as emu:
        with pytest.raises(EmulatorFault) as info:
            client = BenchClient(emu.open_serial(timeout=5), timeout=5, infer_timeout=5, retries=0)
            client.info()
            client.infer(bytes(256))
        fault = info.value.fault
    assert fault.kind == FaultKind.STACK_OVERFLOW, str(fault)
    assert fault.pc is not None and fault.symbol
    assert fault.sp is not None and fault.sp < 0x20000000 + ram - left


@pytest.mark.parametrize("board", BOARDS)
def test_static_ram_over_2k_ends_in_a_ram_fault(tmp_path: Path, board: str) -> None:
    """.data + .bss larger than SRAM (only possible without the budget check): a RAM fault."""
    _need_toolchain(board)
    ram = load_board(board).ram_size
    words = ram // 4 + 16
    result = build(board, synthetic_header(tmp_path / "huge.h", ram_words=words), tmp_path / "huge", check_ram=False)
    with launch(board, result.elf) as emu:
        with pytest.raises(EmulatorFault) as info:
            BenchClient(emu.open_serial(timeout=5), timeout=5, retries=0).info()
        fault = info.value.fault
    assert fault.kind == FaultKind.RAM_OVERFLOW, str(fault)
    assert "do not fit" in fault.message

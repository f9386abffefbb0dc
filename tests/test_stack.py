"""The stack is measured, not assumed: export measures potnn_predict's, the build measures the whole
firmware's and reserves it, and a model both accept runs on the emulator within that stack.

The model is stack-heavy on purpose (a 7×7 kernel over three channels: every output copies its receptive
field onto the stack and the unrolled sums spill beside it), so a fixed reserve would overflow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import potnn
from bench.board import load_board
from bench.build import build
from bench.elf import read_elf
from bench.emulator import launch
from bench.protocol import BenchClient
from bench.stack_usage import StackUsageError, parse_su
from bench.toolchain import ToolchainError, find_toolchain
from budget_models import export_for_board, patch_net
from potnn.boards import load_board_facts
from potnn.codegen.compiled import frames, predict_stack

BOARDS = ["ch32v003", "py32f003"]


@pytest.fixture(scope="module")
def prepared():
    return patch_net(n_images=10)


@pytest.mark.parametrize("kind", ["gnu", "zig"])
@pytest.mark.parametrize("board", BOARDS)
def test_a_stack_heavy_model_export_accepts_builds_and_runs_within_its_stack(
        tmp_path: Path, prepared, board: str, kind: str) -> None:
    try:
        find_toolchain(load_board(board), kind)
    except ToolchainError as exc:
        pytest.skip(str(exc))
    report = export_for_board(prepared, board, tmp_path / "model")
    assert report.compiled is not None and kind in report.compiled
    assert report.stack_bytes == max(c.stack for c in report.compiled.values())
    assert potnn.load_bundle(report.bundle).manifest["flash_bytes"] == report.flash_bytes
    assert potnn.load_bundle(report.bundle).manifest["stack_bytes"] == report.stack_bytes
    r = build(board, report.path, tmp_path / "fw", toolchain=kind)
    # one verdict: the build's measured stack is within what the budget kept for it
    assert r.model_stack_bytes <= report.compiled[kind].stack
    assert report.compiled[kind].flash - 16 <= r.model_flash_bytes <= report.compiled[kind].flash  # exact, but alignment
    assert r.flash_bytes <= load_board_facts(board).firmware[kind].flash + report.compiled[kind].flash
    assert r.stack_bytes <= load_board_facts(board).firmware[kind].stack + report.compiled[kind].stack
    assert r.stack_bytes > r.model_ram_bytes - r.ram_kernel_bytes  # the stack, not the arena (input included), is its RAM
    assert r.ram_bytes == r.static_ram_bytes + r.stack_bytes <= r.ram_budget
    reference = potnn.simulate(prepared.model, prepared.images)
    with launch(board, r.elf) as emu:
        client = BenchClient(emu.open_serial(timeout=5), timeout=5, infer_timeout=30)
        assert client.info().stack_reserved == r.stack_bytes
        for image, logits in zip(prepared.images, reference):
            assert list(client.infer(image.tobytes()).logits) == logits.tolist()
        assert emu.fault is None
        observed = emu.stats.stack_bytes
    assert observed is not None and observed <= r.stack_bytes


def test_a_fault_inside_zig_code_names_the_function_not_a_local_label(tmp_path: Path, prepared) -> None:
    try:
        find_toolchain(load_board("ch32v003"), "zig")
    except ToolchainError as exc:
        pytest.skip(str(exc))
    report = export_for_board(prepared, "ch32v003", tmp_path / "model")
    image = read_elf(build("ch32v003", report.path, tmp_path / "fw", toolchain="zig").elf)
    assert any(s.name.startswith(".L") for s in image.symbols)  # clang's labels are there to mislead
    biggest = max((s for s in image.symbols if s.kind == "STT_FUNC"), key=lambda s: s.size)
    assert image.function_at(biggest.value + biggest.size - 4) == f"{biggest.name}+0x{biggest.size - 4:x}"


def test_stack_usage_files_of_gcc_and_clang_are_read_alike() -> None:
    gcc = "model.h:282:28:potnn_1_res0.constprop\t540\tstatic\nmodel.h:9:5:potnn_predict\t16\tstatic\n" \
          "model.h:40:1:potnn_1_res0.part.0\t8\tstatic\nmodel.h:50:1:potnn_dot_fp130_u\t0\tstatic"
    clang = "./model.h:282:potnn_1_res0\t660\tstatic\n./model.h:9:potnn_predict\t32\tdynamic,bounded"
    assert frames(gcc) == {"potnn_1_res0": 548, "potnn_predict": 16, "potnn_dot_fp130_u": 0}
    assert predict_stack(frames(gcc)) == 16 + 548 + 0
    assert predict_stack(frames(clang)) == 32 + 660
    assert parse_su(gcc)["potnn_1_res0.constprop"] == 540
    with pytest.raises(StackUsageError, match="unbounded stack frame"):
        parse_su("app.c:3:5:f\t64\tdynamic")
    with pytest.raises(potnn.ExportError, match="unbounded stack frame"):
        frames("app.c:3:5:f\t64\tdynamic")

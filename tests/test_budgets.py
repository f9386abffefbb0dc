"""Config.for_board's budgets are the board less the bench firmware's measured cost, and a refusal
names every budget a model exceeds.

The firmware's cost is recorded in the board files (`[firmware]`), so it must be checked against real
builds with both toolchains: the recorded figure must bound what is measured (or a model export accepts
could fail to build) and stay close to it (or the budget wastes the chip).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import potnn
from bench.board import REPO_ROOT, load_board
from bench.build import build
from bench.toolchain import ToolchainError, find_toolchain
import torch

from budget_models import PatchNet, for_board, patch_net
from firmware_models import export_tiny, synthetic_header
from potnn.boards import BOARDS_DIR, load_board_facts
from potnn.codegen.budget import ALONE

BOARDS = ["ch32v003", "py32f003"]
SLACK = {"flash": 32, "ram": 8, "stack": 16}  # how far the recorded cost may exceed the largest measured


def test_board_files_are_the_ones_potnn_reads() -> None:
    assert BOARDS_DIR.resolve() == (REPO_ROOT / "boards").resolve()


@pytest.mark.parametrize("name", [*BOARDS, "py32f003x6", "py32f003x8"])
def test_for_board_is_the_board_less_the_largest_firmware_cost(name: str) -> None:
    facts = load_board_facts(name)
    board = load_board(name)
    assert (facts.flash_size, facts.ram_size) == (board.flash_size, board.ram_size)
    assert set(facts.firmware) == {"gnu", "zig"}
    config = potnn.Config.for_board(name, input_channels=3, mean=0.5)
    costs = facts.firmware.values()
    assert config.flash == board.flash_size - max(c.flash for c in costs)
    assert config.ram == board.ram_size - max(c.ram for c in costs) - max(c.stack for c in costs)
    assert config.board == name and config.input_channels == 3 and config.channel_mean() == (0.5,) * 3


def test_for_board_refuses_budgets_and_unknown_boards() -> None:
    with pytest.raises(ValueError, match="ram come from the board file"):
        potnn.Config.for_board("ch32v003", ram=4096)
    with pytest.raises(ValueError, match="unknown board 'nosuch'; known boards: ch32v003"):
        potnn.Config.for_board("nosuch")
    assert potnn.Config(flash=1000, ram=100).board is None
    assert "budget the model alone" in (potnn.Config.__doc__ or "")


def test_a_refusal_names_ram_and_flash_together(tmp_path: Path) -> None:
    p = patch_net(channels=3, side=16)
    config = dataclasses.replace(p.config, flash=1000, ram=100)
    with pytest.raises(potnn.ExportError) as err:
        potnn.export(p.model, tmp_path / "model.h", config)
    text = str(err.value)
    assert "bytes of RAM (arena 1024 (input, activations, logits)) but Config.ram is 100" in text
    assert "bytes of flash (weights" in text and "but Config.flash is 1000" in text
    assert ALONE in text and "\n" not in text
    assert not (tmp_path / "model.h").exists()


def test_the_dry_run_warns_of_the_stack_before_training() -> None:
    """The same model as below, untrained: its buffers fit the board, its stack does not, and calibrate (the
    first step of training) says so at once instead of export after every epoch."""
    config = for_board(patch_net(channels=3, side=16).config, "ch32v003")
    x = (torch.rand(4, 3, 16, 16) - 0.5) / 0.25
    with pytest.warns(UserWarning, match=r"the firmware's logit buffer 40 \+ potnn_predict's stack "
                                         rf"\d+ \((gnu|zig)\)\), over Config.ram {config.ram}"):
        potnn.calibrate(PatchNet(3, 16), [(x,)], config)


def test_a_board_refusal_counts_the_firmware_buffers_and_the_stack(tmp_path: Path) -> None:
    p = patch_net(channels=3, side=16)  # 768-byte input, and a stack three times its activations
    config = potnn.Config.for_board("ch32v003", **{f.name: getattr(p.config, f.name)
                                                   for f in dataclasses.fields(p.config)
                                                   if f.name not in ("flash", "ram", "board")})
    with pytest.raises(potnn.ExportError) as err:
        potnn.export(p.model, tmp_path / "model.h", config)
    text = str(err.value)
    assert "the firmware's logit buffer 40 + potnn_predict's stack" in text
    assert f"Config.ram is {config.ram}" in text and "Config.for_board('ch32v003')" in text
    assert "flash" not in text.split(":")[0]  # flash fits: only RAM is named


@pytest.mark.parametrize("kind", ["gnu", "zig"])
@pytest.mark.parametrize("board", BOARDS)
def test_recorded_firmware_cost_bounds_the_measured_one(tmp_path: Path, board: str, kind: str) -> None:
    try:
        find_toolchain(load_board(board), kind)
    except ToolchainError as exc:
        pytest.skip(str(exc))
    p = patch_net()
    plain = tmp_path / "patch" / "model.h"
    plain.parent.mkdir()
    potnn.export(p.model, plain, p.config)
    headers = {"null": synthetic_header(tmp_path / "null.h", weight_bytes=1, ram_words=1),
               "tiny": export_tiny(tmp_path).header, "patch": plain}
    measured = {"flash": 0, "ram": 0, "stack": 0}
    for name, header in headers.items():
        r = build(board, header, tmp_path / name, toolchain=kind)
        io = 4 * r.num_classes  # the firmware's buffer the model sizes (the input lives in the model's arena)
        for key, value in (("flash", r.firmware_flash_bytes), ("ram", r.firmware_ram_bytes - io),
                           ("stack", r.firmware_stack_bytes)):
            measured[key] = max(measured[key], value)
    recorded = dataclasses.asdict(load_board_facts(board).firmware[kind])
    for key, value in measured.items():
        assert value <= recorded[key], f"boards/{board}.toml [firmware] {kind} {key} = {recorded[key]} " \
                                       f"but the firmware measures {value}: record the new figure"
        assert recorded[key] - value <= SLACK[key], f"boards/{board}.toml [firmware] {kind} {key} = " \
                                                    f"{recorded[key]} wastes the chip: measured {value}"

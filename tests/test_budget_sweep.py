"""One verdict at the edge of each 2 KB board: models generated to be flash-heavy, RAM-heavy or
stack-heavy, with one and three input channels, are grown through Config.for_board until export refuses
them; the largest export accepts must build with GCC and with zig and answer 10 inputs on the emulator
exactly as potnn.simulate, with no fault, and the budget must be tight (it must use most of the board).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import potnn
from bench.board import load_board
from bench.build import build
from bench.emulator import launch
from bench.protocol import BenchClient
from bench.toolchain import ToolchainError, find_toolchain
from potnn import PoTConv2d, PoTLinear

BOARDS = ["ch32v003", "py32f003"]
TOOLCHAINS = ["gnu", "zig"]
FULL = 0.85  # the fullest accepted model uses at least this share of the board's flash or RAM


class Grown(nn.Module):
    """conv (C → width, k×k, stride 1) → conv (width → 4, 3×3, stride 2) → linear (→ hidden) → linear (→ 10)."""

    def __init__(self, channels: int, width: int, kernel: int, side: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = PoTConv2d(channels, width, kernel, padding=kernel // 2)
        self.conv2 = PoTConv2d(width, 4, 3, stride=2, padding=1)
        self.fc1 = PoTLinear(4 * ((side + 1) // 2) ** 2, hidden)
        self.fc2 = PoTLinear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


@dataclasses.dataclass
class Family:
    name: str
    channels: int
    side: int
    make: Callable[[int], Grown]  # size step -> model
    encodings: dict[str, str]


FAMILIES = [
    Family("flash-1ch", 1, 8, lambda n: Grown(1, 2, 3, 8, 2 + n), {}),
    Family("ram-3ch", 3, 12, lambda n: Grown(3, 1 + n, 3, 12, 8), {"fc1": "fp130"}),
    Family("stack-3ch", 3, 10, lambda n: Grown(3, 2, 3 + 2 * n, 10, 8), {"fc1": "fp130"}),
    Family("ram-1ch", 1, 16, lambda n: Grown(1, 1 + n, 3, 16, 8), {"fc1": "fp130"}),
]


def _prepare(family: Family, step: int, board: str) -> tuple[nn.Module, potnn.Config, np.ndarray]:
    torch.manual_seed(step)
    model = family.make(step).eval()
    config = potnn.Config.for_board(board, input_channels=family.channels, input_h=family.side,
                                    input_w=family.side, mean=0.5, std=0.25, layer_encodings=family.encodings)
    images = np.random.default_rng(step).integers(0, 256, (10, family.channels, family.side, family.side),
                                                  dtype=np.uint8)
    potnn.calibrate(model, [((torch.from_numpy(images).float() / 255 - 0.5) / 0.25,)], config)
    potnn.prepare_qat(model, config)
    return model, config, images


def _edge(family: Family, board: str, directory: Path) -> tuple[nn.Module, Path, np.ndarray, int]:
    """The largest model of the family export accepts, and the step after it, which export refuses
    (found by doubling, then bisection: export's verdict grows with the step)."""
    accepted: dict[int, tuple[nn.Module, Path, np.ndarray]] = {}

    def accepts(step: int) -> bool:
        model, config, images = _prepare(family, step, board)
        header = directory / f"{family.name}-{step}" / "model.h"
        header.parent.mkdir(parents=True)
        try:
            potnn.export(model, header, config)
        except potnn.ExportError:
            return False
        accepted[step] = (model, header, images)
        return True

    def refuses(step: int) -> bool:
        try:
            return not accepts(step)
        except potnn.ExportError:  # calibrate's own check of the budgets
            return True

    assert not refuses(1), f"{family.name}: even the smallest model is refused on {board}"
    lo, hi = 1, 2
    while not refuses(hi):
        lo, hi = hi, 2 * hi
        assert hi <= 256, f"{family.name}: export never refused a model on {board}; grow it faster"
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if refuses(mid) else (mid, hi)
    return (*accepted[lo], hi)


@pytest.mark.parametrize("board", BOARDS)
def test_what_export_accepts_at_the_edge_builds_and_runs_with_both_toolchains(tmp_path: Path, board: str) -> None:
    kinds = []
    for kind in TOOLCHAINS:
        try:
            find_toolchain(load_board(board), kind)
            kinds.append(kind)
        except ToolchainError:
            pass
    if not kinds:
        pytest.skip(f"no toolchain for {board} here")
    fullest = 0.0
    for family in FAMILIES:
        model, header, images, refused = _edge(family, board, tmp_path)
        assert refused > 1
        reference = potnn.simulate(model, images)
        for kind in kinds:
            r = build(board, header, tmp_path / f"{family.name}-{kind}", toolchain=kind)
            fullest = max(fullest, r.flash_bytes / r.flash_budget, r.ram_bytes / r.ram_budget)
            with launch(board, r.elf) as emu:
                client = BenchClient(emu.open_serial(timeout=5), timeout=5, infer_timeout=60)
                for image, logits in zip(images, reference):
                    assert list(client.infer(image.tobytes()).logits) == logits.tolist(), (family.name, kind)
                assert emu.fault is None, (family.name, kind, emu.fault)
                assert emu.stats.stack_bytes is not None and emu.stats.stack_bytes <= r.stack_bytes
    print(f"\n{board}: the fullest model export accepted uses {fullest:.1%} of the board's flash or RAM "
          f"({', '.join(kinds)})")
    assert fullest >= FULL, f"the fullest model export accepted uses {fullest:.0%} of {board}: the budget is loose"
